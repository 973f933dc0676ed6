"""One backend answer: its status line, headers and body, parsed as the bytes
arrive (`feed`), and handed to the consumer one piece per read."""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Final

from ollama_gateway.errors import UpstreamProtocolError

if TYPE_CHECKING:
    from ollama_gateway.http1.connection import Connection

__all__ = [
    "BEFORE_ANSWER",
    "DRAIN",
    "HIGH_WATER",
    "UNEXPECTED_EOF",
    "Headers",
    "Http1Response",
]

UNEXPECTED_EOF = "an error was encountered while running the model: unexpected EOF"
BEFORE_ANSWER = "upstream failed before answering"

# A status line and headers larger than this are not an HTTP answer we serve.
MAX_HEAD: Final = 64 * 1024
MAX_CHUNK_LINE: Final = 4096
# Body bytes buffered ahead of the consumer before the socket is paused.
HIGH_WATER: Final = 64 * 1024
# How long a connection is kept after its consumer has read the whole answer
# (`expect_end()`) but before the end of the body arrived: the chunked
# terminator usually follows the last event at once, and waiting for it lets
# the connection be reused instead of reconnecting (a TLS handshake, say).
DRAIN = 1.0

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
        "_sink",
        "_waiter",
        "headers",
        "reason",
        "status",
    )

    def __init__(self, conn: Connection, no_body: bool) -> None:
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
        self._decoder: _Decoder | None = None
        # A list, not a deque: a deque's first block is 600 bytes, kept by
        # every open stream.
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        # While set (see `attach`), each read's body bytes go to it at once,
        # from the connection's callback, instead of waiting for `__anext__`.
        self._sink: Callable[[bytes], None] | None = None
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
            if self._pieces:
                return self._take()
            if self._error is not None:
                raise self._error
            if self._done:
                raise StopAsyncIteration
            waiter = self._waiter = self._conn.loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def attach(self, sink: Callable[[bytes], None]) -> None:
        """Hand each read's body bytes to `sink` as they arrive, in the
        connection's callback, until `detach`. `sink` must not raise."""
        self._sink = sink

    def detach(self) -> None:
        self._sink = None

    async def wait(self) -> None:
        """Wait until `__anext__` would not wait: bytes the sink did not take,
        the end of the body, an error, or the sink detached."""
        if self._pieces or self._done or self._error is not None:
            return
        waiter = self._waiter = self._conn.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _take(self) -> bytes:
        """Everything that arrived since the last take, as one piece."""
        pieces = self._pieces
        piece = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()
        if self._buffered >= HIGH_WATER:
            self._conn.resume()
        self._buffered = 0
        return piece

    async def aread(self) -> bytes:
        return b"".join([piece async for piece in self])

    def ready(self) -> bool:
        """Whether the next `__anext__` returns (or raises) without waiting."""
        return bool(self._pieces) or self._done or self._error is not None

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
        if self._decoder is not None and self._draining is None:
            tail = self._decoder.flush()  # raises for a body cut short
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
        sink = self._sink
        if sink is not None and self._pieces and self._error is None:
            sink(self._take())
            if self._sink is not None and not self._done and not self._pieces:
                return  # the sink took it all and goes on: nobody to wake
        self._wake()

    def feed_one_chunk(self, data: bytes) -> bool:
        """A paced stream's usual read, while a sink is attached: exactly one
        whole, plain chunk (`<hex size>\\r\\n<data>\\r\\n`) and nothing before
        or after it, handed to the sink without the buffer, the state machine
        and the piece list that `feed` goes through (a sixth of the
        instructions of a paced read's callback). False, with nothing
        consumed, for anything else: the caller then gives `data` to `feed`,
        which handles every other case (split chunks, several chunks,
        extensions, the last chunk, gzip)."""
        sink = self._sink
        if (
            sink is None
            or self._framing != _CHUNKED
            or self._chunk_state != _SIZE
            or self._pieces
            or self._error is not None
            or self._decoder is not None
            or self._draining is not None
        ):
            return False
        # The size the read must say if it is one chunk, compared with its
        # size line as text (cheaper than parsing it): a size line written
        # otherwise (upper case, leading zeros, an extension) takes `feed`.
        end = data.find(b"\r\n")
        stop = len(data) - 2
        length = stop - end - 2
        # Below HIGH_WATER: `feed` would pause the socket for a larger piece
        # and resume it as the sink takes it (a no-op, but not skipped here).
        if (
            end <= 0
            or length <= 0
            or length >= HIGH_WATER
            or data[:end] != b"%x" % length
            or data[stop:] != b"\r\n"
        ):
            return False
        sink(data[end + 2 : stop])
        # As `feed` ends: wake a waiting task when the sink detached.
        if self._sink is None or self._done or self._pieces:
            self._wake()
        return True

    def _parse_head(self, buf: bytearray) -> bool:
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(buf[:end]).decode("latin-1")
                status_line, _, rest = head.partition("\r\n")
                lines = rest.split("\r\n") if rest else []
                count = len(lines)
                if (
                    head.count("\n") == count
                    and head.count("\r") == count
                    and "\x00" not in head
                ):
                    del buf[: end + 4]
                else:
                    # A bare LF or CR, or a NUL, somewhere: the careful way.
                    status_line, lines = _lenient_head(buf)
                    rest = "\r\n".join(lines)
            elif _BLANK_LINE.search(buf) is not None:
                status_line, lines = _lenient_head(buf)  # a head ended by bare LFs
                rest = "\r\n".join(lines)
            else:
                if len(buf) > MAX_HEAD:
                    raise UpstreamProtocolError(
                        f"{BEFORE_ANSWER}: response headers too large"
                    )
                return False
            version, _, status_reason = status_line.partition(" ")
            code, _, reason = status_reason.partition(" ")
            if (
                not version.startswith("HTTP/1.")
                or len(code) != 3
                or not code.isascii()
                or not code.isdigit()
            ):
                raise UpstreamProtocolError(
                    f"{BEFORE_ANSWER}: not an HTTP/1.x status line: {status_line[:80]!r}"
                )
            status = int(code)
            if status == 101:
                # Never asked for (no Upgrade is sent): what follows is no HTTP.
                raise UpstreamProtocolError(
                    f"{BEFORE_ANSWER}: the server switched protocols unasked"
                )
            if 100 <= status < 200:
                continue  # an interim answer (100 Continue, 103 Early Hints)
            fields: dict[str, str] = {}
            for line in lines:
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
        sender = self._head
        # Done already if the sender was cancelled in this same loop turn.
        if sender is not None and not sender.done():
            sender.set_result(None)
        return True

    def _frame(self, version: str, status: int, fields: dict[str, str]) -> None:
        connection = fields.get("connection", "").lower()
        self._keep_alive = version == "HTTP/1.1" and "close" not in connection
        announced = fields.get("keep-alive")
        if announced is not None:
            self._conn.announce(announced)
        encoding = fields.get("content-encoding", "identity").lower().strip()
        if encoding in ("gzip", "x-gzip"):
            self._decoder = _Decoder(gzip=True)
        elif encoding == "deflate":
            self._decoder = _Decoder(gzip=False)
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
                if length is not None:
                    # Both framings (RFC 9112 6.3): chunked wins, and the
                    # connection is not reused, in case some hop on the way
                    # framed it by the length (response splitting).
                    self._keep_alive = False
            else:
                self._framing, self._keep_alive = _UNTIL_CLOSE, False
        elif length is not None:
            values = {v.strip() for v in length.split(",")}
            value = values.pop()
            if values or not value.isascii() or not value.isdigit():
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
        ended = False
        state = self._chunk_state
        left = self._chunk_left
        if state == _SIZE:
            # The usual read: whole chunks, one or more. Taken here without the
            # state machine; anything else (a split chunk, extensions, the last
            # chunk and its trailers, an error) is left to the loop below.
            while True:
                end = buf.find(b"\n", pos)
                if end <= pos or buf[end - 1] != 0x0D:  # a CRLF-ended size line
                    break
                try:
                    length = int(buf[pos : end - 1], 16)
                except ValueError:
                    break
                stop = end + 1 + length
                if length <= 0 or buf[stop : stop + 2] != b"\r\n":
                    break
                parts.append(bytes(buf[end + 1 : stop]))
                pos = stop + 2
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
                    ended = True
                    break
        del buf[:pos]
        self._chunk_state = state
        self._chunk_left = left
        if parts:
            self._push(parts[0] if len(parts) == 1 else b"".join(parts))
        if ended:
            # After the last data: a decoder's tail comes after what it decoded.
            self._finish()

    def connection_lost(self) -> None:
        if self._draining is not None:
            self._draining.cancel()
            self._draining = None
            self._conn.response = None
        if self._done or self._error is not None:
            return
        if self._headed and self._framing == _UNTIL_CLOSE:
            try:
                self._finish()
            except (ValueError, zlib.error) as exc:
                self._fail(UpstreamProtocolError(f"upstream sent a bad body: {exc}"))
                return
            self._wake()
        elif self._headed:
            self._fail(UpstreamProtocolError(UNEXPECTED_EOF))
        else:
            # The backend may have had the request: never retried or failed over.
            self._fail(
                UpstreamProtocolError(f"{BEFORE_ANSWER}: the connection was closed")
            )


