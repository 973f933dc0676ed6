"""Tools: definitions sent up, calls assembled on the way back, history mapped
(spec 2.7, 3.3, 3.7, 3.8; section 5 cases 43-51)."""

from __future__ import annotations

import json
import re
from typing import Any

import ollama
import pytest

from tests.conftest import base_url
from tests.fakebackend import FakeBackend, Script, chat_chunk, sse

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city"},
                "unit": {"$ref": "#/$defs/unit"},
            },
            "required": ["city"],
            "$defs": {"unit": {"enum": ["C", "F"]}},
        },
    },
}
CALL_ID = re.compile(r"call_[a-z0-9]{8}")


async def post(client: Any, path: str, body: Any) -> Any:
    return await client.post(path, data=json.dumps(body))


def lines(raw: bytes) -> list[dict[str, Any]]:
    text = raw.decode()
    assert text.endswith("\n") and "\n\n" not in text
    return [json.loads(line) for line in text[:-1].split("\n")]


def chat(**fields: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Weather in Tokyo?"}],
        "tools": [WEATHER_TOOL],
        **fields,
    }


def call_delta(
    index: int,
    *,
    id: str | None = None,
    name: str | None = None,
    arguments: str | None = None,
) -> dict[str, Any]:
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    delta: dict[str, Any] = {"index": index, "function": function}
    if id is not None:
        delta["id"] = id
        delta["type"] = "function"
    return {"tool_calls": [delta]}


def tool_script(*deltas: dict[str, Any], content: str | None = None) -> Script:
    events = [chat_chunk({"role": "assistant", "content": None})]
    if content is not None:
        events.append(chat_chunk({"content": content}))
    events += [chat_chunk(d) for d in deltas]
    events.append(chat_chunk({}, finish="tool_calls"))
    events.append(
        chat_chunk(choices=False, usage={"prompt_tokens": 9, "completion_tokens": 6})
    )
    # Cut into small pieces: fragments also straddle reads.
    data = sse(*events)
    return Script(pieces=[data[i : i + 41] for i in range(0, len(data), 41)])


async def calls_for(
    fake: FakeBackend, gateway: Any, *deltas: dict[str, Any], stream: bool = False
) -> list[dict[str, Any]]:
    """The tool calls a chat answers, streamed or not, when the backend
    streams these call fragments."""
    fake.queue(tool_script(*deltas))
    client = await gateway(fake)
    resp = await post(client, "/api/chat", chat(stream=stream))
    assert resp.status == 200, await resp.text()
    return [
        call
        for line in (await resp.text()).splitlines()
        for call in json.loads(line)["message"].get("tool_calls", ())
    ]


def sent(fake: FakeBackend) -> dict[str, Any]:
    body: dict[str, Any] = fake.completions()[-1].body
    return body


async def test_case_43_empty_tools_are_not_sent(backend, gateway):
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(tools=[], stream=False))
    assert resp.status == 200
    assert "tools" not in sent(backend)
    assert "tool_choice" not in sent(backend)


async def test_tools_are_passed_through_unchanged(backend, gateway):
    client = await gateway(backend)
    await post(client, "/api/chat", chat(stream=False))
    assert sent(backend)["tools"] == [WEATHER_TOOL]
    raw = json.dumps(sent(backend)["tools"][0]["function"]["parameters"])
    assert raw.index('"properties"') < raw.index('"required"') < raw.index('"$defs"')
    for key in ("tool_choice", "parallel_tool_calls", "n"):
        assert key not in sent(backend)


async def test_tools_on_a_model_without_the_capability_is_400(backend, gateway):
    toml = '[models."gpt-4o"]\ncapabilities = ["completion"]\n'
    client = await gateway(backend, toml)
    resp = await post(client, "/api/chat", chat(model="GPT-4o"))
    assert resp.status == 400
    assert await resp.json() == {
        "error": "registry.ollama.ai/library/GPT-4o:latest does not support tools"
    }
    assert backend.completions() == []


