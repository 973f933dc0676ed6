"""`openai-to-ollama`: the default response mapper (spec 3.7-3.11, 3.13).

A `ChatStreamSession` per request turns OpenAI chunks into Ollama chat chunks:
content and reasoning are emitted as they come, tool-call fragments are joined
by index and emitted whole at the end, and usage is read from any chunk, even
one after `finish_reason`. The same session reads legacy completion chunks
(`text`) and a whole non-stream answer (`message`). For a client that asked
`stream: false` the gateway calls `absorb` with each read's chunks instead
of `feed`: the content is kept and `close` returns it as one chunk.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import string
import struct
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import msgspec

from ollama_gateway.clock import now_rfc3339
from ollama_gateway.context import RequestContext
from ollama_gateway.errors import GatewayError, UpstreamProtocolError
from ollama_gateway.protocols import NoConfig, ResponseMapper, Stage, StreamSession
from ollama_gateway.schemas import ollama, openai
from ollama_gateway.token_estimate import tokens_for_characters
from ollama_gateway.upstream import map_error_object

from .openai_format import WRAPPED, ValueSession

__all__ = ["NO_CHOICES", "ChatResponseMapper", "ChatStreamSession", "map_done_reason"]

NO_CHOICES = "upstream sent an answer without choices: there is no completion in it"

_ID_ALPHABET = string.ascii_lowercase + string.digits


class _ChatLogprobs(msgspec.Struct):
    content: list[ollama.Logprob] | None = None


class _LegacyLogprobs(msgspec.Struct):
    tokens: list[str] = msgspec.field(default_factory=list)
    token_logprobs: list[float | None] = msgspec.field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] | None = None
    # llama.cpp's server answers legacy completions in the chat shape.
    content: list[ollama.Logprob] | None = None


_decode_chat_logprobs = msgspec.json.Decoder(_ChatLogprobs | None).decode
_decode_legacy_logprobs = msgspec.json.Decoder(_LegacyLogprobs | None).decode
_decode_arguments = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class ChatResponseMapper:
    """Opens a stream session per request; maps embeddings."""

    stage: ClassVar[Stage] = "response"
    Config: ClassVar[type[msgspec.Struct]] = NoConfig

    def __init__(self, config: msgspec.Struct, inner: ResponseMapper | None) -> None:
        if inner is not None:
            raise ValueError("openai-to-ollama is a base translator: list it last")

    def open_stream(self, ctx: RequestContext) -> StreamSession:
        session = ChatStreamSession(ctx)
        if ctx.extra and ctx.extra.get(WRAPPED):
            # The request mapper sent the schema inside an object (see
            # openai_format.py): the client gets its value.
            return ValueSession(session)
        return session

    def map_embed(
        self, response: openai.EmbeddingResponse, ctx: RequestContext
    ) -> ollama.EmbedResponse:
        data = sorted(response.data, key=_position)
        vectors = [_vector(d.embedding) for d in data]
        dimensions = ctx.extra.get("dimensions")
        if isinstance(dimensions, int) and dimensions > 0:
            vectors = [v[:dimensions] for v in vectors]
        if ctx.endpoint == "embed":
            vectors = [_normalise(v) for v in vectors]
        for vector in vectors:
            if not all(math.isfinite(x) for x in vector):
                raise GatewayError("embedding contains NaN or Inf values")
        usage = response.usage
        end = time.perf_counter_ns()
        return ollama.EmbedResponse(
            model=ctx.model,
            embeddings=vectors,
            total_duration=end - ctx.started_ns,
            load_duration=max(ctx.upstream_sent_ns - ctx.started_ns, 0),
            # Jina's backend counts only `total_tokens`: the same number here.
            prompt_eval_count=(usage.prompt_tokens or usage.total_tokens or 0)
            if usage
            else 0,
        )


def _position(data: openai.EmbeddingData) -> int:
    # The gateway numbers the vectors of a backend that numbers none of
    # them in arrival order (and refuses duplicate or missing numbers), so
    # an UNSET index is only a hand-built answer's.
    return data.index if isinstance(data.index, int) else 0


class _ToolCallParts:
    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []


class _Kept:
    """The parts of a non-stream answer, kept once `absorb` is called."""

    __slots__ = ("content", "logprobs", "thinking")

    def __init__(self) -> None:
        self.content: list[str] = []
        self.thinking: list[str] = []
        self.logprobs: list[ollama.Logprob] = []


class ChatStreamSession:
    """Per-request state of one answer; see the module docstring."""

    # `feed` and `close` use nothing of the request's task (no current task,
    # no context variables), so the gateway may call them from the upstream
    # connection's callback (see completion.ChunkReader.read).
    feeds_in_callbacks: ClassVar[bool] = True

    __slots__ = (
        "chose",
        "ctx",
        "deltas",
        "finish_reason",
        "first_ns",
        "last_ns",
        "moved",
        "timings",
        "tools",
        "top_logprobs",
        "usage",
        "kept",
        "want_logprobs",
    )

    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx
        self.tools: dict[int, _ToolCallParts] = {}
        # Upstream tool-call index -> our slot, for a relay that reuses an index
        # for a new call (see `_add_tool_calls`); None until that happens.
        self.moved: dict[int, int] | None = None
        self.finish_reason: str | None = None
        self.usage: openai.Usage | None = None
        self.timings: Any = None
        self.deltas = 0
        # A choice came that made no delta (a role, a finish_reason, empty
        # content): set off the content path, so content chunks pay nothing.
        self.chose = False
        self.first_ns = 0
        self.last_ns = 0
        self.want_logprobs = ctx.logprobs
        self.top_logprobs = ctx.top_logprobs
        # The answer so far, once `absorb` is called (None while streaming).
        self.kept: _Kept | None = None

    def feed(self, chunk: openai.ChatCompletionChunk) -> Sequence[ollama.ChatResponse]:
        if chunk.error is not None:
            raise _stream_error(chunk.error, self.ctx.model)
        if chunk.usage is not None:
            self.usage = chunk.usage
            self.timings = chunk.timings  # llama.cpp sends both in one chunk
        choices = chunk.choices
        if not choices:
            return ()
        choice = choices[0]
        if choice.finish_reason:
            self._finish(choice)
        delta = choice.delta
        whole = delta is None and choice.message is not None
        if whole:
            delta = choice.message
        content = thinking = None
        if delta is not None:
            content = delta.content
            thinking = delta.reasoning_content or delta.reasoning
            calls = delta.tool_calls
            if calls:
                if not isinstance(calls, list):
                    calls = [calls]  # TGI's one call (see openai.Delta)
                self._add_tool_calls(calls, positional=whole)
        elif choice.text is not None:
            content = choice.text
        logprobs = None
        if self.want_logprobs and choice.logprobs:
            logprobs = self._logprobs(choice.logprobs, legacy=choice.text is not None)
        if not content and not thinking and not logprobs:
            # Checked only here, so content chunks do not pay for it: OpenAI's
            # Structured Outputs refusal comes in `refusal`, with no content.
            if delta is None or not delta.refusal:
                if choice.error is not None:  # OpenRouter's, with no finish
                    raise _stream_error(choice.error, self.ctx.model)
                self.chose = True
                return ()
            content = delta.refusal
        now = time.perf_counter_ns()
        if not self.first_ns:
            # Recorded at once: a stream that never reaches `close` (an error
            # line, a shutdown, a client gone) still logs its time to first token.
            self.first_ns = self.ctx.first_token_ns = now
        self.last_ns = now
        self.deltas += 1
        kept = self.kept
        if kept is not None:
            if content:
                kept.content.append(content)
            if thinking:
                kept.thinking.append(thinking)
            if logprobs:
                kept.logprobs.extend(logprobs)
            return ()
        message = ollama.ResponseMessage("assistant", content or "", thinking or None)
        return (
            ollama.ChatResponse(
                model=self.ctx.model,
                created_at=self.ctx.created_at,
                message=message,
                done=False,
                logprobs=logprobs,
            ),
        )

    def absorb(self, chunks: Sequence[openai.ChatCompletionChunk]) -> None:
        """`feed` for an answer the client gets whole (`stream: false`), given
        the chunks of one read: from the first call on, what `feed` would
        return is kept, and `close` returns it as one chunk, so the fold makes
        no Ollama chunk per event."""
        kept = self.kept
        if kept is None:
            kept = self.kept = _Kept()
        content = kept.content
        plain = not self.want_logprobs
        counted = 0
        # The usual chunk, a piece of content and nothing else to read, is
        # kept in this loop; any other goes through `feed`, as a streamed one
        # does. This loop is most of what a non-stream answer costs the session.
        for chunk in chunks:
            choices = chunk.choices
            if plain and choices and chunk.error is None:
                choice = choices[0]
                delta = choice.delta
                if (
                    delta is not None
                    and (text := delta.content)
                    and not delta.tool_calls
                    and not delta.reasoning_content
                    and not delta.reasoning
                ):
                    if chunk.usage is not None:
                        self.usage = chunk.usage
                        self.timings = chunk.timings
                    if choice.finish_reason:
                        self._finish(choice)
                    content.append(text)
                    counted += 1
                    continue
            if counted:
                self._count(counted)  # before `feed` takes its own time
                counted = 0
            self.feed(chunk)
        if counted:
            self._count(counted)

    def _finish(self, choice: openai.ChunkChoice) -> None:
        """Keep a choice's finish_reason; raise for one that says the answer
        failed (see `_FAILED`) or that comes with an error object. Called
        only for a finishing choice, so content chunks do not pay for it."""
        reason = self.finish_reason = choice.finish_reason
        if choice.error is not None:
            raise _stream_error(choice.error, self.ctx.model)
        failure = _FAILED.get(reason or "")
        if failure is not None:
            raise _stream_error(failure, self.ctx.model)

    def _count(self, deltas: int) -> None:
        """Deltas received now: the chunks of one read arrived together, so
        they share one timestamp."""
        now = time.perf_counter_ns()
        if not self.first_ns:
            self.first_ns = self.ctx.first_token_ns = now
        self.last_ns = now
        self.deltas += deltas

    def close(self) -> Sequence[ollama.ChatResponse]:
        if not self.deltas and not self.chose:
            # Not one choice in the whole answer (`{}`, `{"choices": []}`, or
            # only Azure's prompt-filter event and a usage trailer before
            # [DONE]): no completion, which an empty success would hide.
            # Checked once, here: each delta or choice sets one or the other.
            raise UpstreamProtocolError(NO_CHOICES)
        out = []
        created_at = now_rfc3339()
        kept = self.kept
        if kept is not None and (kept.content or kept.thinking or kept.logprobs):
            message = ollama.ResponseMessage(
                "assistant", "".join(kept.content), "".join(kept.thinking) or None
            )
            out.append(
                ollama.ChatResponse(
                    model=self.ctx.model,
                    created_at=created_at,
                    message=message,
                    done=False,
                    logprobs=kept.logprobs or None,
                )
            )
        calls = self._tool_calls() if self.tools else None
        if calls:
            out.append(
                ollama.ChatResponse(
                    model=self.ctx.model,
                    created_at=created_at,
                    message=ollama.ResponseMessage("assistant", "", tool_calls=calls),
                    done=False,
                )
            )
        out.append(self._final(created_at))
        return out

    def _final(self, created_at: str) -> ollama.ChatResponse:
        ctx = self.ctx
        end = time.perf_counter_ns()
        sent = ctx.upstream_sent_ns or ctx.started_ns
        first = self.first_ns or end
        usage = self.usage
        prompt_tokens = (usage.prompt_tokens or 0) if usage else 0
        eval_count = (usage.completion_tokens or 0) if usage else 0
        eval_count = eval_count or self.deltas
        ctx.first_token_ns = self.first_ns
        ctx.prompt_tokens = prompt_tokens
        ctx.completion_tokens = eval_count
        # For the agent fronts' usage (see RequestContext): the Ollama chunk
        # has no field for either.
        ctx.cached_tokens = usage.cached_tokens() if usage else 0
        ctx.reasoning_tokens = usage.reasoning_tokens() if usage else 0
        ctx.filtered = self.finish_reason == "content_filter"
        prompt_ns = max(first - sent, 0)
        eval_ns = self.last_ns - self.first_ns
        timed = _server_timings(self.timings)
        if timed is not None:
            # The server's own times, as Ollama reports its runner's: not the
            # network's, and real when the answer came whole (`as-client`).
            prompt_ns = round(timed.prompt_ms * 1e6)
            eval_ns = round(timed.predicted_ms * 1e6)
        return ollama.ChatResponse(
            model=ctx.model,
            created_at=created_at,
            message=ollama.ResponseMessage("assistant", ""),
            done=True,
            done_reason=map_done_reason(self.finish_reason),
            total_duration=max(end - ctx.started_ns, 1),
            load_duration=max(sent - ctx.started_ns, 0),
            prompt_eval_count=prompt_tokens or self._prompt_estimate(),
            prompt_eval_duration=prompt_ns,
            eval_count=eval_count,
            eval_duration=max(eval_ns, 1) if eval_count else 0,
        )

    def _prompt_estimate(self) -> int:
        # No count from the backend (llama.cpp's server streams none): real
        # Ollama always counts the prompt, and clients need it (LangChain's
        # usage_metadata is None without). Not in ctx.prompt_tokens: metrics
        # count what backends report.
        size = self.ctx.prompt_size
        return tokens_for_characters(size) if size and size > 0 else 0

    def _add_tool_calls(
        self, deltas: list[openai.ToolCallDelta], *, positional: bool
    ) -> None:
        now = time.perf_counter_ns()
        if not self.first_ns:
            # Recorded at once: a stream that never reaches `close` (an error
            # line, a shutdown, a client gone) still logs its time to first token.
            self.first_ns = self.ctx.first_token_ns = now
        self.last_ns = now
        # Counted as content is: with no usage from the backend, a tool call
        # still has an eval_count, as Ollama always gives one.
        self.deltas += 1
        for position, delta in enumerate(deltas):
            index = position if positional else self._index_of(delta)
            parts = self.tools.get(index)
            if parts is None:
                parts = self.tools[index] = _ToolCallParts()
            elif _repeats(delta, parts):
                continue
            elif _starts(delta, parts):
                # Some relays (Gemini converters, OpenRouter) number every
                # parallel call 0, one whole call per chunk: a new call there.
                parts = self._move(index, delta.id, parts)
            if delta.id and not parts.id:
                parts.id = delta.id
            function = delta.function
            if function is not None:
                if function.name and not parts.name:
                    parts.name = function.name
                arguments = function.arguments
                if arguments:
                    if not isinstance(arguments, str):
                        arguments = _encode(arguments).decode()  # an object
                    parts.arguments.append(arguments)

    def _move(
        self, index: int, call_id: str | None, current: _ToolCallParts
    ) -> _ToolCallParts:
        """The call with id `call_id` (not the `current` one under `index`),
        or a new one, that fragments under upstream `index` continue from now
        on."""
        tools = self.tools
        slot = next(
            (
                i
                for i, p in tools.items()
                if call_id and p.id == call_id and p is not current
            ),
            None,
        )
        if slot is None:
            slot = max(tools) + 1
            tools[slot] = _ToolCallParts()
        if self.moved is None:
            self.moved = {}
        self.moved[index] = slot
        return tools[slot]

    def _index_of(self, delta: openai.ToolCallDelta) -> int:
        if delta.index is not None:
            moved = self.moved
            return delta.index if moved is None else moved.get(delta.index, delta.index)
        # No index: a fragment continues the last call unless it brings a new
        # id, or a name when the last call already has another one, or the
        # same name with a value of its own after the last call is whole.
        if not self.tools:
            return 0
        last = max(self.tools)
        parts = self.tools[last]
        if delta.id:
            known = (i for i, p in self.tools.items() if p.id == delta.id)
            found = next(known, None)
            if found is not None:
                return found
            return last + 1 if parts.id else last
        function = delta.function
        if function is None or not function.name or not parts.name:
            return last
        if function.name != parts.name:
            return last + 1
        # The same name: some backends repeat it in every fragment of a call
        # (spec 3.8: the first name wins, never a new call for it), or it is
        # the same function called again.
        return (
            last + 1
            if _opens_a_value(function.arguments) and _ends_a_value(parts)
            else last
        )

    def _tool_calls(self) -> list[ollama.ToolCall]:
        """The calls, whole. An id a call shares with an earlier one is
        replaced: some backends (DeepSeek, GLM, OpenRouter) give parallel
        calls one id, and a client pairs each result with its call by id
        (Anthropic's API and DeepSeek's own refuse the next turn's
        duplicates)."""
        calls = []
        used: set[str] = set()
        indices = sorted(self.tools)
        if self.finish_reason == "length" and not _whole(self.tools[indices[-1]]):
            # The answer reached max_tokens inside its last call (llama.cpp
            # streams a call's name before its arguments): the client asked
            # for a short answer, and half a call is none to make.
            indices.pop()
        for index in indices:
            parts = self.tools[index]
            text = "".join(parts.arguments)
            if not parts.name:
                # A call that names no function: no client can run it, and
                # sent back with the next turn it is refused (Anthropic's API
                # and /v1/messages want a name, OpenAI's backends too), so the
                # conversation could go no further. A fragment with nothing in
                # it is no call; one with arguments is a broken answer.
                if text.strip():
                    raise GatewayError(
                        "upstream returned a tool call without a function name",
                        status=500,
                    )
                continue
            arguments = _parse_arguments(parts.name, text)
            function = ollama.ToolCallFunction(
                index=index, name=parts.name, arguments=arguments
            )
            call_id = parts.id if parts.id and parts.id not in used else _call_id()
            used.add(call_id)
            calls.append(ollama.ToolCall(id=call_id, function=function))
        return calls

    def _logprobs(
        self, raw: msgspec.Raw, *, legacy: bool
    ) -> list[ollama.Logprob] | None:
        try:
            if legacy:
                items = _from_legacy(_decode_legacy_logprobs(raw))
            else:
                decoded: _ChatLogprobs | None = _decode_chat_logprobs(raw)
                items = decoded.content if decoded is not None else None
        except msgspec.DecodeError:
            return None  # best effort: a backend's odd logprobs shape is not fatal
        if not items:
            return None
        tops = self.top_logprobs
        for item in items:
            if not tops:
                item.top_logprobs = None
            # llama-cpp-python sends `"bytes": null`; Ollama gives the token's.
            if item.bytes is None and item.token:
                item.bytes = list(item.token.encode())
            for top in item.top_logprobs or ():
                if top.bytes is None and top.token:
                    top.bytes = list(top.token.encode())
        return items


def _starts(delta: openai.ToolCallDelta, parts: _ToolCallParts) -> bool:
    """Whether `delta`, under the index of the call `parts`, starts a call of
    its own. It must name a function, with the call so far whole (its
    arguments complete JSON); then either it has another id, or it begins
    arguments of its own (added to a whole value they could only make it
    invalid: a relay that numbers every call 0 and gives all one id). Else it continues
    the call, and the first id wins (llama.cpp repeats the name and the id
    in every fragment of one call)."""
    function = delta.function
    if function is None or not function.name or not parts.name:
        return False
    if delta.id and parts.id and delta.id != parts.id:
        return not parts.arguments or _whole(parts)
    return _opens_a_value(function.arguments) and _ends_a_value(parts)


def _repeats(delta: openai.ToolCallDelta, parts: _ToolCallParts) -> bool:
    """Whether `delta` is the whole call `parts` once more, not a part of it
    or a call of its own: the LiteLLM proxy ends a streamed call so (its
    issue #20480), with the same index, id and name, the arguments sometimes
    encoded twice. Added, they would make the call invalid JSON; taken for a
    new call, the client would run the tool twice."""
    function = delta.function
    if function is None or not function.arguments or not delta.id:
        return False
    if delta.id != parts.id or (function.name or parts.name) != parts.name:
        return False
    arguments = function.arguments
    pieces = parts.arguments
    # Cheap checks first: this runs for every fragment of a streamed call.
    if not pieces or not pieces[-1].rstrip().endswith(("}", "]")):
        return False
    if isinstance(arguments, str) and not arguments.lstrip().startswith(
        ("{", "[", '"')
    ):
        return False  # a continuation: only a whole value can repeat one
    try:
        value = arguments
        if isinstance(value, str):
            value = _decode_arguments(value)
            if isinstance(value, str):
                value = _decode_arguments(value)
        return bool(value == _decode_arguments("".join(pieces)))
    except msgspec.DecodeError:
        return False


def _opens_a_value(arguments: object) -> bool:
    """Whether a fragment's arguments begin an object or array of their own
    (or are one, from a backend that sends arguments as an object)."""
    if isinstance(arguments, str):
        return arguments.lstrip().startswith(("{", "["))
    return isinstance(arguments, dict)


def _ends_a_value(parts: _ToolCallParts) -> bool:
    """Whether the call so far is whole JSON; its last piece is looked at
    first, so that a call whose name comes with every fragment is not
    parsed once per fragment."""
    pieces = parts.arguments
    if not pieces or not pieces[-1].rstrip().endswith(("}", "]")):
        return False
    return _whole(parts)


def _server_timings(timings: Any) -> openai.Timings | None:
    if not isinstance(timings, dict):
        return None
    try:
        return msgspec.convert(timings, openai.Timings)
    except msgspec.ValidationError:
        return None  # another backend's field of that name


def _whole(parts: _ToolCallParts) -> bool:
    """Whether a call's arguments so far are a whole JSON value."""
    try:
        _decode_arguments("".join(parts.arguments))
    except msgspec.DecodeError:
        return False
    return True


def map_done_reason(finish_reason: str | None) -> str:
    """Ollama knows only `stop` and `length` for generated answers (spec 3.9).
    Mistral's API says `model_length` when the answer filled the model's
    context, not `max_tokens`: cut short all the same."""
    return "length" if finish_reason in _LENGTH else "stop"


_LENGTH = frozenset(("length", "model_length"))

# finish_reasons that say the answer failed, not that it ended: as an error
# event is, each is an error (an error line after what was streamed), never a
# done chunk that would pass a cut answer off as whole.
_FAILED: dict[str, dict[str, Any]] = {
    # OpenRouter (with an `error` object, taken first) and Mistral's API.
    "error": {"message": 'the backend ended the answer with finish_reason "error"'},
    # SGLang: a request aborted without an error status (its /abort_request,
    # a session's cleanup) ends so, the answer cut where it was.
    "abort": {"message": 'the backend aborted the answer (finish_reason "abort")'},
    # DeepSeek's API: "interrupted due to insufficient resource of the
    # inference system"; a 503, as for its overloaded servers.
    "insufficient_system_resource": {
        "message": "the backend interrupted the answer: insufficient system "
        'resources (finish_reason "insufficient_system_resource")',
        "code": 503,
    },
}


def _parse_arguments(name: str, text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = _decode_arguments(text)
    except msgspec.DecodeError as exc:
        raise GatewayError(
            f'upstream returned invalid tool call arguments for "{name}": {exc}',
            status=500,
        ) from None
    if isinstance(value, str) and value.lstrip().startswith("{"):
        # Arguments encoded twice: a model that wrote them as a JSON string,
        # which vLLM's hermes parser (Qwen) then encodes again. The client
        # needs the object, not {"value": "<its text>"}.
        try:
            value = _decode_arguments(value)
        except msgspec.DecodeError:
            pass
    return value if isinstance(value, dict) else {"value": value}


def _call_id() -> str:
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def _from_legacy(legacy: _LegacyLogprobs | None) -> list[ollama.Logprob] | None:
    if legacy is None:
        return None
    if legacy.content is not None:
        return legacy.content
    out = []
    tops = legacy.top_logprobs or []
    for i, token in enumerate(legacy.tokens):
        logprob = legacy.token_logprobs[i] if i < len(legacy.token_logprobs) else None
        top = tops[i] if i < len(tops) else None
        out.append(
            ollama.Logprob(
                token=token,
                logprob=logprob if logprob is not None else 0.0,
                bytes=list(token.encode()) or None,
                top_logprobs=[
                    ollama.TopLogprob(t, lp, list(t.encode()) or None)
                    for t, lp in top.items()
                ]
                if top
                else None,
            )
        )
    return out or None


def _stream_error(error: Any, model: str) -> GatewayError:
    """An error event is mapped as an error status would be (spec 3.15)."""
    return map_error_object(error, f"model '{model}' not found")


def _vector(embedding: list[float] | str) -> list[float]:
    if isinstance(embedding, list):
        return embedding
    # A bad vector is the backend's fault (502), not this translator's (500).
    try:
        raw = base64.b64decode(embedding)
    except binascii.Error as exc:
        raise UpstreamProtocolError(
            f"upstream sent an embedding that is not base64: {exc}"
        ) from None
    if len(raw) % 4:
        raise UpstreamProtocolError(
            f"upstream sent a base64 embedding of {len(raw)} bytes, "
            "not a whole number of float32s"
        )
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def _normalise(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    scale = 1.0 / max(norm, 1e-12)
    return [x * scale for x in vector]
