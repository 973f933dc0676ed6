"""What OpenAI's API and Azure OpenAI need of Ollama's `format` that Ollama
does not: the word "json" in a JSON-mode chat, and an object at a schema's root.

JSON mode (`response_format` type `json_object`) is refused with a 400 ("'messages'
must contain the word 'json' in some form") when no message says "json"; Ollama
constrains the output without being told. Such a chat gets one short system
message of its own, after the conversation: no message of the client's
changes, and the prefix OpenAI caches stays the same.

Structured outputs are refused with a 400 (even without `strict`) for a schema
whose root is not an object ("schema must be a JSON Schema of 'type: \"object\"'"):
a list (`TypeAdapter(list[Item])`), a union, or Pydantic's root `$ref` for a
recursive model. Ollama takes any schema. Such a schema is sent as the one
property `value` of an object, and the answer's `value` is given back as the
bare JSON the client asked for (`ValueSession`), streamed as it comes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import msgspec

from ollama_gateway.protocols import WholeAnswerSession
from ollama_gateway.schemas import ollama, openai

__all__ = [
    "JSON_INSTRUCTION",
    "WRAPPED",
    "ValueSession",
    "ValueUnwrapper",
    "add_json_instruction",
    "mentions_json",
    "object_root",
    "unwrap_value",
    "wrap_root",
]

# The key of `RequestContext.extra` that says the schema was wrapped.
WRAPPED = "format_value"
JSON_INSTRUCTION = "Respond in JSON."
_KEY = "value"
# Where a schema keeps its definitions: they stay at the root, so that the
# `$ref`s into them still resolve.
_DEFINITIONS = ("$defs", "definitions")
_ROOT_ONLY = ("$schema", "$id", *_DEFINITIONS)
_BLANKS_AND_BRACES = " \t\r\n}"
_copy = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode
_decode_members = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


def mentions_json(messages: Sequence[openai.ChatMessage]) -> bool:
    """Whether any message's text has the word OpenAI's JSON mode looks for."""
    for message in messages:
        content = message.content
        if isinstance(content, str):
            if "json" in content.lower():
                return True
        elif content:
            for part in content:
                if isinstance(part, openai.TextPart) and "json" in part.text.lower():
                    return True
    return False


def add_json_instruction(body: openai.ChatCompletionRequest, role: str) -> None:
    """Say "JSON" in a JSON-mode chat that does not (see the module docstring)."""
    if not mentions_json(body.messages):
        body.messages.append(openai.ChatMessage(role=role, content=JSON_INSTRUCTION))


def object_root(schema: dict[str, Any]) -> bool:
    """Whether OpenAI's structured outputs take the schema's root as it is."""
    return schema.get("type") == "object" and not (
        "anyOf" in schema or "oneOf" in schema
    )


def wrap_root(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as the one required property `value` of an object.

    Definitions move to the new root, where `#/$defs/...` points; any other
    reference inside the document (`#`, `#/items`) is moved with the schema.
    The request's own schema is left as it is: it may be mapped again for
    another backend.
    """
    inner: dict[str, Any] = _copy(_encode(schema))
    root = {key: inner.pop(key) for key in _ROOT_ONLY if key in inner}
    _rebase_refs(inner)
    for key in _DEFINITIONS:
        if key in root:
            _rebase_refs(root[key])
    return {
        **root,
        "type": "object",
        "properties": {_KEY: inner},
        "required": [_KEY],
        "additionalProperties": False,
    }


def _rebase_refs(node: Any) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if (
            isinstance(ref, str)
            and ref.startswith("#")
            and not ref.startswith(("#/$defs/", "#/definitions/"))
        ):
            node["$ref"] = f"#/properties/{_KEY}{ref[1:]}"
        for value in node.values():
            _rebase_refs(value)
    elif isinstance(node, list):
        for value in node:
            _rebase_refs(value)


def unwrap_value(text: str) -> str:
    """The JSON text of a whole answer's `value`; the answer as it is when it
    is not such an object (a refusal, an answer cut short)."""
    try:
        members = _decode_members(text)
    except msgspec.DecodeError:  # a ValidationError too
        return text
    value = members.get(_KEY)
    return text if value is None else bytes(value).decode()