async def test_case_44_streamed_tool_call_fragments_become_one_call(backend, gateway):
    backend.queue(
        tool_script(
            call_delta(0, id="call_abc123", name="get_weather", arguments=""),
            call_delta(0, arguments='{"ci'),
            call_delta(0, arguments='ty": '),
            call_delta(0, arguments='"Tok'),
            call_delta(0, arguments="yo"),
            call_delta(0, arguments='"}'),
        )
    )
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat())
    assert resp.status == 200
    chunks = lines(await resp.read())
    with_calls = [c for c in chunks if c["message"].get("tool_calls")]
    assert len(with_calls) == 1
    [carrier] = with_calls
    assert carrier["done"] is False
    assert carrier["message"]["content"] == ""
    assert carrier["message"]["tool_calls"] == [
        {
            "id": "call_abc123",
            "function": {
                "index": 0,
                "name": "get_weather",
                "arguments": {"city": "Tokyo"},
            },
        }
    ]
    final = chunks[-1]
    assert final["done"] is True and final["done_reason"] == "stop"
    assert "tool_calls" not in final["message"]
    assert final["eval_count"] == 6
    assert chunks.index(carrier) == len(chunks) - 2


def key_order(value: Any) -> Any:
    """A JSON value with every object as a list of its (key, value) pairs, in
    the order written, so that a comparison checks the order too."""
    if isinstance(value, dict):
        return [(key, key_order(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [key_order(item) for item in value]
    return value


@pytest.mark.parametrize("stream", [True, False])
async def test_case_44_a_call_is_written_in_ollamas_key_order(backend, gateway, stream):
    """Ollama's Go structs write `id` before `function`, and `index`, `name`,
    `arguments` inside it (spec 2.7's example); the arguments keep the order
    the model wrote them in."""
    backend.queue(
        tool_script(
            call_delta(0, id="call_abc123", name="get_weather", arguments=""),
            call_delta(0, arguments='{"unit": "C", "city": "Tokyo"}'),
        )
    )
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=stream))
    text = (await resp.read()).decode()
    [line] = [line for line in text.split("\n") if '"tool_calls"' in line]
    call = {
        "id": "call_abc123",
        "function": {
            "index": 0,
            "name": "get_weather",
            "arguments": {"unit": "C", "city": "Tokyo"},
        },
    }
    keys = ["model", "created_at", "message", "done"]
    if not stream:
        keys.append("done_reason")
    written = key_order(json.loads(line))
    assert [key for key, _ in written][: len(keys)] == keys
    message = dict(written)["message"]
    assert message == key_order(
        {"role": "assistant", "content": "", "tool_calls": [call]}
    )


async def test_case_45_interleaved_parallel_calls_come_out_in_index_order(
    backend, gateway
):
    backend.queue(
        tool_script(
            call_delta(1, id="call_second", name="get_time", arguments='{"tz"'),
            call_delta(0, id="call_first", name="get_weather", arguments='{"city"'),
            call_delta(1, arguments=': "JST"}'),
            call_delta(0, name="get_weather", arguments=': "Osaka"}'),
        )
    )
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat())
    chunks = lines(await resp.read())
    [carrier] = [c for c in chunks if c["message"].get("tool_calls")]
    assert carrier["message"]["tool_calls"] == [
        {
            "id": "call_first",
            "function": {
                "index": 0,
                "name": "get_weather",  # repeated names are not concatenated
                "arguments": {"city": "Osaka"},
            },
        },
        {
            "id": "call_second",
            "function": {"index": 1, "name": "get_time", "arguments": {"tz": "JST"}},
        },
    ]


async def test_missing_ids_are_generated(backend, gateway):
    backend.queue(
        tool_script(
            call_delta(0, name="get_weather", arguments='{"city": "Rome"}'),
            call_delta(1, name="get_weather", arguments='{"city": "Oslo"}'),
        )
    )
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False))
    calls = (await resp.json())["message"]["tool_calls"]
    ids = [call["id"] for call in calls]
    assert all(CALL_ID.fullmatch(i) for i in ids), ids
    assert ids[0] != ids[1]


async def test_first_non_empty_id_wins(backend, gateway):
    backend.queue(
        tool_script(
            call_delta(0, id="", name="get_weather", arguments="{}"),
            call_delta(0, id="call_real"),
            call_delta(0, id="call_later"),
        )
    )
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False))
    [call] = (await resp.json())["message"]["tool_calls"]
    assert call["id"] == "call_real"


