"""OpenAI Responses API wire Structs (`POST /v1/responses`), with the decoder
and encoder built once at import.

Inbound Structs are flat and loose: an input item's `type` may be missing (a
bare `{"role": ..., "content": ...}` is a message), and the fields of every
item kind sit on one Struct, read according to `type` by the handler. Unknown
fields are skipped. Outbound Structs write `null` where the API has a null,
so the official SDKs find every key they read; the answer's output items are a
tagged union on `type`. Stream events carry their `type` as a plain field.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "ArgumentsDeltaEvent",
    "ArgumentsDoneEvent",
    "ContentPart",
    "ContentPartEvent",
    "ErrorEvent",
    "FunctionCallItem",
    "IncompleteDetails",
    "InputItem",
    "InputTokensDetails",
    "ItemEvent",
    "LifecycleEvent",
    "MessageItem",
    "OutputItem",
    "OutputText",
    "OutputTokensDetails",
    "Reasoning",
    "ReasoningItem",
    "Response",
    "ResponseError",
    "ResponsesRequest",
    "SummaryDeltaEvent",
    "SummaryDoneEvent",
    "SummaryPartEvent",
    "SummaryText",
    "TextConfig",
    "TextDeltaEvent",
    "TextDoneEvent",
    "TextFormat",
    "Tool",
    "Usage",
    "decode_items",
    "decode_request",
    "encode",
    "encode_into",
]


# Request ------------------------------------------------------------------------


class ContentPart(msgspec.Struct):
    """A content part of an input message or a tool output (`input_text`,
    `output_text`, `input_image`, `input_file`, `refusal`), or a reasoning
    item's `summary_text` / `reasoning_text`."""

    type: str = ""
    text: str | None = None
    refusal: str | None = None
    image_url: str | None = None
    file_id: str | None = None


