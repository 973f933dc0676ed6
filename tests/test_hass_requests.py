"""What Home Assistant's `ollama` integration sends, replayed through the gateway.

`fixtures/hass/requests.json` holds each request HA makes (see its `_source`):
the model list at setup and with `/api/ps` every 30 s, the pull of a model
that is not listed, and a conversation turn: streamed, with tools,
`keep_alive` -1 (sent as -1.0) or "<n>s", `options.num_ctx`, `think`, an AI
Task's JSON schema as `format`, an image. HA then reads the answers through
the official client's types: `models[].model`, tool-call `arguments` as a
dict (`.items()`), `message.thinking`; and it sorts errors by status: 401 and
403 ask the user to re-authenticate, 429 and 5xx are retried, any other 4xx
means "not an Ollama server".
"""

from __future__ import annotations

import json

import ollama
import pytest

from tests.captures import Captures, only_sent
from tests.conftest import base_url
from tests.fakebackend import Script, chat_chunk, sse
from tests.ndjson import assert_final, read_ndjson

MODELS = ("llama3.2", "qwen3", "llava")
CAPTURES = Captures("hass", MODELS)
CHATS = [n for n, c in CAPTURES.items() if n != "_source" and c["path"] == "/api/chat"]


_replay = CAPTURES.replay
_gateway = CAPTURES.gateway
_sent = only_sent


def _tool_call_script() -> Script:
    call = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "HassTurnOn", "arguments": ""},
    }
    events = [
        chat_chunk({"role": "assistant", "content": None, "tool_calls": [call]}),
        chat_chunk(
            {"tool_calls": [{"index": 0, "function": {"arguments": '{"name": "kit'}}]}
        ),
        chat_chunk(
            {
                "tool_calls": [
                    {"index": 0, "function": {"arguments": 'chen light", "area": ""}'}}
                ]
            }
        ),
        chat_chunk({}, finish="tool_calls"),
    ]
    return Script(pieces=[sse(*events)])


@pytest.mark.parametrize("name", ["list", "list_key"])
async def test_the_model_list_gives_what_setup_and_the_sensors_read(
    gateway, backend, name
):
    client = await _gateway(gateway, backend)
    resp = await _replay(client, name)
    assert resp.status == 200
    listed = ollama.ListResponse.model_validate(await resp.json())
    # The config flow offers `model_info["model"]` as "downloaded"; the one a
    # user picked (with its tag, as HA stores it) must be among them, or HA
    # pulls it.
    assert {m.model for m in listed.models} >= {f"{m}:latest" for m in MODELS}


@pytest.mark.parametrize("name", ["chat_tools", "chat_keep_alive_seconds"])
async def test_the_loaded_models_sensor_reads_ps_after_a_turn(gateway, backend, name):
    # keep_alive -1.0 (HA's "forever") and "300s" both give an expiry the
    # client parses as a datetime.
    backend.queue(Script.text("Done."))
    client = await _gateway(gateway, backend)
    assert_final(await read_ndjson(await _replay(client, name)))
    resp = await _replay(client, "ps")
    assert resp.status == 200
    loaded = ollama.ProcessResponse.model_validate(await resp.json())
    assert [m.model for m in loaded.models] == ["llama3.2:latest"]
    assert all(m.size is not None and m.size_vram is not None for m in loaded.models)


async def test_pull_of_a_served_model_succeeds_as_one_object(gateway, backend):
    client = await _gateway(gateway, backend)
    resp = await _replay(client, "pull")
    assert resp.status == 200
    assert ollama.ProgressResponse.model_validate(await resp.json()).status == (
        "success"
    )


@pytest.mark.parametrize("name", CHATS)
async def test_every_turn_it_sends_streams_an_answer(gateway, backend, name):
    backend.queue(Script.text("The light is on."))
    client = await _gateway(gateway, backend)
    resp = await _replay(client, name)
    assert resp.status == 200, await resp.text()
    objs = await read_ndjson(resp)
    for obj in objs:
        ollama.ChatResponse.model_validate(obj)
    assert assert_final(objs)["model"] == json.loads(CAPTURES[name]["body"])["model"]


async def test_a_tool_call_reaches_ha_with_arguments_as_a_dict(gateway, backend):
    backend.queue(_tool_call_script())
    client = await _gateway(gateway, backend)
    body = json.loads(CAPTURES["chat_tools"]["body"])
    async with ollama.AsyncClient(host=base_url(client)) as host:
        chunks = [c async for c in await host.chat(**body)]
    calls = [c for chunk in chunks for c in chunk.message.tool_calls or ()]
    (call,) = calls
    assert call.function.name == "HassTurnOn"
    # HA's _parse_tool_args iterates `.items()` and drops empty values.
    assert dict(call.function.arguments.items()) == {
        "name": "kitchen light",
        "area": "",
    }
    sent = _sent(backend)
    assert [t["function"]["name"] for t in sent["tools"]] == [
        "HassTurnOn",
        "GetLiveContext",
    ]


async def test_the_tool_result_turn_is_sent_with_the_call_it_answers(gateway, backend):
    backend.queue(Script.text("The kitchen light is on."))
    client = await _gateway(gateway, backend)
    objs = await read_ndjson(await _replay(client, "chat_tool_result"))
    assert_final(objs)
    messages = _sent(backend)["messages"]
    assistant, tool = messages[2], messages[3]
    (call,) = assistant["tool_calls"]
    assert call["function"]["name"] == "HassTurnOn"
    assert json.loads(call["function"]["arguments"]) == {
        "name": "kitchen light",
        "domain": ["light"],
    }
    # HA gives neither an id nor a tool_name: OpenAI backends refuse a tool
    # message whose id answers no call.
    assert tool["role"] == "tool"
    assert tool["tool_call_id"] == call["id"]


async def test_think_false_is_sent_upstream_as_no_reasoning(gateway, backend):
    backend.queue(Script.text("On."))
    client = await _gateway(gateway, backend)
    assert_final(await read_ndjson(await _replay(client, "chat_no_think")))
    sent = _sent(backend)
    assert sent["reasoning_effort"] == "none"


async def test_an_ai_task_schema_is_sent_as_a_json_schema(gateway, backend):
    backend.queue(Script.text('{"summary": "calm"}'))
    client = await _gateway(gateway, backend)
    assert_final(await read_ndjson(await _replay(client, "ai_task_structured")))
    sent = _sent(backend)
    schema = json.loads(CAPTURES["ai_task_structured"]["body"])["format"]
    assert sent["response_format"]["json_schema"]["schema"] == schema


async def test_statuses_sort_into_what_ha_does_with_them(gateway, backend):
    client = await _gateway(gateway, backend, OLLAMA_GATEWAY_API_KEYS="ha-key")
    assert (await _replay(client, "list_key")).status == 200
    # No key or a wrong one: 401, which HA's coordinator turns into a
    # re-authentication, not "this is not an Ollama server" (other 4xx).
    assert (await _replay(client, "list")).status == 401
    assert (await _replay(client, "ps", Authorization="Bearer nope")).status == 401
    # A backend that cannot list its models: 502, which HA retries.
    backend.models_status = 401
    client = await _gateway(gateway, backend)
    assert (await _replay(client, "list")).status == 502
