"""What LangChain.js sends (n8n's Ollama nodes), replayed through the gateway.

`fixtures/langchainjs/requests.json` holds the requests @langchain/ollama
1.3.0 (@langchain/core 1.4.0, through the `ollama` JS client 0.6.4 on Node
20.20) sent for what n8n's "Ollama Chat Model", "Ollama Model" and
"Embeddings Ollama" nodes do: ChatOllama's invoke and stream with options,
`keepAlive` as a number, `headers` with the Bearer key n8n's Ollama
credential sends, `think`, `bindTools` and the turn with the `ToolMessage`s,
`withStructuredOutput` by each method, an image; the `Ollama` LLM; and
OllamaEmbeddings. Bodies and headers are verbatim (`SCRIPT:…` named the
answer the capturing backend gave).

What LangChain.js reads, and so what these tests hold the gateway to:
ChatOllama streams even for `invoke`, sums `prompt_eval_count` and
`eval_count` over the lines for `usage_metadata`, and makes up an id of its
own for each tool call (a UUID, sent back with the next turn; its tool
results carry no `tool_call_id`). Its `streamEvents` keys a tool call by its
place in its line, so calls split over lines would overwrite each other. The
`Ollama` LLM takes `thinking ?? response` from each line but the last, whose
text it drops.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from ollama_gateway.settings import BackendSettings, mistral_call_ids
from tests.captures import USAGE, Captures, thought_then_answer
from tests.fakebackend import FakeBackend, Script, chat_chunk, sse
from tests.ndjson import assert_final, read_ndjson

MODELS = (
    "m",
    "deepseek-r1",
    "demo",
    "demo-json",
    "demo-tools",
    "demo-vision",
    "demo-embed",
)
CAPTURES = Captures("langchainjs", MODELS)
_replay = CAPTURES.replay
_gateway = CAPTURES.gateway
_body = CAPTURES.body


def _script(*events: dict[str, Any]) -> Script:
    return Script(pieces=[sse(*events)])


def _text(*pieces: str) -> Script:
    events = [chat_chunk({"role": "assistant", "content": ""})]
    events += [chat_chunk({"content": piece}) for piece in pieces]
    events.append(chat_chunk({}, finish="stop"))
    events.append(chat_chunk(choices=False, usage=USAGE))
    return _script(*events)


def _sent(backend: FakeBackend, turn: int = -1) -> dict[str, Any]:
    body: dict[str, Any] = backend.completions()[turn].body
    return body


@pytest.mark.parametrize(
    "name",
    CAPTURES.completions(),
)
async def test_every_completion_it_sends_is_answered(gateway, backend, name):
    backend.queue(_text('{"name": "Ada", "age": 36}'))
    client = await _gateway(gateway, backend)
    resp = await _replay(client, name)
    assert resp.status == 200, await resp.text()
    final = assert_final(await read_ndjson(resp))
    # ChatOllama's usage_metadata is the sum of both counts over the lines.
    assert (final["prompt_eval_count"], final["eval_count"]) == (17, 9)


def _parallel_calls() -> Script:
    def call(index: int, **function: str) -> dict[str, Any]:
        part: dict[str, Any] = {"index": index, "function": function}
        if "name" in function:
            part.update(id=f"call_{index}", type="function")
        return {"tool_calls": [part]}

    return _script(
        chat_chunk({"role": "assistant", "content": None}),
        chat_chunk(call(0, name="get_weather", arguments='{"ci')),
        chat_chunk(call(0, arguments='ty": "Paris"}')),
        chat_chunk(call(1, name="get_time", arguments='{"tz": "UTC"}')),
        chat_chunk({}, finish="tool_calls"),
        chat_chunk(choices=False, usage=USAGE),
    )


async def test_parallel_calls_come_whole_in_one_line(gateway, backend):
    backend.queue(_parallel_calls())
    client = await _gateway(gateway, backend)
    objs = await read_ndjson(await _replay(client, "chat_tools"))
    assert_final(objs)
    with_calls = [o for o in objs if o["message"].get("tool_calls")]
    # One line: LangChain.js's streamEvents keys each call by its place in
    # its line (`tool:0`, `tool:1`), so a second line's call 0 would replace
    # the first line's.
    assert len(with_calls) == 1
    calls = with_calls[0]["message"]["tool_calls"]
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"tz": "UTC"}),
    ]


async def test_the_turn_with_results_pairs_its_own_ids(gateway, backend):
    backend.queue(_text("Sunny at noon."))
    client = await _gateway(gateway, backend)
    assert_final(await read_ndjson(await _replay(client, "chat_tool_results")))
    assistant, first, second = _sent(backend)["messages"][1:]
    # The ids are LangChain.js's own UUIDs (it drops the gateway's), and its
    # results name no call: they answer the calls in order.
    sent_ids = [
        c["id"] for c in _body("chat_tool_results")["messages"][1]["tool_calls"]
    ]
    assert [c["id"] for c in assistant["tool_calls"]] == sent_ids
    assert [first["tool_call_id"], second["tool_call_id"]] == sent_ids
    assert [first["content"], second["content"]] == [
        "result for get_weather",
        "result for get_time",
    ]
    assert assistant["tool_calls"][1]["function"]["arguments"] == '{"tz":"UTC"}'


@pytest.mark.parametrize("name", ["generate", "generate_options"])
async def test_generate_text_is_never_left_in_the_last_line(gateway, backend, name):
    # The backend ends its text in the chunk with finish_reason, with an
    # empty reasoning_content in every chunk (as some relays send).
    backend.queue(
        _script(
            chat_chunk(
                {"role": "assistant", "content": "Hel", "reasoning_content": ""}
            ),
            chat_chunk({"content": "lo", "reasoning_content": ""}, finish="stop"),
            chat_chunk(choices=False, usage=USAGE),
        )
    )
    client = await _gateway(gateway, backend)
    objs = await read_ndjson(await _replay(client, name))
    final = assert_final(objs)
    # The Ollama LLM drops the last line's text, and reads `thinking ??
    # response`: an empty `thinking` would hide the response.
    assert final["response"] == ""
    assert "".join(o["response"] for o in objs[:-1]) == "Hello"
    assert not any("thinking" in o for o in objs)


@pytest.mark.parametrize(
    ("name", "field"), [("chat_think", "message"), ("generate_think", None)]
)
async def test_reasoning_comes_as_thinking(gateway, backend, name, field):
    backend.queue(thought_then_answer())
    client = await _gateway(gateway, backend)
    objs = await read_ndjson(await _replay(client, name))
    parts = [o[field] if field else o for o in objs]
    assert "".join(p.get("thinking", "") for p in parts) == "hmm ok"
    text = "content" if field else "response"
    assert "".join(p[text] for p in parts) == "Answer"


async def test_options_as_it_sends_them(gateway, backend):
    backend.queue(_text("Hi"), _text("Hi"), _text("Hi"))
    client = await _gateway(gateway, backend)
    for name in ("chat_options", "chat_keep_alive_seconds", "chat_keep_alive_forever"):
        assert_final(await read_ndjson(await _replay(client, name)))
    options = _sent(backend, 0)
    assert options["max_tokens"] == 64
    assert (options["seed"], options["temperature"], options["top_p"]) == (42, 0.3, 0.9)
    assert options["stop"] == ["zzz"]
    assert "keep_alive" not in _sent(backend, 1)
    ps = await (await client.get("/api/ps")).json()
    assert [m["name"] for m in ps["models"]] == ["demo:latest"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("chat_json_schema", "json_schema"),
        ("chat_json_mode", "json_object"),
        ("chat_function_calling", None),
    ],
)
async def test_structured_output_methods(gateway, backend, name, expected):
    backend.queue(_text('{"name": "Ada", "age": 36}'))
    client = await _gateway(gateway, backend)
    objs = await read_ndjson(await _replay(client, name))
    assert (
        "".join(o["message"]["content"] for o in objs) == '{"name": "Ada", "age": 36}'
    )
    sent = _sent(backend)
    if expected is None:  # a tool named after the schema
        assert "response_format" not in sent
        assert sent["tools"][0]["function"]["name"] == "Person"
        return
    assert sent["response_format"]["type"] == expected
    if expected == "json_schema":
        schema = sent["response_format"]["json_schema"]["schema"]
        assert schema["required"] == ["name", "age"]


async def test_an_image_in_a_message_of_its_own(gateway, backend):
    # A text part and an image part become two user messages, the image's
    # with empty content.
    backend.queue(_text("One image."))
    client = await _gateway(gateway, backend)
    assert_final(await read_ndjson(await _replay(client, "chat_image")))
    text, image = _sent(backend)["messages"]
    assert text == {"role": "user", "content": "what is this"}
    (part,) = image["content"]
    assert part["type"] == "image_url"
    assert part["image_url"]["url"].startswith("data:image/png;base64,iVBOR")


@pytest.mark.parametrize("name", ["embed", "embed_options"])
async def test_embeddings(gateway, backend, name):
    client = await _gateway(gateway, backend)
    resp = await _replay(client, name)
    assert resp.status == 200, await resp.text()
    sent = backend.requests[-1].body
    assert sent["input"] == _body(name)["input"]
    assert set(sent) <= {"model", "input", "encoding_format", "dimensions"}
    assert len((await resp.json())["embeddings"]) == len(sent["input"])


async def test_the_bearer_key_n8n_sends(gateway, backend):
    # n8n's Ollama credential puts its API key in `headers` as a Bearer token.
    client = await _gateway(gateway, backend, OLLAMA_GATEWAY_API_KEYS="sk-n8n")
    backend.queue(_text("Hi"))
    resp = await _replay(client, "chat_bearer")
    assert resp.status == 200, await resp.text()
    assert_final(await read_ndjson(resp))
    assert (await _replay(client, "chat")).status == 401
    listed = await _replay(client, "list_models", Authorization="Bearer sk-n8n")
    names = [m["name"] for m in (await listed.json())["models"]]
    assert "demo:latest" in names


_NINE = re.compile(r"[a-zA-Z0-9]{9}")


async def test_its_call_ids_in_mistrals_form_for_a_backend_that_wants_it(
    gateway, backend
):
    # Mistral's API and its chat templates (llama.cpp's server) refuse any id
    # but nine letters and digits; LangChain.js sends its UUIDs back.
    backend.queue(_text("Sunny."), _text("Sunny."))
    backend.models = [{"id": "m", "object": "model", "created": 0}]
    client = await gateway(
        toml=f'[[backends]]\nname = "mistral"\nbase_url = "{backend.url}"\n'
        "mistral_call_ids = true\n"
    )
    body = _body("chat_tool_results")
    sent_ids = [c["id"] for c in body["messages"][1]["tool_calls"]]
    # The second time, the results name their calls by LangChain.js's ids.
    named = copy.deepcopy(body)
    for result, call_id in zip(named["messages"][2:], sent_ids, strict=True):
        result["tool_call_id"] = call_id
    for sent in (body, named):
        resp = await client.post("/api/chat", json=sent)
        assert_final(await read_ndjson(resp))
    turns = [r.body["messages"] for r in backend.completions()]
    for messages in turns:
        assistant, first, second = messages[1:]
        ids = [c["id"] for c in assistant["tool_calls"]]
        assert all(_NINE.fullmatch(i) for i in ids), ids
        assert len(set(ids)) == 2
        assert [first["tool_call_id"], second["tool_call_id"]] == ids
    # The same in every turn: a backend's prefix cache still holds.
    assert turns[0] == turns[1]


@pytest.mark.parametrize(
    ("base_url", "setting", "expected"),
    [
        ("https://api.mistral.ai/v1", None, True),
        ("https://api.mistral.ai/v1", False, False),
        ("http://127.0.0.1:8080/v1", None, False),
        ("http://127.0.0.1:8080/v1", True, True),
    ],
)
def test_mistral_call_ids_default_to_mistrals_api(base_url, setting, expected):
    backend = BackendSettings(name="b", base_url=base_url, mistral_call_ids=setting)
    assert mistral_call_ids(backend) is expected
