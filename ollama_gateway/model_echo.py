"""The model name the client asked for, in the `model` fields of a relayed answer.

Ollama's `/v1` routes answer with the name the request gave (`gpt-4o:latest`,
an alias), not the id of whatever ran it; the relay passes the backend's bytes
on, which name its own id (`gpt-4o`, or a snapshot, `gpt-4o-2024-08-06`). An
`Echo` is made only when the two names differ, so an answer whose request
named the backend's id is relayed without any of this work.
"""

from __future__ import annotations

import re

import msgspec

__all__ = ["Echo"]

# A `model` field: text inside a JSON string is escaped (`\"model\"`), so
# only an object's own key matches. Runs of plain characters, not one
# alternation a character: a third of the time on a chunk.
_FIELD = re.compile(
    rb'"model"[ \t\r\n]{0,16}:[ \t\r\n]{0,16}"[^"\\]{0,512}(?:\\.[^"\\]{0,64}){0,8}"'
)
_LONGEST = 1100  # bytes enough for any match of `_FIELD` (1082)
# An unended line held back in a stream: past this, it goes on as it came.
_LINE_LIMIT = 64 * 1024


class Echo:
    """Rewrites the `model` fields of an answer relayed piece by piece.

    In an event stream every event has one; each piece goes on up to its last
    line end, and the unended rest is held for the next (a field cut between
    two pieces is then seen whole). A backend's pieces end with their events,
    so nothing waits in the common case. A whole JSON answer has one, perhaps
    after its content (llama.cpp's server sorts its keys): what may still hold
    the start of one is kept back until it is found, then the rest goes on.
    """

    __slots__ = ("_field", "_found", "_rest", "_stream")

    def __init__(self, name: str, stream: bool) -> None:
        self._field = b'"model":' + msgspec.json.encode(name)
        self._stream = stream
        self._rest = b""
        self._found = False

    def feed(self, piece: bytes) -> bytes:
        """What of `piece` (and of what was held) goes on now."""
        if self._found:
            return piece
        if self._rest:
            piece = self._rest + piece
            self._rest = b""
        if self._stream:
            cut = piece.rfind(b"\n") + 1
            if cut < len(piece) and len(piece) - cut <= _LINE_LIMIT:
                piece, self._rest = piece[:cut], piece[cut:]
            return _FIELD.sub(self._field, piece)
        renamed, count = _FIELD.subn(self._field, piece, count=1)
        if count:
            self._found = True
            return renamed
        if len(piece) <= _LONGEST:
            self._rest = piece
            return b""
        self._rest = piece[-_LONGEST:]
        return piece[:-_LONGEST]

    def flush(self) -> bytes:
        """What was held, at the answer's end."""
        rest, self._rest = self._rest, b""
        return _FIELD.sub(self._field, rest, count=0 if self._stream else 1)
