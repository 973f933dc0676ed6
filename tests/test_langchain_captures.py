"""What LangChain sends, replayed through the gateway.

`fixtures/langchain/requests.json` holds the requests langchain-ollama 1.1.0
(langchain-core 1.8.3, through the official `ollama` client 0.6.3 and httpx
0.28.1) sent for what its users do: ChatOllama's invoke with options,
`bind_tools` and the turn with the `ToolMessage`s, `reasoning=True`,
`with_structured_output` by each method, an image; OllamaLLM's invoke (with
an image too);
OllamaEmbeddings; `validate_model_on_init` with a base URL of
`http://user:sekret@host`. The bodies are verbatim (`SCRIPT:…` named the
answer the capturing backend gave). ChatOllama streams even for `invoke`, and
reads `usage_metadata` from `prompt_eval_count` and `eval_count`, giving none
unless both are there.
"""

from __future__ import annotations

import json

import ollama
import pytest

from tests.captures import (
    USAGE,
    Captures,
    only_sent,
    text_script,
    two_calls_after,
)
from tests.conftest import base_url
from tests.fakebackend import Script, chat_chunk, sse
from tests.ndjson import assert_final, read_ndjson
from tests.ops import read_metrics

MODELS = ("m", "deepseek-reasoner", "e")
CAPTURES = Captures("langchain", MODELS)
_capture = CAPTURES.__getitem__
_replay = CAPTURES.replay
_gateway = CAPTURES.gateway
_sent = only_sent


@pytest.mark.parametrize(
    "name",
    [
        name
        for name in CAPTURES
        if CAPTURES[name]["path"] in ("/api/chat", "/api/generate")
    ],
)
async def test_every_completion_it_sends_is_answered_with_both_counts(
    gateway, backend, name
):
    backend.queue(text_script('{"name": "Ada", "age": 36}', usage=None))
    client = await _gateway(gateway, backend)
    objs = await read_ndjson(await _replay(client, name))
    final = assert_final(objs)
    assert final["eval_count"] == 1
    # With no usage from the backend (llama.cpp's server streams none), the
    # prompt's count was left out, and LangChain then gave no usage_metadata
    # at all: now it is estimated, as real Ollama always counts the prompt.
    assert final["prompt_eval_count"] > 0


async def test_usage_the_backend_reports_is_used_as_it_is(gateway, backend):
    backend.queue(text_script("Hello"))
    client = await _gateway(gateway, backend)
    final = assert_final(await read_ndjson(await _replay(client, "chat")))
    assert (final["prompt_eval_count"], final["eval_count"]) == (17, 9)


