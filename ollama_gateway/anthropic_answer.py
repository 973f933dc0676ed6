"""Ollama chat chunks as an Anthropic Messages answer: a whole message, or SSE events.

`MessageEvents` is the stream's state machine: it is fed each chunk and writes
the events it makes into a buffer, so a batch of chunks goes out in one write.
Blocks open in the order the model produces them (thinking, then text), each
closed before the next opens; a tool call is a whole `tool_use` block (the
gateway assembles a call before it hands it on), its input sent as one
`input_json_delta`.

A call's id is never one the conversation already has (see `_tool_use`).

The usage's input counts follow Anthropic's split (see `input_usage`); the
cached count comes from the request's context, where the response mapper
leaves it with the last chunk (the Ollama chunk has no field for it), as it
does whether a content filter ended the answer.
"""

from __future__ import annotations

from secrets import token_hex
from typing import TYPE_CHECKING

import msgspec

from ollama_gateway.overflow import read_overflow
from ollama_gateway.schemas import anthropic, ollama

if TYPE_CHECKING:
    from ollama_gateway.context import RequestContext

__all__ = [
    "MessageEvents",
    "error_event",
    "input_usage",
    "message_id",
    "overflow_message",
    "stop_reason",
    "whole_message",
]

_encoder = msgspec.json.Encoder()
_encode = _encoder.encode
_NO_SIGNATURE = anthropic.SignatureDelta("")


def message_id() -> str:
    return "msg_" + token_hex(12)


def stop_reason(done_reason: str | None, tool_use: bool, filtered: bool) -> str:
    """Anthropic's `stop_reason` for Ollama's `done_reason`. A stop sequence
    cannot be told from a natural end (OpenAI backends say `stop` for both),
    so it reads as `end_turn`. An answer the backend's content filter ended
    (`filtered`, see RequestContext) is Anthropic's `refusal`, not a whole
    answer: its safety classifiers' stop."""
    if filtered:
        return "refusal"
    if tool_use:
        return "tool_use"
    if done_reason == "length":
        return "max_tokens"
    return "end_turn"


def input_usage(prompt: int, cached: int) -> tuple[int, int]:
    """Anthropic's `input_tokens` and `cache_read_input_tokens` for a prompt
    of `prompt` tokens of which the backend read `cached` from its cache.

    An OpenAI-compatible backend counts the cached tokens in its prompt
    tokens; Anthropic's `input_tokens` leaves them out. A cached count over
    the prompt's (a backend's slip) is cut to it, so that the input counts
    still add up to the prompt and none is negative.
    """
    read = min(max(cached, 0), prompt)
    return prompt - read, read


def whole_message(
    ident: str,
    model: str,
    final: ollama.ChatResponse,
    input_estimate: int,
    ctx: RequestContext,
    used_ids: set[str],
) -> anthropic.Response:
    """The non-stream answer from the folded chunk (see `completion.collect`),
    with what the response mapper left in `ctx` (see the module's doc);
    `used_ids` are the conversation's tool call ids (see `_tool_use`)."""
    message = final.message
    content: list[anthropic.OutputBlock] = []
    if message.thinking:
        content.append(anthropic.ThinkingBlock(message.thinking))
    if message.content:
        content.append(anthropic.TextBlock(message.content))
    calls = message.tool_calls or ()
    content.extend(_tool_use(call, used_ids) for call in calls)
    uncached, read = input_usage(
        final.prompt_eval_count or input_estimate, ctx.cached_tokens
    )
    return anthropic.Response(
        id=ident,
        model=model,
        content=content,
        stop_reason=stop_reason(final.done_reason, bool(calls), ctx.filtered),
        # `cache_creation_input_tokens` stays 0: OpenAI-compatible backends
        # report the tokens read from their prompt cache, never those written
        # to it (a prefix cache fills as a side effect of every request).
        usage=anthropic.Usage(
            input_tokens=uncached,
            output_tokens=final.eval_count,
            cache_read_input_tokens=read,
        ),
    )


def _tool_use(call: ollama.ToolCall, used_ids: set[str]) -> anthropic.ToolUseBlock:
    """The block of a call, with the backend's id unless the conversation
    (`used_ids`, which it joins) has it already: Kimi's models, as some
    providers serve them, number their calls from 0 in every answer
    (`get_weather:0`). Anthropic's API refuses a history with an id twice,
    and Claude Code drops a call whose id it has seen (its result with it):
    the agent stops."""
    arguments = call.function.arguments
    ident = call.id
    if not ident or ident in used_ids:
        ident = "toolu_" + token_hex(12)
    used_ids.add(ident)
    return anthropic.ToolUseBlock(
        id=ident,
        name=call.function.name,
        input=arguments if arguments is not None else {},
    )


