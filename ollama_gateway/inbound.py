"""Reading inbound JSON bodies the way Ollama does (spec 1.1).

The body is JSON whatever the Content-Type says (`curl -d` sends a form type).
Empty is `missing request body`, `null` is an empty request, and anything that
does not decode is a 400 with the decoder's message. A `null` where a string is
required reads as the field's zero value, as Go's decoder does for Ollama
(`"model": null` is `"model is required"`, not a type error). Text that Go's
decoder reads as U+FFFD (bytes that are not UTF-8, a lone surrogate escape) is
read as U+FFFD here too, not refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from ollama_gateway.errors import InvalidRequestError
from ollama_gateway.go_decode import GoRequest, go_decode_error
from ollama_gateway.go_text import go_strings
from ollama_gateway.keys import settings_key

__all__ = ["TOO_DEEP", "read_body"]

T = TypeVar("T")

# Go's decoder stops at 10000 levels with this; msgspec at Python's recursion limit.
TOO_DEEP = "exceeded max depth"
_MAX_NULLS = 8
_NULL_AT = re.compile(r"Expected `[^`]*`, got `null` - at `\$((?:\.\w+|\[\d+\])+)`")
_STEP = re.compile(r"\.(\w+)|\[(\d+)\]")


async def read_body(
    request: web.Request, decode: Callable[[bytes], T], go: GoRequest | None = None
) -> T:
    """Decode the request body with a typed msgspec decoder; `go` names the
    Ollama struct it stands for, whose refusals are then worded as Go's."""
    body = await _read(request)
    stripped = body.strip()
    if not stripped:
        raise InvalidRequestError("missing request body")
    if stripped == b"null":
        stripped = b"{}"
    try:
        return _decode(decode, stripped, go)
    except msgspec.DecodeError as exc:
        repaired = go_strings(stripped)
        if repaired is None:
            raise InvalidRequestError(_worded(str(exc), go)) from None
    try:
        return _decode(decode, repaired, go)
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(_worded(str(exc), go)) from None


def _worded(message: str, go: GoRequest | None) -> str:
    """Go's words for a refused body where they are known, else msgspec's."""
    worded = go_decode_error(message, go) if go is not None else None
    return worded or message


def _decode(decode: Callable[[bytes], T], stripped: bytes, go: GoRequest | None) -> T:
    """Decode, or raise `InvalidRequestError`; `msgspec.DecodeError` (JSON that
    does not parse) is left to the caller."""
    try:
        return decode(stripped)
    except msgspec.ValidationError as exc:
        first = exc
    except RecursionError:
        raise InvalidRequestError(TOO_DEEP) from None
    # Only a rejected body gets here: retry it without the nulls that Go
    # would have read as zero values (bounded: a few such fields at most).
    error: msgspec.ValidationError = first
    if _NULL_AT.fullmatch(str(first)) is None:
        raise InvalidRequestError(_describe(str(first), go)) from None
    try:
        data: Any = msgspec.json.decode(stripped)
        for _ in range(_MAX_NULLS):
            if not _drop_null(data, str(error)):
                break
            try:
                return decode(msgspec.json.encode(data))
            except msgspec.ValidationError as exc:
                error = exc
    except RecursionError:
        raise InvalidRequestError(TOO_DEEP) from None
    # (A `DecodeError` above: the typed decoder stopped at the null before it
    # met the bad JSON; it goes to the caller as any other.) What is refused
    # once the nulls are gone is what Go refuses too.
    raise InvalidRequestError(_describe(str(error), go)) from None


async def _read(request: web.Request) -> bytes:
    """The body, bounded by `[limits] max_body_bytes` (413 beyond it).

    Not `request.read()`: that keeps the bytes on the request for its whole
    life, so a streamed answer to a long conversation would hold the raw
    conversation until its last line.
    """
    limit = request.app[settings_key].limits.max_body_bytes
    pieces: list[bytes] = []
    size = 0
    while piece := await request.content.readany():
        size += len(piece)
        if limit and size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        pieces.append(piece)
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _describe(message: str, go: GoRequest | None) -> str:
    # "Expected `bool | null`, got `str` - at `$.stream`" reads better as
    # "invalid value for stream: expected bool | null, got str" (where Go's
    # words for an Ollama struct are not known).
    if go is not None and (worded := go_decode_error(message, go)) is not None:
        return worded
    text, sep, path = message.rpartition(" - at ")
    if not sep:
        if message.startswith("Expected `object`"):
            return f"request body must be a JSON object: {message.replace('`', '')}"
        return message.replace("`", "")
    field = path.strip("`").removeprefix("$.").removeprefix("$")
    text = text.replace("`", "")
    return f"invalid value for {field}: {text[:1].lower()}{text[1:]}"


def _drop_null(data: Any, message: str) -> bool:
    """Remove the `null` the decoder refused (at the path its message names)
    from `data`; False when the message is about something else."""
    found = _NULL_AT.fullmatch(message)
    if found is None:
        return False
    steps = [(key, index) for key, index in _STEP.findall(found.group(1))]
    parent: Any = data
    for key, index in steps[:-1]:
        try:
            parent = parent[key] if key else parent[int(index)]
        except (KeyError, IndexError, TypeError):
            return False
    key, _ = steps[-1]
    if not key or not isinstance(parent, dict) or parent.get(key, 0) is not None:
        return False
    del parent[key]
    return True
