"""Middlewares: request id, Host/CORS checks, inbound auth, and the error and
accounting wrapper that turns exceptions into Ollama errors and records each
request once (metrics and one log line)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from random import getrandbits

from aiohttp import HttpVersion11, web
from aiohttp.typedefs import Handler

from ollama_gateway.bodywatch import BodyWatch
from ollama_gateway.context import RequestContext
from ollama_gateway.cors import MALFORMED_HOST, HostCheck, HostVerdict, OriginPolicy
from ollama_gateway.errors import (
    AuthError,
    GatewayError,
    RequestTimeoutError,
    error_body,
    retry_after,
)
from ollama_gateway.handlers.openai_proxy import openai_error
from ollama_gateway.keys import ctx_key, in_flight_key, metrics_key, settings_key
from ollama_gateway.log import AccessLog, note_failure
from ollama_gateway.presented_key import presented_key
from ollama_gateway.schemas import anthropic
from ollama_gateway.shutdown import SHUTDOWN, is_shutdown

__all__ = ["ExpectHandler", "setup_middlewares"]

ExpectHandler = Callable[[web.Request], Awaitable[None]]

log = logging.getLogger(__name__)
access_log = AccessLog()

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_OPEN_PATHS = frozenset({"/", "/health", "/ready", "/metrics"})
_MAX_LOGGED_MODEL = 200
_MAX_LOGGED_ERROR = 500
# Fronts whose clients read OpenAI's error envelope, not Ollama's, for the
# errors met before their handler answers (auth, body size, shutdown).
# The OpenAI routes (see routes.py; /v1/models/{id} is matched by prefix).
_OPENAI_ERROR_PATHS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/models",
        "/chat/completions",
        "/completions",
        "/embeddings",
    }
)


def setup_middlewares(app: web.Application) -> ExpectHandler:
    """Add the middleware; returns the routes' handler of `Expect`."""
    settings = app[settings_key]
    origins = OriginPolicy(settings.server.cors_origins)
    hosts = HostCheck(settings.server.host)
    # Bound once: an Enum member is a slow attribute lookup on Python 3.11.
    allowed = HostVerdict.ALLOWED
    digests = [_digest(k) for k in settings.auth.api_keys]
    pass_key = settings.auth.pass_client_key
    body_limit = settings.limits.max_body_bytes
    body_idle = settings.timeouts.request_body
    metrics = app[metrics_key]
    in_flight = app[in_flight_key]
    # ids of the requests whose streaming response is open (for the gauge).
    streaming: set[int] = set()

    @web.middleware
    async def account(request: web.Request, handler: Handler) -> web.StreamResponse:
        wanted = request.headers.get("X-Request-ID")
        if wanted is not None and _REQUEST_ID.fullmatch(wanted):
            request_id = wanted
        else:
            request_id = _new_request_id()
        ctx = RequestContext(request_id=request_id, endpoint="other", model="")
        request[ctx_key] = ctx
        status = 500
        # Tracked, so the grace timer can end it (see shutdown.py).
        task = request.task
        in_flight.add(task)
        watch = None
        try:
            refusal = guard(request)
            if refusal is not None:
                status = refusal.status
                _end_unread(request, refusal)
                return refusal
            length = request.content_length
            if body_limit and length is not None and length > body_limit:
                # Refused on what it announces, not after waiting for it: a
                # client may never send the body (reading has no time limit).
                raise web.HTTPRequestEntityTooLarge(
                    max_size=body_limit, actual_size=length
                )
            if body_idle and not request.content.is_eof():
                watch = BodyWatch(request, body_idle)
            response = await handler(request)
            origin = request.headers.get("Origin")
            if origin and not response.prepared:
                response.headers.update(origins.headers_for(origin))
            status = response.status
            return response
        except GatewayError as exc:
            status = exc.status
            note_failure(ctx, exc)
            error = _error_response(exc.status, exc.message, request.path)
            error.headers.update(retry_after(exc))
            if isinstance(exc, AuthError):
                error.headers["WWW-Authenticate"] = 'Bearer realm="ollama-gateway"'
            elif isinstance(exc, RequestTimeoutError):
                error.force_close()  # the rest of the body is not read
            _end_unread(request, error)
            return error
        except web.RequestPayloadError as exc:
            # A body that does not decode (a bad Content-Encoding, a broken
            # chunked body): the client's mistake. Nothing more of it is read,
            # and the connection is not kept.
            status = 400
            request.content.feed_eof()
            # aiohttp's parser error, whose `message` is the reason alone.
            reason = str(getattr(exc.__cause__, "message", "") or exc).strip()
            refused = _error_response(
                400, f"invalid request body: {reason}", request.path
            )
            refused.force_close()
            return refused
        except web.HTTPException as exc:
            answer = _http_exception(exc, request.path)
            if exc.status == 404:
                answer = await _slashless_redirect(request) or answer
            status = answer.status
            _end_unread(request, answer)
            return answer
        except asyncio.CancelledError as exc:
            if not is_shutdown(exc):
                status, ctx.outcome = 499, "client_disconnect"
                raise
            ctx.outcome = "shutdown"
            if id(request) in streaming:
                status = 200
                raise  # its status is sent; the connection ends here
            _uncancel()
            status = 503
            return _error_response(503, SHUTDOWN, request.path)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            ctx.outcome = "internal_error"
            return _error_response(500, "internal server error", request.path)
        finally:
            if watch is not None:
                watch.cancel()
            in_flight.discard(task)
            if status >= 400 and ctx.outcome == "ok":
                ctx.outcome = "rejected" if status < 500 else "error"
            if id(request) in streaming:
                streaming.discard(id(request))
                metrics.record_stream_end()
            # Recorded once the answer is on its way: aiohttp sends a returned
            # response in this same step, so the metrics and the log line are
            # not part of the client's wait (times are taken now).
            task.get_loop().call_soon(
                _record, request, ctx, status, time.perf_counter_ns()
            )

    def guard(request: web.Request) -> web.StreamResponse | None:
        """Host, Origin and key checks: a refusal, or None to go on."""
        verdict = hosts.verdict(request.host)
        if verdict is not allowed:
            if verdict is HostVerdict.MALFORMED:
                # Go's server answers this before any handler, and hangs up.
                refused = web.Response(status=400, text=MALFORMED_HOST)
                refused.force_close()
                return refused
            return web.Response(status=403, text="403 Forbidden: host not allowed")
        origin = request.headers.get("Origin")
        # An empty Origin is no CORS request, as gin's CORS layer reads it.
        if origin:
            if not origins.allows(origin, request.host):
                return web.Response(
                    status=403, text="403 Forbidden: origin not allowed"
                )
            if request.method == "OPTIONS":
                return origins.preflight(origin)
        if not digests and not pass_key:
            return None
        presented = presented_key(request)
        if digests and request.path not in _OPEN_PATHS:
            if not _accepted(presented, digests):
                raise AuthError("unauthorized: a valid API key is required")
        if pass_key and presented:
            if not presented.isprintable():
                # Bytes that are not UTF-8 (kept as lone surrogates) cannot be
                # sent on: no key the backend could accept.
                raise AuthError("unauthorized: a valid API key is required")
            ctx = request.get(ctx_key)
            if ctx is not None:  # None: asked by `expect`, before `account`
                ctx.client_key = f"Bearer {presented}"
        return None

    # One middleware, not two: each is a frame kept by every open stream.
    app.middlewares.append(account)

    async def expect(request: web.Request) -> None:
        """`Expect: 100-continue` (curl sends it with a body over 1 MiB, .NET's
        HttpClient and others too): the `100 Continue` only for a request
        that will be read, as Go's server sends it once the handler reads
        the body. aiohttp's own sent it before any check, so a client told
        to go on uploaded a body of gigabytes only to get the 413 (or the
        401, 403, or the 404 or 405 of a request no route takes) that
        `account` answers on its head."""
        if request.version != HttpVersion11:
            return
        wanted = request.headers.get("Expect", "")
        if wanted.lower() != "100-continue":
            # Go's 417 too; aiohttp's wording.
            raise web.HTTPExpectationFailed(text=f"Unknown Expect: {wanted}")
        if request.match_info.http_exception is not None:
            return  # no route takes it: its 404 or 405 needs no body
        length = request.content_length
        if body_limit and length is not None and length > body_limit:
            return
        try:
            if guard(request) is not None:
                return
        except GatewayError:
            return
        writer = request.writer
        await writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.output_size = 0  # the answer's own head is still to come

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        ctx = request.get(ctx_key)
        if ctx is not None:
            response.headers["X-Request-ID"] = ctx.request_id
            if not isinstance(response, web.Response):
                streaming.add(id(request))
                metrics.record_stream_start()
                if (
                    request.version < HttpVersion11
                    and response.keep_alive
                    and response.headers.get("Connection") != "keep-alive"
                ):
                    # An HTTP/1.0 stream has no chunks: it ends where the
                    # connection does. aiohttp knows (it leaves out
                    # `Connection: keep-alive`) but keeps the connection, so
                    # a `Connection: keep-alive` client (ApacheBench -k, old
                    # proxies) waited for an end that came only with the
                    # keep-alive timer, and took the next answer for more.
                    response.force_close()
        origin = request.headers.get("Origin")
        if origin and origins.allows(origin, request.host):
            response.headers.update(origins.headers_for(origin))

    app.on_response_prepare.append(add_headers)
    return expect


