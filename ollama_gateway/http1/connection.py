"""One keep-alive connection to a backend, as an asyncio protocol."""

from __future__ import annotations

import asyncio
import zlib
from typing import TYPE_CHECKING, cast

from ollama_gateway.errors import UpstreamProtocolError
from ollama_gateway.http1.response import Http1Response

if TYPE_CHECKING:
    from ollama_gateway.http1.pool import Http1Pool

__all__ = ["Connection"]


class Connection(asyncio.BufferedProtocol):
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
        self.idle_limit = pool.keepalive_for(key)
        self._buf = bytearray()
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance() check: uvloop's transports do not subclass asyncio's.
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._pool.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        # The bytes are copied out before the next read reuses the buffer.
        response = self.response
        if response is not None and response._sink is not None and not self._buf:
            # A read handed on as it comes (a streamed answer's callback
            # path): one whole chunk skips the buffer (see feed_one_chunk).
            data = self._pool.read_buffer[:nbytes].tobytes()
            if not response._done and response.feed_one_chunk(data):
                return
            self.data_received(data)
            return
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
