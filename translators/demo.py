"""`demo`: a transport that answers in-process like an OpenAI backend.

It lets `make run` answer on a fresh machine with no backend and no key, and
lets people test Ollama clients without a GPU. It speaks OpenAI (SSE chunks,
`/v1/models`, `/v1/embeddings`), so its answers go through the same request and
response translators as a real backend's. Replies are deterministic: the same
request gives the same answer. `demo_models` (with `demo_stream`, `demo_text`,
`demo_schema` and `demo_media`) decides what each model says, purely; this
module does the I/O: pacing, stalls, statuses and headers. docs/demo.md is the
guide for client developers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import msgspec

from ollama_gateway.context import RequestContext
from ollama_gateway.errors import UpstreamProtocolError
from ollama_gateway.http1 import UNEXPECTED_EOF
from ollama_gateway.memory import MemoryResponse
from ollama_gateway.protocols import Stage, Transport, UpstreamRequest

from . import demo_catalogue, demo_models
from .demo_stream import STALL_SECONDS, Event, Reply

__all__ = ["DemoConfig", "DemoTransport"]

SSE_HEADERS = {"Content-Type": "text/event-stream"}
JSON_HEADERS = {"Content-Type": "application/json"}


class DemoConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`[translators.demo]`: pacing, so streaming UIs and timeouts can be tested.

    The default streams visibly, word by word; `tokens_per_second = 0` sends
    every event without waiting (tests use that). A request can override both
    with `demo:tokens_per_second=N` / `demo:first_token_delay=S` in a system
    or user message.
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
            return MemoryResponse.json(200, demo_catalogue.model_list())
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
                return MemoryResponse.json(200, demo_catalogue.embeddings(body))
            if path in ("/chat/completions", "/completions"):
                reply = demo_models.reply(body, legacy=path == "/completions")
                return self._answer(reply, stream=body.get("stream") is True)
        except demo_catalogue.DemoError as exc:
            return MemoryResponse(
                exc.status,
                msgspec.json.encode(demo_catalogue.error_body(exc)),
                {"Content-Type": "application/json", **exc.headers},
            )
        return _error(404, f"{path} is not served by the demo")

    async def aclose(self) -> None:
        return None

    def _answer(self, reply: Reply, *, stream: bool) -> MemoryResponse:
        if stream:
            return MemoryResponse(200, self._paced(reply, reply.events()), SSE_HEADERS)
        # A non-stream backend answers once it has generated everything.
        pause = STALL_SECONDS if reply.failure == "stall" else 0.0
        whole = Event(reply.completion(), reply.tokens(), pause)
        body = self._paced(reply, [whole])
        if reply.failure == "drop":
            body = _broken(body)
        return MemoryResponse(200, body, JSON_HEADERS)

    async def _paced(self, reply: Reply, events: list[Event]) -> AsyncIterator[bytes]:
        """Send each event in its own piece, waiting as the pacing says.

        The first token comes after `first_token_delay`, each later one after
        1/`tokens_per_second`; an event's `pause` (a scripted stall) adds to that.
        """
        delay = _chosen(reply.first_token_delay, self.config.first_token_delay)
        rate = _chosen(reply.tokens_per_second, self.config.tokens_per_second)
        interval = 1.0 / rate if rate > 0 else 0.0
        started = False
        for event in events:
            wait = event.pause
            if event.tokens:
                if started:
                    wait += event.tokens * interval
                else:
                    wait += delay + (event.tokens - 1) * interval
                    started = True
            if wait > 0:
                await asyncio.sleep(wait)
            yield event.data


async def _broken(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`body`, then the connection breaks, as the HTTP transport reports a real
    backend's cut body. Ended cleanly instead, a cut JSON answer went out on
    `/v1` as a whole one with status 200, and OpenAI's SDKs raised a JSON
    decoding error rather than the broken connection a real backend gives."""
    async for piece in body:
        yield piece
    raise UpstreamProtocolError(UNEXPECTED_EOF)


def _chosen(per_request: float | None, configured: float) -> float:
    return configured if per_request is None else max(per_request, 0.0)


def _error(status: int, message: str) -> MemoryResponse:
    return MemoryResponse.json(
        status, demo_catalogue.error_body(demo_catalogue.DemoError(status, message))
    )
