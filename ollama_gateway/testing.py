"""A test kit for translator authors: a fake OpenAI backend and a real gateway.

It is a pytest plugin (entry point `pytest11`), so with ollama-gateway and
pytest-aiohttp installed, a plugin's test needs three lines:

    async def test_upper(ollama_gateway):
        gateway = await ollama_gateway('[pipeline]\\nresponse = ["upper", "openai-to-ollama"]')
        assert (await gateway.chat("hi"))["message"]["content"] == "HELLO FROM THE FAKE BACKEND"

`ollama_gateway(toml, entry_points=…, **env)` starts the gateway on a loopback
socket in front of `fake_openai`, with translators discovered as in production
(plus any `entry_points` you pass, for translators that are not installed).
"""

from __future__ import annotations

import importlib.metadata as md
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ollama_gateway.app import create_app
from ollama_gateway.plugins import ENTRY_POINT_GROUP
from ollama_gateway.settings import Settings

__all__ = ["FakeOpenAI", "GatewayUnderTest", "fake_openai", "ollama_gateway"]

DEFAULT_REPLY = "Hello from the fake backend"


class FakeOpenAI:
    """An OpenAI-compatible backend that streams `reply_text` word by word.

    `requests` records every JSON body it received, so tests can assert what the
    request translators sent upstream.
    """

    def __init__(self) -> None:
        self.reply_text = DEFAULT_REPLY
        self.models = ["fake-model"]
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self.app = web.Application()
        self.app.router.add_get("/v1/models", self._models)
        self.app.router.add_post("/v1/chat/completions", self._stream)
        self.app.router.add_post("/v1/completions", self._stream)
        self.app.router.add_post("/v1/embeddings", self._embeddings)

    async def _models(self, request: web.Request) -> web.Response:
        data = [{"id": m, "object": "model", "created": 0} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"index": i, "embedding": [1.0, 0.0]} for i in range(len(inputs))]
        return web.json_response({"data": data, "usage": {"prompt_tokens": 1}})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        legacy = request.path.endswith("/v1/completions")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        words = self.reply_text.split(" ")
        for i, word in enumerate(words):
            piece = word if i == len(words) - 1 else word + " "
            choice = {"index": 0, "text": piece} if legacy else {
                "index": 0, "delta": {"content": piece}
            }  # fmt: skip
            await response.write(_event({"choices": [choice]}))
        finish = {"index": 0, "delta": {}, "finish_reason": "stop"}
        usage = {"prompt_tokens": 3, "completion_tokens": len(words)}
        await response.write(_event({"choices": [finish]}))
        await response.write(_event({"choices": [], "usage": usage}))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


class GatewayUnderTest:
    """A running gateway: `client` for raw HTTP, `url` for official clients."""

    def __init__(self, client: TestClient[web.Request, web.Application]) -> None:
        self.client = client
        self.url = str(client.make_url("")).rstrip("/")

    async def chat(self, content: str, model: str = "fake-model", **fields: Any) -> Any:
        """One non-streamed `/api/chat` answer as a dict (asserts a 200)."""
        body = {"model": model, "messages": [{"role": "user", "content": content}]}
        response = await self.client.post(
            "/api/chat", json={**body, "stream": False, **fields}
        )
        assert response.status == 200, await response.text()
        return await response.json()

    async def stream_chat(
        self, content: str, model: str = "fake-model", **fields: Any
    ) -> list[Any]:
        """Every NDJSON line of a streamed `/api/chat`, decoded."""
        body = {"model": model, "messages": [{"role": "user", "content": content}]}
        response = await self.client.post("/api/chat", json={**body, **fields})
        assert response.status == 200, await response.text()
        return [json.loads(line) for line in (await response.text()).splitlines()]


StartGateway = Callable[..., Awaitable[GatewayUnderTest]]


def _write_config(folder: Path, toml: str) -> str:
    path = folder / f"ollama-gateway-{len(list(folder.iterdir()))}.toml"
    path.write_text(toml)
    return str(path)


@pytest.fixture
async def fake_openai(aiohttp_server: Any) -> FakeOpenAI:
    """The fake backend, listening on a loopback port."""
    backend = FakeOpenAI()
    server: TestServer = await aiohttp_server(backend.app)
    backend.url = str(server.make_url("/v1"))
    return backend


@pytest.fixture
async def ollama_gateway(
    aiohttp_client: Any, fake_openai: FakeOpenAI, tmp_path: Path
) -> AsyncIterator[StartGateway]:
    """Start gateways in front of `fake_openai`; see the module docstring."""

    async def start(
        toml: str = "",
        *,
        entry_points: Iterable[md.EntryPoint] = (),
        **env: str,
    ) -> GatewayUnderTest:
        environ = {"OPENAI_BASE_URL": fake_openai.url, "OPENAI_API_KEY": "test"}
        if toml:
            environ["OLLAMA_GATEWAY_CONFIG"] = _write_config(tmp_path, toml)
        environ.update(env)
        discovered = [*md.entry_points(group=ENTRY_POINT_GROUP), *entry_points]
        app = create_app(Settings.load(environ), entry_points=discovered)
        return GatewayUnderTest(await aiohttp_client(app))

    yield start
