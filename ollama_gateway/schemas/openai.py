"""OpenAI wire Structs (what backends speak), with decoders and encoders built once.

Outbound request Structs use `UNSET` for every optional field, so a parameter the
Ollama client did not set never reaches the backend. Inbound Structs keep
msgspec's default of skipping unknown fields: backends add fields all the time.
`logprobs` stays `Raw` on chunks, because chat and legacy completions give it
different shapes and most requests never look at it. The Structs decoded from
every event are `gc=False`: decoded JSON holds no cycle, and untracked objects
make decoding cheaper (19 events: 8.6 -> 7.9 us here) and collections rarer.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from ollama_gateway.go_text import go_strings

__all__ = [
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "ChunkChoice",
    "CompletionRequest",
    "CompletionTokensDetails",
    "Delta",
    "EmbeddingData",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "FunctionCall",
    "FunctionDelta",
    "GroqChunk",
    "GroqExtras",
    "ImagePart",
    "ImageURL",
    "LiteLLMDeployment",
    "LiteLLMModelInfo",
    "LiteLLMModelInfoList",
    "ModelList",
    "ModelMeta",
    "ModelObject",
    "PromptTokensDetails",
    "SamplingParams",
    "StreamOptions",
    "TextPart",
    "Timings",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "decode_chunk",
    "decode_chunks",
    "decode_content_parts",
    "decode_embedding_response",
    "decode_groq_chunk",
    "decode_litellm_model_info",
    "decode_model_list",
    "decode_mended",
    "encode",
]


class TextPart(msgspec.Struct, tag_field="type", tag="text"):
    """A text content part."""

    text: str


class ImageURL(msgspec.Struct):
    """An image given as a URL; the gateway always sends a base64 data URL."""

    url: str


class ImagePart(msgspec.Struct, tag_field="type", tag="image_url"):
    """An image content part."""

    image_url: ImageURL


class FunctionCall(msgspec.Struct):
    """`function` of an OpenAI tool call; `arguments` is a JSON *string*."""

    name: str
    arguments: str


class ToolCall(msgspec.Struct):
    """A tool call in an assistant message of the history."""

    id: str
    function: FunctionCall
    type: str = "function"
    # Google's own fields of a call: `{"google": {"thought_signature": ...}}`.
    extra_content: dict[str, Any] | UnsetType = UNSET


class ChatMessage(msgspec.Struct, omit_defaults=True):
    """A message of `/v1/chat/completions`."""

    role: str
    # None as the default, so an empty string is still sent: OpenAI requires
    # `content` on user messages, and omit_defaults would drop a "" default.
    content: str | list[TextPart | ImagePart] | None = None
    tool_calls: list[ToolCall] | UnsetType = UNSET
    tool_call_id: str | UnsetType = UNSET
    name: str | UnsetType = UNSET
    reasoning_content: str | UnsetType = UNSET
    reasoning: str | UnsetType = UNSET


class StreamOptions(msgspec.Struct):
    """`stream_options`: ask for the usage trailer."""

    include_usage: bool = True


class SamplingParams(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Parameters shared by chat and legacy completions; all unset unless given."""

    stream: bool | UnsetType = UNSET
    stream_options: StreamOptions | UnsetType = UNSET
    max_tokens: int | UnsetType = UNSET
    max_completion_tokens: int | UnsetType = UNSET
    temperature: float | UnsetType = UNSET
    top_p: float | UnsetType = UNSET
    stop: list[str] | UnsetType = UNSET
    seed: int | UnsetType = UNSET
    frequency_penalty: float | UnsetType = UNSET
    presence_penalty: float | UnsetType = UNSET
    top_k: int | UnsetType = UNSET
    min_p: float | UnsetType = UNSET
    typical_p: float | UnsetType = UNSET
    repetition_penalty: float | UnsetType = UNSET
    repeat_penalty: float | UnsetType = UNSET
    repeat_last_n: int | UnsetType = UNSET
    response_format: Any = UNSET


class ChatCompletionRequest(SamplingParams, kw_only=True):
    """The body of `POST /v1/chat/completions`."""

    model: str
    messages: list[ChatMessage]
    tools: list[msgspec.Raw] | UnsetType = UNSET
    tool_choice: str | UnsetType = UNSET
    reasoning_effort: str | UnsetType = UNSET
    chat_template_kwargs: dict[str, Any] | UnsetType = UNSET
    logprobs: bool | UnsetType = UNSET
    top_logprobs: int | UnsetType = UNSET


