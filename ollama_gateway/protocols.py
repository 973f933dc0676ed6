"""The three pipeline stages as Protocols, plus the transport's byte-level types.

A translator is a class named by an entry point in the group
`ollama_gateway.translators`. It declares which stage it fills and what
configuration it takes, and is built as `cls(config, inner)`:

    class ShoutResponse(ResponseMapperWrapper):
        stage = "response"
        Config = NoConfig

`inner` is the next translator of the same stage (None for the base one). Nothing
has to inherit from these Protocols; mypy checks the shape. Contracts:

- `RequestMapper` methods are pure and synchronous: no I/O, no awaiting.
- `Transport.send` does the I/O. It is shared by all requests, so it keeps no
  per-request state; it may block only by awaiting.
- `ResponseMapper.open_stream` returns a new `StreamSession` per request: all
  per-stream state (tool-call fragments, counters) lives on the session. `feed`
  and `close` run on the hot path: no logging, no I/O, no metrics. A session
  may also fold non-stream answers itself (`WholeAnswerSession.absorb`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import msgspec

from ollama_gateway.schemas import ollama, openai

if TYPE_CHECKING:
    from ollama_gateway.context import RequestContext
    from ollama_gateway.settings import BackendSettings

__all__ = [
    "NoConfig",
    "RequestMapper",
    "ResponseMapper",
    "Stage",
    "StreamSession",
    "Transport",
    "UpstreamRequest",
    "UpstreamResponse",
    "WholeAnswerSession",
]

Stage = Literal["request", "transport", "response"]


class NoConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The `Config` of a translator that takes no settings."""


class UpstreamRequest(msgspec.Struct, kw_only=True):
    """One HTTP request to a backend, as bytes.

    `path` is relative to the backend's base URL (`/chat/completions`). The
    transport adds the backend's key and headers and honours `connect_timeout`
    (seconds, 0 for none). `stream` says the answer is SSE.
    """

    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    stream: bool = False
    connect_timeout: float = 10.0
    backend: BackendSettings


@runtime_checkable
class UpstreamResponse(Protocol):
    """A backend's answer. The caller must `aclose()` it, even after an error."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive, in pieces of any size."""
        ...

    async def aread(self) -> bytes:
        """The whole body."""
        ...

    async def aclose(self) -> None:
        """Release the connection; closes it when the body was not read to the end."""
        ...


@runtime_checkable
class RequestMapper(Protocol):
    """Turns Ollama requests into OpenAI request bodies. Pure, synchronous."""

    def map_chat(
        self, request: ollama.ChatRequest, ctx: RequestContext
    ) -> openai.ChatCompletionRequest: ...

    def map_generate(
        self, request: ollama.GenerateRequest, ctx: RequestContext
    ) -> openai.ChatCompletionRequest | openai.CompletionRequest: ...

    def map_embed(
        self, request: ollama.EmbedRequest, ctx: RequestContext
    ) -> openai.EmbeddingRequest: ...


@runtime_checkable
class Transport(Protocol):
    """Sends bytes to a backend and returns its answer. Shared by all requests."""

    async def send(
        self, request: UpstreamRequest, ctx: RequestContext
    ) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class StreamSession(Protocol):
    """Per-request stream state: OpenAI chunks in, Ollama chat chunks out.

    `feed` returns the chunks to write now (often none). `close` returns the
    trailing chunks, the last of which has `done: true`. Both see every answer in
    `ollama.ChatResponse` shape; `/api/generate` is rendered from it afterwards.
    """

    def feed(
        self, chunk: openai.ChatCompletionChunk
    ) -> Sequence[ollama.ChatResponse]: ...

    def close(self) -> Sequence[ollama.ChatResponse]: ...


class WholeAnswerSession(StreamSession, Protocol):
    """A `StreamSession` that can also fold an answer the client gets whole.

    Optional. When the client asked `stream: false` and the session that
    `open_stream` returned has `absorb`, the gateway calls `absorb` instead of
    `feed`, with the chunks of each upstream read in order (often the whole
    answer at once), and `close` must then return what the `feed` calls would
    have returned, in their order (it may join it into one chunk): the gateway
    joins the contents, thinking, tool calls and logprobs of all chunks either
    way. A wrapper session without `absorb` keeps getting every chunk through
    `feed`.
    """

    def absorb(self, chunks: Sequence[openai.ChatCompletionChunk]) -> None: ...


@runtime_checkable
class ResponseMapper(Protocol):
    """Turns backend answers into Ollama answers."""

    def open_stream(self, ctx: RequestContext) -> StreamSession: ...

    def map_embed(
        self, response: openai.EmbeddingResponse, ctx: RequestContext
    ) -> ollama.EmbedResponse: ...
