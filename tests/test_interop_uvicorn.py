"""The default transport against uvicorn (h11), the HTTP server under vLLM,
LiteLLM and llama-cpp-python's server: a raw ASGI OpenAI backend on loopback,
and the official async client in front of the gateway."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import ollama
import pytest
import uvicorn

from tests.conftest import base_url

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MESSAGES = [{"role": "user", "content": "hi"}]
WORDS = ["Hello", " from", " uvicorn"]


class OpenAIApp:
    """`/v1/models` and `/v1/chat/completions` (SSE or JSON), as ASGI; records
    each completion's body and the client port it came from."""

    def __init__(self) -> None:
        self.completions: list[tuple[dict[str, Any], int]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/v1/models":
            models = {"object": "list", "data": [{"id": "m", "object": "model"}]}
            await _json(send, 200, models)
            return
        request = json.loads(body)
        self.completions.append((request, scope["client"][1]))
        if request.get("max_tokens") == 1:
            await _json(send, 400, {"error": {"message": "max_tokens too small"}})
        elif request.get("stream"):
            await _sse(send)
        else:
            message = {"role": "assistant", "content": "".join(WORDS)}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            usage = {"prompt_tokens": 3, "completion_tokens": 3}
            await _json(send, 200, {"choices": [choice], "usage": usage})


async def _json(send: Send, status: int, obj: object) -> None:
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(obj).encode()})


async def _sse(send: Send) -> None:
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    chunks = [{"role": "assistant", "content": ""}] + [{"content": w} for w in WORDS]
    for delta in chunks:
        event = {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        data = b"data: " + json.dumps(event).encode() + b"\n\n"
        await send({"type": "http.response.body", "body": data, "more_body": True})
        await asyncio.sleep(0.005)
    end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    tail = b"data: " + json.dumps(end).encode() + b"\n\ndata: [DONE]\n\n"
    await send({"type": "http.response.body", "body": tail, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def uvicorn_backend() -> AsyncIterator[tuple[OpenAIApp, str]]:
    app = OpenAIApp()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn offers only a flag
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield app, f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    async with asyncio.timeout(10):
        await task


def _toml(url: str, extra: str = "") -> str:
    return f'[[backends]]\nname = "uv"\nbase_url = "{url}"\n{extra}'


async def test_chats_through_uvicorn_share_one_connection(gateway, uvicorn_backend):
    app, url = uvicorn_backend
    client = await gateway(toml=_toml(url))
    async with ollama.AsyncClient(host=base_url(client)) as api:
        for _ in range(3):
            stream = await api.chat(model="m", messages=MESSAGES, stream=True)
            parts = [part async for part in stream]
            assert "".join(p.message.content or "" for p in parts) == "".join(WORDS)
            assert parts[-1].done and parts[-1].done_reason == "stop"
        reply = await api.chat(model="m", messages=MESSAGES)
    assert reply.message.content == "".join(WORDS)
    assert [body["stream"] for body, _ in app.completions] == [True] * 4
    # h11 keeps the connection alive; the gateway reuses it for every request.
    assert len({port for _, port in app.completions}) == 1


async def test_as_client_asks_uvicorn_for_json(gateway, uvicorn_backend):
    app, url = uvicorn_backend
    client = await gateway(toml=_toml(url, 'stream_upstream = "as-client"\n'))
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await api.chat(model="m", messages=MESSAGES)
    assert reply.message.content == "".join(WORDS)
    assert reply.prompt_eval_count == 3 and reply.eval_count == 3
    assert [body["stream"] for body, _ in app.completions] == [False]


async def test_an_error_status_from_uvicorn_is_mapped(gateway, uvicorn_backend):
    app, url = uvicorn_backend
    client = await gateway(toml=_toml(url))
    async with ollama.AsyncClient(host=base_url(client)) as api:
        with pytest.raises(ollama.ResponseError) as info:
            await api.chat(model="m", messages=MESSAGES, options={"num_predict": 1})
    assert info.value.status_code == 400
    assert info.value.error == "max_tokens too small"
    assert len(app.completions) == 1