def _end_unread(request: web.Request, refusal: web.StreamResponse) -> None:
    """A refusal to a request whose client waits for `100 Continue`: its body
    is never read, nor waited for (aiohttp would, for 10 s), and the
    connection ends with the answer, as Go's server ends it."""
    if request.content.is_eof() or "Expect" not in request.headers:
        return
    request.content.feed_eof()
    refusal.force_close()


def _new_request_id() -> str:
    # 128 random bits, as uuid4().hex gives, without its system call and
    # object: ids need to be unique, not unpredictable. (`random` reseeds
    # itself in a forked child, so workers do not repeat each other.)
    return f"{getrandbits(128):032x}"


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _accepted(presented: str, digests: list[bytes]) -> bool:
    # Equal-length digests and no early exit: the time taken says nothing about
    # how much of a key matched, or which key.
    candidate = _digest(presented)
    found = False
    for digest in digests:
        found |= hmac.compare_digest(candidate, digest)
    return found and bool(presented)


def _error_response(status: int, message: str, path: str = "") -> web.Response:
    # Two fronts speak other error shapes, keyed on the path so that a refusal
    # made before the handler runs (the key check, the body limit) is worded
    # the same way: Claude Code and Anthropic's SDKs read `{"type": "error",
    # "error": {...}}`, OpenAI's clients `{"error": {"message": ...}}`; an
    # Ollama body there is an error without a message.
    if path.startswith(anthropic.PATH_PREFIX):
        body = anthropic.encode_error(status, message)
    elif path in _OPENAI_ERROR_PATHS or path.startswith("/v1/models/"):
        return openai_error(status, message)
    else:
        body = error_body(message)
    return web.Response(
        body=body,
        status=status,
        content_type="application/json",
        charset="utf-8",
    )


