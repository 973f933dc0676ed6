"""The Anthropic front: `POST /v1/messages` and `/v1/messages/count_tokens`.

Claude Code and Anthropic's SDKs speak the Messages API. As Ollama does, the
gateway converts a Messages request to a chat request and runs it through
`serve_chat` (the same model lookup, capability checks, translators and
metrics as `/api/chat`), then answers in Anthropic's shape. Errors raised
before the answer starts are rendered in Anthropic's envelope by the error
middleware (it keys on the path); after a stream has started, an `error`
event ends it.
"""

from __future__ import annotations

from aiohttp import web

from ollama_gateway.anthropic_answer import (
    MessageEvents,
    error_event,
    message_id,
    overflow_message,
    whole_message,
)
from ollama_gateway.anthropic_request import (
    estimate_input_tokens,
    history_call_ids,
    map_messages_request,
    tool_choice,
)
from ollama_gateway.completion import ChunkReader, collect, relay
from ollama_gateway.errors import InvalidRequestError, UpstreamStatusError
from ollama_gateway.handlers.chat import serve_chat
from ollama_gateway.inbound import read_body
from ollama_gateway.inference import find_model, send_whole
from ollama_gateway.keys import ctx_key, settings_key
from ollama_gateway.modelinfo import ModelEntry
from ollama_gateway.schemas import anthropic
from ollama_gateway.validation import check_message_count

__all__ = [
    "VERSION_HEADER",
    "handle_count_tokens",
    "handle_messages",
    "model_answer",
    "models_answer",
]

# Every request of Anthropic's SDKs carries it; OpenAI's never do. The model
# list, the one route both APIs share, answers in the shape of the asker's.
VERSION_HEADER = "anthropic-version"


async def handle_messages(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, anthropic.decode_messages)
    # Counted before any is mapped, as for /api/chat (see limits.max_messages).
    check_message_count(body.messages, request.app[settings_key].limits.max_messages)
    estimate = estimate_input_tokens(body)
    chat = map_messages_request(body)
    must_call_tool = tool_choice(body).required
    used_ids = history_call_ids(body)
    model = body.model
    stream = body.stream
    del body  # not kept while the answer streams

    async def answer(reader: ChunkReader) -> web.StreamResponse:
        ctx = request[ctx_key]
        if stream:
            events = MessageEvents(message_id(), model, estimate, ctx, used_ids)
            return await relay(
                request,
                ctx,
                reader,
                events.feed,
                content_type="text/event-stream",
                error_line=error_event,
            )
        final = await collect(reader)
        message = whole_message(message_id(), model, final, estimate, ctx, used_ids)
        return await send_whole(request, ctx, anthropic.encode(message))

    try:
        return await serve_chat(
            request, chat, answer, think_is_a_hint=True, must_call_tool=must_call_tool
        )
    except UpstreamStatusError as exc:
        # A prompt over the backend's context, worded as Anthropic words it:
        # Claude Code then compacts or lowers `max_tokens` (see overflow.py).
        worded = overflow_message(exc.message) if exc.status == 400 else None
        if worded is not None:
            exc.message = worded
        raise


async def handle_count_tokens(request: web.Request) -> web.StreamResponse:
    """An estimate (see `estimate_input_tokens`), as Ollama answers: an
    OpenAI-compatible backend cannot count a prompt without running it."""
    body = await read_body(request, anthropic.decode_count_tokens)
    model = body.model.strip()
    if not model:
        raise InvalidRequestError("model is required")
    ctx = request[ctx_key]
    ctx.model = body.model
    ctx.use(await find_model(request, model, f"model '{body.model}' not found"))
    count = anthropic.CountTokensResponse(estimate_input_tokens(body))
    return web.Response(body=anthropic.encode(count), content_type="application/json")


def models_answer(entries: list[ModelEntry]) -> web.Response:
    """`GET /v1/models` for Anthropic's SDKs (`client.models.list()`)."""
    data = [_model_info(e) for e in entries if not e.hidden]
    page = anthropic.ModelPage(
        data,
        has_more=False,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )
    return _json(anthropic.encode(page))


def model_answer(entry: ModelEntry | None, name: str) -> web.Response:
    """`GET /v1/models/{id}` for Anthropic's SDKs."""
    if entry is None:
        body = anthropic.encode_error(404, f"model '{name}' not found")
        return _json(body, status=404)
    return _json(anthropic.encode(_model_info(entry)))


def _model_info(entry: ModelEntry) -> anthropic.ModelInfo:
    return anthropic.ModelInfo(entry.name, entry.name, entry.modified_at)


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")
