"""Running one completion: upstream bytes in, Ollama chunks out.

`ChunkReader` turns an upstream answer into batches of Ollama chunks, one batch
per upstream read (at most MAX_BATCH events), under the first-token, idle and
total timeouts. `relay` writes the batches as NDJSON (or a front's own
events), each batch in one `write()`; `collect` folds them into one non-stream
answer. The response is prepared only when the first batch is ready, so a
failure before any output keeps its real status (spec 1.3).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from types import AsyncGeneratorType, TracebackType
from typing import Protocol, cast

import msgspec
from aiohttp import web

from ollama_gateway.clock import now_rfc3339
from ollama_gateway.context import RequestContext
from ollama_gateway.errors import (
    GatewayError,
    TranslationError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
    error_body,
)
from ollama_gateway.http1 import UNEXPECTED_EOF
from ollama_gateway.log import note_failure
from ollama_gateway.protocols import StreamSession, UpstreamResponse
from ollama_gateway.schemas import ollama, openai
from ollama_gateway.settings import Settings
from ollama_gateway.shutdown import SHUTDOWN, is_shutdown
from ollama_gateway.sse import SSEParser
from ollama_gateway.upstream import close_in_time, closing_failed

__all__ = [
    "EMPTY_STREAM",
    "HTML_ANSWER",
    "ChunkReader",
    "EncodeInto",
    "collect",
    "relay",
]

HTML_ANSWER = (
    "upstream answered with a web page (text/html), not a completion: "
    "check the backend's base_url (it usually ends in /v1)"
)
# A stream that ends, properly, before its first byte. llama-cpp-python's
# server does that when it refuses a request after its 200 is sent (a prompt
# longer than the context, a template that cannot render): its reason is
# lost, and asking again would send the completion twice. Said, not
# guessed; Ollama's words for a broken stream stay at its start.
EMPTY_STREAM = (
    f"{UNEXPECTED_EOF} (the event stream ended before its first event: "
    "llama-cpp-python's server ends it so when it refuses a request, such as a "
    "prompt longer than its context, and says why when asked without streaming)"
)

log = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"
EncodeInto = Callable[[ollama.ChatResponse, bytearray], None]
# Writes a batch straight to the client's socket; False: stop writing directly.
DirectWrite = Callable[[Sequence[ollama.ChatResponse]], bool]


class DirectSource(Protocol):
    """An upstream body that can hand its reads to a callback as they arrive
    (our HTTP/1.1 transport's response; see `ChunkReader.read`)."""

    def ready(self) -> bool: ...

    def attach(self, sink: Callable[[bytes], None]) -> None: ...

    def detach(self) -> None: ...

    async def wait(self) -> None: ...


# The translator whose code a traceback shows; given None, the one whose
# session returned a wrong value.
NameTranslator = Callable[[TracebackType | None], str | None]

_decode_chunk = openai.decode_chunk
_ChatResponse = ollama.ChatResponse
_decode_chunks = openai.decode_chunks
# Events turned into lines per `read()` at most: a read of a thousand events
# goes out in parts (each one `write()`), so its first line is not held back.
MAX_BATCH = 64


class ChunkReader:
    """Reads one upstream answer as batches of Ollama chat chunks."""

    __slots__ = (
        "_absorb",
        "_after_finish",
        "_backlog",
        "_direct",
        "_ctx",
        "_deadline",
        "_empty",
        "_error",
        "_finished",
        "_idle",
        "_it",
        "_json",
        "_limit",
        "_loop",
        "_name",
        "_parser",
        "_ready",
        "_saw_finish",
        "_session",
        "_timer",
        "_total_deadline",
        "_watch",
        "_expired",
        "_cancelling",
        "_whole",
        "_whole_size",
        "_writer",
        "__weakref__",
    )

    def __init__(
        self,
        ctx: RequestContext,
        upstream: UpstreamResponse,
        session: StreamSession,
        settings: Settings,
        name_translator: NameTranslator = lambda tb: None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        timeouts = settings.timeouts
        # Kept: on Python 3.11 every get_running_loop() (and current_task()
        # without a loop) is a getpid() system call.
        self._loop = loop = loop or asyncio.get_running_loop()
        loop_now = loop.time()
        waited = (time.perf_counter_ns() - ctx.upstream_sent_ns) / 1e9
        self._ctx = ctx
        self._name = name_translator
        self._session = session
        # An answer the client gets whole is folded by the session itself when
        # it can (see protocols.WholeAnswerSession): no Ollama chunk per event.
        self._absorb: Callable[[Sequence[openai.ChatCompletionChunk]], None] | None = (
            None if ctx.stream else getattr(session, "absorb", None)
        )
        self._it = aiter(upstream.aiter_bytes())
        # Our transport says when a read cannot wait (the body came with the
        # headers): such a read needs no deadline timer.
        self._ready: Callable[[], bool] | None = getattr(self._it, "ready", None)
        # A streamed answer from a transport that can hand its reads over from
        # the connection's callback (ours), to a session that may be fed
        # there, can be written from that callback (see `read(direct)`).
        self._direct: DirectSource | None = (
            cast(DirectSource, self._it)
            if ctx.stream
            and getattr(session, "feeds_in_callbacks", False)
            and hasattr(self._it, "attach")
            else None
        )
        self._writer: DirectWrite | None = None
        self._limit = settings.limits.max_event_bytes
        self._parser = SSEParser(self._limit)
        content_type = upstream.headers.get("Content-Type", "")
        if content_type.startswith("text/html"):
            # A web page, not a backend's answer: most often a base URL that
            # reaches a web UI's catch-all page. Said before any byte is sent.
            raise UpstreamProtocolError(HTML_ANSWER)
        # Some backends ignore `stream: true` and answer with one JSON object.
        self._json = content_type.startswith("application/json")
        self._idle = timeouts.idle or None
        self._after_finish = timeouts.after_finish or None
        first = timeouts.first_token
        self._deadline = loop_now + max(first - waited, 0.0) if first else None
        total = timeouts.total
        self._total_deadline = loop_now - waited + total if total else None
        self._finished = False
        self._saw_finish = False
        # No byte of the stream read yet. Only `read` reads the first piece:
        # `_sink` takes over once the first lines are written.
        self._empty = True
        # Payloads of the last read beyond MAX_BATCH, for the next `read()`.
        self._backlog: list[bytes] = []
        # A failure met after some chunks of the same read: those go out first.
        self._error: Exception | None = None
        # The deadline timer (see `_arm`) and the read it guards.
        self._timer: asyncio.TimerHandle | None = None
        self._watch: asyncio.Task[object] | None = None
        self._expired = False
        self._cancelling = 0
        # The pieces of a JSON answer (`_json`), joined at its end.
        self._whole: list[bytes] = []
        self._whole_size = 0

    async def read(
        self, direct: DirectWrite | None = None
    ) -> Sequence[ollama.ChatResponse] | None:
        """The next batch to write (possibly empty), or None after the last.

        With `direct`, the batches of the reads that come while this waits may
        be written by `direct` itself, from the upstream connection's callback,
        without waking the task per read; the call then returns an empty batch
        (or None at the end) when `direct` stops taking them.
        """
        # A deferred error comes first: `close()` at [DONE] may have failed
        # after the stream was already marked finished.
        if self._finished and self._error is None:
            return None
        batch: Sequence[ollama.ChatResponse] | None
        try:
            self._raise_deferred()
            # The read loop is here, not in a method of its own: every
            # coroutine frame below `relay` is kept by each open stream.
            while True:
                payloads = self._backlog
                if payloads:
                    self._backlog = []
                elif direct is not None and self._direct is not None:
                    source = self._direct
                    if self._json or source.ready():
                        direct = None  # what is there is read the usual way
                        continue
                    # Inline, not a method: every coroutine frame below `relay`
                    # is kept by each open stream.
                    task = self._arm()
                    self._writer = direct
                    source.attach(self._sink)
                    try:
                        await source.wait()
                    except asyncio.CancelledError:
                        if not self._timed_out(task):
                            raise
                    finally:
                        source.detach()
                        self._writer = None
                        self._watch = None
                    self._raise_deferred()
                    batch = None if self._finished else ()
                    break
                else:
                    task = self._arm()
                    try:
                        piece: bytes | None = await self._it.__anext__()
                    except StopAsyncIteration:
                        piece = None
                    except asyncio.CancelledError:
                        if not self._timed_out(task):
                            raise
                        continue  # to the [DONE] it put in the backlog
                    except UpstreamProtocolError:
                        if not self._saw_finish:
                            raise
                        # The answer was complete; only the usage trailer is lost.
                        piece = None
                    finally:
                        self._watch = None
                    self._rearm()
                    if self._json:
                        if piece is None:
                            batch = self._json_answer()
                            break
                        self._keep_json(piece)
                        continue
                    if piece is None:
                        batch = self._end_of_stream(self._parser.finish())
                        break
                    self._ctx.created_at = now_rfc3339()
                    self._empty = False
                    payloads = self._parser.feed(piece)
                    del piece  # an open stream keeps no read while it waits
                found = self._convert(payloads)
                if found is not None:
                    batch = found
                    break
        except GatewayError:
            self._stop_timer()
            raise
        except Exception as exc:
            self._stop_timer()
            # A translator bug: name it, keep serving other requests.
            name = self._name(exc.__traceback__) or "response"
            raise TranslationError(name, exc) from exc
        except BaseException:
            self._stop_timer()
            raise
        if self._finished:
            self._stop_timer()
        return batch

    def _raise_deferred(self) -> None:
        """Raise the failure kept for after the chunks before it (`_defer`)."""
        if self._error is not None:
            error, self._error = self._error, None
            self._finished = True
            raise error

    def _sink(self, piece: bytes) -> None:
        """One read, in the upstream connection's callback: its lines are
        written at once. Stops (detaches) at the end, at a failure, when a read
        leaves a backlog, or when the client's socket is full; never raises."""
        # `_rearm`, inline: this runs once per paced chunk.
        idle = self._idle
        self._deadline = None if idle is None else self._loop.time() + idle
        source = self._direct
        assert source is not None
        try:
            self._ctx.created_at = now_rfc3339()
            payloads = self._parser.feed(piece)
            del piece
            if len(payloads) == 1 and payloads[0] != b"[DONE]":
                batch = self._convert_one(payloads[0])  # the usual read
            else:
                batch = self._convert(payloads)
            writer = self._writer
            if batch and writer is not None and not writer(batch):
                source.detach()
        except Exception as exc:
            self._error = exc
            source.detach()
            return
        if self._finished or self._backlog or self._error is not None:
            source.detach()

    def _convert(self, payloads: list[bytes]) -> Sequence[ollama.ChatResponse] | None:
        """The chunks of one read's events; None when they make none."""
        if len(payloads) > MAX_BATCH:
            # A read that caught up with a fast backend: write it in parts,
            # so the first lines do not wait for the last to be encoded.
            self._backlog = payloads[MAX_BATCH:]
            payloads = payloads[:MAX_BATCH]
        out: list[ollama.ChatResponse] = []
        try:
            if self._absorb is not None and len(payloads) > 1:
                folded = self._fold(payloads)
                if folded is not None:
                    return folded or None
            for payload in payloads:
                if payload == b"[DONE]":
                    self._finished = True
                    self._backlog = []
                    out.extend(self._close())
                    break
                out.extend(self._feed(payload))
        except Exception as exc:
            self._backlog = []  # the rest of a failed read is dropped
            self._check(out)
            return self._defer(out, exc)
        # Inline, once a read (not per chunk): what a session returns is
        # written as it is (a dict became a line of its own).
        if out and type(out[-1]) is not _ChatResponse:
            self._check(out)
        return out or None

    def _convert_one(self, payload: bytes) -> Sequence[ollama.ChatResponse] | None:
        """`_convert` of a streamed read of one event, not [DONE], without
        its batch list: there is no backlog to keep and no fold, and a
        failure fails the read, as `_defer` does when no chunk came before."""
        out = self._feed(payload)
        if type(out) is not tuple:
            out = list(out)  # a plugin's session may return any sequence
        if out and type(out[-1]) is not _ChatResponse:
            self._check(list(out))
        return out or None

    def _check(self, out: list[ollama.ChatResponse]) -> None:
        """Raise when the last chunk a session returned is not one."""
        last: object = out[-1] if out else None  # typed as it should be
        if last is not None and not isinstance(last, _ChatResponse):
            self._backlog = []
            raise self._session_fault(
                f"the stream session's feed() returned {type(last).__name__}, "
                "not ollama.ChatResponse"
            )

    def _fold(self, payloads: list[bytes]) -> Sequence[ollama.ChatResponse] | None:
        """The events of one read, for a session that folds the answer
        (`absorb`): decoded in one call, as one JSON array, not one by one.
        None, with nothing consumed, when an event is not exactly one chunk
        (or is a keep-alive): the event-by-event path then takes the read,
        and names the event that is wrong. At [DONE], what `close()` gives
        (and `_finished` is set); else ()."""
        done = payloads[-1] == b"[DONE]"
        events = payloads[:-1] if done else payloads
        # Groq's usage is read event by event (see `_feed`). It comes in the
        # finish chunk, the last event before [DONE] or the one before a
        # usage chunk: only those two are searched, not the whole read (1.7 µs
        # for the 19 events of a short answer, on every whole answer).
        if any(b'"x_groq"' in event for event in events[-2:]):
            return None
        joined = b",".join(events)
        try:
            chunks = _decode_chunks(b"[" + joined + b"]")
        except msgspec.DecodeError:
            return None
        if len(chunks) != len(events):
            # An event of two values (`{},{}`). Events that are each not one
            # value, yet join into valid JSON with the same count, can only
            # be contrived: no backend cuts a chunk's JSON across events.
            return None
        last = chunks[-1]
        if last.choices is None and last.error is None:
            # Perhaps an error object as the event itself, which backends
            # send last, before [DONE]: `_feed` reads it (see there). Only
            # the last is looked at, so a read costs one check, not one a chunk.
            return None
        absorb = self._absorb
        assert absorb is not None
        absorb(chunks)
        if not done:
            if not self._saw_finish and any(
                c.choices and c.choices[0].finish_reason for c in chunks
            ):
                self._note_finish()
            return ()
        self._finished = True
        return self._close()

    async def aclose(self) -> None:
        """Close the body iterator if it is an async generator (a plugin's
        transport): left to the garbage collector, an unfinished generator is
        closed through the loop's finalizer hook, a wake-up per request."""
        self._stop_timer()
        if self._finished and self._error is None:
            # Our transport can then keep the connection for the next request
            # even if the body's end has not arrived yet (see http1.response.DRAIN).
            expect_end = getattr(self._it, "expect_end", None)
            if expect_end is not None:
                expect_end()
        # Only a generator: the response itself (our transport's body iterator
        # is the response) is closed by its owner, once. A plugin's, whose
        # `finally` may wait: bounded and logged, as the answer's own close.
        if isinstance(self._it, AsyncGeneratorType):
            try:
                await close_in_time(self._it)
            except Exception:
                closing_failed(self._ctx.backend)

    def _close(self) -> Sequence[ollama.ChatResponse]:
        """The session's trailing chunks, checked once per answer: the last
        must be the final one (`done`), which the relay, the non-stream fold
        and the other fronts end the answer with (a plugin filtering empty
        chunks could drop it: that failed as "internal server error")."""
        out = self._session.close()
        last: object = out[-1] if out else None
        if not isinstance(last, ollama.ChatResponse) or not last.done:
            raise self._session_fault(
                "the stream session's close() returned no final chunk (done: true)"
            )
        return out

    def _session_fault(self, what: str) -> TranslationError:
        """A wrong value a session returned. No translator's code raised it:
        `_name(None)` names the one whose session it is."""
        return TranslationError(self._name(None) or "response", TypeError(what))

    def _defer(
        self, out: list[ollama.ChatResponse], exc: Exception
    ) -> Sequence[ollama.ChatResponse]:
        """Chunks read before a failure are still sent; the failure follows them,
        so what the client sees does not depend on how reads were cut."""
        if not out:
            raise exc
        self._error = exc
        return out

    def _feed(self, payload: bytes) -> Sequence[ollama.ChatResponse]:
        if not payload or payload.isspace():
            return ()  # an empty `data:` line is a keep-alive, not an event
        try:
            chunk = _decode_chunk(payload)
        except msgspec.DecodeError as exc:
            # Typed content parts (Mistral's reasoning models), or text to
            # mend; else invalid.
            parts = openai.decode_content_parts(payload)
            if parts is None:
                parts = openai.decode_mended(payload)
            if parts is None:
                raise UpstreamProtocolError(
                    f"upstream sent an invalid event: {exc}"
                ) from None
            chunk = parts
        choices = chunk.choices
        if choices:
            if choices[0].finish_reason:
                self._note_finish()
                if chunk.usage is None and b'"x_groq"' in payload:
                    chunk.usage = _groq_usage(payload)
        elif chunk.error is None and b'"message"' in payload:
            # An event that is an error object itself (see openai.flat_error):
            # looked for only in an event without choices.
            chunk.error = openai.flat_error(payload)
        absorb = self._absorb
        if absorb is not None:
            absorb((chunk,))
            return ()
        return self._session.feed(chunk)

    def _end_of_stream(self, tail: list[bytes]) -> Sequence[ollama.ChatResponse]:
        out: list[ollama.ChatResponse] = []
        try:
            for payload in tail:
                if payload != b"[DONE]":
                    out.extend(self._feed(payload))
                else:
                    self._saw_finish = True
            if not self._saw_finish:
                # A broken connection: no finish_reason and no [DONE] (spec 3.8).
                raise UpstreamProtocolError(
                    EMPTY_STREAM if self._empty else UNEXPECTED_EOF
                )
        except Exception as exc:
            return self._defer(out, exc)
        self._finished = True
        out.extend(self._close())
        return out

    def _keep_json(self, piece: bytes) -> None:
        """A piece of an answer that is one JSON object (not SSE)."""
        self._whole.append(piece)
        self._whole_size += len(piece)
        if self._whole_size > self._limit:
            # The same bound as one SSE event: a whole answer is one event.
            raise UpstreamProtocolError(
                f"upstream sent a JSON answer larger than {self._limit} bytes"
            )

    def _json_answer(self) -> Sequence[ollama.ChatResponse]:
        self._ctx.created_at = now_rfc3339()
        answer = b"".join(self._whole)
        if not answer.strip():
            # Not an answer that happens to be empty (that has its `choices`):
            # a client must not get an empty success for it.
            raise UpstreamProtocolError(f"{UNEXPECTED_EOF} (an empty JSON answer)")
        out = list(self._feed(answer))
        self._whole = []
        self._finished = True
        out.extend(self._close())
        return out

    def _arm(self) -> asyncio.Task[object] | None:
        """Guard the read about to be awaited by the stream's deadline.

        Like `asyncio.timeout_at`, but with one timer per stream that stays
        armed across reads and is moved only when it fires before the current
        deadline: a timer made and cancelled per read was a tenth of the CPU
        of a streamed chunk. Returns the task that a timeout would cancel
        (None: no deadline, or a read that cannot wait, which needs no timer).
        """
        deadline = self._current_deadline()
        if deadline is None:
            return None
        loop = self._loop
        if deadline <= loop.time() and not self._saw_finish:
            # Spent already (e.g. waiting for headers): a read that needs no
            # wait would otherwise slip past the timer. After the finish, the
            # timer, due at once, ends the answer instead (see `_timed_out`).
            raise UpstreamTimeoutError("upstream timeout")
        ready = self._ready
        if ready is not None and ready():
            return None
        task = asyncio.current_task(loop)
        assert task is not None
        self._cancelling = task.cancelling()
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(deadline, _on_timer, weakref.ref(self))
        self._watch = task
        return task

    def _current_deadline(self) -> float | None:
        deadline = self._deadline
        total = self._total_deadline
        if total is not None and (deadline is None or total < deadline):
            deadline = total
        return deadline

    def _note_finish(self) -> None:
        """The finish_reason is in: what may still come (the usage trailer,
        [DONE]) follows at once, so the rest of the stream gets `after_finish`
        from now, all told: a deadline like `total`'s, not re-armed by reads,
        so keep-alive comments cannot hold a finished answer open (servers
        built on sse-starlette send them until the generator ends). Set at
        the first finish chunk, not per chunk; the timer is moved if it is set
        for later (the callback path, `_sink`, does not re-arm it)."""
        self._saw_finish = True
        wait = self._after_finish
        if wait is None:
            return
        end = self._loop.time() + wait
        total = self._total_deadline
        if total is not None and total <= end:
            return
        self._total_deadline = end
        deadline = self._current_deadline()
        timer = self._timer
        if timer is not None and deadline is not None and timer.when() > deadline:
            timer.cancel()
            self._timer = self._loop.call_at(deadline, _on_timer, weakref.ref(self))

    def _timed_out(self, task: asyncio.Task[object] | None) -> bool:
        """A cancelled read: False if the cancellation is not our timer's
        (it goes on). UpstreamTimeoutError if it is, before the finish_reason.
        After it, the answer is whole and only its usage trailer or [DONE]
        is missing (a backend that stalls there): True, with a [DONE] put in
        the backlog so that the answer ends as usual, as after a failed
        connection (see `read`)."""
        if task is None or not self._expired:
            return False
        self._expired = False
        if task.uncancel() > self._cancelling:
            return False  # cancelled by someone else as well
        if not self._saw_finish:
            raise UpstreamTimeoutError("upstream timeout") from None
        log.info(
            "upstream sent no [DONE] or end after the finish_reason; "
            "the answer ends at the deadline"
        )
        self._backlog = [b"[DONE]"]
        return True

    def resume_idle(self) -> None:
        """After waiting for the client (backpressure, during which the
        backend was not read): the idle deadline runs from now, so a client
        that pauses reading does not count as an idle backend."""
        self._rearm()

    def _rearm(self) -> None:
        """After a read: the idle deadline runs from now."""
        if self._idle is not None:
            self._deadline = self._loop.time() + self._idle
        else:
            self._deadline = None

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _groq_usage(payload: bytes) -> openai.Usage | None:
    """Groq's usage in the finish chunk (`x_groq.usage`), when the stream has
    no usage of its own (no `stream_options` sent): only finish chunks that
    mention `x_groq` are decoded for it, a second time."""
    try:
        extras = openai.decode_groq_chunk(payload).x_groq
    except msgspec.DecodeError:
        return None
    return extras.usage if extras is not None else None


def _on_timer(ref: weakref.ref[ChunkReader]) -> None:
    """The stream's timer: time out the read in progress, or move on."""
    reader = ref()
    if reader is None:
        return
    reader._timer = None
    task = reader._watch
    deadline = reader._current_deadline()
    if task is None or deadline is None:
        return  # not reading now: the next read checks its deadline itself
    loop = reader._loop
    if deadline > loop.time():
        # Reads moved the deadline on since the timer was set (or the loop's
        # timer fired a little early): wait for the current one.
        reader._timer = loop.call_at(deadline, _on_timer, ref)
        return
    reader._expired = True
    task.cancel()


def _error_line(status: int, message: str) -> bytes:
    return error_body(message) + b"\n"


async def relay(
    request: web.Request,
    ctx: RequestContext,
    reader: ChunkReader,
    encode_into: EncodeInto,
    *,
    content_type: str = NDJSON,
    error_line: Callable[[int, str], bytes] = _error_line,
    ending: Callable[[], Awaitable[bytes]] | None = None,
) -> web.StreamResponse:
    """Write the answer as NDJSON (or what `encode_into` makes, as
    `content_type`); one `write()` per upstream read. A failure after output
    started ends it with `error_line(status, message)`; a whole answer with
    what `ending` gives, if set, awaited after the last read."""
    response: web.StreamResponse | None = None
    direct: _DirectWriter | None = None
    try:
        try:
            while (batch := await reader.read(direct)) is not None:
                if batch:
                    buffer = bytearray()
                    for chunk in batch:
                        encode_into(chunk, buffer)
                    del batch, chunk  # not kept while the next read is awaited
                    if response is None:
                        response = web.StreamResponse(
                            headers={"Content-Type": content_type}
                        )
                        await response.prepare(request)
                        await response.write(buffer)
                        direct = _DirectWriter.of(request, response, encode_into)
                    else:
                        await response.write(buffer)
                    del buffer
                    # A write waits while the client is behind, and the backend
                    # is not read meanwhile: that wait is no idle backend's.
                    reader.resume_idle()
                if direct is not None and direct.congested():
                    # Written to directly, the socket's buffer may be over its
                    # limit: wait until the client has taken some.
                    await request.writer.drain()
                    reader.resume_idle()
            if ending is not None and response is not None:
                await response.write(await ending())
        except GatewayError as exc:
            if response is None:
                raise
            note_failure(ctx, exc)
            # After output started the status is sent: end with one error line.
            await response.write(error_line(exc.status, exc.message))
        except asyncio.CancelledError as exc:
            if response is None or not is_shutdown(exc):
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            ctx.outcome = "shutdown"
            await response.write(error_line(503, SHUTDOWN))
        assert response is not None  # close() always yields the final chunk
        await response.write_eof()
    except ConnectionResetError:
        # Also when the client left while the error line or the end was written.
        ctx.outcome = "client_disconnect"
        return response or web.Response(status=499)
    return response


class _DirectWriter:
    """Writes a stream's lines to the client's socket from the upstream
    connection's callback (see `ChunkReader.read`): one chunked-encoding frame
    per batch, after aiohttp has sent the head and the first frame; aiohttp's
    `write_eof` then ends the body as usual."""

    __slots__ = ("_encode_into", "_high", "_transport")

    def __init__(self, transport: asyncio.Transport, encode_into: EncodeInto) -> None:
        self._transport = transport
        self._encode_into = encode_into
        self._high = transport.get_write_buffer_limits()[1]

    @classmethod
    def of(
        cls,
        request: web.Request,
        response: web.StreamResponse,
        encode_into: EncodeInto,
    ) -> _DirectWriter | None:
        transport = request.transport
        if transport is None or response.headers.get("Transfer-Encoding") != "chunked":
            return None  # an HTTP/1.0 client: aiohttp frames its body
        return cls(transport, encode_into)

    def __call__(self, batch: Sequence[ollama.ChatResponse]) -> bool:
        transport = self._transport
        if transport.is_closing():
            return False  # the task's next write finds the client gone
        buffer = bytearray()
        encode_into = self._encode_into
        for chunk in batch:
            encode_into(chunk, buffer)
        if not buffer:
            # Nothing to send (an encoder that holds the last line back for
            # the stream's `ending`): an empty frame would end the body.
            return True
        # The chunk's frame, made in one formatting (inserting the size line
        # at the front of the buffer moved the line and cost more). `%b`
        # takes any buffer; typeshed allows only bytes.
        frame = b"%x\r\n%b\r\n" % (len(buffer), buffer)  # type: ignore[str-format]
        transport.write(frame)
        return transport.get_write_buffer_size() <= self._high

    def congested(self) -> bool:
        return self._transport.get_write_buffer_size() > self._high


async def collect(reader: ChunkReader) -> ollama.ChatResponse:
    """Fold a whole answer into one chunk: the non-stream response."""
    content: list[str] = []
    thinking: list[str] = []
    tool_calls: list[ollama.ToolCall] = []
    logprobs: list[ollama.Logprob] = []
    final: ollama.ChatResponse | None = None
    while (batch := await reader.read()) is not None:
        for chunk in batch:
            message = chunk.message
            content.append(message.content)
            if message.thinking:
                thinking.append(message.thinking)
            if message.tool_calls:
                tool_calls.extend(message.tool_calls)
            if chunk.logprobs:
                logprobs.extend(chunk.logprobs)
            if chunk.done:
                final = chunk
    assert final is not None
    final.message = ollama.ResponseMessage(
        role="assistant",
        content="".join(content),
        thinking="".join(thinking) or None,
        tool_calls=tool_calls or None,
    )
    final.logprobs = logprobs or None
    return final