# The states of `ValueUnwrapper`.
_OPENING, _STARTING, _VALUE, _AS_IT_IS = range(4)


class ValueUnwrapper:
    """Incremental `unwrap_value`: text in, the value's text out as it comes.

    `{"value":` (with any whitespace) is held until it is whole, then dropped;
    closing braces and whitespace at the end of what came are held until
    more text shows they are the value's, and the last brace (the wrapper's)
    is dropped at the end. An answer that does not open so is passed on as
    it is.
    """

    __slots__ = ("_held", "_state")

    def __init__(self) -> None:
        self._held = ""
        self._state = _OPENING

    def feed(self, text: str) -> str:
        state = self._state
        if state == _AS_IT_IS:
            return text
        text = self._held + text
        if state == _OPENING:
            rest = _after_opening(text)
            if rest is None:
                self._held = text
                return ""
            if rest is False:
                self._held = ""
                self._state = _AS_IT_IS
                return text
            state = _STARTING
            text = rest
        if state == _STARTING:
            # The whitespace before the value, which may come in pieces.
            text = text.lstrip()
            self._state = _VALUE if text else _STARTING
        cut = len(text.rstrip(_BLANKS_AND_BRACES))
        self._held = text[cut:]
        return text[:cut]

    def flush(self, whole: bool) -> str:
        """What is held, at the end of the answer; `whole` if it ended as the
        model meant to (not cut short by a token limit)."""
        held, self._held = self._held, ""
        if self._state in (_STARTING, _VALUE) and whole and "}" in held:
            return held[: held.rindex("}")].rstrip()
        return held


def _after_opening(text: str) -> str | Literal[False] | None:
    """The text after `{"value":`; None while it may still come, False if not."""
    rest = text.lstrip()
    if not rest:
        return None
    if rest[0] != "{":
        return False
    rest = rest[1:].lstrip()
    name = f'"{_KEY}"'
    if len(rest) < len(name):
        return None if name.startswith(rest) else False
    if not rest.startswith(name):
        return False
    rest = rest[len(name) :].lstrip()
    if not rest:
        return None
    return rest[1:] if rest[0] == ":" else False


class ValueSession:
    """A stream session whose answer is a wrapped schema's object: the
    client gets the `value` alone, streamed or whole."""

    feeds_in_callbacks: ClassVar[bool] = True

    __slots__ = ("_inner", "_unwrapper", "_whole")

    def __init__(self, inner: WholeAnswerSession) -> None:
        self._inner = inner
        self._unwrapper = ValueUnwrapper()
        self._whole = False

    def feed(self, chunk: openai.ChatCompletionChunk) -> Sequence[ollama.ChatResponse]:
        out = self._inner.feed(chunk)
        return [c for c in out if self._unwrap(c)] if out else out

    def absorb(self, chunks: Sequence[openai.ChatCompletionChunk]) -> None:
        self._whole = True
        self._inner.absorb(chunks)

    def close(self) -> Sequence[ollama.ChatResponse]:
        tail = list(self._inner.close())
        if self._whole:
            for chunk in tail:
                if chunk.message.content:
                    chunk.message.content = unwrap_value(chunk.message.content)
            return tail
        tail = [c for c in tail if self._unwrap(c)]
        final = tail[-1]
        held = self._unwrapper.flush(final.done_reason != "length")
        if not held:
            return tail
        # A chunk of its own: the final one carries no text (spec 2.7).
        message = ollama.ResponseMessage("assistant", held)
        rest = ollama.ChatResponse(
            model=final.model, created_at=final.created_at, message=message, done=False
        )
        return [*tail[:-1], rest, final]

    def _unwrap(self, chunk: ollama.ChatResponse) -> bool:
        """Whether the chunk, its content unwrapped, still says anything."""
        message = chunk.message
        if message.content:
            message.content = self._unwrapper.feed(message.content)
        return bool(
            message.content
            or message.thinking
            or message.tool_calls
            or chunk.logprobs
            or chunk.done
        )