class CompletionRequest(SamplingParams, kw_only=True):
    """The body of `POST /v1/completions` (raw and fill-in-the-middle generate)."""

    model: str
    prompt: str
    suffix: str | UnsetType = UNSET
    logprobs: int | UnsetType = UNSET
    # llama.cpp's server constrains completions by its own `json_schema` and
    # ignores `response_format` here.
    json_schema: Any = UNSET


class EmbeddingRequest(msgspec.Struct):
    """The body of `POST /v1/embeddings`.

    `encoding_format` is always written: some backends default to base64.
    `truncate_prompt_tokens` is vLLM's extension for Ollama's `truncate`.
    """

    model: str
    input: str | list[str]
    encoding_format: str = "float"
    dimensions: int | UnsetType = UNSET
    truncate_prompt_tokens: int | UnsetType = UNSET


class FunctionDelta(msgspec.Struct, gc=False):
    """A fragment of a streamed tool call's function.

    `arguments` is a JSON string fragment, or the whole arguments object from
    llama-server started with `--tool-args-object` (ggml-org/llama.cpp#20202).
    """

    name: str | None = None
    arguments: str | dict[str, Any] | None = None


class ToolCallDelta(msgspec.Struct, gc=False):
    """A fragment of a streamed tool call; fragments are joined by `index`.

    `index` is None when a backend leaves it out (some compatibility layers do).
    """

    index: int | None = None
    id: str | None = None
    function: FunctionDelta | None = None


class Delta(msgspec.Struct, gc=False):
    """`choices[].delta` of a chunk (also used for a non-stream `message`)."""

    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    # One call as an object, not a list: TGI before 3.2 streamed each
    # fragment so (huggingface/text-generation-inference#2949, #3086).
    tool_calls: list[ToolCallDelta] | ToolCallDelta | None = None
    refusal: str | None = None


class ChunkChoice(msgspec.Struct, gc=False):
    """`choices[]` of a chat chunk, a legacy completion chunk (`text`) or a
    non-stream answer (`message`), so one decoder reads all three."""

    delta: Delta | None = None
    message: Delta | None = None
    text: str | None = None
    finish_reason: str | None = None
    # Raw in a union with None only ever matches null, so absent is an empty Raw.
    logprobs: msgspec.Raw = msgspec.Raw()
    index: int = 0
    # OpenRouter's error of one choice (with `finish_reason: "error"`), in a
    # chunk or a whole answer; no other choice has the key, so it costs none.
    error: Any = None


class PromptTokensDetails(msgspec.Struct, gc=False):
    """`usage.prompt_tokens_details`: `cached_tokens` of the prompt were read
    from the backend's prompt (prefix) cache, not computed again."""

    cached_tokens: int | None = 0


class CompletionTokensDetails(msgspec.Struct, gc=False):
    """`usage.completion_tokens_details`: `reasoning_tokens` of the completion
    were the model's thinking."""

    reasoning_tokens: int | None = 0


class Usage(msgspec.Struct, gc=False):
    """Token counts; `completion_tokens` includes reasoning tokens, and
    `prompt_tokens` the cached ones.

    Only the usage event carries one, so its optional details cost the other
    chunks nothing; a backend's `null` details read as None (LiteLLM sends
    them so), and a missing count as 0.
    """

    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    total_tokens: int | None = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None
    # DeepSeek's own name for the cached count (its API may send no details).
    prompt_cache_hit_tokens: int | None = None

    def cached_tokens(self) -> int:
        """Prompt tokens the backend read from its cache (0 if it says none)."""
        details = self.prompt_tokens_details
        cached = details.cached_tokens if details is not None else None
        if not cached:
            cached = self.prompt_cache_hit_tokens
        return max(cached or 0, 0)

    def reasoning_tokens(self) -> int:
        """Completion tokens the model spent thinking (0 if it says none)."""
        details = self.completion_tokens_details
        reasoning = details.reasoning_tokens if details is not None else None
        return max(reasoning or 0, 0)


class ChatCompletionChunk(msgspec.Struct, gc=False):
    """One SSE event of a chat or completions stream, or a whole non-stream answer.

    `error` is set when the backend reports an error inside the stream.
    """

    choices: list[ChunkChoice] | None = None
    usage: Usage | None = None
    error: Any = None
    # llama.cpp's server: its own `prompt_ms` and `predicted_ms`, with the usage
    # (see `Timings`). Any, so that another backend's field of that name cannot
    # make the event unreadable.
    timings: Any = None


