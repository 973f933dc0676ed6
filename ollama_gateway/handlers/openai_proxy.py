"""The OpenAI front: `/v1/*` forwarded to the model's backend with alias resolution.

VS Code Copilot discovers models through the Ollama API, then chats through
`/v1/chat/completions` on the same base URL. Bodies pass through unchanged but
for the model id; streams are relayed piece by piece, without buffering. What
misbehaving backends send is not always relayed as it came: one JSON object
for a streamed request (labelled as JSON or as events) goes out as the one
event of a stream, a whole answer that is an error object (with a 200) as
the error status it stands for, and an `error:` field line in a stream (held
back while a read ends inside it) as the `data:` event OpenAI's clients
raise on.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import msgspec
from aiohttp import web

from ollama_gateway.context import RequestContext
from ollama_gateway.errors import (
    GatewayError,
    InvalidRequestError,
    ModelNotFoundError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
    retry_after,
)
from ollama_gateway.go_text import go_strings
from ollama_gateway.handlers import anthropic
from ollama_gateway.handlers.models import listed_entries
from ollama_gateway.http1 import UNEXPECTED_EOF
from ollama_gateway.inbound import TOO_DEEP
from ollama_gateway.keys import (
    catalogue_key,
    ctx_key,
    pipeline_key,
    settings_key,
    upstream_key,
)
from ollama_gateway.log import note_error, note_failure
from ollama_gateway.model_echo import Echo
from ollama_gateway.modelinfo import ModelEntry, registry_name
from ollama_gateway.settings import google_hosted
from ollama_gateway.shutdown import SHUTDOWN, is_shutdown
from ollama_gateway.thought_signatures import sign_relayed_calls
from ollama_gateway.upstream import close_answer, map_error_object, upstream_deadline
from ollama_gateway.validation import check_message_count

__all__ = [
    "handle_completions",
    "handle_embeddings",
    "handle_model",
    "handle_models",
    "openai_error",
]

log = logging.getLogger(__name__)

# How an SSE event ends, whatever the backend's line endings (LF, CRLF or CR).
_EVENT_ENDS = (b"\n\n", b"\r\n\r\n", b"\r\r")
_TAIL = 16  # bytes enough to see an event's end or `[DONE]` and its end
# A choice that ended: a stream that stops after one, without `[DONE]`, is
# whole (some backends leave `[DONE]` out); one that stops before is cut.
_FINISHED = re.compile(rb'"finish_reason"\s*:\s*"')
_SEAM = 32  # bytes of a piece that a pattern begun in the tail can reach
# The token counts of the answer's `usage` (OpenAI puts it last: in the
# stream's trailer event, or at the end of a whole answer), read once, at the
# end, from the last bytes relayed since a choice finished: the tokens metric
# and the request line counted none for `/v1` (VS Code Copilot's chats). A
# quote after a backslash is inside a JSON string (a model quoting them).
_USAGE_WINDOW = 8 * 1024
_PROMPT_TOKENS = re.compile(rb'(?<!\\)"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION_TOKENS = re.compile(rb'(?<!\\)"completion_tokens"\s*:\s*(\d+)')
# How a whole answer that is an error object starts (see `_unless_an_error`),
# and the most of one that is read to tell.
_ERROR_ANSWER = re.compile(rb'\s*\{\s*"error"\s*:')
_ERROR_ANSWER_LIMIT = 64 * 1024
# An SSE `error:` field line, whole (see `_error_fields_as_data`).
_ERROR_FIELD = re.compile(rb"(?<=\n)error: ?([^\r\n]*)(?=\r?\n)")
_ERROR_NAME = b"error:"
# The most of an unended line that is held back for being (or beginning) an
# `error:` field line: past it, the line goes on as it came.
_ERROR_LINE_LIMIT = 64 * 1024


class _OpenAIError(msgspec.Struct):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class _ErrorEnvelope(msgspec.Struct):
    error: _OpenAIError


def openai_error(
    status: int,
    message: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """OpenAI's error envelope, `{"error": {"message", "type", "code", "param"}}`
    (the `/v1/responses` front answers its errors with it too)."""
    kind = "invalid_request_error" if status < 500 else "api_error"
    body = msgspec.json.encode(_ErrorEnvelope(_OpenAIError(message, kind, code, param)))
    return web.Response(
        body=body, status=status, content_type="application/json", headers=headers
    )


def _model_object(entry: ModelEntry) -> dict[str, Any]:
    # As Ollama's own /v1/models: the tagged name, `created` from modified_at.
    return {
        "id": entry.name,
        "object": "model",
        "created": _unix(entry.modified_at),
        "owned_by": "library",
    }


def _unix(rfc3339: str) -> int:
    try:
        return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


async def handle_models(request: web.Request) -> web.Response:
    # Not an empty list when every backend is down: clients showed "no
    # models" with nothing to say why.
    entries = await listed_entries(request)
    if anthropic.VERSION_HEADER in request.headers:
        return anthropic.models_answer(entries)
    data = [_model_object(e) for e in entries if not e.hidden]
    return web.json_response({"object": "list", "data": data}, dumps=_dumps)


async def handle_model(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    entry = await request.app[catalogue_key].resolve(name)
    if anthropic.VERSION_HEADER in request.headers:
        return anthropic.model_answer(entry, name)
    if entry is None:
        return openai_error(404, f"model '{name}' not found", "model_not_found")
    return web.json_response(_model_object(entry), dumps=_dumps)


async def handle_completions(request: web.Request) -> web.StreamResponse:
    path = (
        "/completions"
        if request.path.endswith("/completions")
        and not (request.path.endswith("/chat/completions"))
        else "/chat/completions"
    )
    return await _forward(request, path)


async def handle_embeddings(request: web.Request) -> web.StreamResponse:
    return await _forward(request, "/embeddings")


async def _forward(request: web.Request, path: str) -> web.StreamResponse:
    raw = await request.read()
    try:
        try:
            body: Any = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            # What Go reads as U+FFFD (as Ollama's own /v1 routes do), or
            # the first error again.
            body = msgspec.json.decode(go_strings(raw) or raw)
    except msgspec.DecodeError as exc:
        return openai_error(400, f"invalid JSON body: {exc}")
    except RecursionError:
        return openai_error(400, f"invalid JSON body: {TOO_DEEP}")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return openai_error(400, "the body must be a JSON object with a string 'model'")
    wants_stream = body.get("stream")
    if (
        wants_stream is not None
        and type(wants_stream) is not bool
        and path != "/embeddings"
    ):
        # Ollama's /v1 decodes the body into its Go struct first: `"stream":
        # "yes"` is its 400. Passed on, a backend took it as true or false
        # and the client got an answer of a kind it did not ask for.
        struct = (
            "ChatCompletionRequest"
            if path == "/chat/completions"
            else "CompletionRequest"
        )
        return openai_error(
            400,
            f"json: cannot unmarshal {_go_kind(wants_stream)} into Go struct "
            f"field {struct}.stream of type bool",
        )
    messages = body.get("messages")
    if isinstance(messages, list):
        # The cap of every chat route (limits.max_messages): the body was
        # decoded, but is not encoded again nor sent on.
        try:
            check_message_count(messages, request.app[settings_key].limits.max_messages)
        except InvalidRequestError as exc:
            return openai_error(400, exc.message, param="messages")
    ctx = request[ctx_key]
    ctx.endpoint = "openai"
    ctx.model = body["model"]
    entry = await request.app[catalogue_key].resolve(body["model"])
    if entry is None:
        return openai_error(
            404, f"The model '{body['model']}' does not exist", "model_not_found"
        )
    ctx.use(entry)
    tools = body.get("tools")
    if (
        path == "/chat/completions"
        and isinstance(tools, list)
        and tools
        and not entry.supports("tools")
    ):
        # Ollama's /v1 refuses them as its /api/chat does; a backend would
        # answer in text, the tools unused, or refuse them in its own words
        # (as it still refuses `tools` that are no list).
        name = registry_name(body["model"].strip())
        return openai_error(400, f"{name} does not support tools")
    # Answers name the model as asked, as Ollama's do (see model_echo.py).
    echo = body["model"] if body["model"] != entry.upstream_id else None
    body["model"] = entry.upstream_id
    stream = body.get("stream") is True
    upstream = request.app[upstream_key]
    if isinstance(messages, list) and google_hosted(upstream.backend(entry.backend)):
        sign_relayed_calls(messages)  # see thought_signatures.py
    timeouts = request.app[settings_key].timeouts
    timeout = timeouts.first_wait
    started = request.task.get_loop().time()
    try:
        async with upstream.slot():
            async with upstream_deadline(timeout, request.task):
                response = await upstream.send(
                    ctx, path, msgspec.json.encode(body), stream=stream,
                    not_found=f"The model '{ctx.model}' does not exist",
                )  # fmt: skip
            try:
                # Only one choice streamed: its finish ends what matters.
                one_choice = body.get("n") in (None, 1)
                return await _relay(
                    request,
                    response,
                    started,
                    stream,
                    one_choice,
                    echo,
                    generates=path != "/embeddings",
                )
            finally:
                await close_answer(response, ctx.backend)
    except GatewayError as exc:
        note_failure(ctx, exc)  # a translator's failure with its traceback
        code = "model_not_found" if isinstance(exc, ModelNotFoundError) else None
        return openai_error(exc.status, exc.message, code, headers=retry_after(exc))
    except Exception as exc:
        # A transport translator's bug in its body (the built-in ones raise
        # only GatewayErrors), before the status is sent: `_relay` ends a
        # started answer itself.
        failure = request.app[pipeline_key].translator_failure(exc, ctx.backend)
        if failure is None:
            raise
        note_failure(ctx, failure)
        return openai_error(failure.status, failure.message)


async def _relay(
    request: web.Request,
    response: Any,
    started: float,
    stream: bool,
    one_choice: bool = True,
    echo_name: str | None = None,
    *,
    generates: bool = True,
) -> web.StreamResponse:
    """Relay the answer as it comes. A gap longer than `timeouts.idle`, or a
    whole exchange longer than `timeouts.total`, ends it as a failure does;
    but for a stream of `one_choice` whose choice finished, the rest (usage,
    `[DONE]`) gets `timeouts.after_finish` all told, and a backend that
    stalls there gets its `[DONE]` written for it, as the Ollama routes end
    such an answer. (With more choices, others may still be streaming.)"""
    timeouts = request.app[settings_key].timeouts
    after_finish = timeouts.after_finish if one_choice else 0.0
    task = request.task
    loop = task.get_loop()
    idle = timeouts.idle or None
    end = started + timeouts.total if timeouts.total else None
    pieces = aiter(response.aiter_bytes())
    # A backend that names no type answered what was asked for (OpenAI's
    # clients pick their parser by the type).
    asked = "text/event-stream" if stream else "application/json"
    content_type = response.headers.get("Content-Type") or asked
    held = b""
    if response.status < 300 and content_type.startswith("application/json"):
        # Looked at before the status is sent (see `_Reader.first_bytes`).
        reader = _Reader(pieces, lambda: _next_wait(idle, end, loop), task)
        held = await reader.first_bytes()
        if stream and held.lstrip().startswith(b"{"):
            return await _whole_as_stream(request, held, reader, echo_name)
        if stream:
            content_type = "text/event-stream"  # events labelled as JSON
        else:
            not_found = f"The model '{request[ctx_key].model}' does not exist"
            held = await _unless_an_error(held, reader, not_found)
    out = web.StreamResponse(
        status=response.status, headers={"Content-Type": content_type}
    )
    await out.prepare(request)
    # Whether what was relayed so far ends between two SSE events: only then
    # can an event of our own follow.
    sse = content_type.startswith("text/event-stream")
    # Only a success names a model; None (nothing to do) when it was asked
    # for by the backend's own id.
    echo = Echo(echo_name, sse) if echo_name and response.status < 300 else None
    between_events = sse
    # The end of what was relayed (a piece may be one byte of a line end).
    tail = b""
    # The last bytes relayed since a choice finished (see `_USAGE_WINDOW`).
    usage = b""
    finished = not sse
    # The start of an unended line held back: it may be an `error:` line.
    unended = b""
    # Nothing but blanks relayed yet: a body that begins with `{` is no
    # event stream but one JSON object (see `_object_as_events`).
    at_body_start = sse and stream
    # `end`, or sooner once the choice finished (see `after_finish`).
    deadline = end
    # The first piece of an answer stands for its first token (the relay does
    # not read events): the request line's `ttft_ms` and the TTFT histogram.
    # An embedding generates none (`/api/embed` records none either): its
    # latency filled the TTFT histogram of the embedding model.
    ctx = request[ctx_key] if response.status < 300 and generates else None
    try:
        # What was read before the status is sent goes first, as a piece.
        piece: bytes | None = held
        while True:
            last = False
            if not piece:
                async with upstream_deadline(_next_wait(idle, deadline, loop), task):
                    piece = await anext(pieces, None)
                if piece is None and echo is not None:
                    piece, echo = echo.flush() or None, None
                if piece is None:
                    if not unended:
                        break
                    # The body ended inside the held line: it goes as it came.
                    piece, unended, last = unended, b"", True
            if at_body_start and piece.strip():
                at_body_start = False
                if piece.lstrip().startswith(b"{"):
                    reader = _Reader(pieces, lambda: _next_wait(idle, end, loop), task)
                    piece = await _object_as_events(request, piece, reader)
            if echo is not None and not last:
                piece = echo.feed(piece)
                if not piece:
                    continue  # all of it held
            if sse and not last:
                at_line_start = not tail or tail[-1:] == b"\n"
                piece, unended = _error_fields_as_data(unended, piece, at_line_start)
                if not piece:
                    continue  # all of it held
            if ctx is not None and not ctx.first_token_ns:
                ctx.first_token_ns = time.perf_counter_ns()
            await out.write(piece)
            if not finished:
                # The piece, then the seam with the tail before it (a pattern
                # cut between pieces), without copying the whole piece.
                finished = (
                    _FINISHED.search(piece) is not None
                    or _FINISHED.search(tail + piece[:_SEAM]) is not None
                )
                if finished and after_finish:
                    # Once, at the finish: the rest of the stream all told.
                    rest = loop.time() + after_finish
                    deadline = rest if deadline is None else min(deadline, rest)
            if finished:
                # Only from the finish on, so no piece before it costs a copy.
                usage = (
                    piece[-_USAGE_WINDOW:]
                    if len(piece) >= _USAGE_WINDOW
                    else (usage + piece)[-_USAGE_WINDOW:]
                )
            tail = piece if len(piece) >= _TAIL else (tail + piece)[-_TAIL:]
            between_events = tail.endswith(_EVENT_ENDS)
            piece = None
        if sse and not _ends_done(tail) and not (between_events and finished):
            # The body ended (by its framing) inside an event, or before any
            # choice finished and without `[DONE]`: a cut answer, as the
            # Ollama routes take it.
            raise UpstreamProtocolError(UNEXPECTED_EOF)
    except GatewayError as exc:
        if _ends_done(tail):
            pass  # lost after `[DONE]`: the answer was whole, and ends as usual
        elif (
            after_finish
            and finished
            and between_events
            and isinstance(exc, UpstreamTimeoutError)
        ):
            # The choice finished, then the backend stalled: the answer is
            # whole, only its usage or `[DONE]` is missing.
            log.info(
                "upstream sent no [DONE] or end after the finish_reason; "
                "the answer ends at the deadline"
            )
            try:
                await out.write(b"data: [DONE]\n\n")
            except ConnectionResetError:
                request[ctx_key].outcome = "client_disconnect"
                return out
        else:
            return await _end_with_error(request, out, exc, between_events)
    except ConnectionResetError:
        request[ctx_key].outcome = "client_disconnect"
        return out
    except Exception as exc:
        # A transport translator's bug in its body: ended as a backend's
        # failure is (above), not by a dropped connection.
        ctx = request[ctx_key]
        failure = request.app[pipeline_key].translator_failure(exc, ctx.backend)
        if failure is None:
            raise
        if not _ends_done(tail):
            note_failure(ctx, failure)
            return await _end_with_error(request, out, failure, between_events)
    except asyncio.CancelledError as exc:
        if not is_shutdown(exc) or not between_events:
            raise
        # The grace period is over: end the stream with an error event, as
        # OpenAI does (its clients raise on an `error` event), then close it.
        task.uncancel()
        request[ctx_key].outcome = "shutdown"
        error = _ErrorEnvelope(_OpenAIError(SHUTDOWN, "api_error", "shutting_down"))
        try:
            await out.write(b"data: " + msgspec.json.encode(error) + b"\n\n")
        except ConnectionResetError:
            return out
    if usage and response.status < 300:
        _note_usage(request[ctx_key], usage)
    try:
        await out.write_eof()
    except ConnectionResetError:
        request[ctx_key].outcome = "client_disconnect"
    return out


def _note_usage(ctx: RequestContext, window: bytes) -> None:
    """The answer's token counts, from the last `usage` in `window`."""
    prompt = _PROMPT_TOKENS.findall(window)
    if prompt:
        ctx.prompt_tokens = int(prompt[-1])
    completion = _COMPLETION_TOKENS.findall(window)
    if completion:
        ctx.completion_tokens = int(completion[-1])


