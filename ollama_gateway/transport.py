"""The transports that speak HTTP to backends.

`Http1Transport` (the default, `openai-http`) sends through our lean HTTP/1.1
pool (`http1/`). `AiohttpTransport` (`openai-aiohttp`) sends through one
pooled aiohttp ClientSession; `map_client_errors` is where aiohttp's
exceptions become the gateway's. Both fail with the same errors and texts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager

import aiohttp

from ollama_gateway.context import RequestContext
from ollama_gateway.errors import (
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from ollama_gateway.http1 import UNEXPECTED_EOF, Http1Pool, Http1Response
from ollama_gateway.protocols import UpstreamRequest

__all__ = [
    "AiohttpResponse",
    "AiohttpTransport",
    "Http1Transport",
    "map_client_errors",
]


@contextmanager
def map_client_errors(*, started: bool = False) -> Iterator[None]:
    """Turn aiohttp and timeout errors into `UpstreamError`s.

    `started` says the response had begun: a lost connection then is a broken
    stream, not an unreachable backend.
    """
    try:
        yield
    except (aiohttp.ClientConnectorError, aiohttp.ClientSSLError) as exc:
        raise UpstreamConnectError(f"upstream unavailable: {_reason(exc)}") from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamTimeoutError("upstream timeout") from exc
    except aiohttp.ClientError as exc:
        if started:
            raise UpstreamProtocolError(UNEXPECTED_EOF) from exc
        # Not a connect failure: the backend may have the request already, so
        # this must never be retried or failed over (it could generate twice).
        raise UpstreamProtocolError(
            f"upstream failed before answering: {_reason(exc)}"
        ) from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return (
            f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc}"
        )
    return str(exc) or type(exc).__name__


class AiohttpResponse:
    """An upstream answer read through aiohttp."""

    __slots__ = ("_resp",)

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp

    @property
    def status(self) -> int:
        return self._resp.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._resp.headers

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        return _BodyPieces(self._resp.content)

    async def aread(self) -> bytes:
        with map_client_errors(started=True):
            return await self._resp.read()

    async def aclose(self) -> None:
        # release() keeps a finished connection for reuse; close() drops one whose
        # body was not read to the end, so the backend sees the request end.
        if self._resp.content.at_eof():
            self._resp.release()
        else:
            self._resp.close()


class _BodyPieces:
    """The body as it arrives, one `readany()` per step.

    A class, not an async generator: a generator left unfinished (a reader
    stops at `[DONE]`, before the connection's EOF) is closed by the loop's
    finalizer hook, which costs a self-pipe wake-up per request.
    """

    __slots__ = ("_content",)

    def __init__(self, content: aiohttp.StreamReader) -> None:
        self._content = content

    def __aiter__(self) -> _BodyPieces:
        return self

    async def __anext__(self) -> bytes:
        try:
            piece = await self._content.readany()
        except (aiohttp.ClientError, TimeoutError):
            # Mapped only when raised: a context manager entered per read
            # was a visible share of a streamed chunk's cost.
            with map_client_errors(started=True):
                raise
        if not piece:
            raise StopAsyncIteration
        return piece


class AiohttpTransport:
    """Sends requests over one shared ClientSession, created on first use.

    The pool has no connection cap: every open stream needs its own connection,
    and a cap would queue streams behind each other.
    """

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()

    async def send(
        self, request: UpstreamRequest, ctx: RequestContext
    ) -> AiohttpResponse:
        session = self._session or await self._open()
        backend = request.backend
        headers = {
            "Content-Type": "application/json",
            **backend.headers,
            **request.headers,
        }
        if backend.api_key and "Authorization" not in request.headers:
            headers["Authorization"] = f"Bearer {backend.api_key}"
        url = backend.base_url.rstrip("/") + request.path
        connect = request.connect_timeout or None
        with map_client_errors():
            resp = await session.request(
                request.method,
                url,
                data=request.body or None,
                headers=headers,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=connect,
                    connect=connect,
                ),
            )
        return AiohttpResponse(resp)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _open(self) -> aiohttp.ClientSession:
        async with self._lock:
            if self._session is None:
                connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
                self._session = aiohttp.ClientSession(
                    connector=connector,
                    auto_decompress=True,
                    skip_auto_headers=("User-Agent",),
                )
            return self._session


class Http1Transport:
    """Sends requests over our HTTP/1.1 keep-alive pool, created on first use
    (it belongs to the running loop). No connection cap, as above."""

    def __init__(self) -> None:
        self._pool: Http1Pool | None = None

    async def send(
        self, request: UpstreamRequest, ctx: RequestContext
    ) -> Http1Response:
        pool = self._pool
        if pool is None:
            pool = self._pool = Http1Pool()
        backend = request.backend
        headers = {
            "Content-Type": "application/json",
            **backend.headers,
            **request.headers,
        }
        if backend.api_key and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = f"Bearer {backend.api_key}"
        return await pool.request(
            request.method,
            backend.base_url,
            request.path,
            headers,
            request.body,
            connect_timeout=request.connect_timeout or None,
        )

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None
