"""Ollama wire Structs, with their decoders and encoders built once at import.

Inbound Structs ignore unknown fields (clients add fields all the time). Fields
whose errors Ollama words in its own way (`keep_alive`, `think`, `format`,
`options`) are decoded loosely here and checked in `ollama_gateway.validation`.
Outbound Structs use `omit_defaults=True`; fields every client expects on every
line (`done`, `message.content`, `response`) have no default, so they are always
written. The Structs built for every answer line are `gc=False`: they hold data,
never a cycle, so the cycle collector need not track them.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

__all__ = [
    "ChatRequest",
    "ChatResponse",
    "CopyRequest",
    "EmbedRequest",
    "EmbedResponse",
    "EmbeddingsRequest",
    "EmbeddingsResponse",
    "GenerateRequest",
    "GenerateResponse",
    "ListResponse",
    "Logprob",
    "Message",
    "ModelDetails",
    "ModelEntry",
    "ModelNameRequest",
    "ProcessEntry",
    "ProcessResponse",
    "ProgressResponse",
    "ResponseMessage",
    "ShowResponse",
    "ToolCall",
    "ToolCallFunction",
    "TopLogprob",
    "VersionResponse",
    "decode_chat",
    "decode_copy",
    "decode_embed",
    "decode_embeddings",
    "decode_generate",
    "decode_model_name",
    "encode",
]

# Go's `int`, as Ollama decodes these fields: a larger number is its 400
# ("cannot unmarshal number ... of type int"), never sent on to a backend.
GoInt = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


# Tool-call arguments as JSON text (see `ToolCallFunction.arguments_json`).
_encode_arguments = msgspec.json.Encoder().encode


class ToolCallFunction(msgspec.Struct, omit_defaults=True, kw_only=True):
    """`function` of a tool call; `arguments` is a JSON object on the Ollama side.

    `arguments` is always written, `{}` included: clients require the key. It is
    None only when an inbound history call left it out. The fields are in the
    order of Ollama's Go struct (index, name, arguments), so a call is written
    as Ollama writes it; keyword-only, because `index` comes first with a default.
    """

    index: int | None = None
    name: str
    arguments: Any = None

    def arguments_json(self) -> str:
        """The arguments as OpenAI's APIs carry them, a JSON text: a string
        is taken as that text already, and no arguments are `{}`."""
        arguments = self.arguments
        if arguments is None:
            return "{}"
        if isinstance(arguments, str):
            return arguments
        return _encode_arguments(arguments).decode()


class ToolCall(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A tool call requested by the model (output) or echoed in history (input).

    `id` before `function`, as Ollama's Go struct writes them."""

    id: str | None = None
    function: ToolCallFunction


class Message(msgspec.Struct, omit_defaults=True):
    """An inbound chat message. `content` may be missing: the Python client drops ""."""

    role: str = ""
    content: str | None = None
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class ChatRequest(msgspec.Struct):
    """`POST /api/chat`. `stream` is true when omitted (Ollama's `*bool`)."""

    model: str = ""
    messages: list[Message] | None = None
    tools: list[msgspec.Raw] | None = None
    stream: bool | None = None
    format: Any = None
    keep_alive: Any = None
    options: Any = None
    think: Any = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    debug_render_only: bool | None = msgspec.field(
        default=None, name="_debug_render_only"
    )


class GenerateRequest(msgspec.Struct):
    """`POST /api/generate`: one prompt, optionally raw or fill-in-the-middle."""

    model: str = ""
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[GoInt] | None = None
    stream: bool | None = None
    raw: bool | None = None
    format: Any = None
    keep_alive: Any = None
    images: list[str] | None = None
    options: Any = None
    think: Any = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    debug_render_only: bool | None = msgspec.field(
        default=None, name="_debug_render_only"
    )


class EmbedRequest(msgspec.Struct):
    """`POST /api/embed`: `input` is a string or a list of strings (checked later)."""

    model: str = ""
    input: Any = None
    truncate: bool | None = None
    dimensions: GoInt | None = None
    keep_alive: Any = None
    options: Any = None


class EmbeddingsRequest(msgspec.Struct):
    """`POST /api/embeddings` (legacy): one prompt, vector not normalised."""

    model: str = ""
    prompt: str | None = None
    keep_alive: Any = None
    options: Any = None


class ModelNameRequest(msgspec.Struct):
    """Show, pull, push, delete and create: `model`, or the deprecated `name`.

    `system` and `options` are show's: what it reports instead of the model's own.
    """

    model: str | None = None
    name: str | None = None
    stream: bool | None = None
    verbose: bool | None = None
    insecure: bool | None = None
    system: str | None = None
    options: Any = None

    @property
    def model_name(self) -> str:
        return (self.model or "").strip() or (self.name or "").strip()


