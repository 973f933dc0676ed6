"""`POST /api/chat`: checks in Ollama's order (spec 2.7), then the shared runner."""

from __future__ import annotations

from functools import partial

import msgspec
from aiohttp import web

from ollama_gateway.durations import parse_keep_alive
from ollama_gateway.errors import InvalidRequestError
from ollama_gateway.go_decode import CHAT_REQUEST
from ollama_gateway.inbound import read_body
from ollama_gateway.inference import (
    Answer,
    debug_answer,
    find_model,
    load_answer,
    map_outgoing,
    serve_completion,
    touch_running,
)
from ollama_gateway.keys import ctx_key, pipeline_key, settings_key, upstream_key
from ollama_gateway.modelinfo import registry_name
from ollama_gateway.schemas import ollama, openai
from ollama_gateway.validation import (
    check_format,
    check_images,
    check_message_count,
    check_options,
    check_think,
    check_top_logprobs,
)

__all__ = ["handle_chat", "serve_chat"]

_encoder = msgspec.json.Encoder()


def _encode_line(chunk: ollama.ChatResponse, buffer: bytearray) -> None:
    _encoder.encode_into(chunk, buffer, -1)
    buffer.extend(b"\n")


async def handle_chat(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, ollama.decode_chat, CHAT_REQUEST)
    return await serve_chat(request, body)


async def serve_chat(
    request: web.Request,
    req: ollama.ChatRequest,
    answer: Answer | None = None,
    *,
    think_is_a_hint: bool = False,
    must_call_tool: bool = False,
) -> web.StreamResponse:
    """Check a chat request in Ollama's order, then run it; the other fronts
    (`/v1/messages`, `/v1/responses`) build a `ChatRequest` and come here with
    their own `answer`, so they share every check, translator and metric.

    With `think_is_a_hint`, thinking asked of a model without the capability
    is dropped instead of refused: agent CLIs (Claude Code, Codex) ask for it
    on every request whatever the model, and a 400 would stop them dead.
    With `must_call_tool`, the model must call one of the tools it is offered
    (the fronts' `tool_choice`).
    """
    check_message_count(req.messages, request.app[settings_key].limits.max_messages)
    keep_alive = parse_keep_alive(req.keep_alive)
    think = check_think(req.think)
    image_size = 0
    for message in req.messages or ():
        if message.images:
            check_images(message.images)
            image_size += sum(map(len, message.images))
    top_logprobs = check_top_logprobs(req.top_logprobs)
    model = req.model.strip()
    if not model:
        raise InvalidRequestError("model is required")
    ctx = request[ctx_key]
    ctx.endpoint = "chat"
    ctx.model = req.model
    ctx.stream = req.stream is not False
    ctx.must_call_tool = must_call_tool
    if answer is None:  # the agent fronts estimate their own prompt's count
        ctx.prompt_size = -image_size
    entry = await find_model(request, model, f"model '{req.model}' not found")
    ctx.use(entry)
    if not req.messages and keep_alive == 0:
        touch_running(request, entry, 0)
        return load_answer(request, ctx, "unload")
    if req.tools and not entry.supports("tools"):
        raise InvalidRequestError(f"{registry_name(model)} does not support tools")
    if think and not entry.supports("thinking"):
        if not think_is_a_hint:
            raise InvalidRequestError(f'"{req.model}" does not support thinking')
        think = None
    if not entry.supports("completion"):
        raise InvalidRequestError(f'"{req.model}" does not support chat')
    req.options = check_options(req.options)
    touch_running(request, entry, keep_alive)
    if not req.messages:
        return load_answer(request, ctx, "load")
    req.format = check_format(req.format)
    req.think = ctx.think = think
    ctx.logprobs = bool(req.logprobs)
    ctx.top_logprobs = top_logprobs
    ctx.backend_settings = request.app[upstream_key].backend(entry.backend)
    pipeline = request.app[pipeline_key]
    mapped = map_outgoing(
        request,
        ctx,
        partial(pipeline.request.map_chat, req, ctx),
        openai.ChatCompletionRequest,
    )
    if req.debug_render_only:
        images = sum(len(m.images or ()) for m in req.messages)
        return debug_answer(ctx, mapped, images)
    del req  # not kept while the answer streams (see Outgoing)
    return await serve_completion(
        request,
        ctx,
        mapped,
        encode_into=_encode_line,
        render=ollama.encode,
        answer=answer,
    )
