"""What a real llama-cpp-python server sent, replayed through the gateway.

The bytes were captured from `python -m llama_cpp.server` of llama-cpp-python
0.3.16 (FastAPI, sse-starlette), over the llama.cpp it vendors, serving a tiny
random Qwen-vocabulary model with the model's own chat template (or
`--chat_format chatml-function-calling`). Short bodies are here, streams and
whole answers in `fixtures/llamacpp_python/` (the body as it came, headers
left out).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ollama_gateway.completion import EMPTY_STREAM
from ollama_gateway.handlers.embed import PER_TOKEN
from ollama_gateway.http1 import UNEXPECTED_EOF
from tests.fakebackend import FakeBackend, Script
from tests.ndjson import NO_RETRY, chat, ndjson, post

CAPTURES = Path(__file__).parent / "fixtures" / "llamacpp_python"


def capture(name: str) -> bytes:
    return (CAPTURES / name).read_bytes()


JSON = {"Content-Type": "application/json"}
SSE = "text/event-stream; charset=utf-8"

# What the server sends for a streamed request whose prompt it then finds too
# long, or cannot render: the 200 and the stream's headers, then the chunked
# body's proper end (`0\r\n\r\n`) with no event.
NO_EVENT = Script(pieces=[], content_type=SSE, headers={"X-Accel-Buffering": "no"})


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
async def test_an_empty_event_stream_is_named_and_not_asked_again(
    backend: FakeBackend, gateway, stream
):
    backend.queue(NO_EVENT)
    client = await gateway(backend, NO_RETRY)
    resp = await post(client, "/api/chat", chat(stream=stream))
    assert resp.status == 502
    assert (await resp.json())["error"] == EMPTY_STREAM
    assert EMPTY_STREAM.startswith(UNEXPECTED_EOF)
    # Asked again, the backend would generate twice: never.
    assert len(backend.completions()) == 1


async def test_a_stream_cut_after_events_keeps_ollamas_words(
    backend: FakeBackend, gateway
):
    data = capture("tools_forced.sse")
    cut = data[: data.index(b"data: [DONE]")].split(b"\n\n")[0] + b"\n\n"
    backend.queue(Script(pieces=[cut], content_type=SSE))
    client = await gateway(backend, NO_RETRY)
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 502
    assert (await resp.json())["error"] == UNEXPECTED_EOF
    assert len(backend.completions()) == 1


# `--embedding true`, asked for two inputs at once (0.3.15 to 0.3.22; one input works).
BATCH_REFUSED = (
    b'{"error":{"message":"llama_decode returned -1","type":"internal_server_error"'
    b',"param":null,"code":null}}'
)


class OneAtATimeBackend(FakeBackend):
    """Refuses, as llama-cpp-python 0.3.16 does, an embeddings batch."""

    async def _embeddings(self, request):
        body = await request.json()
        if isinstance(body["input"], list) and len(body["input"]) > 1:
            self.queue(Script(status=500, error_body=BATCH_REFUSED, headers=JSON))
        return await super()._embeddings(request)


async def test_a_refused_embeddings_batch_is_sent_one_input_at_a_time(
    aiohttp_server, gateway
):
    backend = OneAtATimeBackend()
    backend.url = str((await aiohttp_server(backend.app)).make_url("/v1"))
    backend.embedding = [0.6, 0.8]
    client = await gateway(backend, NO_RETRY)
    body = {"model": "text-embedding-3-small", "input": ["a", "b", "c"]}
    resp = await post(client, "/api/embed", body)
    # Without it: the backend's 500 "llama_decode returned -1".
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["embeddings"] == [[0.6, 0.8]] * 3
    assert answer["prompt_eval_count"] == 6  # 2 a request, as the backend counted
    sent = [r.body["input"] for r in backend.requests if r.path == "/v1/embeddings"]
    assert sent == [["a", "b", "c"], "a", "b", "c"]


async def test_other_embedding_500s_are_not_split(backend: FakeBackend, gateway):
    refused = b'{"error":{"message":"out of memory","type":"internal_server_error"}}'
    backend.queue(Script(status=500, error_body=refused, headers=JSON))
    client = await gateway(backend, NO_RETRY)
    body = {"model": "text-embedding-3-small", "input": ["a", "b"]}
    resp = await post(client, "/api/embed", body)
    assert resp.status == 500
    assert (await resp.json())["error"] == "out of memory"
    assert len([r for r in backend.requests if r.path == "/v1/embeddings"]) == 1


@pytest.mark.parametrize("path", ["/api/embed", "/api/embeddings"])
async def test_token_level_embeddings_are_named(backend: FakeBackend, gateway, path):
    # What the server answers for a model whose GGUF sets no pooling type:
    # `embedding` is a list of 64-float vectors, one per token.
    answer = capture("embedding_per_token.json")
    backend.queue(Script(pieces=[answer], content_type="application/json"))
    client = await gateway(backend, NO_RETRY)
    key = "input" if path == "/api/embed" else "prompt"
    resp = await post(client, path, {"model": "text-embedding-3-small", key: "hello"})
    assert resp.status == 502
    assert await resp.json() == {"error": PER_TOKEN}


# `response_format` of type "json_schema" (the default), as the server refuses it.
SCHEMA_REFUSED = (
    b"{\"error\":{\"message\":\"1 validation error:\\n  {'type': 'literal_error', '"
    b"loc': ('body', 'response_format', 'type'), 'msg': \\\"Input should be 'text' "
    b"or 'json_object'\\\", 'input': 'json_schema', 'ctx': {'expected': \\\"'text' "
    b"or 'json_object'\\\"}}\\n\\n  File \\\"/tmp/s10/lcpy/venv/lib/python3.11/site-"
    b'packages/llama_cpp/server/app.py\\", line 376, in create_chat_completion\\n  '
    b'  POST /v1/chat/completions","type":"internal_server_error","param":null,"co'
    b'de":null}}'
)
OK_SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
}
JSON_OBJECT = """
[[backends]]
name = "lcpy"
base_url = "{url}"
format_schema = "json_object"
"""


class SchemaCheckingBackend(FakeBackend):
    """Refuses, as llama-cpp-python's server does, a "json_schema" format."""

    async def _completion(self, request):
        body = await request.json()
        if body.get("response_format", {}).get("type") not in (
            None,
            "text",
            "json_object",
        ):
            self.queue(Script(status=500, error_body=SCHEMA_REFUSED, headers=JSON))
        return await super()._completion(request)


