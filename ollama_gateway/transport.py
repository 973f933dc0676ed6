"""The transports that speak HTTP to backends.

`Http1Transport` (the default, `openai-http`) sends through our lean HTTP/1.1
pool (`http1/`). `AiohttpTransport` (`openai-aiohttp`) sends through one
pooled aiohttp ClientSession; `map_client_errors` is where aiohttp's
exceptions become the gateway's. Both fail with the same errors and texts.

Both honour the proxy the environment sets for a backend (`proxy.py`); the
default transport hands a proxied backend's requests to aiohttp's client,
which speaks to proxies (CONNECT tunnels included) where our pool does not."""

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
from ollama_gateway.proxy import Proxy, proxy_for

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
    except aiohttp.ClientHttpProxyError as exc:
        # The proxy said no to the tunnel: the backend never saw the request.
        raise UpstreamConnectError(
            f"upstream unavailable: the proxy refused: {exc.status} {exc.message}"
        ) from exc
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

    def __init__(self, routes: _Routes | None = None) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()
        self._routes = routes or _Routes()

    async def send(
        self, request: UpstreamRequest, ctx: RequestContext
    ) -> AiohttpResponse:
        session = self._session or await self._open()
        backend = request.backend
        proxy = self._routes.proxy(backend.base_url)
        headers = {
            "Content-Type": "application/json",
            **backend.headers,
            **request.headers,
        }
        if backend.api_key and "Authorization" not in request.headers:
            headers["Authorization"] = f"Bearer {backend.api_key}"
        url = backend.base_url.rstrip("/") + request.path
        connect = request.connect_timeout or None
        tunnel: dict[str, str] | None = None
        if proxy is not None and (proxy.login or proxy.password):
            credentials = aiohttp.encode_basic_auth(proxy.login, proxy.password)
            if url.startswith("https:"):
                tunnel = {"Proxy-Authorization": credentials}  # on the CONNECT
            else:
                headers["Proxy-Authorization"] = credentials  # the proxy reads it
        with map_client_errors():
            resp = await session.request(
                request.method,
                url,
                data=request.body or None,
                headers=headers,
                proxy=proxy.url if proxy else None,
                proxy_headers=tunnel,
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
    (it belongs to the running loop). No connection cap, as above. A backend
    the environment puts behind a proxy is sent to through `AiohttpTransport`."""

    def __init__(self) -> None:
        self._pool: Http1Pool | None = None
        self._routes = _Routes()
        self._proxied: AiohttpTransport | None = None

    async def send(
        self, request: UpstreamRequest, ctx: RequestContext
    ) -> Http1Response | AiohttpResponse:
        backend = request.backend
        if self._routes.proxy(backend.base_url) is not None:
            if self._proxied is None:
                # The same routes: the proxy is worked out once per backend.
                self._proxied = AiohttpTransport(self._routes)
            return await self._proxied.send(request, ctx)
        pool = self._pool
        if pool is None:
            pool = self._pool = Http1Pool()
        headers = _outbound_headers(backend.headers, request.headers)
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
        if self._proxied is not None:
            await self._proxied.aclose()
            self._proxied = None
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None


def _outbound_headers(
    configured: Mapping[str, str], own: Mapping[str, str]
) -> dict[str, str]:
    """The JSON type, the backend's configured headers, then the request's
    own (its id, the client's key, a plugin's), each name sent once in
    whatever case it is spelled: the later wins. (Merged as plain dicts,
    `authorization` from a backend's table and the client's `Authorization`
    both went out.)"""
    headers = {"Content-Type": "application/json"}
    spelled = {"content-type": "Content-Type"}  # lower case -> the name kept
    for extra in (configured, own):
        for name, value in extra.items():
            lowered = name.lower()
            previous = spelled.get(lowered)
            if previous is not None and previous != name:
                del headers[previous]
            spelled[lowered] = name
            headers[name] = value
    return headers


_UNKNOWN = Proxy("")


class _Routes:
    """Each backend URL's proxy (None: direct), worked out at its first
    request: the environment is the process's, set before it starts."""

    __slots__ = ("_found",)

    def __init__(self) -> None:
        self._found: dict[str, Proxy | None] = {}

    def proxy(self, base_url: str) -> Proxy | None:
        found = self._found.get(base_url, _UNKNOWN)
        if found is _UNKNOWN:
            # Raises for a proxy we cannot use; not kept, so each request says so.
            found = self._found[base_url] = proxy_for(base_url)
        return found
