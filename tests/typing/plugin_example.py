"""A third-party-style translator of each stage, written only against the public
API. mypy (strict, run over tests/) must accept it: this is what plugin authors
type-check against."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import msgspec

import ollama_gateway
from ollama_gateway import (
    RequestContext,
    RequestMapper,
    RequestMapperWrapper,
    ResponseMapper,
    StreamSession,
    Transport,
    TransportWrapper,
    UpstreamRequest,
    UpstreamResponse,
    ollama,
    openai,
)


class TemperatureConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    temperature: float = 0.2


class FixedTemperature(RequestMapperWrapper):
    Config: ClassVar[type[msgspec.Struct]] = TemperatureConfig

    def __init__(self, config: msgspec.Struct, inner: RequestMapper | None) -> None:
        super().__init__(config, inner)
        assert isinstance(config, TemperatureConfig)
        self.temperature = config.temperature

    def map_chat(
        self, request: ollama.ChatRequest, ctx: RequestContext
    ) -> openai.ChatCompletionRequest:
        body = self.inner.map_chat(request, ctx)
        body.temperature = self.temperature
        return body


class HeaderTransport(TransportWrapper):
    async def send(
        self, request: UpstreamRequest, ctx: RequestContext
    ) -> UpstreamResponse:
        request.headers["X-Team"] = "blue"
        return await self.inner.send(request, ctx)


class CountingSession:
    """A stream session written from scratch against the Protocol."""

    def __init__(self, inner: StreamSession) -> None:
        self.inner = inner
        self.chunks = 0

    def feed(self, chunk: openai.ChatCompletionChunk) -> Sequence[ollama.ChatResponse]:
        self.chunks += 1
        return self.inner.feed(chunk)

    def close(self) -> Sequence[ollama.ChatResponse]:
        return self.inner.close()


class CountingResponse:
    """A response mapper that does not inherit from anything."""

    stage: ClassVar[ollama_gateway.Stage] = "response"
    Config: ClassVar[type[msgspec.Struct]] = ollama_gateway.NoConfig

    def __init__(self, config: msgspec.Struct, inner: ResponseMapper | None) -> None:
        assert inner is not None
        self.inner = inner

    def open_stream(self, ctx: RequestContext) -> StreamSession:
        return CountingSession(self.inner.open_stream(ctx))

    def map_embed(
        self, response: openai.EmbeddingResponse, ctx: RequestContext
    ) -> ollama.EmbedResponse:
        return self.inner.map_embed(response, ctx)


def check_shapes(
    request: RequestMapper, transport: Transport, response: ResponseMapper
) -> None:
    """Structural typing: each class above is accepted where its Protocol is."""


def _accepts() -> None:
    config = TemperatureConfig()
    mapper: RequestMapper = FixedTemperature(config, None)
    sender: Transport = HeaderTransport(ollama_gateway.NoConfig(), None)
    answer: ResponseMapper = CountingResponse(ollama_gateway.NoConfig(), None)
    check_shapes(mapper, sender, answer)
