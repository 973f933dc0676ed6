"""A lean HTTP/1.1 client for talking to backends: keep-alive pool, one
`write()` per request, responses parsed in `data_received`.

Why our own: a backend request through aiohttp's ClientSession cost more CPU
than the rest of a short request put together (a request object, a response
object, a payload writer task, cookie and trace machinery), and held
~10 KiB per open stream. What a backend call needs is small: POST a body we
already have as bytes, read a status, headers and a body that is
Content-Length, chunked or close-delimited. The body is handed over as it
arrives, one piece per socket read (all chunks of a read joined), with flow
control: reading pauses while the consumer is behind.

Errors are the gateway's own (`UpstreamConnectError` and so on), with the texts
the aiohttp transport gave, so either transport fails the same way.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import ssl
import zlib
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Final, cast
from urllib.parse import unquote, urlsplit

from ollama_gateway.errors import (
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)

__all__ = ["Headers", "Http1Pool", "Http1Response", "UNEXPECTED_EOF"]

UNEXPECTED_EOF = "an error was encountered while running the model: unexpected EOF"
BEFORE_ANSWER = "upstream failed before answering"

# A status line and headers larger than this are not an HTTP answer we serve.
MAX_HEAD: Final = 64 * 1024
MAX_CHUNK_LINE: Final = 4096
# The size of the one buffer all of a pool's connections read into.
READ_BUFFER: Final = 256 * 1024
# Body bytes buffered ahead of the consumer before the socket is paused.
HIGH_WATER: Final = 64 * 1024
# How long a connection is kept after its consumer has read the whole answer
# (`expect_end()`) but before the end of the body arrived: the chunked
# terminator usually follows the last event at once, and waiting for it lets
# the connection be reused instead of reconnecting (a TLS handshake, say).
DRAIN = 1.0
# How long a host name's addresses are used before they are looked up again.
DNS_TTL = 60.0
# Idle keep-alive connections older than this are closed, not reused (as
# aiohttp's default): a server may have dropped them meanwhile.
KEEPALIVE: Final = 15.0

# Body framing of a response.
_LENGTH, _CHUNKED, _UNTIL_CLOSE = 0, 1, 2
# States of the chunked decoder.
_SIZE, _DATA, _DATA_END, _TRAILER = 0, 1, 2, 3


class Headers(Mapping[str, str]):
    """Response headers, looked up case-insensitively; repeated fields are
    joined with ", ".

    Kept as the raw header block and searched on lookup: an open stream is
    asked for one or two headers in all, and a backend like OpenAI sends a
    dozen and more, which as a dict would cost every stream 2 KiB.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: str) -> None:
        self._raw = raw  # "Name: value" lines joined by CRLF, already checked

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        key = name.lower()
        found: str | None = None
        for line in self._lines():
            field, _, value = line.partition(":")
            if field.lower() == key:
                value = value.strip()
                found = value if found is None else f"{found}, {value}"
        return default if found is None else found

    def __iter__(self) -> Iterator[str]:
        return iter(
            dict.fromkeys(line.partition(":")[0].lower() for line in self._lines())
        )

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"Headers({dict(self)!r})"

    def _lines(self) -> list[str]:
        return self._raw.split("\r\n") if self._raw else []


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


