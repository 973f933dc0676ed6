"""`backends[].stream_upstream`: by default every completion streams upstream
(spec 3.1); "as-client" asks for one JSON answer when the client did not
stream, and the client sees the same answer either way."""

from __future__ import annotations

import json
from typing import Any

from tests.fakebackend import Script
from tests.ndjson import CHAT, assert_final, chat, content_of, post, read_ndjson

AS_CLIENT = 'stream_upstream = "as-client"\n'


def _toml(url: str, extra: str = "") -> str:
    return f'[[backends]]\nname = "o"\nbase_url = "{url}"\n{extra}'


def _json_answer(**message: Any) -> Script:
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", **message},
                "finish_reason": "tool_calls" if "tool_calls" in message else "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3},
    }
    return Script(pieces=[json.dumps(answer).encode()], content_type="application/json")


async def test_default_streams_upstream_for_a_non_stream_client(backend, gateway):
    client = await gateway(toml=_toml(backend.url))
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 200
    assert (await resp.json())["message"]["content"] == "Hello from fake"
    [sent] = backend.completions()
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}


async def test_as_client_sends_one_json_request_and_answers_the_same(backend, gateway):
    backend.queue(_json_answer(content="whole answer"))
    client = await gateway(toml=_toml(backend.url, AS_CLIENT))
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["message"] == {"role": "assistant", "content": "whole answer"}
    assert body["done"] is True and body["done_reason"] == "stop"
    assert body["prompt_eval_count"] == 9 and body["eval_count"] == 3
    [sent] = backend.completions()
    assert sent.body["stream"] is False
    assert "stream_options" not in sent.body


async def test_as_client_tool_calls_in_a_json_answer(backend, gateway):
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
    }
    backend.queue(_json_answer(content=None, tool_calls=[call]))
    client = await gateway(toml=_toml(backend.url, AS_CLIENT))
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    [tool_call] = body["message"]["tool_calls"]
    assert tool_call["function"]["name"] == "get_weather"
    assert tool_call["function"]["arguments"] == {"city": "Oslo"}
    assert body["done_reason"] == "stop"
    assert backend.completions()[0].body["stream"] is False


async def test_as_client_still_streams_a_streaming_client(backend, gateway):
    client = await gateway(toml=_toml(backend.url, AS_CLIENT))
    resp = await post(client, "/api/chat", CHAT)
    objs = await read_ndjson(resp)
    assert content_of(objs) == "Hello from fake"
    assert_final(objs)
    [sent] = backend.completions()
    assert sent.body["stream"] is True


async def test_as_client_raw_generate_uses_a_json_legacy_completion(backend, gateway):
    answer = {
        "object": "text_completion",
        "choices": [{"index": 0, "text": "def f(): pass", "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 5},
    }
    backend.queue(
        Script(pieces=[json.dumps(answer).encode()], content_type="application/json")
    )
    client = await gateway(toml=_toml(backend.url, AS_CLIENT))
    request = {"model": "gpt-4o", "prompt": "def", "raw": True, "stream": False}
    resp = await post(client, "/api/generate", request)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["response"] == "def f(): pass" and body["eval_count"] == 5
    [sent] = backend.completions()
    assert sent.path == "/v1/completions" and sent.body["stream"] is False
