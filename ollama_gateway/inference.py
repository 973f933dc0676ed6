"""Serving a checked chat or generate request: map it, send it, relay or collect.

The handlers do Ollama's validation in Ollama's order; everything after that is
shared here, so both endpoints stream, time out and fail the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

import msgspec
from aiohttp import web

from ollama_gateway.clock import now_rfc3339
from ollama_gateway.completion import ChunkReader, EncodeInto, collect, relay
from ollama_gateway.context import RequestContext
from ollama_gateway.errors import (
    GatewayError,
    ModelNotFoundError,
    TranslationError,
    UpstreamConnectError,
    UpstreamStatusError,
)
from ollama_gateway.keys import (
    catalogue_key,
    pipeline_key,
    running_key,
    settings_key,
    upstream_key,
)
from ollama_gateway.modelinfo import ModelEntry
from ollama_gateway.overflow import refuses_the_limit
from ollama_gateway.protocols import UpstreamResponse
from ollama_gateway.refusals import amend
from ollama_gateway.schemas import ollama, openai
from ollama_gateway.shutdown import SHUTDOWN, is_shutdown
from ollama_gateway.upstream import (
    CLOSE_AT_ONCE,
    Upstream,
    close_in_time,
    closing_failed,
    upstream_deadline,
)

__all__ = [
    "Answer",
    "Outgoing",
    "debug_answer",
    "find_model",
    "load_answer",
    "map_outgoing",
    "map_with",
    "missing_model",
    "send_whole",
    "serve_completion",
]

T = TypeVar("T")
_LIMITS = ("max_tokens", "max_completion_tokens")
_decode_object = msgspec.json.Decoder(dict[str, object]).decode

# How a front other than Ollama's own (`/v1/messages`, `/v1/responses`) answers
# from the chunks of a chat: it is handed the reader once the backend has
# answered, and writes its own response (stream or not) from it.
Answer = Callable[[ChunkReader], Awaitable[web.StreamResponse]]


async def find_model(request: web.Request, name: str, not_found: str) -> ModelEntry:
    """The catalogue entry for `name`, or the 404 (or 502 when a backend is down)."""
    entry = await request.app[catalogue_key].resolve(name)
    if entry is not None:
        return entry
    raise missing_model(request, not_found)


def missing_model(request: web.Request, not_found: str) -> GatewayError:
    """The error for a name that did not resolve: a 404, or a 502 while a
    backend's model list cannot be read (the model may well be there)."""
    errors = request.app[catalogue_key].backend_errors()
    if errors:
        backend, reason = next(iter(errors.items()))
        return UpstreamConnectError(
            f"{not_found}; the model list of backend {backend!r} is "
            f"unavailable: {reason}"
        )
    return ModelNotFoundError(not_found)


def load_answer(request: web.Request, ctx: RequestContext, reason: str) -> web.Response:
    """The single JSON object of a load or unload request (even when streaming)."""
    chunk = ollama.ChatResponse(
        model=ctx.model,
        created_at=now_rfc3339(),
        message=ollama.ResponseMessage("assistant", ""),
        done=True,
        done_reason=reason,
    )
    body = (
        ollama.encode(chunk)
        if ctx.endpoint == "chat"
        else ollama.encode(to_generate(chunk))
    )
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def debug_answer(ctx: RequestContext, outgoing: Outgoing, images: int) -> web.Response:
    """The answer to `_debug_render_only`: Ollama returns the prompt it would run
    and runs nothing. What the gateway would run is the body it would send
    upstream, so that is the "rendered template"; no completion is asked for."""
    info: dict[str, object] = {"rendered_template": outgoing.take().decode()}
    if images:
        info["image_count"] = images
    answer: dict[str, object] = {"model": ctx.model, "created_at": now_rfc3339()}
    if ctx.endpoint == "chat":
        answer["message"] = {"role": "", "content": ""}
    else:
        answer["response"] = ""
    answer.update(done=False, _debug_info=info)
    return web.Response(
        body=ollama.encode(answer), content_type="application/json", charset="utf-8"
    )


def map_with(
    request: web.Request,
    mapper: Callable[[], T],
    expected: type | tuple[type, ...] | None = None,
    stage: str = "request",
) -> T:
    """Call a mapper method of `stage`, naming the translator if it fails or
    returns no `expected` (encoded as it came, a None would be sent upstream
    as `null`, and the backend's 400 would blame the client)."""
    try:
        mapped = mapper()
        if expected is None or isinstance(mapped, expected):
            return mapped
        names = expected if isinstance(expected, tuple) else (expected,)
        wanted = " or ".join(cls.__name__ for cls in names)
        raise TypeError(f"returned {type(mapped).__name__}, not {wanted}")
    except GatewayError:
        raise
    except Exception as exc:
        pipeline = request.app[pipeline_key]
        chain = pipeline.names.get(stage, (stage,))
        name = pipeline.translator_for(exc.__traceback__, chain) or chain[0]
        raise TranslationError(name, exc) from exc