@pytest.mark.parametrize("name", ["chat_image", "generate_image"])
async def test_the_estimate_is_of_the_request_sent_less_its_images(
    gateway, backend, name
):
    backend.queue(text_script("One image.", usage=None))
    client = await _gateway(gateway, backend)
    final = assert_final(await read_ndjson(await _replay(client, name)))
    sent = json.dumps(_sent(backend), separators=(",", ":")).encode()
    captured = json.loads(_capture(name)["body"])
    (image,) = captured.get("images") or captured["messages"][0]["images"]
    assert image.encode() in sent
    # About four bytes a token, as token_estimate.py estimates: an image's
    # base64 is no measure of its tokens, and would count 24 here.
    assert final["prompt_eval_count"] == -(-(len(sent) - len(image)) // 4)


async def test_estimates_are_not_counted_as_reported_tokens(gateway, backend):
    backend.queue(text_script("Hi", usage=None))
    client = await _gateway(gateway, backend)
    assert_final(await read_ndjson(await _replay(client, "generate")))
    metrics = await read_metrics(client)
    assert metrics.get("ollama_gateway_tokens_total", kind="prompt") == 0
    assert metrics.get("ollama_gateway_tokens_total", kind="completion") == 1


async def test_options_and_keep_alive_as_it_sends_them(gateway, backend):
    backend.queue(text_script("Hi"), text_script("Hi"))
    client = await _gateway(gateway, backend)
    for name in ("chat_options", "chat_keep_alive_seconds"):
        assert_final(await read_ndjson(await _replay(client, name)))
    options, seconds = (r.body for r in backend.completions())
    assert options["max_tokens"] == 50
    assert options["stop"] == ["zzz"]
    assert options["seed"] == 42
    assert (options["temperature"], options["top_p"]) == (0.2, 0.9)
    assert "keep_alive" not in seconds
    ps = await (await client.get("/api/ps")).json()
    assert [m["name"] for m in ps["models"]] == ["m:latest"]


def _streamed_tool_calls() -> Script:
    return two_calls_after(
        {"role": "assistant", "reasoning_content": "Let me "},
        {"reasoning_content": "check both."},
    )


async def test_parallel_tool_calls_and_the_turn_with_their_results(gateway, backend):
    backend.queue(_streamed_tool_calls(), text_script("Sunny at noon."))
    client = await _gateway(gateway, backend)
    objs = await read_ndjson(await _replay(client, "chat_tools_think"))
    final = assert_final(objs)
    assert "".join(o["message"].get("thinking", "") for o in objs) == (
        "Let me check both."
    )
    calls = [c for o in objs for c in o["message"].get("tool_calls", ())]
    # Whole calls with object arguments, each once: LangChain makes a tool
    # call of every one it reads, in any chunk.
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"tz": "UTC"}),
    ]
    assert (final["prompt_eval_count"], final["eval_count"]) == (17, 9)
    assert_final(await read_ndjson(await _replay(client, "chat_tool_results")))
    # The results carry no tool_call_id (the ollama client drops LangChain's)
    # nor tool_name: they answer the calls in order.
    messages = backend.completions()[1].body["messages"]
    assistant, first, second = messages[2:]
    ids = [c["id"] for c in assistant["tool_calls"]]
    assert [first["tool_call_id"], second["tool_call_id"]] == ids
    assert [first["content"], second["content"]] == ["result 0", "result 1"]
    assert assistant["tool_calls"][0]["function"]["arguments"] == '{"city":"Paris"}'


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("chat_json_schema", "json_schema"),
        ("chat_json_mode", "json_object"),
        ("chat_function_calling", None),
        ("generate", None),
    ],
)
async def test_structured_output_methods(gateway, backend, name, expected):
    backend.queue(text_script('{"name": "Ada", "age": 36}'))
    client = await _gateway(gateway, backend)
    objs = await read_ndjson(await _replay(client, name))
    assert_final(objs)
    sent = _sent(backend)
    if expected is None:  # function calling is a tool; OllamaLLM sends `""`
        assert "response_format" not in sent
    else:
        assert sent["response_format"]["type"] == expected
    if name == "chat_json_schema":
        schema = sent["response_format"]["json_schema"]["schema"]
        assert schema["required"] == ["name", "age"]


async def test_reasoning_reaches_generate_as_thinking(gateway, backend):
    backend.queue(
        Script(
            pieces=[
                sse(
                    chat_chunk({"role": "assistant", "reasoning_content": "hmm"}),
                    chat_chunk({"content": "ok"}),
                    chat_chunk({}, finish="stop"),
                    chat_chunk(choices=False, usage=USAGE),
                )
            ]
        )
    )
    client = await _gateway(gateway, backend)
    objs = await read_ndjson(await _replay(client, "generate_think"))
    assert "".join(o.get("thinking", "") for o in objs) == "hmm"
    assert "".join(o["response"] for o in objs) == "ok"


@pytest.mark.parametrize("name", ["embed", "embed_options"])
async def test_embeddings_with_its_null_options(gateway, backend, name):
    client = await _gateway(gateway, backend)
    resp = await _replay(client, name)
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    sent = backend.requests[-1].body
    assert sent["input"] == json.loads(_capture(name)["body"])["input"]
    assert set(sent) <= {"model", "input", "encoding_format", "dimensions"}
    assert len(answer["embeddings"]) == len(sent["input"])


async def test_validate_model_on_init_with_a_key_in_the_base_url(gateway, backend):
    # `ChatOllama(base_url="http://user:sekret@host", validate_model_on_init=
    # True)` lists the models with Basic credentials: refused (401) before,
    # which LangChain reports as "Received an error from the Ollama API".
    client = await _gateway(gateway, backend, OLLAMA_GATEWAY_API_KEYS="sekret")
    resp = await _replay(client, "validate_model_on_init")
    assert resp.status == 200, await resp.text()
    names = [m["model"] for m in (await resp.json())["models"]]
    assert "m:latest" in names
    assert (
        await _replay(client, "validate_model_on_init", Authorization="")
    ).status == 401
    authorization = _capture("validate_model_on_init")["headers"]["Authorization"]
    backend.queue(text_script("Hi"))
    async with ollama.AsyncClient(
        host=base_url(client), headers={"Authorization": authorization}
    ) as api:
        reply = await api.chat(model="m", messages=[{"role": "user", "content": "x"}])
    assert reply.message.content == "Hi"
