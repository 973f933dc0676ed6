"""The aiohttp transport: one pooled ClientSession, and the one place where
aiohttp's exceptions become the gateway's (`map_client_errors`)."""

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
from ollama_gateway.protocols import UpstreamRequest

__all__ = ["AiohttpResponse", "AiohttpTransport", "map_client_errors"]

UNEXPECTED_EOF = "an error was encountered while running the model: unexpected EOF"


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

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        content = self._resp.content
        while True:
            try:
                piece = await content.readany()
            except (aiohttp.ClientError, TimeoutError):
                # Mapped only when raised: a context manager entered per read
                # was a visible share of a streamed chunk's cost.
                with map_client_errors(started=True):
                    raise
            if not piece:
                return
            yield piece

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