class InputItem(msgspec.Struct):
    """One item of `input`: a message, a `function_call`, its
    `function_call_output`, a `reasoning` item, or an `item_reference` to an
    item of a kept response (by `id`); read by `type`."""

    type: str | None = None
    id: str | None = None
    role: str | None = None
    content: str | list[ContentPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[ContentPart] | None = None
    summary: list[ContentPart] | None = None


class Tool(msgspec.Struct, omit_defaults=True):
    """A tool the model may call; only `type: "function"` reaches the model,
    alone or among the `tools` of a `type: "namespace"` group (Codex sends
    its sub-agent tools so). Echoed in the answer as the client sent it
    (known fields)."""

    type: str
    name: str | None = None
    description: str | None = None
    parameters: Any = None
    strict: bool | None = None
    tools: list[Tool] | None = None


class Reasoning(msgspec.Struct, omit_defaults=True):
    """`reasoning`: the effort maps to Ollama's `think`."""

    effort: str | None = None
    summary: str | None = None


class TextFormat(msgspec.Struct, omit_defaults=True):
    """`text.format`: `text`, `json_object`, or `json_schema` with its schema."""

    type: str
    name: str | None = None
    schema: Any = None
    description: str | None = None
    strict: bool | None = None


class TextConfig(msgspec.Struct, omit_defaults=True):
    """`text`: the output format (echoed in the answer)."""

    format: TextFormat | None = None
    verbosity: str | None = None


class ResponsesRequest(msgspec.Struct):
    """`POST /v1/responses`. `stream` is false when omitted, `store` true (the
    conversation is kept for `previous_response_id`). `metadata`,
    `parallel_tool_calls`, `truncation`, `user` and `include` are accepted
    and ignored (not declared, so not decoded)."""

    model: str = ""
    input: str | list[InputItem] | None = None
    instructions: str | None = None
    tools: list[Tool] | None = None
    tool_choice: Any = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    reasoning: Reasoning | None = None
    text: TextConfig | None = None
    stream: bool | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    background: bool | None = None
    conversation: Any = None


# Answer ------------------------------------------------------------------------


class OutputText(msgspec.Struct, tag_field="type", tag="output_text", gc=False):
    """The text part of an assistant message."""

    text: str
    annotations: list[Any] = msgspec.field(default_factory=list)
    logprobs: list[Any] = msgspec.field(default_factory=list)


class SummaryText(msgspec.Struct, tag_field="type", tag="summary_text", gc=False):
    """A reasoning item's summary part: here, the model's thinking text."""

    text: str


class MessageItem(msgspec.Struct, tag_field="type", tag="message", gc=False):
    """The assistant's text."""

    id: str
    status: str
    content: list[OutputText]
    role: str = "assistant"


class ReasoningItem(msgspec.Struct, tag_field="type", tag="reasoning", gc=False):
    """The model's thinking, as one summary part."""

    id: str
    summary: list[SummaryText]
    status: str = "completed"


class FunctionCallItem(
    msgspec.Struct,
    tag_field="type",
    tag="function_call",
    omit_defaults=True,
    gc=False,
):
    """A call of one of the client's functions; `arguments` is a JSON string.
    `namespace` names the group of a namespaced tool: Codex runs such a call
    only with it ("unsupported call" without), and it is left out otherwise."""

    id: str
    call_id: str
    name: str
    arguments: str
    status: str
    namespace: str | None = None


OutputItem = MessageItem | ReasoningItem | FunctionCallItem


class InputTokensDetails(msgspec.Struct, gc=False):
    """`usage.input_tokens_details`: `cached_tokens` is the backend's count
    of prompt tokens read from its cache; `cache_write_tokens` stays 0, as
    OpenAI-compatible backends never report writes."""

    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(msgspec.Struct, gc=False):
    """`usage.output_tokens_details`."""

    reasoning_tokens: int = 0


class Usage(msgspec.Struct, gc=False):
    """Token counts of the answer, from the backend's usage."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: InputTokensDetails = msgspec.field(
        default_factory=InputTokensDetails
    )
    output_tokens_details: OutputTokensDetails = msgspec.field(
        default_factory=OutputTokensDetails
    )


class ResponseError(msgspec.Struct, gc=False):
    """`error` of a failed response."""

    code: str
    message: str


class IncompleteDetails(msgspec.Struct, gc=False):
    """Why a response is `incomplete` (`max_output_tokens`)."""

    reason: str


class Response(msgspec.Struct, kw_only=True, gc=False):
    """The response object: the non-stream answer, and the `response` of the
    lifecycle events. Every key is written, nulls included."""

    id: str
    object: str = "response"
    created_at: int
    model: str
    status: str = "in_progress"
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    output: list[OutputItem] = msgspec.field(default_factory=list)
    parallel_tool_calls: bool = True
    tool_choice: Any = "auto"
    tools: list[Tool] = msgspec.field(default_factory=list)
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    previous_response_id: str | None = None
    reasoning: Reasoning | None = None
    text: TextConfig = msgspec.field(
        default_factory=lambda: TextConfig(TextFormat("text"))
    )
    truncation: str = "disabled"
    store: bool = False
    background: bool = False
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    usage: Usage | None = None
    completed_at: int | None = None


# Stream events -----------------------------------------------------------------


class LifecycleEvent(msgspec.Struct, gc=False):
    """`response.created`, `.in_progress`, `.completed`, `.incomplete`, `.failed`."""

    type: str
    sequence_number: int
    response: Response


class ItemEvent(msgspec.Struct, gc=False):
    """`response.output_item.added` and `.done`."""

    type: str
    sequence_number: int
    output_index: int
    item: OutputItem


class ContentPartEvent(msgspec.Struct, gc=False):
    """`response.content_part.added` and `.done`."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class TextDeltaEvent(msgspec.Struct, gc=False):
    """`response.output_text.delta`."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: tuple[()] = ()


class TextDoneEvent(msgspec.Struct, gc=False):
    """`response.output_text.done`."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: tuple[()] = ()


class SummaryPartEvent(msgspec.Struct, gc=False):
    """`response.reasoning_summary_part.added` and `.done`."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    summary_index: int
    part: SummaryText


class SummaryDeltaEvent(msgspec.Struct, gc=False):
    """`response.reasoning_summary_text.delta`."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    summary_index: int
    delta: str


class SummaryDoneEvent(msgspec.Struct, gc=False):
    """`response.reasoning_summary_text.done`."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    summary_index: int
    text: str


class ArgumentsDeltaEvent(msgspec.Struct, gc=False):
    """`response.function_call_arguments.delta`."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    delta: str


class ArgumentsDoneEvent(msgspec.Struct, gc=False):
    """`response.function_call_arguments.done`."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    name: str
    arguments: str


class ErrorEvent(msgspec.Struct, gc=False):
    """`error`: the stream failed after it started."""

    type: str
    sequence_number: int
    code: str
    message: str
    param: str | None = None


_encoder = msgspec.json.Encoder()
encode = _encoder.encode
encode_into = _encoder.encode_into

decode_request = msgspec.json.Decoder(ResponsesRequest).decode
# A kept conversation (see response_store.py): input items, output items read
# as the input items they become in a follow-up.
decode_items = msgspec.json.Decoder(list[InputItem]).decode