class CopyRequest(msgspec.Struct):
    """`POST /api/copy`: create `destination` as an alias of `source`."""

    source: str = ""
    destination: str = ""


class TopLogprob(msgspec.Struct, omit_defaults=True, gc=False):
    """One alternative token and its log-probability."""

    token: str
    logprob: float
    bytes: list[int] | None = None


class Logprob(msgspec.Struct, omit_defaults=True, gc=False):
    """A generated token, its log-probability and the top alternatives."""

    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] | None = None


class ResponseMessage(msgspec.Struct, omit_defaults=True, gc=False):
    """The assistant message of a chat answer; `content` is always written."""

    role: str
    content: str
    thinking: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChatResponse(msgspec.Struct, omit_defaults=True, gc=False):
    """One NDJSON line of `/api/chat` (and the non-stream answer).

    Translators see every answer in this shape, generate included; the generate
    handler renders it as a `GenerateResponse` when it writes it. Zero metrics are
    left out, as Go's `omitempty` does.
    """

    model: str
    created_at: str
    message: ResponseMessage
    done: bool
    done_reason: str | None = None
    # Before the metrics, where Ollama's Go struct has it.
    logprobs: list[Logprob] | None = None
    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0


class GenerateResponse(msgspec.Struct, omit_defaults=True, gc=False, kw_only=True):
    """One NDJSON line of `/api/generate`; `response` is always written.

    The fields are in the order of Ollama's Go struct (`thinking` before `done`,
    `context` before the metrics, `tool_calls` and `logprobs` after them), so a
    line reads as Ollama's does; keyword-only for `thinking`'s default.
    """

    model: str
    created_at: str
    response: str
    thinking: str | None = None
    done: bool
    done_reason: str | None = None
    # Only with `server.generate_context` (see generate_context.py).
    context: list[int] | None = None
    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0
    tool_calls: list[ToolCall] | None = None
    logprobs: list[Logprob] | None = None


class EmbedResponse(msgspec.Struct, omit_defaults=True):
    """`/api/embed`: one unit-length vector per input, in input order."""

    model: str
    embeddings: list[list[float]]
    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0


class EmbeddingsResponse(msgspec.Struct):
    """`/api/embeddings` (legacy): the raw vector."""

    embedding: list[float]


class VersionResponse(msgspec.Struct):
    """`/api/version`."""

    version: str


class ModelDetails(msgspec.Struct):
    """`details` of tags, show and ps entries; every key is always written."""

    parent_model: str = ""
    format: str = "gguf"
    family: str = ""
    families: list[str] | None = None
    parameter_size: str = ""
    quantization_level: str = ""


class ModelEntry(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One model of `/api/tags`, its keys in the order of Go's
    `ListModelResponse` (Ollama's JSON; `capabilities`, newer, comes last)."""

    name: str
    model: str
    remote_model: str | None = None
    remote_host: str | None = None
    modified_at: str
    size: int
    digest: str
    details: ModelDetails
    capabilities: list[str] | None = None


class ListResponse(msgspec.Struct):
    """`/api/tags`: `models` is always an array."""

    models: list[ModelEntry]


class ShowResponse(msgspec.Struct, omit_defaults=True, kw_only=True):
    """`/api/show`: `details`, `model_info` and `modified_at` are always written,
    every key in the order of Go's `ShowResponse`."""

    license: str = ""
    modelfile: str = ""
    parameters: str = ""
    template: str = ""
    system: str = ""
    details: ModelDetails
    remote_model: str | None = None
    remote_host: str | None = None
    model_info: dict[str, Any]
    capabilities: list[str] | None = None
    modified_at: str


class ProcessEntry(msgspec.Struct):
    """One model of `/api/ps`."""

    name: str
    model: str
    size: int
    digest: str
    details: ModelDetails
    expires_at: str
    size_vram: int
    context_length: int


class ProcessResponse(msgspec.Struct):
    """`/api/ps`: models used within their keep-alive window."""

    models: list[ProcessEntry]


class ProgressResponse(msgspec.Struct, omit_defaults=True):
    """One line of `/api/pull` progress."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


encode = msgspec.json.Encoder().encode

decode_chat = msgspec.json.Decoder(ChatRequest).decode
decode_generate = msgspec.json.Decoder(GenerateRequest).decode
decode_embed = msgspec.json.Decoder(EmbedRequest).decode
decode_embeddings = msgspec.json.Decoder(EmbeddingsRequest).decode
decode_model_name = msgspec.json.Decoder(ModelNameRequest).decode
decode_copy = msgspec.json.Decoder(CopyRequest).decode
