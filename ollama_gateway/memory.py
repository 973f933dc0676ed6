"""In-memory upstream answers, for transports that answer without a network."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping

import msgspec

__all__ = ["MemoryResponse"]


class MemoryResponse:
    """An `UpstreamResponse` whose body comes from bytes or an async iterable.

    Example:

        MemoryResponse.json(200, {"data": []})
        MemoryResponse(200, body=paced_sse_events(), headers=SSE_HEADERS)
    """

    def __init__(
        self,
        status: int,
        body: bytes | Iterable[bytes] | AsyncIterable[bytes] = b"",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._status = status
        self._headers = dict(headers or {})
        self._body = body
        self.closed = False

    @classmethod
    def json(cls, status: int, data: object) -> MemoryResponse:
        headers = {"Content-Type": "application/json"}
        return cls(status, msgspec.json.encode(data), headers)

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        body = self._body
        if isinstance(body, bytes):
            if body:
                yield body
        elif isinstance(body, AsyncIterable):
            async for piece in body:
                yield piece
        else:
            for piece in body:
                yield piece

    async def aread(self) -> bytes:
        return b"".join([piece async for piece in self.aiter_bytes()])

    async def aclose(self) -> None:
        self.closed = True
        body = self._body
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()