def _go_kind(value: object) -> str:
    """How Go's decoder names a JSON value's kind in its errors."""
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "number"


def _next_wait(
    idle: float | None, end: float | None, loop: asyncio.AbstractEventLoop
) -> float | None:
    """How long the next read may take: `idle`, or what is left of the
    exchange's `total` (ending at `end`) if that is less; None: unbounded."""
    if end is None:
        return idle
    left = end - loop.time()
    return left if idle is None else min(idle, left)


class _Reader:
    """Reads an answer's pieces before its status is sent, each read under
    the relay's deadline."""

    __slots__ = ("_next_wait", "_pieces", "_task")

    def __init__(
        self,
        pieces: AsyncIterator[bytes],
        next_wait: Callable[[], float | None],
        task: asyncio.Task[Any],
    ) -> None:
        self._pieces = pieces
        self._next_wait = next_wait
        self._task = task

    async def next(self) -> bytes | None:
        async with upstream_deadline(self._next_wait(), self._task):
            return await anext(self._pieces, None)

    async def first_bytes(self) -> bytes:
        """The answer's start: read until a byte other than blanks comes (a
        backend may send blanks to keep the connection), or the answer ends."""
        head = b""
        while not head.strip():
            piece = await self.next()
            if piece is None:
                break
            head += piece
        return head

    async def read_on(self, head: bytes, limit: int) -> bytes | None:
        """`head` and the rest of the answer; None once it is over `limit`
        bytes (what was read is then lost: the caller raises)."""
        while len(head) <= limit:
            piece = await self.next()
            if piece is None:
                return head
            head += piece
        return None


