"""A deterministic instance of a JSON Schema: tool arguments and demo-json answers.

Handled: `type` (also a list, or the Python client's `"integer, string"`),
`properties` (required and optional), `required`, `enum`, `const`, `default`,
`$ref` into the same document (`#/$defs/...`, `#/definitions/...`), `allOf`,
`anyOf`, `oneOf` (the first non-null branch), `items`, `prefixItems`, `minItems`,
`maxItems`, `uniqueItems`, `minProperties`, string `format`, `minLength`,
`maxLength`, and numeric bounds and `multipleOf`. `pattern` is not honoured.

Values are plausible for the property's name ("Paris" for a city, 21.5 for a
temperature); the seed picks among them, and array items differ by position.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from .demo_text import pick, variant

__all__ = ["instance"]

# Beyond this depth only required properties and minItems are generated, which
# ends recursive schemas (a tree whose `children` are trees).
_MAX_DEPTH = 5
_HARD_DEPTH = 32

_STRING_HINTS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("city", "location", "town", "place", "destination", "origin"),
     ("Paris", "Tokyo", "Lisbon", "Nairobi", "Montreal", "Sydney")),
    (("country",), ("France", "Japan", "Portugal", "Kenya", "Canada", "Australia")),
    (("email", "mail"), ("ada@example.com", "grace@example.com", "alan@example.com")),
    (("url", "link", "website", "homepage", "uri"),
     ("https://example.com", "https://example.org", "https://example.net")),
    (("lang",), ("en", "fr", "ja", "pt")),
    (("unit",), ("celsius", "fahrenheit")),
    (("colour", "color"), ("blue", "green", "red", "yellow")),
    (("currency",), ("EUR", "USD", "JPY")),
    (("date", "day"), ("2025-01-01", "2025-02-14", "2025-07-14")),
    (("timezone", "tz", "zone"), ("Europe/Paris", "Asia/Tokyo", "America/Toronto")),
    (("time",), ("12:00", "08:30", "18:45")),
    (("query", "search", "question", "prompt", "keyword"),
     ("weather in Paris", "best ramen in Tokyo", "tram 28 timetable")),
    (("name", "author", "user", "person"),
     ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson")),
    (("title", "subject", "headline"),
     ("A demo title", "Notes from the demo", "Hello, world")),
    (("description", "summary", "text", "content", "message", "body", "comment"),
     ("A short demo text.", "Everything is fine.", "Written by the demo backend.")),
    (("id", "key", "code"), ("demo-001", "demo-002", "demo-003")),
    (("path", "file"), ("/tmp/demo.txt", "/tmp/notes.md", "/tmp/data.csv")),
    (("status", "state"), ("active", "pending", "done")),
)  # fmt: skip
_WORDS = ("example", "sample", "demo", "placeholder", "value")

_FORMATS: dict[str, Callable[[int], str]] = {
    "date-time": lambda i: f"2025-01-{1 + i % 28:02d}T12:00:00Z",
    "date": lambda i: f"2025-01-{1 + i % 28:02d}",
    "time": lambda i: f"12:{i % 60:02d}:00Z",
    "email": lambda i: f"demo{i or ''}@example.com",
    "idn-email": lambda i: f"demo{i or ''}@example.com",
    "uri": lambda i: f"https://example.com/{i}",
    "iri": lambda i: f"https://example.com/{i}",
    "url": lambda i: f"https://example.com/{i}",
    "uri-reference": lambda i: f"/demo/{i}",
    "hostname": lambda i: f"host{i}.example.com",
    "ipv4": lambda i: f"192.0.2.{1 + i % 254}",
    "ipv6": lambda i: f"2001:db8::{1 + i % 65535:x}",
    "uuid": lambda i: f"00000000-0000-4000-8000-{i:012d}",
    "duration": lambda i: f"PT{1 + i}M",
}

_NUMBER_HINTS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("lat",), 48.8566),
    (("lon", "lng"), 2.3522),
    (("temp",), 21.5),
    (("year",), 2025),
    (("month",), 7),
    (("age",), 30),
    (("price", "amount", "cost", "total"), 9.99),
    (("percent", "ratio"), 50),
    (("rating", "score", "stars"), 4),
    (("count", "limit", "num", "number", "quantity", "max", "top", "size", "days"), 3),
)


def instance(schema: Any, *, seed: int | None = None, name: str = "") -> Any:
    """A value that validates against `schema` (within the limits above)."""
    return _Generator(schema, seed).value(schema, name, 0, 0)


class _Generator:
    def __init__(self, root: Any, seed: int | None) -> None:
        self.root = root
        self.seed = seed

    def value(self, schema: Any, name: str, depth: int, index: int) -> Any:
        if not isinstance(schema, dict):
            return self.string({}, name, index)  # `true` or `{}`: anything goes
        schema = self.resolve(schema, depth)
        if "const" in schema:
            return copy.deepcopy(schema["const"])
        if "default" in schema and index == 0:
            return copy.deepcopy(schema["default"])
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return copy.deepcopy(pick(enum, self.seed, f"enum:{name}", index))
        if isinstance(schema.get("allOf"), list):
            return self.value(self.merged(schema, depth), name, depth, index)
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                return self.value(self.branch(schema, key, depth), name, depth, index)
        kind = _type_of(schema)
        if depth >= _HARD_DEPTH:
            return {"object": {}, "array": []}.get(kind)
        if kind == "object":
            return self.object(schema, depth, index)
        if kind == "array":
            return self.array(schema, name, depth)
        if kind in ("integer", "number"):
            return _number(schema, name, kind == "integer", self.seed, index)
        if kind == "boolean":
            return pick((True, False), self.seed, f"bool:{name}", index)
        if kind == "null":
            return None
        return self.string(schema, name, index)

    def resolve(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        for _ in range(_HARD_DEPTH):
            ref = schema.get("$ref")
            if not isinstance(ref, str):
                break
            target = _pointer(self.root, ref)
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **rest} if isinstance(target, dict) else rest
        return schema

    def merged(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        out = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if not isinstance(part, dict):
                continue
            part = self.resolve(part, depth)
            for key, value in part.items():
                if key == "properties" and isinstance(value, dict):
                    out["properties"] = {**out.get("properties", {}), **value}
                elif key == "required" and isinstance(value, list):
                    out["required"] = [*out.get("required", []), *value]
                else:
                    out.setdefault(key, value)
        return out

    def branch(self, schema: dict[str, Any], key: str, depth: int) -> dict[str, Any]:
        branches = [self.resolve(b, depth) if isinstance(b, dict) else {}
                    for b in schema[key]]  # fmt: skip
        chosen = next((b for b in branches if _type_of(b) != "null"), branches[0])
        rest = {k: v for k, v in schema.items() if k not in (key, "default")}
        return {**rest, **chosen}

    def object(self, schema: dict[str, Any], depth: int, index: int) -> Any:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        extra = schema.get("additionalProperties")
        extra_schema = extra if isinstance(extra, dict) else {}
        out: dict[str, Any] = {}
        for key, sub in properties.items():
            if depth < _MAX_DEPTH or key in required:
                out[key] = self.value(sub, key, depth + 1, index)
        for key in required:
            if key not in out:
                out[key] = self.value(extra_schema, key, depth + 1, index)
        minimum = schema.get("minProperties")
        if isinstance(minimum, int) and extra is not False:
            while len(out) < minimum:
                key = f"extra_{len(out) + 1}"
                out[key] = self.value(extra_schema, key, depth + 1, index)
        return out

    def array(self, schema: dict[str, Any], name: str, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        if isinstance(items, list):  # draft 4 tuples
            prefix, items = items, schema.get("additionalItems")
        prefix = prefix if isinstance(prefix, list) else []
        low = schema.get("minItems")
        high = schema.get("maxItems")
        count = max(
            low if isinstance(low, int) else 0,
            len(prefix),
            1 if depth < _MAX_DEPTH and items is not False else 0,
        )
        if isinstance(high, int):
            count = min(count, high)
        singular = _singular(name)
        out = []
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else items
            out.append(
                self.value(sub if sub is not None else {}, singular, depth + 1, i)
            )
        contains = schema.get("contains")
        if isinstance(contains, dict):
            sample = self.value(contains, singular, depth + 1, 0)
            if out:
                out[0] = sample
            else:
                out.append(sample)
        return out

    def string(self, schema: dict[str, Any], name: str, index: int) -> str:
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS:
            text = _FORMATS[fmt](
                index if self.seed is None else index + variant(self.seed, name, 9)
            )
        else:
            options = _string_options(name)
            text = pick(options, self.seed, f"str:{name}", index)
            if index >= len(options):
                text = f"{text} {index + 1}"
        low = schema.get("minLength")
        high = schema.get("maxLength")
        if isinstance(low, int) and len(text) < low:
            text += "x" * (low - len(text))
        if isinstance(high, int) and len(text) > high:
            text = text[:high]
        return text


def _pointer(root: Any, ref: str) -> Any:
    if not ref.startswith("#"):
        return {}  # remote references are not fetched
    node = root
    for raw in ref[1:].split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            node = node.get(part, {})
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return {}
    return node


def _type_of(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, str) and "," in kind:
        kind = [k.strip() for k in kind.split(",")]
    if isinstance(kind, list):
        named = [k for k in kind if isinstance(k, str)]
        kind = next((k for k in named if k != "null"), named[0] if named else None)
    if isinstance(kind, str):
        return kind
    if any(k in schema for k in ("properties", "required", "additionalProperties")):
        return "object"
    if any(k in schema for k in ("items", "prefixItems", "minItems")):
        return "array"
    if any(k in schema for k in ("minimum", "maximum", "multipleOf")):
        return "number"
    return "string"


def _singular(name: str) -> str:
    if name.endswith("ies"):
        return name[:-3] + "y"
    if name.endswith("s") and not name.endswith("ss"):
        return name[:-1]
    return name


def _hinted(name: str, keys: tuple[str, ...]) -> bool:
    """Whether a word of the name (snake, kebab or camel case) starts with a key."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    return any(w.startswith(keys) for w in re.split(r"[^a-z0-9]+", spaced) if w)