class Timings(msgspec.Struct):
    """llama.cpp's server's `timings` of an answer: milliseconds it spent on
    the prompt and on generating, as Ollama's own runner reports them."""

    prompt_ms: float = 0.0
    predicted_ms: float = 0.0


class GroqExtras(msgspec.Struct, gc=False):
    """`x_groq` of a Groq chunk."""

    usage: Usage | None = None


class GroqChunk(msgspec.Struct, gc=False):
    """Only the `x_groq` of a chunk: Groq's finish chunk carries the usage
    there, the only usage of a stream sent without `stream_options`. Decoded
    apart (see completion.ChunkReader), so the common chunk does not pay for
    a field it never has."""

    x_groq: GroqExtras | None = None


class EmbeddingData(msgspec.Struct):
    """One vector; a string is base64 little-endian float32. `index` is the
    input's position; UNSET when the backend leaves it out."""

    embedding: list[float] | str
    index: int | UnsetType = UNSET


class EmbeddingResponse(msgspec.Struct):
    """The answer of `POST /v1/embeddings`."""

    data: list[EmbeddingData]
    usage: Usage | None = None


class ModelObject(msgspec.Struct):
    """An entry of `GET /v1/models`, with the metadata some backends add."""

    id: str
    # Any: a backend's odd value (a float, milliseconds, a date string) must
    # not reject its whole list; the catalogue uses it only if it is a time.
    created: Any = None
    # Any, as `created` is: one entry's `owned_by: 7` or `max_model_len:
    # 4096.0` must not reject the list; the catalogue reads only positive ints.
    owned_by: Any = None
    max_model_len: Any = None
    context_length: Any = None
    max_input_tokens: Any = None
    architecture: Any = None
    supported_parameters: Any = None
    # The LiteLLM proxy's kind of model: "chat", "embedding", "rerank", ...
    mode: Any = None
    # llama.cpp's server: see `ModelMeta`. Any, so that another backend's
    # `meta` of some other shape (or llama.cpp's `null` while it loads the
    # model) leaves the list readable.
    meta: Any = None


class ModelMeta(msgspec.Struct):
    """llama.cpp's server's `meta` of a model in `GET /v1/models`: what the
    GGUF file says (`n_ctx_train`, the context length it was trained for, is
    the number Ollama's `model_info` reports too)."""

    n_ctx_train: int = 0
    n_embd: int = 0
    n_params: int = 0
    size: int = 0


class ModelList(msgspec.Struct):
    """`GET /v1/models`."""

    data: list[ModelObject] = msgspec.field(default_factory=list)


class _LooseModelList(msgspec.Struct):
    """`GET /v1/models` as anything: what `decode_model_list` falls back on."""

    data: list[Any] | None = None


class LiteLLMModelInfo(msgspec.Struct):
    """The fields the catalogue reads of a LiteLLM proxy's `model_info` (it
    has some two hundred, prices mostly). Null where LiteLLM does not know;
    Any, so that one deployment's odd value (from an operator's own
    `model_info` in LiteLLM's config) leaves the others readable."""

    mode: Any = None
    max_input_tokens: Any = None
    supports_function_calling: Any = None
    supports_vision: Any = None
    supports_reasoning: Any = None


class LiteLLMDeployment(msgspec.Struct):
    """An entry of `GET /model/info`: one deployment. Several share a
    `model_name` when LiteLLM balances one name over them."""

    model_name: Any = None
    model_info: LiteLLMModelInfo | None = None


class LiteLLMModelInfoList(msgspec.Struct):
    """`GET /model/info` (or `/v1/model/info`) of a LiteLLM proxy."""

    data: list[LiteLLMDeployment]


encode = msgspec.json.Encoder().encode

decode_chunk = msgspec.json.Decoder(ChatCompletionChunk).decode
# The events of one read as one JSON array (see completion.ChunkReader).
decode_chunks = msgspec.json.Decoder(list[ChatCompletionChunk]).decode
decode_embedding_response = msgspec.json.Decoder(EmbeddingResponse).decode
decode_groq_chunk = msgspec.json.Decoder(GroqChunk).decode
_decode_model_list = msgspec.json.Decoder(ModelList | list[ModelObject]).decode
_decode_loose_model_list = msgspec.json.Decoder(_LooseModelList | list[Any]).decode
decode_litellm_model_info = msgspec.json.Decoder(LiteLLMModelInfoList).decode