# The end of a head whose lines may end in a bare LF (RFC 9112 2.2 lets a
# recipient take LF as a line's end): the slow path, for heads that are not
# plain CRLF.
_BLANK_LINE: Final = re.compile(rb"\r?\n\r?\n")
_LINE_END: Final = re.compile(r"\r?\n")


def _lenient_head(buf: bytearray) -> tuple[str, list[str]]:
    """The status line and header lines of a head with bare-LF line ends (or
    a bare CR or NUL, refused): the head is taken from `buf`."""
    found = _BLANK_LINE.search(buf)
    assert found is not None
    head = bytes(buf[: found.start()]).decode("latin-1")
    del buf[: found.end()]
    lines = _LINE_END.split(head)
    for line in lines:
        if "\r" in line or "\x00" in line:
            # A bare CR or a NUL (RFC 9110 5.5: refuse or replace with SP).
            raise UpstreamProtocolError(
                f"{BEFORE_ANSWER}: invalid header line {line[:80]!r}"
            )
    return lines[0], lines[1:]


class _Decoder:
    """A gzip or deflate body's decoder (the slow path: we ask for identity).

    A gzip body may be several members one after the other (RFC 1952), as
    `gzip -d` takes them: each is decoded, not just the first. A deflate body
    is zlib data (RFC 9110 8.4.1.2), or raw deflate as some servers send it,
    told apart by its first two bytes, as browsers and aiohttp do. Bytes after
    a deflate stream's end, a gzip member that is no gzip, or a body that ends
    inside its compressed stream are errors, not dropped.
    """

    __slots__ = ("_fed", "_gzip", "_start", "_zlib")

    def __init__(self, *, gzip: bool) -> None:
        self._gzip = gzip
        self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
        self._start = b""  # a deflate body's first byte, until its second comes
        self._fed = False

    def decompress(self, data: bytes) -> bytes:
        self._fed = True
        decoder = self._zlib
        if decoder is None:
            data = self._start + data
            if len(data) < 2:
                self._start = data
                return b""
            self._start = b""
            wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            bits = zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS
            decoder = self._zlib = zlib.decompressobj(bits)
        out = decoder.decompress(data)
        while decoder.eof and decoder.unused_data:
            rest = decoder.unused_data
            if not self._gzip:
                raise ValueError("data after the end of the deflate stream")
            decoder = self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += decoder.decompress(rest)
        return out

    def flush(self) -> bytes:
        decoder = self._zlib
        if decoder is None:
            tail = b""
        else:
            tail = decoder.flush()
        if self._fed and (decoder is None or not decoder.eof):
            raise ValueError("the compressed body is cut short")
        return tail
