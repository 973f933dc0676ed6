"""`ollama-to-openai`: the default request mapper (spec 3.2-3.6, 3.12, 3.13).

It sees requests the handler already checked: `options`, `think` and `format`
hold typed values. It sends only what the client set.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections import deque
from typing import Any, ClassVar

import msgspec

from ollama_gateway.context import RequestContext
from ollama_gateway.errors import InvalidRequestError
from ollama_gateway.protocols import NoConfig, RequestMapper, Stage
from ollama_gateway.schemas import ollama, openai
from ollama_gateway.settings import (
    BackendSettings,
    google_hosted,
    mistral_call_ids,
    openai_hosted,
)
from ollama_gateway.thought_signatures import SKIP_SIGNATURE
from ollama_gateway.turns import tidy_turns

from .openai_format import WRAPPED, add_json_instruction, object_root, wrap_root

__all__ = ["ChatRequestMapper", "map_messages", "sniff_image_mime"]

_DEFAULT_BACKEND = BackendSettings(name="default")
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_ANY_OBJECT = {"type": "object"}
# Ollama stops a generation at 10x the context length whatever `num_predict`
# says, so a larger one (JavaScript's MAX_SAFE_INTEGER as "no limit") means no
# limit; no backend takes a `max_tokens` past the int32 range, and OpenAI
# refuses one past the model's own limit.
_MAX_NUM_PREDICT = 2**31 - 1
# The sampling options OpenAI's API takes, each with the range that it and
# vLLM accept. Ollama takes any value: its sampler clamps temperature and top_p
# (a negative temperature is greedy decoding) and applies any penalty.
# A top_p of 0 is Ollama's (and llama.cpp's) greedy: the likeliest token only.
# vLLM and SGLang refuse it ("top_p must be in (0, 1]"); the least top_p they
# take keeps that one token too, as it does on OpenAI.
_CLAMPED = (
    ("temperature", 0.0, float("inf")),
    ("top_p", 1e-9, 1.0),
    ("frequency_penalty", -2.0, 2.0),
    ("presence_penalty", -2.0, 2.0),
)
# OpenAI's reasoning models (o1, o3, o4-mini, GPT-5), by the ids OpenAI and
# Azure serve them under, refuse `max_tokens` with a 400 ("Use
# 'max_completion_tokens' instead"): every OpenAI chat model takes the newer
# name, which servers of open models may not know.
_COMPLETION_TOKENS = re.compile(r"^(o[134]([-:.]|$)|gpt-5)", re.I)
# The same models but gpt-5-chat (a chat model) sample as they must: any
# temperature but 1, top_p, either penalty, logprobs or stop is a 400
# ("Unsupported value: 'temperature' does not support 0.7 with this model",
# "Unsupported parameter: 'stop' is not supported with this model"). Ollama's
# clients send them unasked (Continue a temperature and its template's stop
# list), and Ollama answers any model whatever the options: they are left out.
# gpt-5.1-chat and later are counted in: an option left out fails no chat.
_FIXED_SAMPLING = re.compile(r"^(o[134]([-:.]|$)|gpt-5(?!-chat))", re.I)
# GPT-5.1 and later take temperature, top_p and logprobs with reasoning off.
_SAMPLES_UNREASONED = re.compile(r"^gpt-5\.[1-9]", re.I)
# OpenAI's own limits, which servers of open models do not share: at most 4
# stop sequences (Continue sends its templates' 5 to 9: "Invalid 'stop': array
# too long") and a temperature of at most 2.
_OPENAI_MAX_STOP = 4
_OPENAI_MAX_TEMPERATURE = 2.0
_decode_json = msgspec.json.Decoder().decode
_encode_json = msgspec.json.Encoder().encode


class ChatRequestMapper:
    """Maps chat, generate and embed requests to OpenAI bodies."""

    stage: ClassVar[Stage] = "request"
    Config: ClassVar[type[msgspec.Struct]] = NoConfig

    def __init__(self, config: msgspec.Struct, inner: RequestMapper | None) -> None:
        if inner is not None:
            raise ValueError("ollama-to-openai is a base translator: list it last")

    def map_chat(
        self, request: ollama.ChatRequest, ctx: RequestContext
    ) -> openai.ChatCompletionRequest:
        backend = ctx.backend_settings or _DEFAULT_BACKEND
        messages = request.messages or []
        if backend.alternating_roles:
            messages = tidy_turns(messages)
        body = openai.ChatCompletionRequest(
            model=ctx.upstream_model, messages=map_messages(messages, backend)
        )
        if request.tools:
            tools = [_complete_tool(tool, i) for i, tool in enumerate(request.tools)]
            # A null is Ollama's empty tool, which offers nothing.
            body.tools = [tool for tool in tools if tool is not None] or msgspec.UNSET
            if ctx.must_call_tool and body.tools:
                body.tool_choice = "required"
        self._common(body, request, ctx, backend)
        return body

    def map_generate(
        self, request: ollama.GenerateRequest, ctx: RequestContext
    ) -> openai.ChatCompletionRequest | openai.CompletionRequest:
        backend = ctx.backend_settings or _DEFAULT_BACKEND
        if request.raw or request.suffix:
            if request.images:
                # Legacy completions take text only; dropping the images would
                # answer a question the client did not ask.
                raise InvalidRequestError(
                    "images are not supported with raw or suffix: this gateway "
                    "sends those prompts to /v1/completions, which takes text only"
                )
            completion = openai.CompletionRequest(
                model=ctx.upstream_model, prompt=request.prompt or ""
            )
            if request.suffix and not request.raw:
                # Ollama puts the suffix in the model's template, which raw
                # leaves out: the prompt goes alone, the suffix unused.
                completion.suffix = request.suffix
            _apply_stream(completion, backend, ctx)
            _apply_options(completion, request.options, backend)
            _apply_format(completion, request.format, backend, ctx)
            if backend.extensions and request.format:
                # Ollama's JSON mode is an object, as its own grammar for it.
                schema = request.format
                completion.json_schema = schema if schema != "json" else _ANY_OBJECT
            if request.logprobs:
                completion.logprobs = request.top_logprobs or 0
            return completion
        messages = []
        if request.system:
            messages.append(ollama.Message(role="system", content=request.system))
        messages.extend(ctx.history)
        messages.append(
            ollama.Message(role="user", content=request.prompt, images=request.images)
        )
        body = openai.ChatCompletionRequest(
            model=ctx.upstream_model, messages=map_messages(messages, backend)
        )
        self._common(body, request, ctx, backend)
        return body

    def map_embed(
        self, request: ollama.EmbedRequest, ctx: RequestContext
    ) -> openai.EmbeddingRequest:
        inputs = request.input
        if isinstance(inputs, list) and "" in inputs:
            # Ollama embeds an empty text (its special tokens alone); OpenAI
            # refuses "" with a 400 for the whole batch, as Hugging Face's
            # text-embeddings-inference does. A blank is as near as they take.
            inputs = [text or " " for text in inputs]
        body = openai.EmbeddingRequest(model=ctx.upstream_model, input=inputs)
        if request.dimensions:
            body.dimensions = request.dimensions
        backend = ctx.backend_settings or _DEFAULT_BACKEND
        context_length = ctx.entry.context_length if ctx.entry is not None else 0
        if request.truncate is not False and backend.extensions and context_length:
            # Ollama cuts each input to the context length unless told not to.
            body.truncate_prompt_tokens = context_length
        return body

    def _common(
        self,
        body: openai.ChatCompletionRequest,
        request: ollama.ChatRequest | ollama.GenerateRequest,
        ctx: RequestContext,
        backend: BackendSettings,
    ) -> None:
        _apply_stream(body, backend, ctx)
        _apply_options(body, request.options, backend)
        _apply_format(body, request.format, backend, ctx)
        thinking_model = ctx.entry is None or ctx.entry.supports("thinking")
        _apply_think(body, request.think, backend, thinking_model)
        if request.logprobs:
            body.logprobs = True
            if request.top_logprobs:
                body.top_logprobs = request.top_logprobs
        if (request.options or request.logprobs) and _fixed_sampling(body.model):
            _drop_fixed_sampling(body)


@functools.lru_cache(maxsize=256)
def _fixed_sampling(model: str) -> bool:
    # Cached: a lookup costs a third of the match, on every chat with options.
    return _FIXED_SAMPLING.match(model) is not None


@functools.lru_cache(maxsize=256)
def _completion_tokens(model: str) -> bool:
    # Cached as `_fixed_sampling` is: on every chat that sets num_predict.
    return _COMPLETION_TOKENS.match(model) is not None


def _drop_fixed_sampling(body: openai.ChatCompletionRequest) -> None:
    """Leave out what OpenAI's reasoning models refuse (see _FIXED_SAMPLING)."""
    body.frequency_penalty = body.presence_penalty = msgspec.UNSET
    body.stop = msgspec.UNSET
    if body.reasoning_effort == "none" and _SAMPLES_UNREASONED.match(body.model):
        return
    body.temperature = body.top_p = msgspec.UNSET
    body.logprobs = body.top_logprobs = msgspec.UNSET