async def test_a_new_id_and_name_under_a_used_index_is_a_new_call(backend, gateway):
    # Gemini relays number each parallel call 0, one whole call per chunk
    # (su-kaka/gcli2api#406, QuantumNous/new-api#2701).
    backend.queue(
        tool_script(
            call_delta(0, id="call_a", name="get_weather", arguments='{"city":'),
            call_delta(0, arguments='"Oslo"}'),
            call_delta(0, id="call_b", name="get_weather", arguments='{"city":'),
            call_delta(0, arguments='"Rome"}'),
        )
    )
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False))
    calls = (await resp.json())["message"]["tool_calls"]
    assert [
        (c["id"], c["function"]["index"], c["function"]["arguments"]) for c in calls
    ] == [
        ("call_a", 0, {"city": "Oslo"}),
        ("call_b", 1, {"city": "Rome"}),
    ]


async def test_a_new_id_with_the_name_repeated_mid_call_is_the_same_call(
    backend, gateway
):
    # The call so far is not whole JSON: a repeated name with another id
    # continues it (the first id wins), it does not start a call.
    backend.queue(
        tool_script(
            call_delta(0, id="call_a", name="get_weather", arguments='{"city":'),
            call_delta(0, id="call_x", name="get_weather", arguments='"Oslo"}'),
        )
    )
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False))
    [call] = (await resp.json())["message"]["tool_calls"]
    assert call["id"] == "call_a"
    assert call["function"]["arguments"] == {"city": "Oslo"}


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(
    ("name", "again"),
    [
        ("search", '{"query": "hello"}'),
        (None, '{"query":"hello"}'),
        ("search", json.dumps('{"query":"hello"}')),
    ],
    ids=["whole", "whole-no-name", "encoded-twice"],
)
async def test_a_call_repeated_whole_at_its_end_is_one_call(
    backend, gateway, stream, name, again
):
    # The LiteLLM proxy (its issue #20480) sends the id with every fragment,
    # then the whole call once more: run once, with valid arguments.
    calls = await calls_for(
        backend,
        gateway,
        call_delta(0, id="call_abc", name="search", arguments='{"qu'),
        call_delta(0, id="call_abc", arguments='ery":'),
        call_delta(0, id="call_abc", arguments='"hello"}'),
        call_delta(0, id="call_abc", name=name, arguments=again),
        stream=stream,
    )
    assert calls == [
        {
            "id": "call_abc",
            "function": {"index": 0, "name": "search", "arguments": {"query": "hello"}},
        }
    ]


async def test_a_same_id_call_of_another_function_is_not_a_repeat(backend, gateway):
    calls = await calls_for(
        backend,
        gateway,
        call_delta(0, id="call_abc", name="get_time", arguments="{}"),
        call_delta(0, id="call_abc", name="get_date", arguments="{}"),
    )
    assert [c["function"]["name"] for c in calls] == ["get_time", "get_date"]


@pytest.mark.parametrize("arguments", ["", "   ", None])
async def test_case_46_empty_arguments_become_an_empty_object(
    backend, gateway, arguments
):
    backend.queue(tool_script(call_delta(0, name="get_weather", arguments=arguments)))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False))
    [call] = (await resp.json())["message"]["tool_calls"]
    assert call["function"]["arguments"] == {}


@pytest.mark.parametrize(
    ("arguments", "wrapped"),
    [
        ("[1, 2]", [1, 2]),
        ("42", 42),
        ('"Tokyo"', "Tokyo"),
        ("null", None),
        ('"{city: Tokyo}"', "{city: Tokyo}"),
    ],
)
async def test_non_object_arguments_are_wrapped(backend, gateway, arguments, wrapped):
    backend.queue(tool_script(call_delta(0, name="get_weather", arguments=arguments)))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False))
    [call] = (await resp.json())["message"]["tool_calls"]
    assert call["function"]["arguments"] == {"value": wrapped}


