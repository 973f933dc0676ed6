"""Translators that go wrong in the ways a real plugin can."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import ClassVar, Literal

import msgspec

from ollama_gateway import (
    RequestContext,
    RequestMapperWrapper,
    ResponseMapperWrapper,
    StreamSession,
    StreamSessionWrapper,
    TransportWrapper,
    UpstreamRequest,
    UpstreamResponse,
    ollama,
    openai,
)


class NotAStage:
    stage = "middle"
    Config = msgspec.Struct


class NoConfigAttribute:
    stage = "response"


class _Explode(StreamSessionWrapper):
    def transform(
        self, chunks: Sequence[ollama.ChatResponse]
    ) -> Sequence[ollama.ChatResponse]:
        raise RuntimeError("kaboom")


class ExplodingResponse(ResponseMapperWrapper):
    """Raises on the first chunk of every answer."""

    def wrap_session(
        self, session: StreamSession, ctx: RequestContext
    ) -> StreamSession:
        return _Explode(session)


class StrictConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    level: int = 1


class ConfiguredResponse(ResponseMapperWrapper):
    """Takes a config table with one integer field."""

    Config: ClassVar[type[msgspec.Struct]] = StrictConfig


class MissingMethods:
    """Claims the response stage but implements nothing."""

    stage = "response"
    Config = StrictConfig

    def __init__(self, config: msgspec.Struct, inner: object) -> None:
        self.inner = inner


class FaultConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    fault: Literal["raise", "none", "body", "always", "close", "hang"] = "raise"


class _BodyBreaks:
    """An answer whose body raises after its first piece."""

    def __init__(self, inner: UpstreamResponse) -> None:
        self.inner = inner
        self.status = inner.status
        self.headers = inner.headers

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        async for piece in self.inner.aiter_bytes():
            yield piece
            raise RuntimeError("the body broke")

    async def aread(self) -> bytes:
        return b"".join([piece async for piece in self.aiter_bytes()])

    async def aclose(self) -> None:
        await self.inner.aclose()


class _CloseBreaks(_BodyBreaks):
    """An answer whose body is whole, but that raises when closed."""

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        async for piece in self.inner.aiter_bytes():
            yield piece

    async def aclose(self) -> None:
        await self.inner.aclose()
        raise RuntimeError("could not close the answer")


class _CloseHangs(_CloseBreaks):
    """An answer whose body is whole, but whose closing never ends."""

    async def aclose(self) -> None:
        await self.inner.aclose()
        await asyncio.Event().wait()


class FaultyTransport(TransportWrapper):
    """Sends completions on, then fails as its `fault` says: raises, returns
    None instead of the answer, one whose body raises after its first piece,
    or one that raises when closed. Model lists pass untouched, except with
    `always`: it raises for every request, sending nothing."""

    Config: ClassVar[type[msgspec.Struct]] = FaultConfig

    async def send(
        self, request: UpstreamRequest, ctx: RequestContext
    ) -> UpstreamResponse:
        assert isinstance(self.config, FaultConfig)
        if self.config.fault == "always":
            raise RuntimeError("cannot send anything")
        response = await self.inner.send(request, ctx)
        if request.method == "GET":
            return response
        if self.config.fault == "body":
            return _BodyBreaks(response)
        if self.config.fault == "close":
            return _CloseBreaks(response)
        if self.config.fault == "hang":
            return _CloseHangs(response)
        await response.aclose()
        if self.config.fault == "raise":
            raise RuntimeError("lost the answer")
        return None  # type: ignore[return-value]  # the fault under test


class NoneRequest(RequestMapperWrapper):
    """Returns None for every request: a mapper that forgot its `return`."""

    def map_chat(
        self, request: ollama.ChatRequest, ctx: RequestContext
    ) -> openai.ChatCompletionRequest:
        self.inner.map_chat(request, ctx)
        return None  # type: ignore[return-value]  # the fault under test

    def map_generate(
        self, request: ollama.GenerateRequest, ctx: RequestContext
    ) -> openai.ChatCompletionRequest | openai.CompletionRequest:
        self.inner.map_generate(request, ctx)
        return None  # type: ignore[return-value]  # the fault under test

    def map_embed(
        self, request: ollama.EmbedRequest, ctx: RequestContext
    ) -> openai.EmbeddingRequest:
        self.inner.map_embed(request, ctx)
        return None  # type: ignore[return-value]  # the fault under test


class DictEmbedResponse(ResponseMapperWrapper):
    """Answers embeddings with a plain dict instead of an EmbedResponse."""

    def map_embed(
        self, response: openai.EmbeddingResponse, ctx: RequestContext
    ) -> ollama.EmbedResponse:
        return {"embeddings": [[1.0]]}  # type: ignore[return-value]  # under test


class _DropEmpty(StreamSessionWrapper):
    def transform(
        self, chunks: Sequence[ollama.ChatResponse]
    ) -> Sequence[ollama.ChatResponse]:
        return [chunk for chunk in chunks if chunk.message.content]


class DropEmptyResponse(ResponseMapperWrapper):
    """Drops every chunk without content, the final one (`done`) too."""

    def wrap_session(
        self, session: StreamSession, ctx: RequestContext
    ) -> StreamSession:
        return _DropEmpty(session)


class KeysConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    keys: dict[str, str] = msgspec.field(default_factory=dict)


class KeyPerBackend(TransportWrapper):
    """Sends its own key to the backends it has one for, as the typing
    example's wrapper sets a header: on the request it is given."""

    Config: ClassVar[type[msgspec.Struct]] = KeysConfig

    async def send(
        self, request: UpstreamRequest, ctx: RequestContext
    ) -> UpstreamResponse:
        assert isinstance(self.config, KeysConfig)
        key = self.config.keys.get(request.backend.name)
        if key is not None:
            request.headers["Authorization"] = f"Bearer {key}"
        return await self.inner.send(request, ctx)


class LenientConfig(msgspec.Struct, frozen=True):
    """msgspec's default: unknown fields are ignored, not refused."""

    prompt: str = ""


class LenientResponse(ResponseMapperWrapper):
    """Takes a config table whose Struct does not forbid unknown fields."""

    Config: ClassVar[type[msgspec.Struct]] = LenientConfig


class CloseFailsTransport(TransportWrapper):
    """Closes what it wraps, then raises: a plugin's bug at shutdown."""

    async def aclose(self) -> None:
        await self.inner.aclose()
        raise RuntimeError("could not close")


class CloseHangsTransport(TransportWrapper):
    """Closes what it wraps, then never returns: a plugin's bug at shutdown."""

    async def aclose(self) -> None:
        await self.inner.aclose()
        await asyncio.Event().wait()


class GenerateRaises(RequestMapperWrapper):
    """Raises for `/api/generate` only; chats pass."""

    def map_generate(
        self, request: ollama.GenerateRequest, ctx: RequestContext
    ) -> openai.ChatCompletionRequest | openai.CompletionRequest:
        raise ValueError("no generating here")


class _AsDicts(StreamSessionWrapper):
    def transform(
        self, chunks: Sequence[ollama.ChatResponse]
    ) -> Sequence[ollama.ChatResponse]:
        as_dicts = [msgspec.to_builtins(chunk) for chunk in chunks]
        return as_dicts  # the fault under test: not ChatResponses


class DictsResponse(ResponseMapperWrapper):
    """Returns its chunks as dicts, as an untyped plugin might."""

    def wrap_session(
        self, session: StreamSession, ctx: RequestContext
    ) -> StreamSession:
        return _AsDicts(session)