def map_messages(
    messages: list[ollama.Message], backend: BackendSettings | None = None
) -> list[openai.ChatMessage]:
    """Convert the history, pairing tool results with calls (spec 3.3).

    The backend's settings choose the system role's name, whether tool results
    carry the function's `name`, and whether the assistant's earlier thinking
    is sent back (dropped by default: DeepSeek-style APIs reject it).
    """
    backend = backend or _DEFAULT_BACKEND
    out: list[openai.ChatMessage] = []
    unanswered: deque[tuple[str, str]] = deque()  # (call id, function name)
    caller: openai.ChatMessage | None = None  # the message of those calls
    # Images of tool results: OpenAI tool messages take text only, so they
    # follow the run of tool messages as one user message.
    tool_images: list[ollama.Message] = []
    for position, message in enumerate(messages):
        role = message.role.lower()
        if role != "tool":
            if tool_images:
                out.append(_tool_images_message(tool_images))
                tool_images = []
            if unanswered and caller is not None:
                _drop_unanswered(caller, unanswered)
            caller = None
        if role == "assistant" and message.tool_calls:
            nine = mistral_call_ids(backend)  # only here: plain chats pay nothing
            calls = [
                _tool_call(position, i, c, nine)
                for i, c in enumerate(message.tool_calls)
            ]
            unanswered = deque((c.id, c.function.name) for c in calls)
            if google_hosted(backend):
                # On each call, not only a step's first: a call left
                # unanswered (see `_drop_unanswered`) may be the first.
                for call in calls:
                    call.extra_content = SKIP_SIGNATURE
            converted = caller = openai.ChatMessage(
                role=role, content=message.content or "", tool_calls=calls
            )
        elif role == "tool":
            converted = _tool_result(
                message,
                unanswered,
                backend.tool_result_name,
                bool(message.tool_call_id) and mistral_call_ids(backend),
            )
            if message.images:
                tool_images.append(message)
        else:
            if role == "system":
                role = backend.system_role
            converted = openai.ChatMessage(role=role, content=_content(message))
        if role == "assistant" and message.thinking:
            if backend.history_thinking == "reasoning_content":
                converted.reasoning_content = message.thinking
            elif backend.history_thinking == "reasoning":
                converted.reasoning = message.thinking
        out.append(converted)
    if tool_images:
        out.append(_tool_images_message(tool_images))
    if unanswered and caller is not None and out[-1] is not caller:
        _drop_unanswered(caller, unanswered)
    return out


