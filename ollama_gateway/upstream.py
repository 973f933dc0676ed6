"""Sending to backends: transport choice, failover, the in-flight cap, the
mapping of backend statuses to Ollama statuses (spec 3.15), and when each
backend last answered (for `/ready`)."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from types import TracebackType
from typing import Any

import msgspec

from ollama_gateway.context import RequestContext
from ollama_gateway.errors import (
    BusyError,
    GatewayError,
    ModelNotFoundError,
    TranslationError,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
    retry_after_header,
    upstream_error_fields,
)
from ollama_gateway.http1 import Http1Response
from ollama_gateway.protocols import Transport, UpstreamRequest, UpstreamResponse
from ollama_gateway.schemas import openai
from ollama_gateway.settings import BackendSettings, Settings
from ollama_gateway.transport import AiohttpResponse

__all__ = [
    "Upstream",
    "close_answer",
    "closing_failed",
    "map_error_object",
    "map_status",
    "read_whole",
    "upstream_deadline",
]

log = logging.getLogger(__name__)

BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
_FAILOVER_STATUSES = frozenset({429, 500, 502, 503, 504})
_LIST_TIMEOUT = 10.0
# OpenAI's `type` for an error in the request, and the `code` of the most
# common one, a prompt over the context: an in-band error that says either
# and no status is the client's 400, not a 500 that the SDKs and agents retry
# (sending the whole prompt again, to the same refusal).
_REQUEST_FAULTS = frozenset({"invalid_request_error", "context_length_exceeded"})
# An HTTP date as `Retry-After` may carry one (RFC 9110 5.6.7's IMF-fixdate).
_HTTP_DATE = re.compile(
    r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT", re.ASCII
)
# An error body is read only for its message; a misbehaving backend cannot make
# the gateway buffer more than this.
_ERROR_BODY_LIMIT = 64 * 1024
PROBE_TIMEOUT = 5.0
# The LiteLLM proxy's words for a model it does not serve, which it answers
# with a 400 (`code: "400"`), not a 404 or `model_not_found`: the first from
# its model check, the second from its router when a wildcard route let the
# name through. Only in a 400: the same words with a 429 or a 5xx would be
# deployments that are failing, which are no unknown model.
_LITELLM_UNKNOWN_MODEL = (
    "Invalid model name passed in model=",
    "There are no healthy deployments for this model",
)


# Lower-case: it reads as a function, `async with upstream_deadline(s, task)`.
class upstream_deadline:
    """Bound a wait of `task` (the current one) for a backend; None is
    unbounded. Running out cancels the wait and raises a 504.

    What `asyncio.timeout` does, for the one task it is given: that one looks
    the task and the loop up on each use, two `getpid()` calls per request on
    Python 3.11.
    """

    __slots__ = ("_cancelling", "_expired", "_handle", "_seconds", "_task")

    def __init__(self, seconds: float | None, task: asyncio.Task[Any]) -> None:
        self._seconds = seconds
        self._task = task
        self._handle: asyncio.TimerHandle | None = None
        self._expired = False
        self._cancelling = 0

    async def __aenter__(self) -> None:
        if self._seconds is not None:
            self._cancelling = self._task.cancelling()
            self._handle = self._task.get_loop().call_later(
                max(self._seconds, 0.0), self._expire
            )

    def _expire(self) -> None:
        self._handle = None
        self._expired = True
        self._task.cancel()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._expired:
            return
        # As asyncio.timeout: our cancel is taken back whatever ended the block.
        if self._task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
            raise UpstreamTimeoutError("upstream timeout") from None


def map_error_object(error: Any, not_found: str) -> GatewayError:
    """The Ollama error for an error object a backend sent with a 200 (an
    in-band error event, or a whole answer that is `{"error": ...}`): mapped
    as its `code` would be as a status (spec 3.15), else as a 500, so never a
    401. The LiteLLM proxy writes the code as a string (`"429"`). An error
    that names no status but says, in OpenAI's words, that the request was
    at fault (see `_REQUEST_FAULTS`) is a 400."""
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, str) and code.isascii() and code.isdigit():
        code = int(code)
    if isinstance(code, int) and 400 <= code < 600:
        status = code
    elif isinstance(error, dict) and _names_a_request_fault(error.get("type"), code):
        status = 400
    else:
        status = 500
    return map_status(status, msgspec.json.encode({"error": error}), not_found)


def _names_a_request_fault(*words: object) -> bool:
    # Only strings are looked up: a backend's field may be any JSON value.
    return any(isinstance(w, str) and w in _REQUEST_FAULTS for w in words)


def map_status(
    status: int, body: bytes, not_found: str, retry_after: str | None = None
) -> GatewayError:
    """The Ollama error for a backend's non-2xx answer (with the
    `Retry-After` it came with, kept for a 429 or 5xx)."""
    message, code = upstream_error_fields(body)
    if status in (401, 403):
        # Never 401: Ollama clients take it as "sign in" and start a login flow.
        return UpstreamStatusError(
            f"upstream authentication failed: {message}",
            status=502,
            upstream_status=status,
        )
    if (
        status == 404
        or "model_not_found" in message
        or code == "model_not_found"
        or (status == 400 and any(w in message for w in _LITELLM_UNKNOWN_MODEL))
    ):
        return ModelNotFoundError(not_found)
    if status in (400, 413, 422):
        return UpstreamStatusError(message, status=400, upstream_status=status)
    if status == 429 or 500 <= status <= 504:
        return UpstreamStatusError(
            message, status=status, upstream_status=status, retry_after=retry_after
        )
    mapped = status if 400 <= status < 500 else 502
    return UpstreamStatusError(message, status=mapped, upstream_status=status)


class Upstream:
    """Sends a request for a model to its backends, in failover order."""

    def __init__(
        self,
        settings: Settings,
        transports: Mapping[str, Transport],
        blame: Callable[[str, BaseException], str] | None = None,
    ) -> None:
        self._backends = {b.name: b for b in settings.backends}
        self._transports = transports
        # Names the transport translator behind a failure, given the backend.
        self._blame = blame or (lambda backend, exc: "transport")
        self._connect_timeout = settings.timeouts.connect
        self._limit = settings.limits.max_concurrent_upstream
        self._max_answer = settings.limits.max_answer_bytes
        self.in_flight = 0
        # Backend name -> (monotonic time, "" if it answered, else why not).
        self._contacts: dict[str, tuple[float, str]] = {}
        self._probing = asyncio.Lock()

    def backend(self, name: str) -> BackendSettings:
        return self._backends[name]

    def slot(self) -> _Slot:
        """Hold one of the concurrent upstream slots, or fail at once with 503."""
        return _Slot(self)

    async def send(
        self,
        ctx: RequestContext,
        path: str,
        body: bytes,
        *,
        stream: bool,
        not_found: str,
        headers: Mapping[str, str] | None = None,
        remap: Callable[[], bytes] | None = None,
        only: str | None = None,
    ) -> UpstreamResponse:
        """Send `body` and return a 2xx answer; the caller must `aclose()` it.

        Another backend serving the same model is tried only when nothing can
        have been generated: a refused connection, or a 429/5xx status. The
        body was made for the first backend: with `remap`, the request is
        mapped again for each other one (its dialect, options, its own id of
        the model, read from `ctx`), else only the model is renamed.

        With `only` (a resend after that backend's refusal, `body` made for
        it, its settings and id still in `ctx`), no other backend is tried.
        """
        entry = ctx.entry
        if only is not None:
            entry = None
            backends: tuple[str, ...] = (only,)
        else:
            backends = entry.backends if entry is not None else (ctx.backend,)
        extra = {"X-Request-ID": ctx.request_id, **(headers or {})}
        if ctx.client_key:
            extra["Authorization"] = ctx.client_key
        failure: GatewayError | None = None
        # One backend (the common case) needs none of failover's per-backend
        # settings, ids and headers: what the handler set is its own.
        several = entry is not None and len(backends) > 1
        for position, name in enumerate(backends):
            payload = body
            if several:
                assert entry is not None
                # Set for the first too: a caller that sends several times
                # (embeddings one by one) starts from the first each time.
                ctx.backend_settings = self._backends[name]
                ctx.upstream_model = entry.upstream_id_on(name)
                if position and remap is not None:
                    payload = remap()
                elif position and ctx.upstream_model != entry.upstream_id:
                    payload = _renamed(body, entry.upstream_id, ctx.upstream_model)
            request = UpstreamRequest(
                method="POST",
                path=path,
                body=payload,
                # Each backend's own: a transport may set headers on the
                # request (a key), which must not follow it to the next one.
                headers=dict(extra) if several else extra,
                stream=stream,
                connect_timeout=self._connect_timeout,
                backend=self._backends[name],
            )
            ctx.backend = name
            ctx.upstream_sent_ns = time.perf_counter_ns()
            try:
                response = await self._send_to(name, request, ctx)
            except UpstreamConnectError as exc:
                failure = exc
                continue
            if response.status < 300:
                return response
            try:
                error_bytes = await read_whole(response, _ERROR_BODY_LIMIT, cut=True)
            finally:
                await close_answer(response, name)
            failure = map_status(
                response.status, error_bytes, not_found, _retry_after(response)
            )
            if path == "/completions" and response.status == 404:
                failure = _not_at_completions(failure, error_bytes)
            if response.status not in _FAILOVER_STATUSES:
                break
        assert failure is not None
        raise failure

    async def list_models(self, backend: BackendSettings) -> list[openai.ModelObject]:
        """`GET /models` of one backend (for the catalogue)."""
        data = await self._read_listing(backend, "/models", "models not found")
        return openai.decode_model_list(data).data

    async def litellm_model_info(
        self, backend: BackendSettings
    ) -> list[openai.LiteLLMDeployment]:
        """`GET /model/info` of a LiteLLM proxy (for the catalogue). Relative
        to the base URL as `/models` is: LiteLLM serves both `/model/info` and
        `/v1/model/info`, so a base URL with or without `/v1` reaches it."""
        data = await self._read_listing(
            backend, "/model/info", "no /model/info here (is it a LiteLLM proxy?)"
        )
        return openai.decode_litellm_model_info(data).data

    async def _read_listing(
        self, backend: BackendSettings, path: str, not_found: str
    ) -> bytes:
        """The body of a catalogue `GET`, through the backend's transport
        (its key and headers), at most `max_answer_bytes`."""
        request = UpstreamRequest(
            method="GET",
            path=path,
            connect_timeout=self._connect_timeout,
            backend=backend,
        )
        ctx = RequestContext(request_id="catalogue", endpoint="openai", model="")
        # Bounded, so a hanging backend cannot hold every request that waits
        # for the first model list.
        limit = self._connect_timeout + _LIST_TIMEOUT
        try:
            async with asyncio.timeout(limit):
                response = await self._send_to(backend.name, request, ctx)
                try:
                    data = await read_whole(response, self._max_answer)
                finally:
                    await close_answer(response, backend.name)
        except TimeoutError:
            # Said as every other upstream timeout is (a bare TimeoutError
            # would reach the client as "cannot list models: raw: TimeoutError").
            raise UpstreamTimeoutError(
                f"upstream timeout: no answer to GET {path} within {limit:g} s"
            ) from None
        if response.status >= 300:
            raise map_status(response.status, data, not_found)
        return data

    async def reachability(self, max_age: float) -> dict[str, str]:
        """Each backend: "ok" if it answered HTTP within `max_age` seconds, else
        why not. Backends not heard from in that time are probed with one
        `GET /models` each (one probe at a time, at most `PROBE_TIMEOUT`), so
        the cost is bounded however often this is called."""
        async with self._probing:
            now = time.monotonic()
            stale = [
                backend
                for name, backend in self._backends.items()
                if now - self._contacts.get(name, (-math.inf, ""))[0] > max_age
            ]
            await asyncio.gather(*(self._probe(backend) for backend in stale))
        return {name: self._contacts[name][1] or "ok" for name in self._backends}

    async def _probe(self, backend: BackendSettings) -> None:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await self.list_models(backend)
        except TimeoutError:
            self._contacts[backend.name] = (time.monotonic(), "upstream timeout")
        except GatewayError:
            pass  # `_send_to` noted it: unreachable, or answered with an error

    async def _send_to(
        self, name: str, request: UpstreamRequest, ctx: RequestContext
    ) -> UpstreamResponse:
        try:
            response = await self._transports[name].send(request, ctx)
            if not isinstance(getattr(response, "status", None), int):
                raise TypeError(
                    f"send returned {type(response).__name__}, not an "
                    "UpstreamResponse (with an int status)"
                )
        except GatewayError as exc:
            # Not an answer either: a backend that speaks no HTTP, or a
            # transport that refused (before this was noted, /ready failed
            # with a KeyError for one never heard from).
            self._contacts[name] = (time.monotonic(), exc.message)
            raise
        except Exception as exc:
            # A transport's own bug, or a wrong return value: named as a
            # request or response translator's is (not a bare "internal
            # server error"), and never failed over, since it may have sent.
            failure = TranslationError(self._blame(name, exc), exc)
            self._contacts[name] = (time.monotonic(), failure.message)
            raise failure from exc
        self._contacts[name] = (time.monotonic(), "")
        return response


def _not_at_completions(failure: GatewayError, error_bytes: bytes) -> GatewayError:
    """A 404 from `/v1/completions` (raw and suffix generate), with the
    backend's words: there it mostly means that the model, listed and served
    by chat completions, has no legacy completions (OpenAI's chat models:
    "This is a chat model and not supported in the v1/completions endpoint"),
    which Ollama's words alone ("not found") would hide. An answer that says
    the model is unknown (`model_not_found`) keeps Ollama's words alone."""
    message, code = upstream_error_fields(error_bytes)
    if code == "model_not_found" or "model_not_found" in message:
        return failure
    return ModelNotFoundError(
        f"{failure.message} at /v1/completions (the backend said: {message})"
    )