@pytest.mark.parametrize("stream", [True, False])
async def test_arguments_encoded_twice_are_decoded_once_more(backend, gateway, stream):
    # A model that writes its arguments as a JSON string, which vLLM's hermes
    # parser encodes again: the text of a JSON text, cut at odd places.
    text = json.dumps(json.dumps({"city": "Zürich", "days": [1, 2]}))
    calls = await calls_for(
        backend,
        gateway,
        call_delta(0, id="call_a", name="get_weather", arguments=text[:7]),
        call_delta(0, arguments=text[7:]),
        stream=stream,
    )
    assert [c["function"]["arguments"] for c in calls] == [
        {"city": "Zürich", "days": [1, 2]}
    ]


async def test_case_46_invalid_arguments_non_stream_is_500(backend, gateway):
    backend.queue(tool_script(call_delta(0, name="get_weather", arguments='{"city":')))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 500
    assert resp.headers["Content-Type"].startswith("application/json")
    error = (await resp.json())["error"]
    assert error.startswith(
        'upstream returned invalid tool call arguments for "get_weather"'
    )


async def test_case_46_invalid_arguments_mid_stream_is_an_error_line(backend, gateway):
    backend.queue(
        tool_script(
            call_delta(0, name="get_weather", arguments="{oops"),
            content="Let me check.",
        )
    )
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat())
    assert resp.status == 200
    chunks = lines(await resp.read())
    assert chunks[0]["message"]["content"] == "Let me check."
    assert set(chunks[-1]) == {"error"}
    assert 'invalid tool call arguments for "get_weather"' in chunks[-1]["error"]
    assert not any(c.get("done") for c in chunks)


async def test_invalid_arguments_before_any_output_keep_a_real_status(backend, gateway):
    # Nothing was written yet, so the error is a status, not a line (spec 1.3).
    backend.queue(tool_script(call_delta(0, name="get_weather", arguments="{oops")))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat())
    assert resp.status == 500
    assert "invalid tool call arguments" in (await resp.json())["error"]


@pytest.mark.parametrize("path", ["/api/chat", "/v1/messages", "/v1/responses"])
@pytest.mark.parametrize("stream", [True, False])
async def test_a_call_without_a_name_is_a_500_not_a_call(
    backend, gateway, path, stream
):
    # A call named "" reached the client, which could not run it, and sent
    # back with the next turn it was refused (the gateway's /v1/messages and
    # Anthropic's API want a name, OpenAI's a non-empty one): a dead end.
    backend.queue(tool_script(call_delta(0, id="call_a", arguments='{"city": "x"}')))
    client = await gateway(backend)
    body: dict[str, Any] = {"model": "gpt-4o", "stream": stream}
    if path == "/api/chat":
        body.update(messages=[{"role": "user", "content": "hi"}])
    elif path == "/v1/messages":
        body.update(max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    else:
        body.update(input="hi")
    resp = await post(client, path, body)
    assert resp.status == 500
    assert "tool call without a function name" in await resp.text()
    assert len(backend.completions()) == 1


async def test_an_empty_fragment_without_a_name_is_no_call(backend, gateway):
    calls = await calls_for(
        backend,
        gateway,
        call_delta(0, id="call_a", name="get_weather", arguments='{"city": "x"}'),
        call_delta(1, id="call_b", arguments=""),
        stream=True,
    )
    assert [c["function"]["name"] for c in calls] == ["get_weather"]


async def test_case_47_non_stream_tool_calls(backend, gateway):
    backend.queue(
        tool_script(
            call_delta(
                0, id="call_1", name="get_weather", arguments='{"city": "Tokyo"}'
            )
        )
    )
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 200
    body = await resp.json()
    assert body["message"] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_1",
                "function": {
                    "index": 0,
                    "name": "get_weather",
                    "arguments": {"city": "Tokyo"},
                },
            }
        ],
    }
    assert body["done"] is True and body["done_reason"] == "stop"


async def test_tool_calls_of_a_non_streaming_backend_answer(backend, gateway):
    answer = {
        "id": "x",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {
                                "name": "get_weather",
                                "arguments": '{"city":"A"}',
                            },
                        },
                        {
                            "id": "call_b",
                            "type": "function",
                            "function": {
                                "name": "get_weather",
                                "arguments": '{"city":"B"}',
                            },
                        },
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    backend.queue(
        Script(pieces=[json.dumps(answer).encode()], content_type="application/json")
    )
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False))
    calls = (await resp.json())["message"]["tool_calls"]
    assert [(c["id"], c["function"]["index"]) for c in calls] == [
        ("call_a", 0),
        ("call_b", 1),
    ]
    assert [c["function"]["arguments"]["city"] for c in calls] == ["A", "B"]