def _string_options(name: str) -> tuple[str, ...]:
    for keys, options in _STRING_HINTS:
        if _hinted(name, keys):
            return options
    return _WORDS


def _number(
    schema: dict[str, Any], name: str, integer: bool, seed: int | None, index: int
) -> int | float:
    base = next(
        (v for keys, v in _NUMBER_HINTS if _hinted(name, keys)),
        42 if integer else 3.5,
    )
    value: float = base + index + (0 if seed is None else variant(seed, name, 10))
    low, low_open = _bound(schema, "minimum", "exclusiveMinimum")
    high, high_open = _bound(schema, "maximum", "exclusiveMaximum")
    step = 1.0 if integer else 0.5
    if low is not None and (value < low or (low_open and value <= low)):
        value = low + (step if low_open else 0)
    if high is not None and (value > high or (high_open and value >= high)):
        value = high - (step if high_open else 0)
        if low is not None and value < low:  # a narrow open interval
            value = (low + high) / 2
    value = round(value, 6)
    multiple = schema.get("multipleOf")
    if isinstance(multiple, int | float) and multiple > 0:
        value = _multiple_near(value, multiple, low, high)
    if integer:
        return round(value)
    return value


def _bound(
    schema: dict[str, Any], inclusive: str, exclusive: str
) -> tuple[float | None, bool]:
    open_bound = schema.get(exclusive)
    if isinstance(open_bound, int | float) and not isinstance(open_bound, bool):
        return float(open_bound), True
    closed = schema.get(inclusive)
    if isinstance(closed, int | float) and not isinstance(closed, bool):
        return float(closed), open_bound is True  # draft 4: a boolean flag
    return None, False


def _multiple_near(
    value: float, multiple: float, low: float | None, high: float | None
) -> float:
    start = round(value / multiple)
    for k in sorted(range(start - 8, start + 9), key=lambda k: abs(k - start)):
        candidate = k * multiple
        if isinstance(multiple, float):
            candidate = float(f"{candidate:.12g}")
            quotient = candidate / multiple
            if int(quotient) != quotient:
                continue
        if (low is None or candidate >= low) and (high is None or candidate <= high):
            return candidate
    return start * multiple
