"""A refused request body worded as Go's `encoding/json` words it for Ollama.

Ollama decodes `/api/chat` and `/api/generate` bodies into its Go structs, so a
JSON value of the wrong kind is a 400 such as `json: cannot unmarshal array
into Go struct field Message.messages.content of type string` (spec 1.1, 2.7):
the innermost struct, the JSON path without indices, and the Go type. A body
cut short is Go's `unexpected EOF`. msgspec says the same things its own way
("Expected `str | null`, got `array` - at `$.messages[0].content`"); only these
two kinds are reworded, on the error path alone, and anything else (a number
out of an int's range, a field checked later) keeps the gateway's words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CHAT_REQUEST", "GENERATE_REQUEST", "GoRequest", "go_decode_error"]

_TYPE_ERROR = re.compile(r"Expected `[^`]*`, got `(\w+)`(?: - at `\$(.*)`)?")
_INDEX = re.compile(r"\[\d+\]")
# msgspec's name of the JSON value found, as Go's `UnmarshalTypeError.Value`
# names it for a value of the wrong kind.
_GO_VALUE = {
    "str": "string",
    "int": "number",
    "float": "number",
    "bool": "bool",
    "array": "array",
    "object": "object",
}
_TRUNCATED = "Input data was truncated"


@dataclass(frozen=True)
class GoRequest:
    """A request struct of Ollama's `api` package: its Go type name and, by
    JSON path (`messages.content`; `[]` for an element of a list), the struct
    that holds the field and the field's Go type."""

    type_name: str
    fields: dict[str, tuple[str, str]]


def go_decode_error(message: str, request: GoRequest) -> str | None:
    """Go's words for msgspec's `message`, or None when Go's are not known."""
    if message == _TRUNCATED:
        return "unexpected EOF"
    found = _TYPE_ERROR.fullmatch(message)
    if found is None:
        return None
    value = _GO_VALUE.get(found.group(1))
    if value is None or value == "number" and _is_number(found):
        return None  # Go names the number itself: not known here
    path = found.group(2)
    if not path:
        return (
            f"json: cannot unmarshal {value} into Go value of type {request.type_name}"
        )
    element = path.endswith("]")
    name = _INDEX.sub("", path).removeprefix(".")
    field = request.fields.get(name + "[]" if element else name)
    if field is None:
        return None
    struct, go_type = field
    return (
        f"json: cannot unmarshal {value} into Go struct field "
        f"{struct}.{name} of type {go_type}"
    )


def _is_number(found: re.Match[str]) -> bool:
    """A number where a number belongs, refused for its value (a float for
    an int, one past an int64): Go's message quotes the number."""
    expected = found.group(0).split("`")[1]
    return "int" in expected or "float" in expected


# The fields of a chat message and of its tool calls, by the struct each is in.
_MESSAGE = {
    "messages.role": ("Message", "string"),
    "messages.content": ("Message", "string"),
    "messages.thinking": ("Message", "string"),
    "messages.images": ("Message", "[]api.ImageData"),
    "messages.images[]": ("Message", "api.ImageData"),
    "messages.tool_calls": ("Message", "[]api.ToolCall"),
    "messages.tool_calls[]": ("Message", "api.ToolCall"),
    "messages.tool_calls.id": ("ToolCall", "string"),
    "messages.tool_calls.function": ("ToolCall", "api.ToolCallFunction"),
    "messages.tool_calls.function.name": ("ToolCallFunction", "string"),
    "messages.tool_calls.function.index": ("ToolCallFunction", "int"),
    "messages.tool_name": ("Message", "string"),
    "messages.tool_call_id": ("Message", "string"),
}


def _request(
    struct: str,
    fields: dict[str, str],
    nested: dict[str, tuple[str, str]] | None = None,
) -> GoRequest:
    """The fields both requests have and `fields`, all held by `struct`, and
    the `nested` ones held by the structs they name."""
    shared = {
        "model": "string",
        "stream": "bool",
        "logprobs": "bool",
        "top_logprobs": "int",
        "_debug_render_only": "bool",
    }
    held = {path: (struct, go_type) for path, go_type in (shared | fields).items()}
    return GoRequest(f"api.{struct}", held | (nested or {}))


CHAT_REQUEST = _request(
    "ChatRequest",
    {
        "messages": "[]api.Message",
        "messages[]": "api.Message",
        "tools": "api.Tools",
        "tools[]": "api.Tool",
    },
    _MESSAGE,
)

GENERATE_REQUEST = _request(
    "GenerateRequest",
    {
        "prompt": "string",
        "suffix": "string",
        "system": "string",
        "template": "string",
        "context": "[]int",
        "context[]": "int",
        "raw": "bool",
        "images": "[]api.ImageData",
        "images[]": "api.ImageData",
    },
)