async def _unless_an_error(head: bytes, reader: _Reader, not_found: str) -> bytes:
    """What is read of a whole (JSON) answer before its status is sent, from
    its start `head`. Some backends (the LiteLLM proxy among them) answer a
    failure with a 200 and an error object; OpenAI's SDKs take that for a
    completion with no choices, raising nothing. Such an answer raises the
    error it is, with the status the Ollama routes give it; what is read of
    any other answer is returned, to be relayed."""
    if _ERROR_ANSWER.match(head) is None:
        return head
    while len(head) <= _ERROR_ANSWER_LIMIT:
        piece = await reader.next()
        if piece is None:
            break
        head += piece
    else:
        return head  # too long for an error object: some other answer
    try:
        answer = msgspec.json.decode(head)
    except (msgspec.DecodeError, RecursionError):
        return head
    error = answer.get("error") if isinstance(answer, dict) else None
    if error is None or "choices" in answer:
        return head
    raise map_error_object(error, not_found)


async def _whole_as_stream(
    request: web.Request, head: bytes, reader: _Reader, echo_name: str | None
) -> web.StreamResponse:
    """A backend that ignored `stream: true` and answered one JSON object
    (that begins with `head`): the client asked for events, and OpenAI's
    SDKs read a JSON body as a stream of none (an empty answer, no error).
    The answer goes out as the one event a stream of it would be, then
    `[DONE]`. Read whole first, so a failure is still an error status."""
    events = await _object_as_events(request, head, reader)
    if echo_name:
        echo = Echo(echo_name, True)
        events = echo.feed(events) + echo.flush()
    out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await out.prepare(request)
    try:
        await out.write(events)
        await out.write_eof()
    except ConnectionResetError:
        request[ctx_key].outcome = "client_disconnect"
    return out