async def test_generate_carries_tool_calls_at_top_level(backend, gateway):
    backend.queue(tool_script(call_delta(0, name="get_weather", arguments="{}")))
    client = await gateway(backend)
    body = {"model": "gpt-4o", "prompt": "x", "stream": False}
    resp = await post(client, "/api/generate", body)
    answer = await resp.json()
    assert answer["tool_calls"][0]["function"]["name"] == "get_weather"
    assert "message" not in answer


HISTORY_CALL = {
    "role": "assistant",
    "content": "",
    "tool_calls": [
        {
            "function": {
                "name": "get_weather",
                "arguments": {"city": "Tokyo", "unit": "C"},
            }
        }
    ],
}


async def test_case_48_history_gets_ids_and_string_arguments(backend, gateway):
    client = await gateway(backend)
    messages = [
        {"role": "user", "content": "Weather in Tokyo?"},
        HISTORY_CALL,
        {"role": "tool", "tool_name": "get_weather", "content": "11C"},
    ]
    resp = await post(client, "/api/chat", chat(messages=messages, stream=False))
    assert resp.status == 200
    upstream = sent(backend)["messages"]
    assistant = upstream[1]
    assert assistant["role"] == "assistant" and assistant["content"] == ""
    [call] = assistant["tool_calls"]
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert isinstance(call["function"]["arguments"], str)
    assert call["function"]["arguments"] == '{"city":"Tokyo","unit":"C"}'
    assert call["id"]
    assert upstream[2] == {"role": "tool", "content": "11C", "tool_call_id": call["id"]}


async def test_case_49_results_out_of_order_pair_by_tool_name(backend, gateway):
    client = await gateway(backend)
    messages = [
        {"role": "user", "content": "Weather and time?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "get_time", "arguments": {"tz": "CET"}}},
            ],
        },
        {"role": "tool", "tool_name": "get_time", "content": "12:00"},
        {"role": "tool", "tool_name": "get_weather", "content": "9C"},
    ]
    await post(client, "/api/chat", chat(messages=messages, stream=False))
    upstream = sent(backend)["messages"]
    ids = {c["function"]["name"]: c["id"] for c in upstream[1]["tool_calls"]}
    assert len(set(ids.values())) == 2
    assert upstream[2] == {
        "role": "tool",
        "content": "12:00",
        "tool_call_id": ids["get_time"],
    }
    assert upstream[3] == {
        "role": "tool",
        "content": "9C",
        "tool_call_id": ids["get_weather"],
    }


async def test_case_50_explicit_tool_call_id_is_used_as_is(backend, gateway):
    client = await gateway(backend)
    messages = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_A",
                    "type": "function",
                    "function": {"name": "f", "arguments": {}},
                },
                {
                    "id": "call_B",
                    "type": "function",
                    "function": {"name": "f", "arguments": {}},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_B", "content": "b"},
        {"role": "tool", "tool_name": "f", "content": "a"},
    ]
    await post(client, "/api/chat", chat(messages=messages, stream=False))
    upstream = sent(backend)["messages"]
    assert [c["id"] for c in upstream[1]["tool_calls"]] == ["call_A", "call_B"]
    assert upstream[2]["tool_call_id"] == "call_B"
    # call_B was answered, so the unnamed-by-id result pairs with call_A.
    assert upstream[3]["tool_call_id"] == "call_A"


async def test_result_without_a_name_takes_the_first_unanswered_call(backend, gateway):
    client = await gateway(backend)
    messages = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "tool_calls": [
                {"function": {"name": "a", "arguments": {}}},
                {"function": {"name": "b", "arguments": {}}},
            ],
        },
        {"role": "tool", "content": "first"},
        {"role": "tool", "tool_name": "unknown", "content": "second"},
    ]
    await post(client, "/api/chat", chat(messages=messages, stream=False))
    upstream = sent(backend)["messages"]
    ids = [c["id"] for c in upstream[1]["tool_calls"]]
    assert [upstream[2]["tool_call_id"], upstream[3]["tool_call_id"]] == ids


