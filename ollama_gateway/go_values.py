"""Values as Go's `%#v` prints them: the form of Ollama's /api/show `parameters`.

Ollama writes each parameter as `fmt.Sprintf("%-*s %#v", 30, name, value)`,
its values as JSON decodes them into Go: a string Go-quoted (`strconv.Quote`:
`\\t`, `\\x00`, `\\u00a0`, not JSON's `\\u0009`), a number in its shortest form
with an exponent from 1e+06 on or below 1e-04 (`1`, not `1.0`; `1e-05`),
`true`, `<nil>`. Clients read these lines back (Continue its `num_ctx` and
`stop` ones, with the quotes taken off as Go put them).
"""

from __future__ import annotations

import math
from decimal import Decimal

__all__ = ["go_repr"]

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def go_repr(value: object) -> str:
    """`value` (as a JSON decoder gives it) in Go's `%#v` form.

    An int keeps all its digits, as Go prints one of its integer types: Go's
    JSON numbers are floats, so Ollama shows a `num_ctx` of 1048576 as
    1.048576e+06, which clients that parse the line as an integer (Continue)
    read as 1; backends' contexts reach a million tokens."""
    if isinstance(value, str):
        return _go_quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if value is None:
        return "<nil>"
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(map(_go_element, value)) + "}"
    if isinstance(value, dict):
        pairs = (f"{_go_quote(k)}:{_go_element(v)}" for k, v in sorted(value.items()))
        return "map[string]interface {}{" + ", ".join(pairs) + "}"
    return _go_quote(str(value))


def _go_element(value: object) -> str:
    # A nil inside a list or map is printed with its type.
    return "interface {}(nil)" if value is None else go_repr(value)


def _go_quote(text: str) -> str:
    # Go's IsPrint and Python's isprintable leave out the same characters
    # (Unicode's Other and Separator, but the ASCII space).
    if text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    out = []
    for char in text:
        escaped = _ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char.isprintable():
            out.append(char)
        elif char < " " or char == "\x7f":
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def _go_float(value: float) -> str:
    """strconv's 'g' with the shortest digits, as `%v` asks: an exponent of
    at least two digits when the number's own is below -4 or from 6 on."""
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)  # finite
    minus = "-" if sign else ""
    point = len(digits) + exponent - 1  # the power of ten of the first digit
    if point < -4 or point >= 6:
        text = "".join(map(str, digits))
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{minus}{mantissa}e{'-' if point < 0 else '+'}{abs(point):02d}"
    return minus + format(Decimal((0, digits, exponent)), "f")
