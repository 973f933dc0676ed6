"""`demo`: a transport that answers in-process like an OpenAI backend.

It lets `make run` answer on a fresh machine with no backend and no key, and
lets people test Ollama clients without a GPU. It speaks OpenAI (SSE chunks,
`/v1/models`, `/v1/embeddings`), so its answers go through the same request and
response translators as a real backend's. Replies are deterministic: the same
request gives the same answer. `demo_models` holds what each model says.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import msgspec

from ollama_gateway.context import RequestContext
from ollama_gateway.memory import MemoryResponse
from ollama_gateway.protocols import Stage, Transport, UpstreamRequest

from . import demo_models

__all__ = ["DemoConfig", "DemoTransport"]

SSE_HEADERS = {"Content-Type": "text/event-stream"}


class DemoConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`[translators.demo]`: pacing, so streaming UIs and timeouts can be tested.

    The default streams visibly, word by word; `tokens_per_second = 0` sends the
    whole answer at once (tests use that).
    """

    tokens_per_second: float = 30.0
    first_token_delay: float = 0.0


class DemoTransport:
    """Answers `/models`, `/chat/completions`, `/completions` and `/embeddings`."""

    stage: ClassVar[Stage] = "transport"
    Config: ClassVar[type[msgspec.Struct]] = DemoConfig

    def __init__(self, config: msgspec.Struct, inner: Transport | None) -> None:
        if inner is not None:
            raise ValueError("demo is a base transport: list it last")
        assert isinstance(config, DemoConfig)
        self.config = config

    async def send(
        self, request: UpstreamRequest, ctx: RequestContext
    ) -> MemoryResponse:
        path = request.path
        if request.method == "GET" and path == "/models":
            return MemoryResponse.json(200, demo_models.model_list())
        if request.method != "POST":
            return _error(405, f"{request.method} {path} is not served by the demo")
        try:
            body: Any = msgspec.json.decode(request.body)
        except msgspec.DecodeError as exc:
            return _error(400, f"invalid JSON body: {exc}")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        try:
            if path == "/embeddings":
                return MemoryResponse.json(200, demo_models.embeddings(body))
            if path in ("/chat/completions", "/completions"):
                reply = demo_models.reply(body, legacy=path == "/completions")
                return self._stream(reply, body)
        except demo_models.DemoError as exc:
            return _error(exc.status, str(exc))
        return _error(404, f"{path} is not served by the demo")

    async def aclose(self) -> None:
        return None

    def _stream(self, reply: demo_models.Reply, body: dict[str, Any]) -> MemoryResponse:
        if reply.status != 200:
            return _error(reply.status, reply.error)
        stream = body.get("stream") is True
        if not stream:
            return MemoryResponse.json(200, reply.as_completion())
        events = reply.events()
        return MemoryResponse(200, self._paced(events, reply), SSE_HEADERS)

    async def _paced(
        self, events: list[bytes], reply: demo_models.Reply
    ) -> AsyncIterator[bytes]:
        delay = reply.first_token_delay or self.config.first_token_delay
        rate = reply.tokens_per_second or self.config.tokens_per_second
        if delay > 0:
            await asyncio.sleep(delay)
        if rate <= 0:
            yield b"".join(events)
            return
        for event in events:
            yield event
            await asyncio.sleep(1.0 / rate)


def _error(status: int, message: str) -> MemoryResponse:
    return MemoryResponse.json(status, {"error": {"message": message, "code": status}})