@pytest.mark.parametrize("endpoint", ["/api/chat", "/api/generate"])
async def test_a_schema_format_goes_as_json_object_with_its_schema(
    aiohttp_server, gateway, endpoint
):
    backend = SchemaCheckingBackend()
    backend.url = str((await aiohttp_server(backend.app)).make_url("/v1"))
    backend.queue(
        Script(pieces=[capture("chat_json_object_schema.sse")], content_type=SSE)
    )
    client = await gateway(toml=JSON_OBJECT.format(url=backend.url))
    body = (
        chat(stream=False, format=OK_SCHEMA)
        if endpoint == "/api/chat"
        else {"model": "gpt-4o", "prompt": "hi", "stream": False, "format": OK_SCHEMA}
    )
    resp = await post(client, endpoint, body)
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    text = (
        answer["message"]["content"] if endpoint == "/api/chat" else answer["response"]
    )
    assert json.loads(text) == {"ok": False}
    sent = backend.completions()[-1].body["response_format"]
    assert sent == {"type": "json_object", "schema": OK_SCHEMA}


async def test_a_schema_format_is_openais_by_default(aiohttp_server, gateway):
    backend = SchemaCheckingBackend()
    backend.url = str((await aiohttp_server(backend.app)).make_url("/v1"))
    client = await gateway(backend, NO_RETRY)
    resp = await post(client, "/api/chat", chat(stream=False, format=OK_SCHEMA))
    # What a default backend entry gets from llama-cpp-python: its 500, as it said it.
    assert resp.status == 500
    assert "Input should be 'text' or 'json_object'" in (await resp.json())["error"]
    sent = backend.completions()[-1].body["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["schema"] == OK_SCHEMA


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
async def test_chatml_function_calling_stream_makes_one_call(
    backend: FakeBackend, gateway, stream
):
    # `--chat_format chatml-function-calling` with `tool_choice` naming the
    # function: every chunk repeats the call's id and name (and an old-style
    # `function_call`), the arguments come in pieces.
    backend.queue(Script(pieces=[capture("tools_forced.sse")], content_type=SSE))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=stream))
    objs = ndjson(await resp.read()) if stream else [await resp.json()]
    calls = [call for obj in objs for call in obj["message"].get("tool_calls") or ()]
    assert calls == [
        {
            "id": "call__0_get_weather_cmpl-58a12dce-20e7-4b7f-ac3b-e878d2cb92d7",
            "function": {"index": 0, "name": "get_weather", "arguments": {"n": -2197}},
        }
    ]
    assert objs[-1]["done_reason"] == "stop"