async def _object_as_events(
    request: web.Request, head: bytes, reader: _Reader
) -> bytes:
    """The JSON object that begins with `head`, read whole, as the one event
    of a stream and `[DONE]` (see `_as_chunk`). Also for a body labelled as
    events that is one object, as some backends and proxies answer a failure
    (`{"error": ...}`): relayed as it came, OpenAI's SDKs found no event in
    it and the relay took it for a cut stream, so the message was lost."""
    limit = request.app[settings_key].limits.max_answer_bytes
    body = await reader.read_on(head, limit)
    if body is None:
        raise UpstreamProtocolError(
            f"upstream sent an answer larger than {limit} bytes"
        )
    try:
        answer = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        raise UpstreamProtocolError(
            "upstream answered a stream with a body that is not JSON"
        ) from None
    event = msgspec.json.encode(_as_chunk(answer))
    return b"data: " + event + b"\n\ndata: [DONE]\n\n"


def _as_chunk(answer: Any) -> Any:
    """A whole chat completion as the one chunk of its stream: each choice's
    `message` as its `delta`, its tool calls numbered (a delta's calls have
    an `index`, which the SDKs' stream helpers key on). A legacy
    completion's choices have the same shape either way, and an error object
    (`{"error": ...}`) goes as it is: the SDKs raise on an event that is one."""
    if not isinstance(answer, dict):
        return answer
    if answer.get("object") == "chat.completion":
        answer["object"] = "chat.completion.chunk"
    choices = answer.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict) and "message" in choice:
            choice["delta"] = delta = choice.pop("message")
            _number_tool_calls(delta)
    return answer