def touch_running(
    request: web.Request, entry: ModelEntry, keep_alive: float | None
) -> None:
    request.app[running_key].touch(entry, keep_alive)


Mapped = openai.ChatCompletionRequest | openai.CompletionRequest


class Outgoing:
    """A mapped completion request, encoded, handed over once.

    The handler builds it and drops the request and mapped body; the payload
    is taken when sent. So an open stream holds none of them: a long
    conversation (or its images) is not kept until the answer's last line.
    `again` maps the request once more, for a backend failed over to (see
    `Upstream.send`); it is given only for a model with several backends,
    and handed over with the payload, so it is not kept either.
    """

    __slots__ = ("_again", "_payload", "_sent", "_think", "_without_effort", "path")

    def __init__(
        self,
        body: Mapped,
        again: Callable[[], Mapped] | None = None,
        think: bool | str | None = None,
    ) -> None:
        self.path = (
            "/completions"
            if isinstance(body, openai.CompletionRequest)
            else "/chat/completions"
        )
        self._payload = openai.encode(body)
        self._sent = b""
        self._again = again
        # `think: false` goes up as a `reasoning_effort` ("none") that many
        # backends refuse (OpenAI's o-series, vLLM: low, medium or high
        # only), while Ollama takes it on any model: the body without it is
        # kept, to send instead after such a refusal (spec 3.5).
        self._think = think
        self._without_effort = _without_effort(body, think) if think is False else None

    @property
    def size(self) -> int:
        """Bytes of the payload, until it is taken."""
        return len(self._payload)

    def take(self) -> bytes:
        payload, self._payload = self._payload, b""
        self._sent = payload  # kept (no copy) until the backend answers
        return payload

    def take_without_effort(self) -> bytes | None:
        payload, self._without_effort = self._without_effort, None
        self._sent = b""
        return payload

    def take_without_limit(self) -> bytes | None:
        """The payload sent, without its output token limit; None if it had
        none. Built only after a refusal, so the answered request pays nothing."""
        return self.take_amended(_without_limit)

    def take_amended(self, change: Callable[[dict[str, object]], bool]) -> bytes | None:
        """The payload sent, as `change` changes it; None if it changed
        nothing (or was taken). Built only after a refusal, as
        `take_without_limit`."""
        if not self._sent:
            return None
        body = _decode_object(self._sent)
        if not change(body):
            return None
        self._sent = b""
        return msgspec.json.encode(body)

    def take_again(self) -> Callable[[], bytes] | None:
        again, self._again = self._again, None
        if again is None:
            return None

        def remap() -> bytes:
            # A backend failed over to: what is sent to it is what a resend
            # after its refusal starts from (its own dialect and fields).
            body = again()
            payload = self._sent = openai.encode(body)
            self._without_effort = _without_effort(body, self._think)
            return payload

        return remap


def _without_limit(body: dict[str, object]) -> bool:
    return [body.pop(name) for name in _LIMITS if name in body] != []


def _without_effort(body: Mapped, think: bool | str | None) -> bytes | None:
    """The body without the `reasoning_effort` a `think: false` became, if
    it has one (see `Outgoing`)."""
    if (
        think is False
        and isinstance(body, openai.ChatCompletionRequest)
        and isinstance(body.reasoning_effort, str)
    ):
        return openai.encode(
            msgspec.structs.replace(body, reasoning_effort=msgspec.UNSET)
        )
    return None


def map_outgoing(
    request: web.Request,
    ctx: RequestContext,
    mapper: Callable[[], Mapped],
    expected: type | tuple[type, ...],
) -> Outgoing:
    """The mapped request (an `expected` body), with what maps it again when
    its model has several backends (their dialects and options may differ)."""
    many = ctx.entry is not None and len(ctx.entry.backends) > 1
    again = partial(map_with, request, mapper, expected) if many else None
    outgoing = Outgoing(map_with(request, mapper, expected), again, ctx.think)
    if ctx.prompt_size is not None:
        ctx.prompt_size += outgoing.size
    return outgoing