async def test_orphan_tool_results_become_user_messages(backend, gateway):
    client = await gateway(backend)
    messages = [
        {"role": "user", "content": "x"},
        {"role": "tool", "tool_name": "get_weather", "content": "11C"},
        HISTORY_CALL,
        {"role": "tool", "tool_name": "get_weather", "content": "12C"},
        {"role": "tool", "tool_name": "get_weather", "content": "13C"},
        {"role": "tool", "content": "14C"},
    ]
    await post(client, "/api/chat", chat(messages=messages, stream=False))
    upstream = sent(backend)["messages"]
    assert upstream[1] == {"role": "user", "content": "[tool get_weather result]\n11C"}
    assert upstream[3]["role"] == "tool"
    assert upstream[4] == {"role": "user", "content": "[tool get_weather result]\n13C"}
    assert upstream[5] == {"role": "user", "content": "[tool tool result]\n14C"}


def assistant_calls(*calls: tuple[str, dict[str, Any] | None]) -> dict[str, Any]:
    """An assistant turn of the history with these calls, as a client echoes
    it (no ids; no `arguments` key where None)."""
    return {
        "role": "assistant",
        "tool_calls": [
            {"function": {"name": name} | ({} if args is None else {"arguments": args})}
            for name, args in calls
        ],
    }


async def test_calls_left_unanswered_are_not_sent_back(backend, gateway):
    # The Python client's tools example answers two calls with one result (the
    # last one's); Ollama takes that, OpenAI refuses a call with no result.
    client = await gateway(backend)
    messages = [
        {"role": "user", "content": "3+1 and 5-2?"},
        assistant_calls(("add", {"a": 3, "b": 1}), ("subtract", {"a": 5, "b": 2})),
        {"role": "tool", "tool_name": "subtract", "content": "3"},
        {"role": "user", "content": "And 2+2?"},
        assistant_calls(("add", None)),
        {"role": "user", "content": "Never mind."},
    ]
    resp = await post(client, "/api/chat", chat(messages=messages, stream=False))
    assert resp.status == 200
    upstream = sent(backend)["messages"]
    [call] = upstream[1]["tool_calls"]
    assert call["function"]["name"] == "subtract"
    assert upstream[2] == {"role": "tool", "content": "3", "tool_call_id": call["id"]}
    assert upstream[4] == {"role": "assistant", "content": ""}
    assert [m["role"] for m in upstream] == [
        "user",
        "assistant",
        "tool",
        "user",
        "assistant",
        "user",
    ]


async def test_a_last_call_with_no_result_yet_is_kept(backend, gateway):
    client = await gateway(backend)
    messages = [{"role": "user", "content": "x"}, HISTORY_CALL]
    await post(client, "/api/chat", chat(messages=messages, stream=False))
    assert len(sent(backend)["messages"][1]["tool_calls"]) == 1


async def test_a_new_assistant_turn_starts_a_new_set_of_calls(backend, gateway):
    client = await gateway(backend)
    messages = [
        {"role": "user", "content": "x"},
        HISTORY_CALL,
        {"role": "tool", "tool_name": "get_weather", "content": "11C"},
        {"role": "assistant", "content": "It is 11C."},
        {"role": "user", "content": "And now?"},
        HISTORY_CALL,
        {"role": "tool", "tool_name": "get_weather", "content": "12C"},
    ]
    await post(client, "/api/chat", chat(messages=messages, stream=False))
    upstream = sent(backend)["messages"]
    first, second = (
        upstream[1]["tool_calls"][0]["id"],
        upstream[5]["tool_calls"][0]["id"],
    )
    assert first != second
    assert upstream[2]["tool_call_id"] == first
    assert upstream[6]["tool_call_id"] == second