class Http1Response:
    """One backend answer. Iterate it (or `aread()`) for the body; always
    `aclose()` it: a finished body gives the connection back to the pool, an
    unfinished one closes it, so the backend sees the request end."""

    __slots__ = (
        "_buffered",
        "_chunk_left",
        "_chunk_state",
        "_conn",
        "_decoder",
        "_done",
        "_draining",
        "_ended",
        "_error",
        "_framing",
        "_head",
        "_headed",
        "_keep_alive",
        "_left",
        "_no_body",
        "_pieces",
        "_waiter",
        "headers",
        "reason",
        "status",
    )

    def __init__(self, conn: _Connection, no_body: bool) -> None:
        self._conn = conn
        self._no_body = no_body
        # Resolved when the status and headers are in; dropped once the
        # sender has them (`_headed` says they are).
        self._head: asyncio.Future[None] | None = conn.loop.create_future()
        self._headed = False
        self.status = 0
        self.reason = ""
        self.headers = Headers("")
        self._framing = _LENGTH
        self._left = 0
        self._chunk_state = _SIZE
        self._chunk_left = 0
        self._keep_alive = True
        self._decoder: zlib._Decompress | None = None
        # A list, not a deque: a deque's first block is 600 bytes, kept by
        # every open stream.
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._done = False
        self._error: Exception | None = None
        # The consumer has what it wanted (`expect_end`); while the rest of the
        # body is awaited after `aclose()`, `_draining` is the give-up timer.
        self._ended = False
        self._draining: asyncio.TimerHandle | None = None

    # -- the consumer's side ---------------------------------------------------

    def aiter_bytes(self) -> Http1Response:
        return self

    def __aiter__(self) -> Http1Response:
        return self

    async def __anext__(self) -> bytes:
        while True:
            pieces = self._pieces
            if pieces:
                # Everything that arrived since the last step, as one piece.
                piece = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                pieces.clear()
                if self._buffered >= HIGH_WATER:
                    self._conn.resume()
                self._buffered = 0
                return piece
            if self._error is not None:
                raise self._error
            if self._done:
                raise StopAsyncIteration
            waiter = self._waiter = self._conn.loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    async def aread(self) -> bytes:
        return b"".join([piece async for piece in self])

    def expect_end(self) -> None:
        """The consumer has read all of the answer it needs (an SSE stream's
        `[DONE]`): `aclose()` may then wait, without blocking, for the end of
        the body and keep the connection."""
        self._ended = True

    async def aclose(self) -> None:
        conn = self._conn
        if conn.response is not self or self._draining is not None:
            return
        if (
            self._ended
            and not self._done
            and self._error is None
            and self._keep_alive
            and self._framing != _UNTIL_CLOSE
        ):
            # The end of the body is on its way: wait for it in the background
            # (data that still comes is dropped), or close after DRAIN.
            self._pieces.clear()
            self._buffered = 0
            conn.resume()
            self._draining = conn.loop.call_later(DRAIN, self._stop_draining)
            return
        conn.response = None
        if self._done and self._error is None and self._keep_alive:
            conn.release()
        else:
            if not self._done and self._error is None:
                # A read waiting in another task must not wait forever.
                self._fail(UpstreamProtocolError(UNEXPECTED_EOF))
            conn.close()

    # -- the connection's side -------------------------------------------------

    def _fail(self, error: Exception) -> None:
        self._error = error
        head = self._head
        if head is not None and not head.done():
            head.set_exception(error)
            # Retrieved by the sender unless it was cancelled meanwhile.
            head.exception()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _stop_draining(self) -> None:
        """Drain over: the connection is released if the body ended, closed
        otherwise."""
        if self._draining is not None:
            self._draining.cancel()
            self._draining = None
        conn = self._conn
        if conn.response is not self:
            return
        conn.response = None
        if self._done and self._error is None and self._keep_alive:
            conn.release()
        else:
            conn.close()

    def _settle(self) -> None:
        """After a read: a draining answer whose body ended gives its
        connection back (the buffer is clean by now)."""
        if self._done and self._draining is not None:
            self._stop_draining()

    def _push(self, piece: bytes) -> None:
        if self._draining is not None:
            return  # nobody reads any more
        if self._decoder is not None:
            piece = self._decoder.decompress(piece)
            if not piece:
                return
        self._pieces.append(piece)
        self._buffered += len(piece)
        if self._buffered >= HIGH_WATER:
            self._conn.pause()

    def _finish(self) -> None:
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self._pieces.append(tail)
        self._done = True

    def feed(self, buf: bytearray) -> None:
        """Consume what it can of `buf` (the connection's unparsed bytes)."""
        if not self._headed:
            if not self._parse_head(buf):
                return
        if not self._done and buf:
            if self._framing == _CHUNKED:
                self._parse_chunks(buf)
            elif self._framing == _LENGTH:
                take = min(self._left, len(buf))
                self._push(bytes(buf[:take]))
                del buf[:take]
                self._left -= take
                if not self._left:
                    self._finish()
            else:
                self._push(bytes(buf))
                buf.clear()
        self._wake()

    def _parse_head(self, buf: bytearray) -> bool:
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise UpstreamProtocolError(
                        f"{BEFORE_ANSWER}: response headers too large"
                    )
                return False
            head = bytes(buf[:end]).decode("latin-1")
            del buf[: end + 4]
            status_line, _, rest = head.partition("\r\n")
            version, _, status_reason = status_line.partition(" ")
            code, _, reason = status_reason.partition(" ")
            if (
                not version.startswith("HTTP/1.")
                or len(code) != 3
                or not code.isdigit()
            ):
                raise UpstreamProtocolError(
                    f"{BEFORE_ANSWER}: not an HTTP/1.x status line: {status_line[:80]!r}"
                )
            status = int(code)
            if 100 <= status < 200:
                continue  # an interim answer (100 Continue, 103 Early Hints)
            fields: dict[str, str] = {}
            for line in rest.split("\r\n") if rest else ():
                name, colon, value = line.partition(":")
                if not colon or not name or name != name.strip():
                    raise UpstreamProtocolError(
                        f"{BEFORE_ANSWER}: invalid header line {line[:80]!r}"
                    )
                key = name.lower()
                value = value.strip()
                fields[key] = f"{fields[key]}, {value}" if key in fields else value
            break
        self.status = status
        self.reason = reason
        self.headers = Headers(rest)
        self._frame(version, status, fields)
        self._headed = True
        if self._head is not None:
            self._head.set_result(None)
        return True

    def _frame(self, version: str, status: int, fields: dict[str, str]) -> None:
        connection = fields.get("connection", "").lower()
        self._keep_alive = version == "HTTP/1.1" and "close" not in connection
        announced = fields.get("keep-alive")
        if announced is not None:
            self._conn.announce(announced)
        encoding = fields.get("content-encoding", "identity").lower().strip()
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj()
        elif encoding not in ("identity", ""):
            raise UpstreamProtocolError(
                f"{BEFORE_ANSWER}: unsupported content encoding {encoding!r}"
            )
        transfer = fields.get("transfer-encoding")
        length = fields.get("content-length")
        if self._no_body or status in (204, 304):
            self._framing, self._left = _LENGTH, 0
        elif transfer is not None:
            if transfer.lower().rsplit(",", 1)[-1].strip() == "chunked":
                self._framing = _CHUNKED
            else:
                self._framing, self._keep_alive = _UNTIL_CLOSE, False
        elif length is not None:
            values = {v.strip() for v in length.split(",")}
            value = values.pop()
            if values or not value.isdigit():
                raise UpstreamProtocolError(
                    f"{BEFORE_ANSWER}: invalid Content-Length {length[:40]!r}"
                )
            self._framing, self._left = _LENGTH, int(value)
        else:
            self._framing, self._keep_alive = _UNTIL_CLOSE, False
        if self._framing == _LENGTH and not self._left:
            self._finish()

    def _parse_chunks(self, buf: bytearray) -> None:
        # All chunk data of one read becomes one piece.
        parts: list[bytes] = []
        pos = 0
        size = len(buf)
        state = self._chunk_state
        left = self._chunk_left
        while pos < size:
            if state == _DATA:
                take = min(left, size - pos)
                parts.append(bytes(buf[pos : pos + take]))
                pos += take
                left -= take
                if not left:
                    state = _DATA_END
            elif state == _SIZE:
                end = buf.find(b"\n", pos)
                if end < 0:
                    if size - pos > MAX_CHUNK_LINE:
                        raise UpstreamProtocolError(UNEXPECTED_EOF)
                    break
                line = bytes(buf[pos:end]).split(b";", 1)[0].strip()
                pos = end + 1
                try:
                    left = int(line, 16)
                except ValueError:
                    raise UpstreamProtocolError(
                        f"upstream sent an invalid chunk size {line[:20]!r}"
                    ) from None
                if left < 0:
                    raise UpstreamProtocolError("upstream sent an invalid chunk size")
                state = _DATA if left else _TRAILER
            elif state == _DATA_END:
                end = buf.find(b"\n", pos)
                if end < 0:
                    if size - pos > 2:
                        raise UpstreamProtocolError("upstream sent a malformed chunk")
                    break
                if buf[pos:end].strip():
                    raise UpstreamProtocolError("upstream sent a malformed chunk")
                pos = end + 1
                state = _SIZE
            else:  # _TRAILER: header lines until an empty one
                end = buf.find(b"\n", pos)
                if end < 0:
                    if size - pos > MAX_HEAD:
                        raise UpstreamProtocolError("upstream sent oversized trailers")
                    break
                empty = not buf[pos:end].strip()
                pos = end + 1
                if empty:
                    self._finish()
                    break
        del buf[:pos]
        self._chunk_state = state
        self._chunk_left = left
        if parts:
            self._push(parts[0] if len(parts) == 1 else b"".join(parts))

    def connection_lost(self) -> None:
        if self._draining is not None:
            self._draining.cancel()
            self._draining = None
            self._conn.response = None
        if self._done or self._error is not None:
            return
        if self._headed and self._framing == _UNTIL_CLOSE:
            self._finish()
            self._wake()
        elif self._headed:
            self._fail(UpstreamProtocolError(UNEXPECTED_EOF))
        else:
            # The backend may have had the request: never retried or failed over.
            self._fail(
                UpstreamProtocolError(f"{BEFORE_ANSWER}: the connection was closed")
            )


