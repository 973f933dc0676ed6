"""Incremental SSE splitter: byte pieces in, the `data` payload of each event out.

It works over `iter_any()` pieces of any size, so events split mid-line or
mid-UTF-8 character, `\\r\\n` endings and several events per read are all fine.
There is no line-length limit of its own, only `max_event_bytes`, which bounds
the memory one unfinished event may take. Comments (`:`) and `event:`, `id:`,
`retry:` lines are skipped. Payloads stay bytes: UTF-8 is decoded only by the
JSON decoder, once the whole event is in.

One non-standard field is read: llama.cpp's server (builds up to its fix of
September 2025, ggml-org/llama.cpp#16109) reported a failure mid-stream as an
`error: {...}` line, then `data: [DONE]`. An event with such a line and no
`data` becomes the payload `{"error": ...}`, so it fails the stream like any
in-band error instead of passing for a normal end. Only events that are not a
lone `data: ` line take the slow path where this is looked at.
"""

from __future__ import annotations

import msgspec

from ollama_gateway.errors import UpstreamProtocolError

__all__ = ["SSEParser"]

_BOM = b"\xef\xbb\xbf"
# Byte values, for `in`: CPython first tries a bytes needle as an integer,
# and raises and clears an exception for it, which costs six times the search
# of a short read (an int needle goes straight to the search).
_CR = 0x0D
_LF = 0x0A


class SSEParser:
    """Split a byte stream into event payloads.

    Example:

        parser = SSEParser(max_event_bytes=1 << 20)
        for piece in pieces:
            for payload in parser.feed(piece):
                ...
        tail = parser.finish()
    """

    __slots__ = ("_cr", "_max", "_pending", "_pending_len")

    def __init__(self, max_event_bytes: int = 16 * 1024 * 1024) -> None:
        self._max = max_event_bytes
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._cr = False

    def feed(self, data: bytes) -> list[bytes]:
        """Return the payloads of the events that `data` completes."""
        if not data:
            return []
        if self._cr or _CR in data:
            data = self._normalise(data)
        pending = self._pending
        if (
            not pending
            and data[:6] == b"data: "
            and data.find(b"\n") == len(data) - 2
            and data[-1:] == b"\n"
            and len(data) - 2 <= self._max
        ):
            return [data[6:-2]]  # the common read: one whole one-line event
        if (
            not pending
            and data[:6] == b"data: "
            and data[-2:] == b"\n\n"
            and len(data) <= self._max
        ):
            # A read of whole one-line events (a burst): split in C. Every
            # newline must be a separator; else (comments, `event:` lines,
            # multi-line data) the general path below takes it.
            payloads = data[6:-2].split(b"\n\ndata: ")
            # Joined and searched in C: bytes.count of a newline is a slow loop.
            if _LF not in b"".join(payloads):
                return payloads
        if b"\n\n" not in data and not (
            pending and data[:1] == b"\n" and pending[-1][-1:] == b"\n"
        ):
            if data:
                pending.append(data)
                self._pending_len += len(data)
                if self._pending_len > self._max:
                    self._overflow()
            return []
        if pending:
            pending.append(data)
            data = b"".join(pending)
            pending.clear()
        blocks = data.split(b"\n\n")
        rest = blocks.pop()
        if rest:
            pending.append(rest)
        self._pending_len = len(rest)
        if self._pending_len > self._max:
            self._overflow()
        out = []
        for block in blocks:
            if len(block) > self._max:
                # A whole event in one read is as much over the cap as one in pieces.
                self._pending_len = len(block)
                self._overflow()
            if block[:6] == b"data: " and _LF not in block:
                out.append(block[6:])  # the common case: one `data: ` line
            else:
                payload = _payload(block)
                if payload is not None:
                    out.append(payload)
        return out

    def finish(self) -> list[bytes]:
        """At EOF: the payload of an event that lacked its closing blank line."""
        block = b"".join(self._pending)
        self._pending.clear()
        self._pending_len = 0
        payload = _payload(block.strip(b"\n"))
        return [] if payload is None else [payload]

    def _normalise(self, data: bytes) -> bytes:
        # A CR ends a line at once; an LF right after it (perhaps at the start of
        # the next piece) belongs to the same line ending and is dropped.
        if self._cr and data[:1] == b"\n":
            data = data[1:]
        self._cr = data[-1:] == b"\r"
        return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    def _overflow(self) -> None:
        size = self._pending_len
        self._pending.clear()
        self._pending_len = 0
        raise UpstreamProtocolError(
            f"upstream sent an SSE event larger than {self._max} bytes ({size}+)"
        )


def _payload(block: bytes) -> bytes | None:
    if block[:3] == _BOM:
        # A stream may open with a byte-order mark, which the SSE standard's
        # parser drops. Only this slow path sees it: the shortcuts above want
        # a block that starts with `data: `.
        block = block[3:]
    data: list[bytes] = []
    error: list[bytes] = []
    for line in block.split(b"\n"):
        if line[:5] == b"data:":
            value = line[5:]
            data.append(value[1:] if value[:1] == b" " else value)
        elif line[:6] == b"error:":
            value = line[6:]
            error.append(value[1:] if value[:1] == b" " else value)
    if data:
        return b"\n".join(data)
    if error:
        return _error_payload(b"\n".join(error))
    return None


def _error_payload(value: bytes) -> bytes:
    """The in-band error event for the value of an `error:` field: JSON is
    kept as it is, anything else becomes a JSON string."""
    try:
        decoded = msgspec.json.decode(value)
    except msgspec.DecodeError:
        decoded = None
    if decoded is None:  # not JSON, or a JSON null that would read as no error
        return msgspec.json.encode({"error": value.decode("utf-8", "replace")})
    return b'{"error":' + value + b"}"