def _drop_unanswered(
    caller: openai.ChatMessage, unanswered: deque[tuple[str, str]]
) -> None:
    """Leave out the calls no tool result answered before the next turn.
    Ollama takes such a history, and clients send one (the Python client's
    own tools example returns one result for several calls), but OpenAI,
    DeepSeek and Anthropic refuse it with a 400 ("An assistant message with
    'tool_calls' must be followed by tool messages responding to each
    'tool_call_id'")."""
    ids = {call_id for call_id, _ in unanswered}
    assert isinstance(caller.tool_calls, list)
    kept = [call for call in caller.tool_calls if call.id not in ids]
    caller.tool_calls = kept or msgspec.UNSET
    unanswered.clear()


def _complete_tool(raw: msgspec.Raw, index: int) -> msgspec.Raw | None:
    """A tool with the keys OpenAI's schema names but Ollama and OpenAI let a
    client leave out: `type`, and the function's `description` and
    `parameters`. llama.cpp's server refuses a tool without any of them (500
    "Failed to parse tools"). Its parameters get the `type` and `properties`
    OpenAI requires (see _complete_parameters). A whole tool passes as it
    came."""
    tool = _decode_json(raw)
    if tool is None:
        return None
    if not isinstance(tool, dict):
        # Ollama refuses the request (400 "cannot unmarshal ... of type
        # api.Tool"); a backend would say it in its own words, or take it.
        got = "array" if isinstance(tool, list) else type(tool).__name__
        raise InvalidRequestError(
            f"invalid value for tools[{index}]: expected object, got {got}"
        )
    function = tool.get("function")
    if not isinstance(function, dict):
        return raw
    parameters = function.get("parameters")
    completed = _complete_parameters(parameters)
    if "type" in tool and function.get("description") is not None and not completed:
        return raw
    if function.get("description") is None:
        function["description"] = ""
    if parameters is None:
        function["parameters"] = {"type": "object", "properties": {}}
    return msgspec.Raw(_encode_json({"type": "function", **tool}))


