"""`keep_alive` as Ollama reads it: seconds as a number, or a Go duration string.

The parser follows Go's `time.ParseDuration` grammar and error texts exactly,
because clients show these 400 messages to people.
"""

from __future__ import annotations

import math
from typing import Any

from ollama_gateway.errors import InvalidRequestError

__all__ = ["FOREVER", "parse_go_duration", "parse_keep_alive"]

FOREVER = math.inf

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 micro sign
    "μs": 1e-6,  # U+03BC Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_keep_alive(value: Any) -> float | None:
    """Seconds to keep the model listed in `/api/ps`; None means the default.

    Any negative value means forever, as in Ollama.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidRequestError("Unsupported type: 'bool'")
    if isinstance(value, int | float):
        return FOREVER if value < 0 else float(value)
    if isinstance(value, str):
        seconds = parse_go_duration(value)
        return FOREVER if seconds < 0 else seconds
    go_type = "map[string]interface {}" if isinstance(value, dict) else "[]interface {}"
    raise InvalidRequestError(f"Unsupported type: '{go_type}'")


def parse_go_duration(text: str) -> float:
    """Parse `[-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+` into seconds, as Go does."""
    original = text
    negative = False
    if text[:1] in ("-", "+"):
        negative = text[0] == "-"
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise _invalid(original)
    total = 0.0
    while text:
        if not (text[0] == "." or text[0].isascii() and text[0].isdigit()):
            raise _invalid(original)
        number, text = _leading_number(text, original)
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
        total += number * _UNITS[unit]
    return -total if negative else total


def _leading_number(text: str, original: str) -> tuple[float, str]:
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
    return float(f"{whole or '0'}.{fraction or '0'}"), text[end:]


def _is_digit(char: str) -> bool:
    return "0" <= char <= "9"


def _invalid(original: str) -> InvalidRequestError:
    return InvalidRequestError(f"time: invalid duration {_quote(original)}")


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