class _Connection(asyncio.BufferedProtocol):
    """One keep-alive connection to a backend; serves one response at a time.

    A buffered protocol reading into the pool's one read buffer: a plain
    protocol gets a new bytes object per read, allocated at the transport's
    full read size (256 KiB) and then shrunk, for every streamed chunk.
    """

    def __init__(self, pool: Http1Pool, key: tuple[str, int, bool]) -> None:
        self.loop = pool.loop
        self._pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.response: Http1Response | None = None
        self.closed = False
        # When, idle, it stops being reused; how long it may idle (shorter
        # when the server announces its own keep-alive timeout).
        self.expires = 0.0
        self.idle_limit = pool.keepalive
        self._buf = bytearray()
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance() check: uvloop's transports do not subclass asyncio's.
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._pool.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        # The bytes are copied out before the next read reuses the buffer.
        self.data_received(self._pool.read_buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        response = self.response
        if response is None or response._done:
            self.close()  # bytes nobody asked for: the connection is unusable
            return
        buf = self._buf
        buf += data
        try:
            response.feed(buf)
            if not buf:
                # A fresh buffer: an emptied bytearray keeps its capacity, and
                # an open stream should hold nothing between reads.
                self._buf = bytearray()
            response._settle()
        except UpstreamProtocolError as exc:
            response._fail(exc)
            self.close()
        except (ValueError, zlib.error) as exc:
            response._fail(UpstreamProtocolError(f"upstream sent a bad body: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self._pool._forget(self)
        response = self.response
        if response is not None:
            response.connection_lost()

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def announce(self, keep_alive: str) -> None:
        """The server's `Keep-Alive: timeout=N`: stop reusing the connection
        well before the server drops it (a request sent just as it does would
        fail, and cannot be sent again)."""
        for part in keep_alive.split(","):
            name, _, value = part.partition("=")
            if name.strip().lower() == "timeout":
                try:
                    seconds = float(value.strip())
                except ValueError:
                    return
                margin = max(seconds - 1.0, seconds / 2)
                self.idle_limit = min(self._pool.keepalive, max(margin, 0.0))
                return

    def release(self) -> None:
        if self.closed or self._buf or self._paused:
            self.close()
            return
        self.expires = self.loop.time() + self.idle_limit
        self._pool._release(self)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Http1Pool:
    """Keep-alive connections to backends, most recently used first, with no
    cap on their number: every open stream needs its own connection."""

    def __init__(self, *, keepalive: float = KEEPALIVE) -> None:
        self.loop = asyncio.get_running_loop()
        self.keepalive = keepalive
        self._idle: dict[tuple[str, int, bool], deque[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._open: set[_Connection] = set()
        self._ssl: ssl.SSLContext | None = None
        # (host, port) -> (expiry, lookup): a name is resolved once per DNS_TTL
        # for all new connections (concurrent ones share the lookup), as
        # aiohttp's resolver cache did, not once per connection.
        self._dns: dict[tuple[str, int], tuple[float, asyncio.Task[list[str]]]] = {}
        # Every connection reads into this, one read at a time (see _Connection).
        self.read_buffer = memoryview(bytearray(READ_BUFFER))

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
        for conn in list(self._open):
            conn.close()
        self._idle.clear()
        self._open.clear()
        # Let the transports finish closing before the loop may stop.
        await asyncio.sleep(0)

    def _forget(self, conn: _Connection) -> None:
        self._open.discard(conn)

    def _idle_connection(self, key: tuple[str, int, bool]) -> _Connection | None:
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
            ):
                conn.close()
                self._open.discard(conn)
                continue
            return conn
        return None

    def _release(self, conn: _Connection) -> None:
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = deque()
        idle.append(conn)
        # Retire what expired at the old end, so a quiet pool does not keep
        # connections open forever.
        now = self.loop.time()
        while idle and (idle[0].closed or idle[0].expires < now):
            stale = idle.popleft()
            stale.close()
            self._open.discard(stale)

    async def _connect(
        self, target: _Target, connect_timeout: float | None
    ) -> _Connection:
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
    ) -> _Connection:
        """Connect to the first of the target's addresses that answers."""
        host, port, tls = target.key
        addresses = [host] if target.literal else await self._addresses(host, port)
        failure: OSError | None = None
        for address in addresses:
            try:
                _, conn = await self.loop.create_connection(
                    lambda: _Connection(self, target.key),
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


def _retrieve(task: asyncio.Task[list[str]]) -> None:
    if not task.cancelled():
        task.exception()