def _number_tool_calls(delta: Any) -> None:
    calls = delta.get("tool_calls") if isinstance(delta, dict) else None
    for position, call in enumerate(calls if isinstance(calls, list) else ()):
        if isinstance(call, dict):
            call.setdefault("index", position)


def _error_fields_as_data(
    unended: bytes, piece: bytes, at_line_start: bool
) -> tuple[bytes, bytes]:
    """What of `unended + piece` goes on, each whole `error: {...}` line as
    `data: {"error": {...}}`, and the start of an unended last line held
    back because it is, or may become, such a line (see `_unended_error_line`).

    llama.cpp's server sent a stream's error so until 2025-09
    (ggml-org/llama.cpp#16109), then `data: [DONE]`: OpenAI's SDKs ignore a
    field named `error`, and took the stream for a whole, empty answer. A
    read may end anywhere in that line, so its start is held until it ends.
    `at_line_start` says whether what goes on begins a line (text in a
    `data:` line never does); held bytes always begin one."""
    if unended:
        piece = unended + piece
    if _ERROR_NAME in piece:
        if at_line_start:
            piece = _ERROR_FIELD.sub(rb'data: {"error": \1}', b"\n" + piece)[1:]
        else:
            piece = _ERROR_FIELD.sub(rb'data: {"error": \1}', piece)
    cut = _unended_error_line(piece, at_line_start)
    if cut < 0:
        return piece, b""
    return piece[:cut], piece[cut:]


