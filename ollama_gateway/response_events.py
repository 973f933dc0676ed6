"""Building a Responses API answer from Ollama chat chunks: its output items,
usage and status, and, for a stream, its SSE events in the API's order.

One `ResponseBuilder` per request. Thinking, text and tool calls each become an
output item, opened when the first piece of that kind arrives and closed when
another kind begins or the answer ends, so the items keep the model's order.
`feed` with a buffer writes the events for a chunk into it (the caller sends a
batch's buffer in one write); with None it only builds the items (non-stream).
The usage's cached and reasoning parts come from the request's context, where
the response mapper leaves them with the last chunk (the Ollama chunk has no
field for them).
"""

from __future__ import annotations

import re
import time
from secrets import token_hex
from typing import TYPE_CHECKING

from ollama_gateway.schemas import ollama, responses
from ollama_gateway.shutdown import SHUTDOWN

if TYPE_CHECKING:
    from ollama_gateway.context import RequestContext

__all__ = ["ResponseBuilder", "item_id", "new_id", "response_of"]

_encode_into = responses.encode_into
# An output item's id (see `item_id`): its response's token, and its index.
_ITEM_ID = re.compile(r"[a-z]+_([0-9a-f]{24})_[0-9]+")

Event = (
    responses.LifecycleEvent
    | responses.ItemEvent
    | responses.ContentPartEvent
    | responses.TextDeltaEvent
    | responses.TextDoneEvent
    | responses.SummaryPartEvent
    | responses.SummaryDeltaEvent
    | responses.SummaryDoneEvent
    | responses.ArgumentsDeltaEvent
    | responses.ArgumentsDoneEvent
    | responses.ErrorEvent
)


def new_id(prefix: str) -> str:
    """An id such as `resp_<24 hex>`, from the system's random source: a
    response id opens its kept conversation to a follow-up (see
    response_store.py), so it must not be guessable from others seen."""
    return f"{prefix}_{token_hex(12)}"


def item_id(prefix: str, response_id: str, index: int) -> str:
    """The id of the output item at `index` of the response `response_id`,
    such as `msg_<the response's 24 hex>_1`: an `item_reference` to it then
    names the response whose kept conversation holds it (see `response_of`),
    on any worker. Whoever has the item's id had the response's."""
    return f"{prefix}_{response_id.removeprefix('resp_')}_{index}"


def response_of(ident: str) -> str | None:
    """The id of the response whose output item `ident` is (see `item_id`),
    or None when it is no id of an item the gateway made."""
    token = _ITEM_ID.fullmatch(ident)
    return None if token is None else "resp_" + token.group(1)


