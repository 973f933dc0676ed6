"""`POST /api/generate`: checks in Ollama's order (spec 2.6), then the shared runner.

Without `raw` or `suffix` the prompt becomes a one-turn chat; with either it goes
to the backend's legacy `/v1/completions`.
"""

from __future__ import annotations

import logging
from functools import partial

import msgspec
from aiohttp import web

from ollama_gateway.completion import ChunkReader, collect, relay
from ollama_gateway.durations import parse_keep_alive
from ollama_gateway.errors import InvalidRequestError
from ollama_gateway.generate_context import Transcript, earlier_turns
from ollama_gateway.go_decode import GENERATE_REQUEST
from ollama_gateway.inbound import read_body
from ollama_gateway.inference import (
    debug_answer,
    find_model,
    load_answer,
    map_outgoing,
    send_whole,
    serve_completion,
    to_generate,
    touch_running,
)
from ollama_gateway.keys import (
    ctx_key,
    pipeline_key,
    response_store_key,
    settings_key,
    upstream_key,
)
from ollama_gateway.modelinfo import registry_name
from ollama_gateway.response_store import owner_of
from ollama_gateway.schemas import ollama, openai
from ollama_gateway.validation import (
    check_format,
    check_images,
    check_options,
    check_think,
    check_top_logprobs,
)

__all__ = ["handle_generate"]

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()


def _encode_line(chunk: ollama.ChatResponse, buffer: bytearray) -> None:
    _encoder.encode_into(to_generate(chunk), buffer, -1)
    buffer.extend(b"\n")


def _render(chunk: ollama.ChatResponse) -> bytes:
    return _encoder.encode(to_generate(chunk))


async def handle_generate(request: web.Request) -> web.StreamResponse:
    req = await read_body(request, ollama.decode_generate, GENERATE_REQUEST)
    keep_alive = parse_keep_alive(req.keep_alive)
    think = check_think(req.think)
    check_images(req.images)
    top_logprobs = check_top_logprobs(req.top_logprobs)
    ctx = request[ctx_key]
    ctx.endpoint = "generate"
    ctx.prompt_size = -sum(map(len, req.images)) if req.images else 0
    ctx.model = req.model
    ctx.stream = req.stream is not False
    model = req.model.strip()
    # Ollama answers an empty model on generate with 404, unlike chat's 400.
    entry = await find_model(request, model, f"model '{req.model}' not found")
    ctx.use(entry)
    if not req.prompt and keep_alive == 0:
        touch_running(request, entry, 0)
        return load_answer(request, ctx, "unload")
    if req.raw and (req.template or req.system or req.context):
        raise InvalidRequestError(
            "raw mode does not support template, system, or context"
        )
    if think and not entry.supports("thinking"):
        raise InvalidRequestError(f'"{req.model}" does not support thinking')
    if not entry.supports("completion"):
        raise InvalidRequestError(f'"{req.model}" does not support generate')
    if req.suffix and not entry.supports("insert"):
        raise InvalidRequestError(f"{registry_name(model)} does not support insert")
    req.options = check_options(req.options)
    touch_running(request, entry, keep_alive)
    if not req.prompt:
        return load_answer(request, ctx, "load")
    req.format = check_format(req.format)
    settings = request.app[settings_key]
    answer = None
    if settings.server.generate_context and not req.suffix and not req.raw:
        # It writes the answer itself, in place of `_encode_line` and `_render`.
        answer = partial(_answer_kept, request, await _transcript(request, req))
    elif req.context:
        log.warning("ignoring generate context: the gateway has no tokens")
    if req.template:
        log.warning("ignoring generate template: the gateway cannot apply it")
    req.think = ctx.think = think
    ctx.logprobs = bool(req.logprobs)
    ctx.top_logprobs = top_logprobs
    ctx.backend_settings = request.app[upstream_key].backend(entry.backend)
    pipeline = request.app[pipeline_key]
    mapped = map_outgoing(
        request,
        ctx,
        partial(pipeline.request.map_generate, req, ctx),
        (openai.ChatCompletionRequest, openai.CompletionRequest),
    )
    if req.debug_render_only:
        return debug_answer(ctx, mapped, len(req.images or ()))
    del req  # not kept while the answer streams (see Outgoing)
    return await serve_completion(
        request, ctx, mapped, encode_into=_encode_line, render=_render, answer=answer
    )


async def _answer_kept(
    request: web.Request, transcript: Transcript, reader: ChunkReader
) -> web.StreamResponse:
    """The answer of a generate whose conversation is kept: the conversation
    is kept before the line that names it is sent."""
    ctx = request[ctx_key]
    if ctx.stream:
        return await relay(
            request, ctx, reader, transcript.encode_line, ending=transcript.ending
        )
    body = transcript.render(await collect(reader))
    await transcript.keep()
    return await send_whole(request, ctx, body)


async def _transcript(request: web.Request, req: ollama.GenerateRequest) -> Transcript:
    """The emulated `context` (see generate_context.py): the earlier turns it
    names go to the request mapper (`ctx.history`), and the answer's lines
    are rendered by a transcript that keeps the conversation as it ends."""
    store = request.app[response_store_key]
    owner = owner_of(request.headers)
    earlier: list[ollama.Message] = []
    if req.context:
        found = await earlier_turns(store, owner, req.context)
        if found is None:
            log.warning("ignoring generate context: not one this gateway holds")
        else:
            earlier = found
    if req.system:
        earlier = [turn for turn in earlier if turn.role != "system"]
    request[ctx_key].history = earlier
    turns = []
    if req.system:
        turns.append(ollama.Message(role="system", content=req.system))
    turns += earlier
    turns.append(ollama.Message(role="user", content=req.prompt, images=req.images))
    return Transcript(store, owner, turns)
