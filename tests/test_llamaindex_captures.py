"""What LlamaIndex sends, replayed through the gateway.

`fixtures/llamaindex/requests.json` holds the requests llama-index-llms-ollama
0.11.0 and llama-index-embeddings-ollama 0.10.0 (llama-index-core 0.14.25,
through the official `ollama` client 0.6.3 and httpx 0.28.1) sent for what
their users do: `Ollama.metadata` (an `/api/show`), complete, chat and their
streams with `context_window`, `thinking` (True, "low", False), `json_mode`,
`structured_predict`, `chat_with_tools`, `predict_and_call`, a FunctionAgent's
two turns, `keep_alive`, `additional_kwargs` options, an image, a Bearer key in
`headers`; OllamaEmbedding's single, batch and keep-alive-0 calls. The bodies
are verbatim (`SCRIPT:…` named the answer the capturing backend gave).

What LlamaIndex reads back: the first `model_info` key containing
"context_length" (with none it falls back to 3900 tokens and asks again before
every call); `message.content`, skipping any streamed line whose content is
null, so a line of tool calls or thinking without content would be lost;
`message.thinking`; `tool_calls[].function.arguments` as a dict; and
`prompt_eval_count` with `eval_count`, giving no usage unless both are there.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tests.captures import (
    USAGE,
    load_captures,
    replay,
    text_script,
    thought_then_answer,
    two_calls_after,
)
from tests.fakebackend import FakeBackend, Script, chat_chunk, sse
from tests.ndjson import assert_final, read_ndjson

CAPTURES = load_captures("llamaindex")
# The capture's models: no context length listed for `m`, vLLM's
# `max_model_len` for `qwen3-vllm` (a reasoning model by its name).
MODELS: list[dict[str, Any]] = [
    {"id": "m", "object": "model", "created": 0},
    {"id": "qwen3-vllm", "object": "model", "created": 0, "max_model_len": 32768},
    {"id": "text-embed", "object": "model", "created": 0},
    {"id": "demo", "object": "model", "created": 0},
    {"id": "demo-vision", "object": "model", "created": 0},
]


def _capture(name: str) -> dict[str, Any]:
    capture: dict[str, Any] = CAPTURES[name]
    return capture


async def _replay(client: Any, name: str) -> Any:
    return await replay(client, _capture(name))


async def _lines(client: Any, name: str) -> list[dict[str, Any]]:
    """The answer's lines: a stream's, or the one object of a whole answer."""
    if json.loads(_capture(name)["body"]).get("stream"):
        return await read_ndjson(await _replay(client, name))
    resp = await _replay(client, name)
    assert resp.status == 200, await resp.text()
    return [await resp.json()]


async def _gateway(
    gateway: Any, backend: FakeBackend, toml: str = "", **env: str
) -> Any:
    backend.models = [dict(model) for model in MODELS]
    return await gateway(backend, toml, **env)


def _thinking_tool_calls() -> Script:
    """Reasoning, then two calls streamed in fragments with a null content,
    as vLLM streams them."""
    return two_calls_after(
        {"role": "assistant", "content": None, "reasoning_content": "Let "},
        {"reasoning_content": "me check."},
    )


def _sent(backend: FakeBackend) -> dict[str, Any]:
    body: dict[str, Any] = backend.completions()[-1].body
    return body


def _context_window(show: dict[str, Any]) -> int | None:
    """What `Ollama.get_context_window` takes: the first model_info key
    containing "context_length"."""
    for key, value in show["model_info"].items():
        if "context_length" in key:
            return int(value)
    return None


def _chat_captures() -> list[str]:
    return [name for name in CAPTURES if CAPTURES[name]["path"] == "/api/chat"]


@pytest.mark.parametrize(
    ("name", "toml", "expected"),
    [
        ("show_context_length", "", 32768),
        ("show", '[models."m"]\ncontext_length = 131072\n', 131072),
        # Nothing known: LlamaIndex falls back to its 3900 and asks again
        # before every call, as README's client table says.
        ("show", "", None),
    ],
)
async def test_metadata_reads_the_context_length_shown(
    gateway, backend, name, toml, expected
):
    client = await _gateway(gateway, backend, toml)
    resp = await _replay(client, name)
    assert resp.status == 200, await resp.text()
    assert _context_window(await resp.json()) == expected


@pytest.mark.parametrize("name", _chat_captures())
async def test_every_chat_it_sends_is_answered_with_both_counts(gateway, backend, name):
    backend.queue(text_script('{"name": "Ada", "age": 36}', usage=None))
    keys = {"OLLAMA_GATEWAY_API_KEYS": "sekret"}
    keyed = "Authorization" in _capture(name)["headers"]
    client = await _gateway(gateway, backend, **(keys if keyed else {}))
    lines = await _lines(client, name)
    final = assert_final(lines)
    # LlamaIndex skips a streamed line whose content is null: every line
    # carries a string, as Ollama's always do.
    assert all(isinstance(o["message"]["content"], str) for o in lines)
    assert "".join(o["message"]["content"] for o in lines) == (
        '{"name": "Ada", "age": 36}'
    )
    assert final["eval_count"] == 1
    assert final["prompt_eval_count"] > 0


async def test_its_options_and_nulls_go_upstream_as_openai_takes_them(gateway, backend):
    backend.queue(text_script("Hi"), text_script("Hi"))
    client = await _gateway(gateway, backend)
    await _lines(client, "chat_options_keep_alive")
    sent = _sent(backend)
    assert (sent["temperature"], sent["top_p"], sent["seed"]) == (0.1, 0.5, 3)
    assert (sent["max_tokens"], sent["stop"]) == (64, ["zzz"])
    assert "keep_alive" not in sent
    # Its `temperature: null` (no temperature set) and `num_ctx` are not sent.
    await _lines(client, "chat_default_context_window")
    sent = _sent(backend)
    assert not {"temperature", "num_ctx", "options"} & set(sent)


async def test_keep_alive_zero_as_a_float_unloads(gateway, backend):
    backend.queue(text_script("Hi"), text_script("Hi"))
    client = await _gateway(gateway, backend)
    await _lines(client, "chat")
    await _lines(client, "chat_keep_alive_zero")
    ps = await (await client.get("/api/ps")).json()
    assert [m["name"] for m in ps["models"]] == ["m:latest"]


@pytest.mark.parametrize(
    ("name", "effort"),
    [
        ("chat_think", None),
        ("stream_chat_think_low", "low"),
        ("chat_think_false", "none"),
    ],
)
async def test_thinking_settings_and_the_thinking_read_back(
    gateway, backend, name, effort
):
    backend.queue(thought_then_answer())
    client = await _gateway(gateway, backend)
    lines = await _lines(client, name)
    assert_final(lines)
    assert _sent(backend).get("reasoning_effort") == effort
    assert "".join(o["message"].get("thinking", "") for o in lines) == "hmm ok"
    assert "".join(o["message"]["content"] for o in lines) == "Answer"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("chat_json_mode", "json_object"), ("chat_structured_predict", "json_schema")],
)
async def test_json_mode_and_structured_predict(gateway, backend, name, expected):
    backend.queue(text_script('{"name": "Ada", "age": 36}'))
    client = await _gateway(gateway, backend)
    (answer,) = await _lines(client, name)
    assert json.loads(answer["message"]["content"]) == {"name": "Ada", "age": 36}
    format_ = _sent(backend)["response_format"]
    assert format_["type"] == expected
    if expected == "json_schema":
        assert format_["json_schema"]["schema"]["required"] == ["name", "age"]


@pytest.mark.parametrize(
    "name", ["chat_with_tools_think", "stream_chat_with_tools_think", "agent"]
)
async def test_tool_calls_come_whole_once_with_dict_arguments(gateway, backend, name):
    backend.queue(_thinking_tool_calls())
    client = await _gateway(gateway, backend)
    lines = await _lines(client, name)
    final = assert_final(lines)
    calls = [c["function"] for o in lines for c in o["message"].get("tool_calls", ())]
    assert [(c["name"], c["arguments"]) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"tz": "UTC"}),
    ]
    assert "".join(o["message"].get("thinking", "") for o in lines) == "Let me check."
    assert (final["prompt_eval_count"], final["eval_count"]) == (17, 9)
    assert all(isinstance(o["message"]["content"], str) for o in lines)


async def test_the_agent_turn_with_its_tool_results(gateway, backend):
    backend.queue(text_script("Sunny at noon."))
    client = await _gateway(gateway, backend)
    lines = await _lines(client, "agent_tool_results")
    assert "".join(o["message"]["content"] for o in lines) == "Sunny at noon."
    # The assistant turn comes without content and with its thinking, the
    # results with neither tool_name nor an id: they answer the calls in
    # order, and the thinking stays behind (history_thinking = "drop").
    assistant, first, second = _sent(backend)["messages"][1:]
    assert assistant["content"] == ""
    assert "reasoning_content" not in assistant
    ids = [call["id"] for call in assistant["tool_calls"]]
    assert [first["tool_call_id"], second["tool_call_id"]] == ids
    assert [first["content"], second["content"]] == ["Sunny in Paris", "noon"]


async def test_a_tool_without_arguments_is_called_with_an_empty_dict(gateway, backend):
    part = {"index": 0, "id": "c0", "type": "function"}
    part["function"] = {"name": "get_time_now", "arguments": ""}
    backend.queue(
        Script(
            pieces=[
                sse(
                    chat_chunk({"role": "assistant", "content": None}),
                    chat_chunk({"tool_calls": [part]}),
                    chat_chunk({}, finish="tool_calls"),
                    chat_chunk(choices=False, usage=USAGE),
                )
            ]
        )
    )
    client = await _gateway(gateway, backend)
    (answer,) = await _lines(client, "predict_and_call_no_arguments")
    (call,) = answer["message"]["tool_calls"]
    assert call["function"] == {"index": 0, "name": "get_time_now", "arguments": {}}
    tools = _sent(backend)["tools"]
    assert tools[0]["function"]["parameters"] == {"type": "object", "properties": {}}


async def test_an_image_block_goes_as_a_data_url(gateway, backend):
    backend.queue(text_script("One image."))
    client = await _gateway(gateway, backend)
    await _lines(client, "chat_image")
    (message,) = _sent(backend)["messages"]
    text, image = message["content"]
    assert text == {"type": "text", "text": "what?"}
    assert image["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")


@pytest.mark.parametrize(
    "name", ["embed", "embed_batch", "embed_options_keep_alive_zero"]
)
async def test_embeddings_one_unit_vector_an_input(gateway, backend, name):
    client = await _gateway(gateway, backend)
    resp = await _replay(client, name)
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    given = json.loads(_capture(name)["body"])["input"]
    inputs = given if isinstance(given, list) else [given]
    sent = backend.requests[-1].body
    assert sent["input"] == inputs
    # Its options (num_ctx, truncate) are Ollama's own: none goes upstream.
    assert set(sent) <= {"model", "input", "encoding_format", "dimensions"}
    assert len(answer["embeddings"]) == len(inputs)
    for vector in answer["embeddings"]:
        assert math.isclose(math.hypot(*vector), 1.0)
    ps = await (await client.get("/api/ps")).json()
    loaded = [m["name"] for m in ps["models"]]
    assert loaded == ([] if name.endswith("keep_alive_zero") else ["text-embed:latest"])


async def test_a_bearer_key_in_its_headers(gateway, backend):
    backend.queue(text_script("Hi"))
    client = await _gateway(gateway, backend, OLLAMA_GATEWAY_API_KEYS="sekret")
    (answer,) = await _lines(client, "chat_bearer")
    assert answer["message"]["content"] == "Hi"
    capture = _capture("chat_bearer")
    refused = await client.post("/api/chat", data=capture["body"].encode())
    assert refused.status == 401
