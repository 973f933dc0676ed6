"""`keep_alive` as Ollama reads it: seconds as a number, or a Go duration string.

The parser follows Go's `time.ParseDuration` grammar and error texts exactly,
because clients show these 400 messages to people.
"""

from __future__ import annotations

import math
from typing import Any

from ollama_gateway.errors import InvalidRequestError

__all__ = [
    "FOREVER",
    "parse_default_keep_alive",
    "parse_go_duration",
    "parse_keep_alive",
]

FOREVER = math.inf

# Nanoseconds per unit: Go adds up a duration in integer nanoseconds, and one
# past what an int64 holds (about 2,562,047 hours) is an invalid duration.
_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_LIMIT = 1 << 63


def parse_keep_alive(value: Any) -> float | None:
    """Seconds to keep the model listed in `/api/ps`; None means the default.

    Any negative value means forever, as in Ollama.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidRequestError("Unsupported type: 'bool'")
    if isinstance(value, int | float):
        if value < 0:
            return FOREVER
        try:
            seconds = float(value)
        except OverflowError:
            # An integer past any float64, which Go's decoder refuses, as
            # msgspec refuses such a number written with an exponent.
            raise InvalidRequestError(
                "invalid value for keep_alive: number out of range"
            ) from None
        # Go makes it whole nanoseconds, truncating: less than one is zero,
        # an unload (a load with any other keep_alive).
        return seconds if seconds * 1e9 >= 1 else 0.0
    if isinstance(value, str):
        seconds = parse_go_duration(value)
        return FOREVER if seconds < 0 else seconds
    go_type = "map[string]interface {}" if isinstance(value, dict) else "[]interface {}"
    raise InvalidRequestError(f"Unsupported type: '{go_type}'")


def parse_default_keep_alive(value: str) -> float | None:
    """`OLLAMA_KEEP_ALIVE` (and `server.default_keep_alive`) as Ollama's
    envconfig reads it: a Go duration, else whole seconds. `-1` (keep models
    forever, as Ollama's FAQ has it) and `3600` stopped the start as "missing
    unit", which only a request's `keep_alive` string gets."""
    text = value.strip()
    digits = text[1:] if text.startswith(("+", "-")) else text
    if digits.isascii() and digits.isdigit():
        return parse_keep_alive(int(text))
    return parse_keep_alive(text)


def parse_go_duration(text: str) -> float:
    """Parse `[-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+` into seconds, as Go does,
    overflow included."""
    original = text
    negative = False
    if text[:1] in ("-", "+"):
        negative = text[0] == "-"
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise _invalid(original)
    total = 0
    while text:
        if not (text[0] == "." or text[0].isascii() and text[0].isdigit()):
            raise _invalid(original)
        whole, fraction, text = _leading_number(text, original)
        end = 0
        while end < len(text) and text[end] != "." and not _is_digit(text[end]):
            end += 1
        if end == 0:
            raise InvalidRequestError(
                f"time: missing unit in duration {_quote(original)}"
            )
        unit, text = text[:end], text[end:]
        if unit not in _UNITS:
            raise InvalidRequestError(
                f"time: unknown unit {_quote(unit)} in duration {_quote(original)}"
            )
        scale = _UNITS[unit]
        # Go's checks, in its order: the whole part, then with the fraction,
        # then the running total may reach 2**63 (only a negative one keeps it).
        whole = whole.lstrip("0")
        # Over 19 digits is past 2**63 (and `int()` refuses thousands of them).
        whole_value = int(whole or "0") if len(whole) <= 19 else _LIMIT + 1
        if whole_value > _LIMIT // scale:
            raise _invalid(original)
        value = whole_value * scale
        if fraction:
            digits, divisor = _fraction(fraction)
            value += int(digits * (scale / divisor))
            if value > _LIMIT:
                raise _invalid(original)
        total += value
        if total > _LIMIT:
            raise _invalid(original)
    if not negative and total > _LIMIT - 1:
        raise _invalid(original)
    seconds = total / 1e9
    return -seconds if negative else seconds


def _leading_number(text: str, original: str) -> tuple[str, str, str]:
    """The digits before and after the point, and the rest."""
    end = 0
    while end < len(text) and _is_digit(text[end]):
        end += 1
    whole = text[:end]
    fraction = ""
    if end < len(text) and text[end] == ".":
        start = end + 1
        end = start
        while end < len(text) and _is_digit(text[end]):
            end += 1
        fraction = text[start:end]
    if not whole and not fraction:
        raise _invalid(original)
    return whole, fraction, text[end:]


def _fraction(digits: str) -> tuple[int, float]:
    """Go's `leadingFraction`: the digits while they fit in an int64, and the
    power of ten they are over; later digits only lose precision."""
    value, divisor = 0, 1.0
    for char in digits:
        if value > (_LIMIT - 1) // 10:
            break
        value = value * 10 + ord(char) - 48
        divisor *= 10
    return value, divisor


def _is_digit(char: str) -> bool:
    return "0" <= char <= "9"


def _invalid(original: str) -> InvalidRequestError:
    return InvalidRequestError(f"time: invalid duration {_quote(original)}")


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
