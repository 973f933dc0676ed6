"""Checks of Ollama request fields whose errors Ollama words in its own way.

Each function takes the loosely decoded value and returns a typed one, or raises
the `GatewayError` with the status and text that Ollama gives (spec 1.7-1.9).
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import msgspec

from ollama_gateway.errors import InvalidRequestError, OptionsError

__all__ = [
    "Think",
    "check_format",
    "check_images",
    "check_message_count",
    "check_options",
    "check_think",
    "check_top_logprobs",
    "options_object",
]

Think = bool | Literal["low", "medium", "high", "max"] | None

THINK_LEVELS = ("high", "medium", "low", "max")

# Only the options Ollama's server knows are type-checked. The client-only keys
# (mirostat, tfs_z, numa, use_mlock, ...) are unknown to it and ignored there
# whatever their type (spec 1.7), so they are not checked here either.
_INT_OPTIONS = frozenset(
    "num_keep seed num_predict top_k repeat_last_n num_ctx num_batch num_gpu "
    "main_gpu num_thread draft_num_predict".split()
)
_FLOAT_OPTIONS = frozenset(
    "temperature top_p min_p typical_p repeat_penalty presence_penalty "
    "frequency_penalty".split()
)
_BOOL_OPTIONS = frozenset(["use_mmap"])
_MIN_INT64 = -(2**63)
_ALPHABET = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)
_NEWLINES = frozenset(b"\r\n")
_PAD = ord("=")


def check_think(value: Any) -> Think:
    """`think`: a bool or a level (spec 1.8)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value in THINK_LEVELS:
            return value  # type: ignore[return-value]
        raise InvalidRequestError(
            f'invalid think value: "{value}" (must be "high", "medium", "low", '
            '"max", true, or false)'
        )
    raise InvalidRequestError(
        'think must be a boolean or string ("high", "medium", "low", "max", true, '
        "or false)"
    )


def check_format(value: Any) -> Literal["json"] | dict[str, Any] | None:
    """`format`: "json", a JSON Schema object, or nothing (spec 1.9).

    Ollama raises the error at inference time, so it is a pre-stream 500.
    """
    if value is None or value == "":
        return None
    if value == "json" or isinstance(value, dict):
        return value  # type: ignore[no-any-return]
    raw = msgspec.json.encode(value).decode()
    quoted = '"' + raw.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise OptionsError(
        f'invalid format: {quoted}; expected "json" or a valid JSON Schema object'
    )


def check_message_count(messages: list[Any] | None, limit: int) -> None:
    """At most `limits.max_messages` (0: no cap); checked before any is mapped."""
    if limit and messages is not None and len(messages) > limit:
        raise InvalidRequestError(
            f"too many messages: {len(messages)}, the most is {limit} "
            "(limits.max_messages)"
        )


def check_top_logprobs(value: int | None) -> int:
    if value is None:
        return 0
    if not 0 <= value <= 20:
        raise InvalidRequestError("top_logprobs must be between 0 and 20")
    return value


def check_options(value: Any) -> dict[str, Any]:
    """`options` with Ollama's type rules; nulls skipped, unknown keys kept.

    Integers accept any number and truncate it. A bare string `stop` is wrapped
    in a list (a documented leniency: Ollama answers 500).
    """
    return {
        key: _check_option(key, item) for key, item in options_object(value).items()
    }


def options_object(value: Any) -> dict[str, Any]:
    """`options` as sent, without its nulls; a 400 when it is no object."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        # Worded as the typed decoder words every other wrong field type.
        got = "array" if isinstance(value, list) else type(value).__name__
        raise InvalidRequestError(
            f"invalid value for options: expected object | null, got {got}"
        )
    return {key: item for key, item in value.items() if item is not None}


def _check_option(key: str, item: Any) -> Any:
    is_number = isinstance(item, int | float) and not isinstance(item, bool)
    if key in _INT_OPTIONS:
        if not is_number:
            raise OptionsError(f'option "{key}" must be of type integer')
        return _go_int(item)
    if key in _FLOAT_OPTIONS:
        if not is_number:
            raise OptionsError(f'option "{key}" must be of type float32')
        try:
            return float(item)
        except OverflowError:
            # An integer past any float64: Go's decoder refuses the body, as
            # msgspec refuses such a number written with an exponent.
            raise InvalidRequestError(
                "invalid value for options[...]: number out of range"
            ) from None
    if key in _BOOL_OPTIONS:
        if not isinstance(item, bool):
            raise OptionsError(f'option "{key}" must be of type boolean')
        return item
    if key == "stop":
        if isinstance(item, str):
            return [item]
        if not isinstance(item, list):
            raise OptionsError('option "stop" must be of type array')
        if not all(isinstance(s, str) for s in item):
            raise OptionsError('option "stop" must be of an array of strings')
        return item
    return item


def _go_int(number: float) -> int:
    """An integer option as Ollama's server gets it: every JSON number is a
    float64 there, made an int64 by truncation, and one out of the int64
    range (2**63-1 included, as `sys.maxsize` sends it) comes out as the
    smallest int64 on amd64: a negative, so unset (`num_predict` unlimited,
    `seed` random), not a 300-digit number that backends refuse."""
    if type(number) is int and -(2**53) <= number <= 2**53:
        return number  # the common case: exact as a float64 too
    try:
        as_float = float(number)
    except OverflowError:  # an integer beyond any float64
        return _MIN_INT64
    if not -(2.0**63) <= as_float < 2.0**63:
        return _MIN_INT64
    return int(as_float)


def check_images(images: list[str] | None) -> list[bytes]:
    """Decode base64 images as Go's StdEncoding does; newlines are tolerated."""
    if not images:
        return []
    return [_decode_image(image) for image in images]


def _decode_image(text: str) -> bytes:
    data = text.encode()
    corrupt_at = _go_corrupt_at(data)
    if corrupt_at is not None:
        raise InvalidRequestError(f"illegal base64 data at input byte {corrupt_at}")
    return base64.b64decode(data.replace(b"\r", b"").replace(b"\n", b""))


def _go_corrupt_at(src: bytes) -> int | None:
    """Where Go's `base64.StdEncoding.Decode` reports corrupt input, or None.

    A port of Go's `decodeQuantum`, so the byte offsets in the 400 match
    Ollama's; newlines are skipped wherever they appear.
    """
    si, end = 0, len(src)
    while si < end:
        j = 0
        while j < 4:
            if si == end:
                return None if j == 0 else si - j
            char = src[si]
            si += 1
            if char in _ALPHABET:
                j += 1
                continue
            if char in _NEWLINES:
                continue
            if char != _PAD or j < 2:
                return si - 1
            if j == 2:
                si = _skip_newlines(src, si)
                if si == end:
                    return end
                if src[si] != _PAD:
                    return si - 1
                si += 1
            si = _skip_newlines(src, si)
            return si if si < end else None
    return None


def _skip_newlines(src: bytes, si: int) -> int:
    while si < len(src) and src[si] in _NEWLINES:
        si += 1
    return si