async def serve_completion(
    request: web.Request,
    ctx: RequestContext,
    outgoing: Outgoing,
    *,
    encode_into: EncodeInto,
    render: Callable[[ollama.ChatResponse], bytes],
    answer: Answer | None = None,
) -> web.StreamResponse:
    """Send the request upstream and answer the client, streaming or not.

    With `answer`, that callable writes the response from the reader instead
    of the NDJSON stream or JSON body of Ollama's own API.
    """
    app = request.app
    settings = app[settings_key]
    upstream = app[upstream_key]
    pipeline = app[pipeline_key]
    first_token = settings.timeouts.first_wait
    # One function, not two nested ones: each frame here is kept by every
    # open stream.
    try:
        async with upstream.slot():
            async with upstream_deadline(first_token, request.task):
                try:
                    response = await upstream.send(
                        ctx,
                        outgoing.path,
                        outgoing.take(),
                        stream=True,
                        not_found=f"model '{ctx.model}' not found",
                        remap=outgoing.take_again(),
                    )
                except UpstreamStatusError as exc:
                    response = await _send_without_refused(upstream, ctx, outgoing, exc)
                outgoing.take_without_effort()  # not kept while the answer streams
            reader: ChunkReader | None = None
            try:
                session = map_with(
                    request,
                    lambda: pipeline.response.open_stream(ctx),
                    stage="response",
                )
                reader = ChunkReader(
                    ctx,
                    response,
                    session,
                    settings,
                    pipeline.response_translator_for,
                    request.task.get_loop(),
                )
                if answer is not None:
                    return await answer(reader)
                if ctx.stream:
                    return await relay(request, ctx, reader, encode_into)
                return await send_whole(request, ctx, render(await collect(reader)))
            finally:
                try:
                    if reader is not None:
                        await reader.aclose()
                finally:
                    # `close_answer`, inline: one coroutine less per request.
                    try:
                        if type(response) in CLOSE_AT_ONCE:
                            await response.aclose()
                        else:
                            await close_in_time(response)
                    except Exception:
                        closing_failed(ctx.backend)
    except asyncio.CancelledError as exc:
        if not is_shutdown(exc):
            raise
        _uncancel()
        raise GatewayError(SHUTDOWN, status=503) from None


async def _send_without_refused(
    upstream: Upstream,
    ctx: RequestContext,
    outgoing: Outgoing,
    refusal: UpstreamStatusError,
) -> UpstreamResponse:
    """After `refusal`, the completion request once more without what the
    backend refused with a 400 (or 422), before any token, so nothing is
    generated twice; Ollama answers such a request. That is: the optional
    fields the refusal names as unknown or unsupported, or a value or JSON
    mode it names (see refusals.py); else the `reasoning_effort` of a
    `think: false`; else the output token limit. Else `refusal` stands."""
    if refusal.status != 400:
        raise refusal
    message = refusal.message.lower()
    plain = outgoing.take_amended(partial(amend, message=refusal.message))
    if plain is None and "reasoning" in message:
        plain = outgoing.take_without_effort()
    elif plain is None and refuses_the_limit(message):
        plain = outgoing.take_without_limit()
    if plain is None:
        raise refusal
    # To the backend that refused only: the others of a failover list had
    # their turn (and refused) before it.
    return await upstream.send(
        ctx,
        outgoing.path,
        plain,
        stream=True,
        not_found=f"model '{ctx.model}' not found",
        only=ctx.backend,
    )


async def send_whole(
    request: web.Request, ctx: RequestContext, body: bytes
) -> web.Response:
    """Send a whole JSON answer now, from within the upstream exchange.

    Sent here, not by aiohttp after the handler returns: the tidying up that
    follows (the body closed, the connection and the slot given back, the
    middleware's accounting) is then no part of the client's wait.
    """
    whole = web.Response(body=body, content_type="application/json", charset="utf-8")
    try:
        await whole.prepare(request)
        await whole.write_eof()
    except ConnectionResetError:
        ctx.outcome = "client_disconnect"
    return whole


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


def to_generate(chunk: ollama.ChatResponse) -> ollama.GenerateResponse:
    """Render a chat-shaped chunk as a `/api/generate` line."""
    message = chunk.message
    return ollama.GenerateResponse(
        model=chunk.model,
        created_at=chunk.created_at,
        response=message.content,
        done=chunk.done,
        thinking=message.thinking,
        tool_calls=message.tool_calls,
        done_reason=chunk.done_reason,
        total_duration=chunk.total_duration,
        load_duration=chunk.load_duration,
        prompt_eval_count=chunk.prompt_eval_count,
        prompt_eval_duration=chunk.prompt_eval_duration,
        eval_count=chunk.eval_count,
        eval_duration=chunk.eval_duration,
        logprobs=chunk.logprobs,
    )
