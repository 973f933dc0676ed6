"""A bound on the wait for a request body: a body that stops coming is a 408.

aiohttp bounds the request head itself (its keep-alive timer, which is
`timeouts.request_head`), but nothing bounds the body: a handler reading a
`Content-Length: 1000` body of which 10 bytes came waits for the rest forever,
holding the connection and the handler.
"""

from __future__ import annotations

from aiohttp import web

from ollama_gateway.errors import RequestTimeoutError

__all__ = ["BodyWatch"]


class BodyWatch:
    """Answers 408 when a request body goes `idle` seconds without a byte.

    One timer per request, not per piece: it wakes once per `idle` seconds and
    looks whether any byte came since it last looked. So a body that stops is
    cut after `idle` to `2 * idle` seconds of silence, and one that keeps
    coming, however slowly, is never cut. Only a request whose body is still
    arriving when its handler starts is watched; small bodies come with their
    head and cost nothing.

    The cut fails the handler's pending read with `RequestTimeoutError`, so
    no upstream request is made with a part of a body, and tells aiohttp to
    close the connection after the answer: the rest of the body is not read.
    """

    __slots__ = ("_content", "_handle", "_idle", "_loop", "_protocol", "_seen")

    def __init__(self, request: web.Request, idle: float) -> None:
        self._content = request.content
        self._protocol = request.protocol
        self._idle = idle
        self._seen = self._content.total_raw_bytes
        self._loop = request.task.get_loop()
        self._handle = self._loop.call_later(idle, self._look)

    def cancel(self) -> None:
        self._handle.cancel()

    def _look(self) -> None:
        content = self._content
        if content.is_eof():
            return
        seen = content.total_raw_bytes
        if seen != self._seen:
            self._seen = seen
            self._handle = self._loop.call_later(self._idle, self._look)
            return
        # Closing first makes aiohttp drop what the client may still send, so
        # the end of the body below is never fed more data.
        self._protocol.close()
        content.set_exception(
            RequestTimeoutError(
                f"request body timeout: no data for {self._idle:g} seconds"
            )
        )
        # Nothing is left to read: aiohttp does not linger over the rest.
        content.feed_eof()