def _complete_parameters(parameters: Any) -> bool:
    """Whether the parameters are missing, or were missing what OpenAI
    refuses them without, now added: a `type` ("schema must be a JSON Schema
    of 'type: "object"'") and an object's `properties` ("object schema
    missing properties"). Ollama takes both, and MCP servers describe a tool
    without arguments as `{"type": "object"}`."""
    if not isinstance(parameters, dict):
        return parameters is None
    added = "type" not in parameters
    if added:
        parameters["type"] = "object"
    if parameters["type"] == "object" and "properties" not in parameters:
        parameters["properties"] = {}
        added = True
    return added


def _tool_images_message(results: list[ollama.Message]) -> openai.ChatMessage:
    names = ", ".join(m.tool_name or "tool" for m in results)
    parts: list[openai.TextPart | openai.ImagePart] = [
        openai.TextPart(f"[images returned by {names}]")
    ]
    for message in results:
        parts.extend(_image_parts(message.images or []))
    return openai.ChatMessage(role="user", content=parts)


def _tool_call(
    position: int, index: int, call: ollama.ToolCall, nine: bool
) -> openai.ToolCall:
    call_id = call.id or _history_call_id(position, index)
    if nine:
        call_id = _nine_character_id(call_id)
    function = call.function
    return openai.ToolCall(
        id=call_id,
        function=openai.FunctionCall(function.name, function.arguments_json()),
    )


def _history_call_id(position: int, index: int) -> str:
    """A deterministic id for a call of the history that came without one
    (the Python client drops them): nine letters and digits, the only form
    Mistral's API and the Mistral chat templates accept ("Tool call id was
    call_1_0 but must be a-z, A-Z, 0-9, with a length of 9")."""
    return "call" + _base36(position, 3) + _base36(index, 2)


def _nine_character_id(call_id: str) -> str:
    """A call's id in Mistral's form (see _history_call_id): as it is if it
    has it, else nine letters and digits made from it. Clients make ids of
    their own (LangChain.js gives each call a UUID and sends it back with the
    next turn), which Ollama takes and Mistral refuses. Made from the id
    alone, it is the same in every turn, so a backend's prefix cache still
    holds, and a result naming its call by that id still answers it."""
    if len(call_id) == 9 and call_id.isascii() and call_id.isalnum():
        return call_id
    digest = hashlib.blake2b(call_id.encode(), digest_size=8).digest()
    return _base36(int.from_bytes(digest) % 36**9, 9)


def _base36(number: int, width: int) -> str:
    digits = ""
    while number:
        number, digit = divmod(number, 36)
        digits = _BASE36[digit] + digits
    return digits.rjust(width, "0")


def _tool_result(
    message: ollama.Message,
    unanswered: deque[tuple[str, str]],
    with_name: bool,
    nine: bool,
) -> openai.ChatMessage:
    content = message.content or ""
    call_id = message.tool_call_id
    if call_id and nine:
        call_id = _nine_character_id(call_id)
    name = message.tool_name or ""
    if call_id:
        for pending in unanswered:
            if pending[0] == call_id:
                unanswered.remove(pending)
                name = name or pending[1]
                break
    else:
        match = next((p for p in unanswered if p[1] == message.tool_name), None)
        if match is None and unanswered:
            match = unanswered[0]
        if match is None:
            # An orphan result: OpenAI would reject a tool message with no call.
            name = message.tool_name or "tool"
            return openai.ChatMessage(
                role="user", content=f"[tool {name} result]\n{content}"
            )
        unanswered.remove(match)
        call_id = match[0]
        name = name or match[1]
    result = openai.ChatMessage(role="tool", content=content, tool_call_id=call_id)
    if with_name and name:
        # Ollama's own path sends it; strict OpenAI may reject it (opt-in).
        result.name = name
    return result


def _content(message: ollama.Message) -> str | list[openai.TextPart | openai.ImagePart]:
    text = message.content or ""
    if not message.images:
        return text
    parts: list[openai.TextPart | openai.ImagePart] = []
    if text:
        parts.append(openai.TextPart(text))
    parts.extend(_image_parts(message.images))
    return parts