def _renamed(body: bytes, old: str, new: str) -> bytes:
    """`body` with its `model` renamed from `old` to `new`; as it is when the
    model is another (a translator chose it) or the body no JSON object.
    Read again only on failover: it is rare, and the body may be large."""
    try:
        payload = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body
    if not isinstance(payload, dict) or payload.get("model") != old:
        return body
    payload["model"] = new
    return msgspec.json.encode(payload)


def _retry_after(response: UpstreamResponse) -> str | None:
    """The wait a refusal asks for, to pass on (see `retry_after_header`):
    only a number of seconds or an HTTP date is kept, not any text."""
    value = retry_after_header(response.headers)
    if value.isdigit() and value.isascii():
        return value
    if _HTTP_DATE.fullmatch(value) is not None:
        return value
    return None


class _Slot:
    __slots__ = ("_upstream",)

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream

    async def __aenter__(self) -> None:
        upstream = self._upstream
        if upstream._limit and upstream.in_flight >= upstream._limit:
            raise BusyError(BUSY_MESSAGE)
        upstream.in_flight += 1

    async def __aexit__(self, *exc_info: object) -> None:
        self._upstream.in_flight -= 1


async def close_answer(response: UpstreamResponse, backend: str) -> None:
    """Close an answer once used. A transport's answer that fails to close (a
    plugin's bug) is logged: it does not turn what was read, or already sent
    to the client, into an error."""
    try:
        if type(response) in CLOSE_AT_ONCE:
            await response.aclose()
        else:
            await close_in_time(response)
    except Exception:
        closing_failed(backend)


