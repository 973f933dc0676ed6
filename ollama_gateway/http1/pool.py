"""The pool: where a request goes, which connection carries it, name lookups."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import math
import select
import socket
import ssl
from collections import deque
from collections.abc import Mapping
from typing import Final
from urllib.parse import unquote, urlsplit

from ollama_gateway.errors import (
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from ollama_gateway.http1.connection import Connection
from ollama_gateway.http1.response import BEFORE_ANSWER, Http1Response

__all__ = ["DNS_TTL", "KEEPALIVE", "PLAIN_KEEPALIVE", "READ_BUFFER", "Http1Pool"]

# The size of the one buffer all of a pool's connections read into.
READ_BUFFER: Final = 256 * 1024
# How long a host name's addresses are used before they are looked up again.
DNS_TTL = 60.0
# Idle keep-alive connections older than this are closed, not reused (as
# aiohttp's default): a server may have dropped them meanwhile.
KEEPALIVE: Final = 15.0
# The same over plain HTTP, where the backend is most often a server of open
# models on the same machine or network: uvicorn (vLLM, LiteLLM, most Python
# servers) and llama.cpp's server close a connection idle for 5 s, and say so
# in no header. Reused until 15 s, one was now and then written to just as the
# server closed it: the request failed (a 502), and it cannot be sent again
# (the server may have read it). Reconnecting there costs a TCP handshake;
# over TLS a handshake costs more, and hosted APIs keep connections longer.
PLAIN_KEEPALIVE: Final = 4.0


def _has_authorization(headers: Mapping[str, str]) -> bool:
    return any(name.lower() == "authorization" for name in headers)


class _Target:
    """What one base URL resolves to, worked out once."""

    __slots__ = (
        "authorization",
        "base_path",
        "host",
        "host_header",
        "key",
        "literal",
        "port",
    )

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UpstreamConnectError(f"upstream unavailable: bad backend URL {url!r}")
        tls = parts.scheme == "https"
        self.host = parts.hostname
        try:
            port = parts.port
        except ValueError:
            raise UpstreamConnectError(
                f"upstream unavailable: bad port in backend URL {url!r}"
            ) from None
        self.port = port or (443 if tls else 80)
        name = f"[{self.host}]" if ":" in self.host else self.host
        default = (tls and self.port == 443) or (not tls and self.port == 80)
        self.host_header = name if default else f"{name}:{self.port}"
        self.base_path = parts.path.rstrip("/")
        try:
            ipaddress.ip_address(self.host)
            self.literal = True
        except ValueError:
            self.literal = False  # a name, to look up (see Http1Pool._addresses)
        self.key = (self.host, self.port, tls)
        self.authorization = ""
        if parts.username is not None:
            user = unquote(parts.username)
            password = unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self.authorization = f"Basic {token}"


class Http1Pool:
    """Keep-alive connections to backends, most recently used first, with no
    cap on their number: every open stream needs its own connection."""

    def __init__(self, *, keepalive: float = KEEPALIVE) -> None:
        self.loop = asyncio.get_running_loop()
        self.keepalive = keepalive
        self._idle: dict[tuple[str, int, bool], deque[Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._open: set[Connection] = set()
        # Closes idle connections whose time is up when no request comes to
        # retire them (see `_release`); armed while any connection is idle.
        self._sweep: asyncio.TimerHandle | None = None
        self._ssl: ssl.SSLContext | None = None
        # (host, port) -> (expiry, lookup): a name is resolved once per DNS_TTL
        # for all new connections (concurrent ones share the lookup), as
        # aiohttp's resolver cache did, not once per connection.
        self._dns: dict[tuple[str, int], tuple[float, asyncio.Task[list[str]]]] = {}
        # Every connection reads into this, one read at a time (see Connection).
        self.read_buffer = memoryview(bytearray(READ_BUFFER))

    def keepalive_for(self, key: tuple[str, int, bool]) -> float:
        """How long a connection to `key` may idle before it is not reused."""
        tls = key[2]
        return self.keepalive if tls else min(self.keepalive, PLAIN_KEEPALIVE)

    def target(self, base_url: str) -> _Target:
        target = self._targets.get(base_url)
        if target is None:
            target = self._targets[base_url] = _Target(base_url)
        return target

    async def request(
        self,
        method: str,
        base_url: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        connect_timeout: float | None,
    ) -> Http1Response:
        """Send one request and return once the status and headers are in."""
        target = self.target(base_url)
        lines = [
            f"{method} {target.base_path}{path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
        ]
        if target.authorization and not _has_authorization(headers):
            lines.append(f"Authorization: {target.authorization}\r\n")
        for name, value in headers.items():
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
                raise UpstreamProtocolError(
                    f"{BEFORE_ANSWER}: a header to send contains a line break"
                )
            lines.append(f"{name}: {value}\r\n")
        if body or method not in ("GET", "HEAD"):
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("Accept-Encoding: identity\r\n\r\n")
        head = "".join(lines).encode("utf-8")
        conn = self._idle_connection(target.key)
        if conn is None:
            conn = await self._connect(target, connect_timeout)
        response = Http1Response(conn, no_body=method == "HEAD")
        conn.response = response
        assert conn.transport is not None
        conn.transport.write(head + body if body else head)
        try:
            assert response._head is not None
            await response._head
        except BaseException:
            conn.response = None
            conn.close()
            raise
        response._head = None
        return response

    async def aclose(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in list(self._open):
            conn.close()
        self._idle.clear()
        self._open.clear()
        # Let the transports finish closing before the loop may stop.
        await asyncio.sleep(0)

    def _forget(self, conn: Connection) -> None:
        self._open.discard(conn)

    def _idle_connection(self, key: tuple[str, int, bool]) -> Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = self.loop.time()
        while idle:
            conn = idle.pop()  # the most recently used: least likely dropped
            transport = conn.transport
            if (
                conn.closed
                or transport is None
                or transport.is_closing()
                or conn.expires < now
                or _readable(transport)
            ):
                self._retire(conn)
                continue
            return conn
        return None

    def _release(self, conn: Connection) -> None:
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = deque()
        idle.append(conn)
        # Retire what expired at the old end, so a quiet pool does not keep
        # connections open forever.
        now = self.loop.time()
        while idle and (idle[0].closed or idle[0].expires < now):
            self._retire(idle.popleft())
        if self._sweep is None:
            self._sweep = self.loop.call_at(conn.expires, self._sweep_idle)

    def _sweep_idle(self) -> None:
        """The idle connections' timer: close those that expired, though no
        request came to retire them, so a pool that went quiet does not keep
        its busiest moment's connections open; then wait for the next expiry."""
        self._sweep = None
        now = self.loop.time()
        soonest = math.inf
        for key, idle in self._idle.items():
            kept: deque[Connection] = deque()
            for conn in idle:
                if conn.closed or conn.expires <= now:
                    self._retire(conn)
                else:
                    kept.append(conn)
                    soonest = min(soonest, conn.expires)
            self._idle[key] = kept
        if soonest < math.inf:
            self._sweep = self.loop.call_at(soonest, self._sweep_idle)

    def _retire(self, conn: Connection) -> None:
        conn.close()
        self._open.discard(conn)

    async def _connect(
        self, target: _Target, connect_timeout: float | None
    ) -> Connection:
        host, port, tls = target.key
        context: ssl.SSLContext | None = None
        if tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(connect_timeout):
                conn = await self._open_connection(target, context)
        except TimeoutError:
            raise UpstreamTimeoutError("upstream timeout") from None
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise UpstreamConnectError(
                f"upstream unavailable: cannot connect to {host}:{port}: {reason}"
            ) from exc
        self._open.add(conn)
        return conn

    async def _open_connection(
        self, target: _Target, context: ssl.SSLContext | None
    ) -> Connection:
        """Connect to the first of the target's addresses that answers."""
        host, port, tls = target.key
        addresses = [host] if target.literal else await self._addresses(host, port)
        failure: OSError | None = None
        for address in addresses:
            try:
                _, conn = await self.loop.create_connection(
                    lambda: Connection(self, target.key),
                    address,
                    port,
                    ssl=context,
                    server_hostname=host if tls else None,
                )
                return conn
            except OSError as exc:
                failure = exc
        # None answered: look the name up again next time.
        self._dns.pop((host, port), None)
        assert failure is not None
        raise failure

    async def _addresses(self, host: str, port: int) -> list[str]:
        key = (host, port)
        entry = self._dns.get(key)
        if entry is None or entry[0] < self.loop.time():
            lookup = self.loop.create_task(self._lookup(host, port))
            # Retrieved here even when every waiter was cancelled meanwhile.
            lookup.add_done_callback(_retrieve)
            entry = self._dns[key] = (self.loop.time() + DNS_TTL, lookup)
        try:
            # Shielded: a waiter that gives up does not cancel the others' lookup.
            return await asyncio.shield(entry[1])
        except OSError:
            if self._dns.get(key) is entry:
                del self._dns[key]  # a failed lookup is not kept
            raise

    async def _lookup(self, host: str, port: int) -> list[str]:
        infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _readable(transport: asyncio.Transport) -> bool:
    """Whether an idle connection has something to read: the server's close
    (or bytes nobody asked for) that the loop has not read yet. Such a
    connection is not used: a request written to it would fail unanswered
    though the server never saw it. One poll per reuse, as urllib3 does."""
    sock = transport.get_extra_info("socket")
    fd = sock.fileno() if sock is not None else -1
    if fd < 0:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _retrieve(task: asyncio.Task[list[str]]) -> None:
    if not task.cancelled():
        task.exception()