async def test_history_arguments_given_as_a_string_are_kept(backend, gateway):
    client = await gateway(backend)
    call = {"function": {"name": "f", "arguments": '{"raw": true}'}}
    messages = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "content": "ok"},
    ]
    await post(client, "/api/chat", chat(messages=messages, stream=False))
    sent_call = sent(backend)["messages"][1]["tool_calls"][0]
    assert sent_call["function"]["arguments"] == '{"raw": true}'


async def test_history_call_without_arguments_sends_an_empty_object(backend, gateway):
    client = await gateway(backend)
    messages = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"function": {"name": "now"}}]},
        {"role": "tool", "content": "noon"},
    ]
    resp = await post(client, "/api/chat", chat(messages=messages, stream=False))
    assert resp.status == 200
    sent_call = sent(backend)["messages"][1]["tool_calls"][0]
    assert sent_call["function"] == {"name": "now", "arguments": "{}"}


async def test_assistant_thinking_is_not_sent_back(backend, gateway):
    client = await gateway(backend)
    messages = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "y", "thinking": "hmm"},
        {"role": "user", "content": "z"},
    ]
    await post(client, "/api/chat", chat(messages=messages, stream=False))
    assert sent(backend)["messages"][1] == {"role": "assistant", "content": "y"}


def get_weather(city: str) -> str:
    """Get the current weather for a city.

    Args:
        city: The name of the city

    Returns:
        A short weather report
    """
    return f"11C and sunny in {city}"


async def test_case_51_python_client_round_trip_with_a_python_function(
    backend, gateway
):
    backend.queue(
        tool_script(
            call_delta(0, id="call_w1", name="get_weather", arguments='{"city": '),
            call_delta(0, arguments='"Tokyo"}'),
        ),
        Script.text("It is 11C and sunny in Tokyo."),
    )
    client = await gateway(backend)
    messages: list[Any] = [{"role": "user", "content": "Weather in Tokyo?"}]
    async with ollama.AsyncClient(host=base_url(client)) as api:
        first = await api.chat(model="gpt-4o", messages=messages, tools=[get_weather])
        assert first.message.tool_calls is not None
        [call] = first.message.tool_calls
        assert call.function.name == "get_weather"
        assert call.function.arguments == {"city": "Tokyo"}
        messages.append(first.message)
        result = get_weather(**call.function.arguments)
        messages.append({"role": "tool", "content": result, "tool_name": "get_weather"})
        second = await api.chat(model="gpt-4o", messages=messages, tools=[get_weather])
    assert second.message.content == "It is 11C and sunny in Tokyo."
    first_sent, second_sent = (r.body for r in backend.completions())
    tool = first_sent["tools"][0]["function"]
    assert tool["name"] == "get_weather"
    assert tool["parameters"]["properties"]["city"]["type"] == "string"
    assert tool["parameters"]["required"] == ["city"]
    history = second_sent["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "tool"]
    [echoed] = history[1]["tool_calls"]
    assert json.loads(echoed["function"]["arguments"]) == {"city": "Tokyo"}
    assert history[2]["tool_call_id"] == echoed["id"]
    assert history[2]["content"] == "11C and sunny in Tokyo"


async def test_python_client_streams_tool_calls(backend, gateway):
    backend.queue(
        tool_script(
            call_delta(0, name="get_weather", arguments='{"city": "Lima"}'),
            content="Checking.",
        )
    )
    client = await gateway(backend)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        parts = [
            part
            async for part in await api.chat(
                model="gpt-4o",
                messages=[{"role": "user", "content": "Weather in Lima?"}],
                tools=[get_weather],
                stream=True,
            )
        ]
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    assert [c.function.arguments for c in calls] == [{"city": "Lima"}]
    assert parts[-1].done and parts[-1].done_reason == "stop"


def bare_delta(**fields: Any) -> dict[str, Any]:
    """A tool-call delta without `index`, as some compatibility layers send."""
    call: dict[str, Any] = {"function": {}}
    for key in ("name", "arguments"):
        if key in fields:
            call["function"][key] = fields.pop(key)
    call.update(fields)
    return {"tool_calls": [call]}


async def test_calls_without_index_are_told_apart_by_id_or_name(backend, gateway):
    backend.queue(
        tool_script(
            bare_delta(id="call_x", name="get_weather", arguments='{"city":'),
            bare_delta(arguments=' "Rome"}'),
            bare_delta(id="call_y", name="get_time", arguments='{"tz": "CET"}'),
            bare_delta(name="get_weather", arguments='{"city": "Oslo"}'),
        )
    )
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False))
    calls = (await resp.json())["message"]["tool_calls"]
    assert [(c["function"]["index"], c["function"]["name"]) for c in calls] == [
        (0, "get_weather"),
        (1, "get_time"),
        (2, "get_weather"),
    ]
    assert [c["function"]["arguments"] for c in calls] == [
        {"city": "Rome"},
        {"tz": "CET"},
        {"city": "Oslo"},
    ]
    assert [c["id"] for c in calls][:2] == ["call_x", "call_y"]