class _FlatError(msgspec.Struct):
    message: Any = None
    type: Any = None
    code: Any = None


_decode_flat_error = msgspec.json.Decoder(_FlatError).decode


def flat_error(data: bytes) -> dict[str, Any] | None:
    """The error of an event that is an error object itself, not one under
    `error`: `{"object": "error", "message": ..., "type": ..., "code": 400}`,
    as vLLM's early OpenAI server streamed one (and Mistral's API words its
    errors). None when the event has no `message` string. Decoded apart, and
    only for an event without choices: as fields of every chunk, these three
    made each decode some 20 ns slower."""
    try:
        flat = _decode_flat_error(data)
    except msgspec.DecodeError:
        return None
    if not isinstance(flat.message, str):
        return None
    return {"message": flat.message, "type": flat.type, "code": flat.code}


def decode_content_parts(data: bytes) -> ChatCompletionChunk | None:
    """A chunk whose `content` is a list of typed parts, read as the usual one;
    None when it is not such a chunk (the caller's decode error stands).

    Mistral's reasoning models answer so: `{"type": "thinking", "thinking":
    [text parts]}` is the reasoning, `{"type": "text", "text": ...}` parts are
    the answer, anything else (references) is dropped. Only an event that the
    usual decoder refused comes here, so plain chunks never pay for it.
    """
    try:
        raw = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    choices = raw.get("choices") if isinstance(raw, dict) else None
    found = False
    for choice in choices if isinstance(choices, list) else ():
        for key in ("delta", "message"):
            delta = choice.get(key) if isinstance(choice, dict) else None
            if isinstance(delta, dict) and isinstance(delta.get("content"), list):
                text, thinking = _split_parts(delta["content"])
                delta["content"] = text
                if thinking and not delta.get("reasoning_content"):
                    delta["reasoning_content"] = thinking
                found = True
    if not found:
        return None
    try:
        return decode_chunk(encode(raw))
    except msgspec.DecodeError:
        return None


def decode_mended(data: bytes) -> ChatCompletionChunk | None:
    """A chunk that strict JSON refuses only for its text, mended: bytes that
    are not UTF-8 and an escape of half a surrogate pair (a JavaScript server
    that cut an emoji between two events) as Go reads them (`go_strings`),
    `NaN` or `Infinity` (Python's json.dumps writes them for a logprob) as
    null. One such character must not cost the whole answer; None when the
    event is invalid otherwise (the caller's decode error stands). Only an
    event the usual decoder refused comes here: the stdlib's decoder is off
    the hot path."""
    try:
        raw = json.loads(go_strings(data) or data)
    except ValueError:
        return None
    try:
        return decode_chunk(encode(raw))
    except (msgspec.DecodeError, msgspec.EncodeError):
        return None


def _split_parts(parts: list[Any]) -> tuple[str, str]:
    text: list[str] = []
    thinking: list[str] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            text.append(part["text"])
        elif part.get("type") == "thinking":
            inner = part.get("thinking")
            if isinstance(inner, str):
                thinking.append(inner)
            elif isinstance(inner, list):
                thinking.append(_split_parts(inner)[0])
    return "".join(text), "".join(thinking)


def decode_model_list(data: bytes) -> ModelList:
    """`GET /v1/models`: `{"data": [...]}`, or the bare list that Together AI
    answers. A list the typed decoder refuses is read entry by entry, so one
    odd entry costs only itself, not every model of its backend."""
    try:
        listed = _decode_model_list(data)
    except msgspec.ValidationError:
        return _decode_loosely(data)
    models = listed if isinstance(listed, list) else listed.data
    # An empty id would list as ":latest" and could be sent nowhere.
    return ModelList([model for model in models if model.id.strip()])


def _decode_loosely(data: bytes) -> ModelList:
    """`data: null` is no models; a string entry is an id (some servers list
    bare names); an entry with no usable id is skipped."""
    listed = _decode_loose_model_list(data)
    entries = listed if isinstance(listed, list) else listed.data or []
    models = (_model_object(entry) for entry in entries)
    return ModelList([model for model in models if model is not None])


def _model_object(entry: Any) -> ModelObject | None:
    if isinstance(entry, str):
        entry = {"id": entry}
    try:
        model = msgspec.convert(entry, ModelObject)
    except msgspec.ValidationError:
        return None
    return model if model.id.strip() else None  # as in decode_model_list