class ResponseBuilder:
    """Folds chunks into `response` (a `responses.Response` made by the handler
    with the request's echo fields) and writes the stream's events."""

    __slots__ = (
        "_ctx",
        "_hold_end",
        "_input_estimate",
        "_namespaces",
        "_open",
        "_parts",
        "_sequence",
        "_started",
        "_used_ids",
        "response",
    )

    def __init__(
        self,
        response: responses.Response,
        ctx: RequestContext,
        namespaces: dict[str, str] | None = None,
        *,
        hold_end: bool = False,
        input_estimate: int = 0,
        used_ids: set[str] | None = None,
    ) -> None:
        self.response = response
        # The prompt's count when the backend sends none (see token_estimate.py).
        self._input_estimate = input_estimate
        # Read at the last chunk, for the usage's details (see the module's doc).
        self._ctx = ctx
        # The last event (`response.completed`) is then left to `end_events`.
        self._hold_end = hold_end
        # The namespace of each namespaced function, by name (see `handlers.responses`).
        self._namespaces = namespaces or {}
        # The conversation's call ids, which an answer's call never takes again
        # (see `_add_call`).
        self._used_ids = used_ids if used_ids is not None else set()
        self._sequence = 0
        # The item being written (a message or reasoning) and its text so far.
        self._open: responses.MessageItem | responses.ReasoningItem | None = None
        self._parts: list[str] = []
        self._started = False

    def write(self, chunk: ollama.ChatResponse, out: bytearray) -> None:
        """A stream's events for `chunk` (`relay`'s encoder): the first opens
        the stream with `response.created` and `response.in_progress`."""
        if not self._started:
            self._started = True
            self._lifecycle("response.created", out)
            self._lifecycle("response.in_progress", out)
        self.feed(chunk, out)

    def error_events(self, status: int, message: str) -> bytes:
        """How a stream whose status is sent ends in failure (`relay`'s
        `error_line`): see `fail`."""
        out = bytearray()
        self.fail(
            "shutting_down" if message == SHUTDOWN else "server_error", message, out
        )
        return bytes(out)

    def end_events(self) -> bytes:
        """The event that ends a whole answer, when `hold_end` kept it back."""
        out = bytearray()
        self._lifecycle(f"response.{self.response.status}", out)
        return bytes(out)

    def feed(self, chunk: ollama.ChatResponse, out: bytearray | None) -> None:
        message = chunk.message
        if message.thinking:
            self._add_text(responses.ReasoningItem, message.thinking, out)
        if message.content:
            self._add_text(responses.MessageItem, message.content, out)
        for call in message.tool_calls or ():
            self._add_call(call, out)
        if chunk.done:
            self._finish(chunk, out)

    def fail(self, code: str, message: str, out: bytearray) -> None:
        """After the stream started: an `error` event, then `response.failed`
        with what was written so far. The item being written is cut: it ends
        `incomplete`, with its text so far, as the API ends an item that a
        response's end cuts (left `in_progress` and empty, the failed
        response's output had an item that never ended)."""
        self._close(out, "incomplete")
        self._emit(out, responses.ErrorEvent("error", self._next(), code, message))
        response = self.response
        response.status = "failed"
        response.error = responses.ResponseError(code, message)
        self._lifecycle("response.failed", out)

    # Items ---------------------------------------------------------------------

    def _add_text(
        self,
        kind: type[responses.MessageItem] | type[responses.ReasoningItem],
        text: str,
        out: bytearray | None,
    ) -> None:
        item = self._open
        if not isinstance(item, kind):
            self._close(out)
            item = self._open_item(kind, out)
        self._parts.append(text)
        if out is None:
            return
        index = len(self.response.output) - 1
        if isinstance(item, responses.MessageItem):
            self._emit(
                out,
                responses.TextDeltaEvent(
                    "response.output_text.delta", self._next(), item.id, index, 0, text
                ),
            )
        else:
            self._emit(
                out,
                responses.SummaryDeltaEvent(
                    "response.reasoning_summary_text.delta",
                    self._next(),
                    item.id,
                    index,
                    0,
                    text,
                ),
            )

    def _open_item(
        self,
        kind: type[responses.MessageItem] | type[responses.ReasoningItem],
        out: bytearray | None,
    ) -> responses.MessageItem | responses.ReasoningItem:
        item: responses.MessageItem | responses.ReasoningItem
        output = self.response.output
        if kind is responses.MessageItem:
            ident = item_id("msg", self.response.id, len(output))
            item = responses.MessageItem(ident, "in_progress", [])
        else:
            ident = item_id("rs", self.response.id, len(output))
            item = responses.ReasoningItem(ident, [], "in_progress")
        output.append(item)
        self._open = item
        if out is None:
            return item
        index = len(output) - 1
        self._emit(
            out,
            responses.ItemEvent(
                "response.output_item.added", self._next(), index, item
            ),
        )
        if isinstance(item, responses.MessageItem):
            self._emit(
                out,
                responses.ContentPartEvent(
                    "response.content_part.added",
                    self._next(),
                    item.id,
                    index,
                    0,
                    responses.OutputText(""),
                ),
            )
        else:
            self._emit(
                out,
                responses.SummaryPartEvent(
                    "response.reasoning_summary_part.added",
                    self._next(),
                    item.id,
                    index,
                    0,
                    responses.SummaryText(""),
                ),
            )
        return item

    def _close(self, out: bytearray | None, status: str = "completed") -> None:
        """Finish the open item: its whole text, and the `.done` events."""
        item = self._open
        if item is None:
            return
        self._open = None
        text = "".join(self._parts)
        self._parts = []
        item.status = status
        index = len(self.response.output) - 1
        events: tuple[Event, ...]
        if isinstance(item, responses.MessageItem):
            part = responses.OutputText(text)
            item.content = [part]
            events = (
                responses.TextDoneEvent(
                    "response.output_text.done", 0, item.id, index, 0, text
                ),
                responses.ContentPartEvent(
                    "response.content_part.done", 0, item.id, index, 0, part
                ),
            )
        else:
            summary = responses.SummaryText(text)
            item.summary = [summary]
            events = (
                responses.SummaryDoneEvent(
                    "response.reasoning_summary_text.done", 0, item.id, index, 0, text
                ),
                responses.SummaryPartEvent(
                    "response.reasoning_summary_part.done",
                    0,
                    item.id,
                    index,
                    0,
                    summary,
                ),
            )
        if out is not None:
            for event in events:
                event.sequence_number = self._next()
                self._emit(out, event)
            self._emit(
                out,
                responses.ItemEvent(
                    "response.output_item.done", self._next(), index, item
                ),
            )

    def _add_call(self, call: ollama.ToolCall, out: bytearray | None) -> None:
        self._close(out)
        function = call.function
        text = function.arguments_json()
        # The backend's id, unless the conversation has it already: Kimi's
        # models, as some providers serve them, number their calls from 0 in
        # every answer (`get_weather:0`); a client pairs each output with its
        # call by id, so two calls of one id are one to it.
        call_id = call.id
        if not call_id or call_id in self._used_ids:
            call_id = new_id("call")
        self._used_ids.add(call_id)
        output = self.response.output
        item = responses.FunctionCallItem(
            item_id("fc", self.response.id, len(output)),
            call_id,
            function.name,
            "",
            "in_progress",
            self._namespaces.get(function.name),
        )
        output.append(item)
        if out is None:
            item.arguments = text
            item.status = "completed"
            return
        index = len(output) - 1
        # `added` carries empty arguments: clients add the deltas to them.
        self._emit(
            out,
            responses.ItemEvent(
                "response.output_item.added", self._next(), index, item
            ),
        )
        item.arguments = text
        item.status = "completed"
        self._emit(
            out,
            responses.ArgumentsDeltaEvent(
                "response.function_call_arguments.delta",
                self._next(),
                item.id,
                index,
                text,
            ),
        )
        self._emit(
            out,
            responses.ArgumentsDoneEvent(
                "response.function_call_arguments.done",
                self._next(),
                item.id,
                index,
                item.name,
                text,
            ),
        )
        self._emit(
            out,
            responses.ItemEvent("response.output_item.done", self._next(), index, item),
        )

    def _finish(self, chunk: ollama.ChatResponse, out: bytearray | None) -> None:
        response = self.response
        reason = _incomplete_reason(chunk, self._ctx)
        if not response.output:
            # Nothing came: still one (empty) message, so `output_text` is "".
            self._open_item(responses.MessageItem, out)
        self._close(out, "completed" if reason is None else "incomplete")
        response.usage = self._usage(chunk)
        response.completed_at = int(time.time())
        if reason is not None:
            response.status = "incomplete"
            response.incomplete_details = responses.IncompleteDetails(reason)
        else:
            response.status = "completed"
        if out is not None and not self._hold_end:
            self._lifecycle(f"response.{response.status}", out)

    def _usage(self, chunk: ollama.ChatResponse) -> responses.Usage:
        """The answer's usage. Unlike Anthropic's, the API's `input_tokens`
        include the cached ones, as the backend's prompt count does; each
        detail is cut to the count it is a part of, should a backend
        report more. A backend that sends no usage has the prompt counted by
        the estimate, as `/v1/messages` reports it."""
        prompt = chunk.prompt_eval_count or self._input_estimate
        generated = chunk.eval_count
        ctx = self._ctx
        return responses.Usage(
            prompt,
            generated,
            prompt + generated,
            responses.InputTokensDetails(min(max(ctx.cached_tokens, 0), prompt)),
            responses.OutputTokensDetails(min(max(ctx.reasoning_tokens, 0), generated)),
        )

    # Events --------------------------------------------------------------------

    def _lifecycle(self, kind: str, out: bytearray) -> None:
        self._emit(out, responses.LifecycleEvent(kind, self._next(), self.response))

    def _next(self) -> int:
        number = self._sequence
        self._sequence = number + 1
        return number

    @staticmethod
    def _emit(out: bytearray, event: Event) -> None:
        out += b"event: "
        out += event.type.encode()
        out += b"\ndata: "
        _encode_into(event, out, -1)
        out += b"\n\n"


def _incomplete_reason(chunk: ollama.ChatResponse, ctx: RequestContext) -> str | None:
    """Why the answer is cut, in the API's words, or None when it is whole:
    the token limit, or the backend's content filter (which Ollama's
    `done_reason` calls `stop`; see RequestContext)."""
    if ctx.filtered:
        return "content_filter"
    if chunk.done_reason == "length":
        return "max_output_tokens"
    return None