@pytest.mark.parametrize("stream", [True, False])
async def test_calls_without_index_that_repeat_the_name_are_whole(
    backend, gateway, stream
):
    """No index, no id, the name in every fragment: a fragment continues the
    call until that call is whole JSON and the fragment opens a value of its
    own; then (the same function called again) it starts the next call."""
    backend.queue(
        tool_script(
            bare_delta(name="get_weather", arguments=""),
            bare_delta(name="get_weather", arguments='{"city":'),
            bare_delta(name="get_weather", arguments=' "Rome"'),
            bare_delta(name="get_weather", arguments="}"),
            bare_delta(name="get_weather", arguments='{"city": "Oslo"}'),
        )
    )
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=stream))
    assert resp.status == 200, await resp.text()
    objs = lines(await resp.read()) if stream else [await resp.json()]
    calls = [c for o in objs for c in o["message"].get("tool_calls") or []]
    assert [(c["function"]["index"], c["function"]["name"]) for c in calls] == [
        (0, "get_weather"),
        (1, "get_weather"),
    ]
    assert [c["function"]["arguments"] for c in calls] == [
        {"city": "Rome"},
        {"city": "Oslo"},
    ]
    assert objs[-1]["done"] is True


def cut_script(*deltas: dict[str, Any]) -> Script:
    """Tool-call deltas, then the answer stops at max_tokens (llama.cpp's
    server streams a call's name first and its arguments as they come)."""
    events = [chat_chunk(d) for d in deltas]
    usage = {"prompt_tokens": 9, "completion_tokens": 30}
    events.append(chat_chunk({}, finish="length", usage=usage))
    return Script(pieces=[sse(*events)])


@pytest.mark.parametrize("stream", [True, False])
async def test_a_last_call_cut_by_max_tokens_is_dropped(backend, gateway, stream):
    backend.queue(
        cut_script(
            call_delta(0, id="a", name="get_weather", arguments='{"city": "Paris"}'),
            call_delta(1, id="b", name="get_weather", arguments=""),
            call_delta(1, arguments='{"city":'),
        )
    )
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=stream))
    assert resp.status == 200
    objs = lines(await resp.read()) if stream else [await resp.json()]
    calls = [c for o in objs for c in o["message"].get("tool_calls", ())]
    assert [(c["id"], c["function"]["arguments"]) for c in calls] == [
        ("a", {"city": "Paris"})
    ]
    assert objs[-1]["done_reason"] == "length" and objs[-1]["eval_count"] == 30


async def test_a_call_cut_before_its_arguments_is_dropped(backend, gateway):
    backend.queue(cut_script(call_delta(0, id="a", name="get_weather", arguments="")))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 200
    assert "tool_calls" not in (await resp.json())["message"]


async def test_a_whole_call_stays_when_max_tokens_cut_the_answer(backend, gateway):
    backend.queue(cut_script(call_delta(0, id="a", name="f", arguments='{"x": 1}')))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False))
    [call] = (await resp.json())["message"]["tool_calls"]
    assert call["function"]["arguments"] == {"x": 1}


async def test_a_broken_call_before_the_cut_is_still_an_error(backend, gateway):
    # Only the last call can have been cut by max_tokens.
    backend.queue(
        cut_script(
            call_delta(0, id="a", name="f", arguments="{oops}"),
            call_delta(1, id="b", name="g", arguments="{"),
        )
    )
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 500
    assert 'invalid tool call arguments for "f"' in (await resp.json())["error"]