async def _slashless_redirect(request: web.Request) -> web.StreamResponse | None:
    """Gin's RedirectTrailingSlash (spec 1.1): `/api/tags/` redirects to
    `/api/tags`, 301 for GET and 307 (method and body kept) otherwise, when
    the slash-less path serves the request's method."""
    path = request.path
    if len(path) < 2 or not path.endswith("/"):
        return None
    target = request.rel_url.with_path(path.rstrip("/") or "/").with_query(
        request.rel_url.query
    )
    match = await request.app.router.resolve(request.clone(rel_url=target))
    if match.http_exception is not None:
        return None
    status = 301 if request.method == "GET" else 307
    return web.Response(status=status, headers={"Location": str(target)})


# Gin's answers to a path or method no route takes: `text/plain` with no
# charset (its `serveError`), and on a 405 the `Allow` header RFC 9110 asks
# for, listing the other methods in the order Ollama first registers them.
_NOT_FOUND = b"404 page not found"
_NOT_ALLOWED = b"405 method not allowed"
_METHOD_ORDER = {"HEAD": 0, "GET": 1, "POST": 2, "DELETE": 3}


def _http_exception(exc: web.HTTPException, path: str) -> web.StreamResponse:
    if exc.status == 404:
        return web.Response(status=404, body=_NOT_FOUND, content_type="text/plain")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = sorted(
            exc.allowed_methods - {exc.method},
            key=lambda method: (_METHOD_ORDER.get(method, len(_METHOD_ORDER)), method),
        )
        return web.Response(
            status=405,
            body=_NOT_ALLOWED,
            content_type="text/plain",
            headers={"Allow": ", ".join(allowed)},
        )
    if exc.status == 413:
        return _error_response(413, "request body too large", path)
    if 300 <= exc.status < 400:
        return exc
    return _error_response(exc.status, exc.reason, path)