class MessageEvents:
    """Writes one answer's SSE events, chunk by chunk."""

    __slots__ = (
        "_ctx",
        "_id",
        "_index",
        "_input",
        "_model",
        "_open",
        "_started",
        "_tools",
        "_used_ids",
    )

    def __init__(
        self,
        ident: str,
        model: str,
        input_estimate: int,
        ctx: RequestContext,
        used_ids: set[str],
    ) -> None:
        self._id = ident
        self._model = model
        self._input = input_estimate
        # Read at the last chunk, for the cached count (see the module's doc).
        self._ctx = ctx
        self._started = False
        # The index of the block that is open, and its kind (None: none is).
        self._index = -1
        self._open: str | None = None
        self._tools = False
        # The conversation's tool call ids (see `_tool_use`).
        self._used_ids = used_ids

    def feed(self, chunk: ollama.ChatResponse, out: bytearray) -> None:
        if not self._started:
            self._started = True
            start = anthropic.Response(
                id=self._id,
                model=self._model,
                content=[],
                stop_reason=None,
                usage=anthropic.Usage(input_tokens=self._input, output_tokens=0),
            )
            _event(b"message_start", anthropic.MessageStart(start), out)
        message = chunk.message
        if message.thinking:
            self._delta("thinking", anthropic.ThinkingDelta(message.thinking), out)
        if message.content:
            self._delta("text", anthropic.TextDelta(message.content), out)
        for call in message.tool_calls or ():
            self._close(out)
            self._tools = True
            block = _tool_use(call, self._used_ids)
            arguments = _encode(block.input).decode()
            block.input = {}
            self._index += 1
            index = self._index
            _event(
                b"content_block_start", anthropic.ContentBlockStart(index, block), out
            )
            delta = anthropic.InputJsonDelta(arguments)
            _event(
                b"content_block_delta", anthropic.ContentBlockDelta(index, delta), out
            )
            _event(b"content_block_stop", anthropic.ContentBlockStop(index), out)
        if chunk.done:
            self._close(out)
            reason = stop_reason(chunk.done_reason, self._tools, self._ctx.filtered)
            uncached, read = input_usage(
                chunk.prompt_eval_count or self._input, self._ctx.cached_tokens
            )
            # No cache writes, as in `whole_message`. `message_start` had the
            # estimate and no cache read: the backend's counts come only now.
            usage = anthropic.MessageDeltaUsage(
                output_tokens=chunk.eval_count,
                input_tokens=uncached,
                cache_read_input_tokens=read,
            )
            delta_event = anthropic.MessageDelta(anthropic.StopInfo(reason), usage)
            _event(b"message_delta", delta_event, out)
            _event(b"message_stop", anthropic.MessageStop(), out)

    def _delta(
        self,
        kind: str,
        delta: anthropic.TextDelta | anthropic.ThinkingDelta,
        out: bytearray,
    ) -> None:
        if self._open != kind:
            self._close(out)
            self._index += 1
            self._open = kind
            block: anthropic.OutputBlock = (
                anthropic.TextBlock("")
                if kind == "text"
                else anthropic.ThinkingBlock("")
            )
            start = anthropic.ContentBlockStart(self._index, block)
            _event(b"content_block_start", start, out)
        _event(
            b"content_block_delta", anthropic.ContentBlockDelta(self._index, delta), out
        )

    def _close(self, out: bytearray) -> None:
        if self._open is None:
            return
        if self._open == "thinking":
            # Anthropic ends a thinking block with its signature; the SDKs
            # expect the event. The gateway signs nothing: it is empty.
            signature = anthropic.ContentBlockDelta(self._index, _NO_SIGNATURE)
            _event(b"content_block_delta", signature, out)
        _event(b"content_block_stop", anthropic.ContentBlockStop(self._index), out)
        self._open = None


def overflow_message(message: str) -> str | None:
    """A backend's refusal of a prompt over the context (see overflow.py) in
    Anthropic's words, which Claude Code acts on, with the backend's after
    them; None for any other error. A prompt that fits but leaves no room for
    `max_tokens` is the `max_tokens` refusal: Claude Code asks again with
    fewer (the context less the prompt), where compacting would lose the
    conversation for nothing."""
    found = read_overflow(message)
    if found is None:
        return None
    limit, prompt, completion = found.limit, found.prompt, found.completion
    if limit is not None and prompt is not None:
        if prompt >= limit:
            return f"prompt is too long: {prompt} tokens > {limit} maximum ({message})"
        if completion:
            return (
                f"input length and `max_tokens` exceed context limit: {prompt} + "
                f"{completion} > {limit}, decrease input length or `max_tokens` "
                f"and try again ({message})"
            )
    return f"prompt is too long: {message}"


def error_event(status: int, message: str) -> bytes:
    """An `error` event: how a stream whose status is sent ends in failure."""
    out = bytearray()
    error = anthropic.Error(
        anthropic.ErrorDetail(anthropic.error_type(status), message)
    )
    _event(b"error", error, out)
    return bytes(out)


def _event(name: bytes, data: msgspec.Struct, out: bytearray) -> None:
    out += b"event: "
    out += name
    out += b"\ndata: "
    _encoder.encode_into(data, out, -1)
    out += b"\n\n"