def _unended_error_line(piece: bytes, at_line_start: bool) -> int:
    """Where the last line of `piece` begins when it is unended and is, or
    may become, an `error:` line (its start is a prefix of the field's name
    or begins with it); -1 otherwise. A piece that ends a line, as nearly
    every one does, costs one comparison: the relay passes every token."""
    if piece.endswith(b"\n"):
        return -1
    start = piece.rfind(b"\n") + 1
    if start == 0 and not at_line_start:
        return -1  # the rest of a line begun before
    if len(piece) - start > _ERROR_LINE_LIMIT:
        return -1
    head = piece[start : start + len(_ERROR_NAME)]
    return start if _ERROR_NAME.startswith(head) else -1


def _ends_done(tail: bytes) -> bool:
    """Whether what was relayed ends with the `[DONE]` event (its blank line
    may be missing): the answer is whole, whatever happens after it."""
    return tail.rstrip().endswith(b"[DONE]")


async def _end_with_error(
    request: web.Request,
    out: web.StreamResponse,
    exc: GatewayError,
    between_events: bool,
) -> web.StreamResponse:
    """The upstream failed after the status was sent. Between events, an
    `error` event ends the stream (OpenAI's clients raise on it); inside one,
    or in a JSON body, the connection is dropped, so the client does not take
    a cut answer for a whole one."""
    note_error(request[ctx_key], exc)
    if not between_events:
        if request.transport is not None:
            request.transport.close()
        return out
    error = _ErrorEnvelope(_OpenAIError(exc.message, "api_error", None))
    try:
        await out.write(b"data: " + msgspec.json.encode(error) + b"\n\n")
        await out.write_eof()
    except ConnectionResetError:
        pass
    return out


def _dumps(value: Any) -> str:
    return msgspec.json.encode(value).decode()