def _known_path(request: web.Request) -> str:
    """The route pattern of a path served with other methods (a CORS
    preflight, a 405), as its other requests are labelled; `unmatched` for a
    path the gateway does not serve, so no client can add series."""
    exc = request.match_info.http_exception
    if exc is None or exc.status != 405:
        return "unmatched"
    path = request.path
    for resource in request.app.router.resources():
        info = resource.get_info()
        pattern = info.get("pattern")
        if path == info.get("path") or pattern and pattern.fullmatch(path):
            return resource.canonical
    return "unmatched"


def _record(
    request: web.Request, ctx: RequestContext, status: int, ended_ns: int
) -> None:
    duration = (ended_ns - ctx.started_ns) / 1e9
    ttft = (ctx.first_token_ns - ctx.started_ns) / 1e9 if ctx.first_token_ns else None
    route = request.match_info.route.resource
    endpoint = route.canonical if route is not None else _known_path(request)
    entry = ctx.entry
    # An alias made by /api/copy counts as its target: clients cannot add labels.
    model = (entry.alias_of or entry.name) if entry is not None else "other"
    metrics = request.app[metrics_key]
    if ctx.outcome == "client_disconnect":
        metrics.record_disconnect()
    elif ctx.outcome.startswith("upstream_"):
        metrics.record_upstream_error(ctx.outcome.removeprefix("upstream_"))
    if ctx.retries:
        metrics.record_retries(ctx.retries)
    metrics.record_request(
        endpoint=endpoint,
        model=model,
        status=status,
        duration=duration,
        ttft=ttft,
        prompt_tokens=ctx.prompt_tokens,
        completion_tokens=ctx.completion_tokens,
    )
    access_log(
        f"{request.method} {endpoint} {status}",
        {
            "request_id": ctx.request_id,
            "method": request.method,
            "endpoint": endpoint,
            # The name as the client sent it (bounded); never bodies or headers.
            "model": ctx.model[:_MAX_LOGGED_MODEL] or None,
            "status": status,
            "duration_ms": round(duration * 1000, 3),
            "ttft_ms": round(ttft * 1000, 3) if ttft is not None else None,
            "prompt_tokens": ctx.prompt_tokens,
            "completion_tokens": ctx.completion_tokens,
            "outcome": ctx.outcome,
            "retries": ctx.retries,
            "backend": ctx.backend or None,
            # Tested here: most requests have none, and pay no call for it.
            "error": _logged_error(request, ctx, status) if ctx.error else None,
        },
    )


def _logged_error(request: web.Request, ctx: RequestContext, status: int) -> str | None:
    """Why a request failed on the gateway's or the backend's side (a 5xx, or
    an error that ended a stream whose status was sent): the message the
    client got, which an operator did not see. Bounded, and without the keys
    the gateway knows, should a backend echo one. Not for a 4xx: the client's
    mistake, whose message may quote its request."""
    if not ctx.error or 400 <= status < 500:
        return None
    message = ctx.error
    keys = [*request.app[settings_key].auth.api_keys, ctx.client_key[7:]]
    if ctx.backend_settings is not None:
        keys.append(ctx.backend_settings.api_key)
    for key in keys:
        if key:
            message = message.replace(key, "***")
    if len(message) > _MAX_LOGGED_ERROR:
        message = message[:_MAX_LOGGED_ERROR] + "…"
    return message
