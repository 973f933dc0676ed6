"""Delegating base classes for translators that wrap an inner one of their stage.

Subclass one and override only what you change; everything else goes to `inner`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import msgspec

from ollama_gateway.context import RequestContext
from ollama_gateway.errors import PluginLoadError
from ollama_gateway.protocols import (
    NoConfig,
    RequestMapper,
    ResponseMapper,
    Stage,
    StreamSession,
    Transport,
    UpstreamRequest,
    UpstreamResponse,
)
from ollama_gateway.schemas import ollama, openai

__all__ = [
    "RequestMapperWrapper",
    "ResponseMapperWrapper",
    "StreamSessionWrapper",
    "TransportWrapper",
]


def _require(inner: object, cls: type) -> None:
    if inner is None:
        raise PluginLoadError(
            f"{cls.__name__} wraps another translator: list it before the base one"
        )


class RequestMapperWrapper:
    """Passes every request to `inner`; override a `map_*` method to change one."""

    stage: ClassVar[Stage] = "request"
    Config: ClassVar[type[msgspec.Struct]] = NoConfig

    def __init__(self, config: msgspec.Struct, inner: RequestMapper | None) -> None:
        _require(inner, type(self))
        assert inner is not None
        self.config = config
        self.inner = inner

    def map_chat(
        self, request: ollama.ChatRequest, ctx: RequestContext
    ) -> openai.ChatCompletionRequest:
        return self.inner.map_chat(request, ctx)

    def map_generate(
        self, request: ollama.GenerateRequest, ctx: RequestContext
    ) -> openai.ChatCompletionRequest | openai.CompletionRequest:
        return self.inner.map_generate(request, ctx)

    def map_embed(
        self, request: ollama.EmbedRequest, ctx: RequestContext
    ) -> openai.EmbeddingRequest:
        return self.inner.map_embed(request, ctx)


class TransportWrapper:
    """Passes every request to `inner`; override `send` to add behaviour."""

    stage: ClassVar[Stage] = "transport"
    Config: ClassVar[type[msgspec.Struct]] = NoConfig

    def __init__(self, config: msgspec.Struct, inner: Transport | None) -> None:
        _require(inner, type(self))
        assert inner is not None
        self.config = config
        self.inner = inner

    async def send(
        self, request: UpstreamRequest, ctx: RequestContext
    ) -> UpstreamResponse:
        return await self.inner.send(request, ctx)

    async def aclose(self) -> None:
        await self.inner.aclose()


class StreamSessionWrapper:
    """Passes chunks to `inner`; override `transform` to change each Ollama chunk."""

    def __init__(self, inner: StreamSession) -> None:
        self.inner = inner

    def transform(
        self, chunks: Sequence[ollama.ChatResponse]
    ) -> Sequence[ollama.ChatResponse]:
        return chunks

    def feed(self, chunk: openai.ChatCompletionChunk) -> Sequence[ollama.ChatResponse]:
        out = self.inner.feed(chunk)
        return self.transform(out) if out else out

    def close(self) -> Sequence[ollama.ChatResponse]:
        return self.transform(self.inner.close())


class ResponseMapperWrapper:
    """Passes every answer to `inner`; override `wrap_session` to filter streams."""

    stage: ClassVar[Stage] = "response"
    Config: ClassVar[type[msgspec.Struct]] = NoConfig

    def __init__(self, config: msgspec.Struct, inner: ResponseMapper | None) -> None:
        _require(inner, type(self))
        assert inner is not None
        self.config = config
        self.inner = inner

    def wrap_session(
        self, session: StreamSession, ctx: RequestContext
    ) -> StreamSession:
        return session

    def open_stream(self, ctx: RequestContext) -> StreamSession:
        return self.wrap_session(self.inner.open_stream(ctx), ctx)

    def map_embed(
        self, response: openai.EmbeddingResponse, ctx: RequestContext
    ) -> ollama.EmbedResponse:
        return self.inner.map_embed(response, ctx)