# The built-in HTTP transports' answers, whose `aclose()` never waits. Any
# other (a plugin's, or a `MemoryResponse` over a plugin's body) gets
# CLOSE_WAIT seconds: one whose close never ended held its request for good,
# the client's answer (sent when the handler returns), the upstream slot and
# the connection with it.
CLOSE_AT_ONCE = frozenset({Http1Response, AiohttpResponse})
CLOSE_WAIT = 5.0


async def close_in_time(
    closable: UpstreamResponse | AsyncGenerator[bytes] | Transport,
) -> None:
    """`closable.aclose()`, given up (TimeoutError, to be logged as a failed
    close) after CLOSE_WAIT seconds."""
    async with asyncio.timeout(CLOSE_WAIT):
        await closable.aclose()


def closing_failed(backend: str) -> None:
    """Log the failure being handled, of closing an answer of `backend`."""
    log.exception("closing an answer of backend %r failed", backend)


async def read_whole(
    response: UpstreamResponse, limit: int, *, cut: bool = False
) -> bytes:
    """The whole body of an answer read at once, at most `limit` bytes. Past
    that it is an upstream protocol error, so a backend that never ends its
    body cannot make the gateway buffer it until a timeout; with `cut` (an
    error body, read for its message) the first `limit` bytes are kept."""
    pieces: list[bytes] = []
    size = 0
    async for piece in response.aiter_bytes():
        pieces.append(piece)
        size += len(piece)
        if cut and size >= limit:
            return b"".join(pieces)[:limit]
        if size > limit:
            raise UpstreamProtocolError(
                f"upstream sent an answer larger than {limit} bytes"
            )
    return b"".join(pieces)
