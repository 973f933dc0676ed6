"""Anthropic Messages wire Structs (`/v1/messages`), with decoders and encoders built once.

Inbound Structs skip unknown fields (`cache_control`, `citations`, ...), as
Anthropic's own clients add fields all the time. A content block is one loose
Struct with a `type` and the fields of every type the gateway reads: the
handler dispatches on `type`, so a block of a type it does not know gets a
message that names it rather than a decoder's tag error. Outbound Structs are
tagged on `type`; the fields Anthropic's SDKs accumulate into (`text`,
`thinking`, `input`) have no default, so they are always written.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "ContentBlock",
    "ContentBlockDelta",
    "ContentBlockStart",
    "ContentBlockStop",
    "CountTokensRequest",
    "CountTokensResponse",
    "Error",
    "ErrorDetail",
    "ImageSource",
    "InputJsonDelta",
    "Message",
    "MessageDelta",
    "MessageDeltaUsage",
    "MessageStart",
    "MessageStop",
    "MessagesRequest",
    "OutputConfig",
    "OutputBlock",
    "ModelInfo",
    "ModelPage",
    "PATH_PREFIX",
    "Response",
    "SignatureDelta",
    "StopInfo",
    "TextBlock",
    "TextDelta",
    "ThinkingBlock",
    "ThinkingConfig",
    "ThinkingDelta",
    "Tool",
    "ToolUseBlock",
    "Usage",
    "decode_count_tokens",
    "decode_messages",
    "encode",
    "encode_error",
    "error_type",
]


# The gateway's paths that speak this API: their errors are written in
# Anthropic's envelope (see `middlewares`).
PATH_PREFIX = "/v1/messages"


# Inbound ---------------------------------------------------------------------


class ImageSource(msgspec.Struct):
    """`source` of an image block: `base64` (with `data`) or `url`."""

    type: str = ""
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class ContentBlock(msgspec.Struct):
    """One block of a message's content, of any `type`.

    `content` (a tool result's) is a string or a list of blocks; it is kept
    loose here and converted when a `tool_result` is read, so blocks of other
    types whose `content` is something else still decode.
    """

    type: str = ""
    text: str | None = None
    source: ImageSource | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None
    tool_use_id: str | None = None
    content: Any = None
    is_error: bool | None = None
    thinking: str | None = None


class Message(msgspec.Struct):
    """One turn: `content` is a string or a list of blocks. A `system` turn
    (text only) may stand among the others, as the current API allows."""

    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlock]


class Tool(msgspec.Struct):
    """A tool definition. No `type` (or `custom`) is a client tool; other
    types are Anthropic's server tools and versioned built-in tools."""

    name: str = ""
    type: str | None = None
    description: str | None = None
    # Passed on as sent; empty when left out (`Raw | None` cannot decode).
    input_schema: msgspec.Raw = msgspec.Raw(b"")


class ThinkingConfig(msgspec.Struct):
    """`thinking`: `enabled` (with a budget), `disabled`, or a mode that
    leaves it to the model (`adaptive`, ...)."""

    type: str = ""
    budget_tokens: int | None = None


class OutputConfig(msgspec.Struct):
    """`output_config`: `format` is a JSON schema for the answer, `effort`
    how hard the model should think (`low` to `max`)."""

    format: Any = None
    effort: str | None = None


class MessagesRequest(msgspec.Struct):
    """`POST /v1/messages`. `model`, `max_tokens` and `messages` are required."""

    model: str
    max_tokens: Annotated[int, msgspec.Meta(ge=1)]
    messages: list[Message]
    system: str | list[ContentBlock] | None = None
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    tools: list[Tool] | None = None
    tool_choice: Any = None
    thinking: ThinkingConfig | None = None
    output_config: OutputConfig | None = None
    metadata: Any = None


class CountTokensRequest(msgspec.Struct):
    """`POST /v1/messages/count_tokens`: a Messages request without `max_tokens`."""

    model: str
    messages: list[Message]
    system: str | list[ContentBlock] | None = None
    tools: list[Tool] | None = None
    thinking: ThinkingConfig | None = None


# Outbound --------------------------------------------------------------------


class TextBlock(msgspec.Struct, tag_field="type", tag="text"):
    text: str


class ThinkingBlock(msgspec.Struct, tag_field="type", tag="thinking"):
    """The model's reasoning. `signature` is required by Anthropic's SDKs; the
    gateway signs nothing, so it is empty."""

    thinking: str
    signature: str = ""


class ToolUseBlock(msgspec.Struct, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: Any


OutputBlock = TextBlock | ThinkingBlock | ToolUseBlock


class Usage(msgspec.Struct):
    """`input_tokens` counts only the prompt tokens not read from a cache:
    the whole prompt is the sum of the three input counts."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class Response(msgspec.Struct, tag_field="type", tag="message"):
    """The answer (non-stream), and the message of `message_start`."""

    id: str
    model: str
    content: list[OutputBlock]
    stop_reason: str | None
    usage: Usage
    role: str = "assistant"
    stop_sequence: str | None = None


class CountTokensResponse(msgspec.Struct):
    input_tokens: int


class TextDelta(msgspec.Struct, tag_field="type", tag="text_delta"):
    text: str


class ThinkingDelta(msgspec.Struct, tag_field="type", tag="thinking_delta"):
    thinking: str


class SignatureDelta(msgspec.Struct, tag_field="type", tag="signature_delta"):
    signature: str


class InputJsonDelta(msgspec.Struct, tag_field="type", tag="input_json_delta"):
    partial_json: str


class MessageStart(msgspec.Struct, tag_field="type", tag="message_start"):
    message: Response


class ContentBlockStart(msgspec.Struct, tag_field="type", tag="content_block_start"):
    index: int
    content_block: OutputBlock


class ContentBlockDelta(msgspec.Struct, tag_field="type", tag="content_block_delta"):
    index: int
    delta: TextDelta | ThinkingDelta | SignatureDelta | InputJsonDelta


class ContentBlockStop(msgspec.Struct, tag_field="type", tag="content_block_stop"):
    index: int


class StopInfo(msgspec.Struct):
    stop_reason: str | None
    stop_sequence: str | None = None


class MessageDeltaUsage(msgspec.Struct):
    """Cumulative counts: the SDKs take the input counts from here when given,
    over those of `message_start`."""

    output_tokens: int
    input_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class MessageDelta(msgspec.Struct, tag_field="type", tag="message_delta"):
    delta: StopInfo
    usage: MessageDeltaUsage


class MessageStop(msgspec.Struct, tag_field="type", tag="message_stop"):
    pass


class ErrorDetail(msgspec.Struct):
    type: str
    message: str


class Error(msgspec.Struct, tag_field="type", tag="error"):
    """The error body, and the data of a stream's `error` event."""

    error: ErrorDetail


class ModelInfo(msgspec.Struct, tag_field="type", tag="model"):
    """A model of `GET /v1/models`, as Anthropic's API lists them."""

    id: str
    display_name: str
    created_at: str


class ModelPage(msgspec.Struct):
    """`GET /v1/models`: one page, all of them (`has_more` is false)."""

    data: list[ModelInfo]
    has_more: bool
    first_id: str | None
    last_id: str | None


# Anthropic's error types by HTTP status; other 4xx are invalid requests and
# other 5xx are API errors, as Anthropic's own API answers.
_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """Anthropic's `error.type` for an HTTP status."""
    found = _ERROR_TYPES.get(status)
    if found is not None:
        return found
    return "invalid_request_error" if status < 500 else "api_error"


encode = msgspec.json.Encoder().encode


def encode_error(status: int, message: str) -> bytes:
    """`{"type": "error", "error": {"type": ..., "message": ...}}` as JSON bytes."""
    return encode(Error(ErrorDetail(error_type(status), message)))


decode_messages = msgspec.json.Decoder(MessagesRequest).decode
decode_count_tokens = msgspec.json.Decoder(CountTokensRequest).decode