def _image_parts(images: list[str]) -> list[openai.ImagePart]:
    parts = []
    for image in images:
        data = image.replace("\n", "").replace("\r", "")
        url = f"data:{sniff_image_mime(data)};base64,{data}"
        parts.append(openai.ImagePart(openai.ImageURL(url)))
    return parts


def sniff_image_mime(b64: str) -> str:
    """The MIME type from an image's magic bytes; JPEG when unknown (as Ollama)."""
    head = base64.b64decode(b64[:24] + "=" * (-len(b64[:24]) % 4), validate=False)
    if head.startswith(b"\x89PNG"):
        return "image/png"
    if head.startswith(b"GIF8"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return "image/jpeg"


def _apply_stream(
    body: openai.SamplingParams, backend: BackendSettings, ctx: RequestContext
) -> None:
    if not ctx.stream and backend.stream_upstream == "as-client":
        # One JSON answer for a client that wants one: cheaper on both sides,
        # at the price of a time to first token (it is the whole answer's).
        body.stream = False
        return
    # By default always stream upstream: one code path, and a time to first
    # token to report (spec 3.1).
    body.stream = True
    if backend.stream_usage:
        body.stream_options = openai.StreamOptions()


def _apply_options(
    body: openai.SamplingParams, options: dict[str, Any], backend: BackendSettings
) -> None:
    if not options:
        return
    num_predict = options.get("num_predict")
    if isinstance(num_predict, int) and 0 < num_predict <= _MAX_NUM_PREDICT:
        field = backend.max_tokens_field
        if (
            field == "max_tokens"
            and isinstance(body, openai.ChatCompletionRequest)
            and _completion_tokens(body.model)
        ):
            field = "max_completion_tokens"
        setattr(body, field, num_predict)
    for name, low, high in _CLAMPED:
        if name in options:
            # Clamped: out of range, OpenAI and vLLM refuse the request (400
            # "below minimum value") that Ollama answers.
            setattr(body, name, min(max(options[name], low), high))
    if options.get("temperature", 0) > _OPENAI_MAX_TEMPERATURE and openai_hosted(
        backend
    ):
        body.temperature = _OPENAI_MAX_TEMPERATURE
    seed = options.get("seed")
    if isinstance(seed, int) and seed >= 0:
        body.seed = seed
    stop = options.get("stop")
    if stop:
        limit = backend.max_stop
        if not limit and len(stop) > _OPENAI_MAX_STOP:
            limit = _OPENAI_MAX_STOP if openai_hosted(backend) else 0
        body.stop = stop[:limit] if limit else stop
    if backend.extensions:
        if "top_k" in options:
            # Ollama's "no top-k" is any k <= 0; vLLM refuses one below -1,
            # its own (and SGLang's) way to say it, which llama.cpp also
            # takes as off.
            body.top_k = options["top_k"] if options["top_k"] > 0 else -1
        if "min_p" in options:
            body.min_p = min(max(options["min_p"], 0.0), 1.0)
        for name in ("typical_p", "repeat_last_n"):
            if name in options:
                setattr(body, name, options[name])
        if "repeat_penalty" in options:
            body.repeat_penalty = options["repeat_penalty"]
            body.repetition_penalty = options["repeat_penalty"]


def _apply_format(
    body: openai.SamplingParams,
    fmt: Any,
    backend: BackendSettings,
    ctx: RequestContext,
) -> None:
    if fmt is None:
        return
    # Cleared first: a request failed over is mapped again for the next
    # backend, whose answer is unwrapped only if its schema was wrapped.
    ctx.extra.pop(WRAPPED, None)
    if isinstance(body, openai.ChatCompletionRequest) and openai_hosted(backend):
        fmt = _openai_format(body, fmt, backend, ctx)
    if fmt == "json" or fmt == {}:
        # `{}`, the schema any JSON meets, is JSON mode: OpenAI's structured
        # outputs refuse a schema whose root is not an object ("schema must be
        # a JSON Schema of 'type: \"object\"'"), where Ollama takes it.
        body.response_format = {"type": "json_object"}
    elif isinstance(fmt, dict) and backend.format_schema == "json_object":
        # llama-cpp-python's server takes only "text" and "json_object" (a
        # "json_schema" type is refused with a 500), and a schema beside the
        # latter; llama.cpp's server takes this form too.
        body.response_format = {"type": "json_object", "schema": fmt}
    elif isinstance(fmt, dict):
        body.response_format = {
            "type": "json_schema",
            "json_schema": {"name": "schema", "schema": fmt},
        }


def _openai_format(
    body: openai.ChatCompletionRequest,
    fmt: Any,
    backend: BackendSettings,
    ctx: RequestContext,
) -> Any:
    """`format` as OpenAI's API and Azure OpenAI take it (see openai_format.py)."""
    if fmt == "json" or fmt == {} or backend.format_schema == "json_object":
        add_json_instruction(body, backend.system_role)
    elif not object_root(fmt):
        ctx.extra[WRAPPED] = True
        return wrap_root(fmt)
    return fmt


def _apply_think(
    body: openai.ChatCompletionRequest,
    think: Any,
    backend: BackendSettings,
    thinking_model: bool,
) -> None:
    if think is None or backend.dialect == "none":
        return
    if backend.dialect == "chat_template_kwargs":
        kwargs: dict[str, Any] = {"enable_thinking": think is not False}
        if isinstance(think, str):
            # Harmony (gpt-oss) templates know low, medium and high only.
            harmony = think == "max" and "gpt-oss" in body.model.lower()
            kwargs["reasoning_effort"] = "high" if harmony else think
        if _THINKING_KWARG.search(body.model):
            kwargs["thinking"] = think is not False
        body.chat_template_kwargs = kwargs
        return
    if _NO_EFFORT.search(body.model):
        return
    if think is False:
        # Models without reasoning reject reasoning_effort outright.
        if thinking_model and backend.think_off_effort:
            effort = _off_effort(body.model, backend.think_off_effort)
            if effort:
                body.reasoning_effort = effort
    else:
        if think is True:
            effort = backend.think_on_effort
        else:
            effort = "high" if think == "max" else think
        effort = _on_effort(body.model, effort)
        if effort:
            body.reasoning_effort = effort


# Hybrid models whose chat templates read `thinking`, not `enable_thinking`
# (vLLM and SGLang say so for DeepSeek-V3.1 and later and Granite 3.2): with
# `enable_thinking` alone they never think, whatever `think` says.
_THINKING_KWARG = re.compile(
    r"deepseek-(chat-)?v3\.[1-9]|deepseek-v[4-9]|granite-3\.[2-9]", re.I
)
# Reasoning models that cannot stop reasoning, and so refuse the default
# `"none"` for `think: false`: OpenAI's o-series and GPT-5 pro and codex (no
# "none" before GPT-5.1), gpt-oss (low, medium or high), Gemini 2.5 Pro (its
# thinking budget cannot be 0), grok-3-mini (low or high), DeepSeek-R1, QwQ
# and Magistral. They get nothing, so they keep their own default, as
# Ollama's gpt-oss keeps thinking on `think: false`, without a refused first
# request. GPT-5 and its mini and nano stop at "minimal".
_ALWAYS_THINKS = re.compile(
    r"(^|/)(o[134]([-:.]|$)|gpt-5(\.\d+)?-(pro|codex)|grok-3-mini)|gpt-oss|"
    r"gemini-2\.5-pro|deepseek-r1|deepseek-reasoner|qwq|magistral",
    re.I,
)
_GPT5_MINIMAL = re.compile(r"(^|/)gpt-5(-mini|-nano)?(-\d{4}-\d{2}-\d{2})?$", re.I)


# xAI's Grok 4 (0709), its fast reasoning models and grok-code-fast refuse
# any `reasoning_effort` (400 "Model does not support parameter
# reasoningEffort"): they choose their reasoning by model, so `think` sends
# them nothing. Later Grok models (4.3 on) take it.
_NO_EFFORT = re.compile(
    r"(^|/)grok-(4(-0709|-latest)?|4(-1)?-fast(-reasoning)?|code-fast(-1)?)$", re.I
)


# grok-3-mini takes "low" or "high" only: a "medium" is a 400 from xAI.
_LOW_OR_HIGH = re.compile(r"(^|/)grok-3-mini", re.I)


def _on_effort(model: str, effort: str) -> str:
    """The `reasoning_effort` for a `think` that is on: Ollama's "medium",
    the level `think: true` stands for, goes as nothing (the model's own
    default) to models that lack that level."""
    if effort == "medium" and _LOW_OR_HIGH.search(model):
        return ""
    return effort


def _off_effort(model: str, configured: str) -> str:
    """The `reasoning_effort` for `think: false`: a configured value as it
    is; the default, "none", only to models that take it."""
    if configured != "none":
        return configured
    if _ALWAYS_THINKS.search(model):
        return ""
    return "minimal" if _GPT5_MINIMAL.search(model) else "none"
