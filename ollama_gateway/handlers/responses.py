"""`POST /v1/responses`: the OpenAI Responses API, served as Ollama serves it,
by converting the request to a chat and the chat's chunks to a response.

The chat runs through `serve_chat`, so the model lookup, capability checks,
translators, timeouts and metrics are those of `/api/chat`. A response asked
without `store: false` keeps its conversation for 30 minutes (see
response_store.py), so a follow-up may send only its new items with
`previous_response_id`; Codex and Copilot CLI send the whole conversation
with `store: false` instead, and nothing is kept for them. Only function
tools reach the model, those of `namespace` groups included (their calls go
back with the namespace); built-in tool types (web search, file search, ...)
are left out, since nothing here could run them.
"""

from __future__ import annotations

import time
from functools import partial

from aiohttp import web

from ollama_gateway.completion import ChunkReader, collect, relay
from ollama_gateway.errors import (
    GatewayError,
    ModelNotFoundError,
    UpstreamStatusError,
    retry_after,
)
from ollama_gateway.handlers.chat import serve_chat
from ollama_gateway.handlers.openai_proxy import openai_error
from ollama_gateway.inbound import read_body
from ollama_gateway.inference import send_whole
from ollama_gateway.keys import ctx_key, response_store_key, settings_key
from ollama_gateway.log import note_failure
from ollama_gateway.overflow import read_overflow
from ollama_gateway.response_events import ResponseBuilder, new_id, response_of
from ollama_gateway.response_store import ResponseStore, owner_of
from ollama_gateway.responses_request import (
    ParamError,
    history_call_ids,
    map_request,
    namespaces,
    tool_choice,
)
from ollama_gateway.schemas import responses
from ollama_gateway.token_estimate import estimate_chat_tokens
from ollama_gateway.validation import check_message_count

__all__ = ["handle_responses"]

SSE = "text/event-stream"


class _Keeper:
    """Keeps a response's conversation once it is answered: its items so far
    (encoded when the request came, so the request itself is not held while
    the answer streams) and then its output items."""

    __slots__ = ("_items", "_owner", "_store")

    def __init__(self, store: ResponseStore, owner: str, items: bytes) -> None:
        self._store = store
        self._owner = owner
        self._items = items

    async def keep(self, response: responses.Response) -> None:
        """Keep the conversation `response` ends, in the directory the
        workers share too when they do."""
        items = self._conversation(response)
        if items is not None:
            await self._store.save(response.id, self._owner, items)

    def _conversation(self, response: responses.Response) -> bytes | None:
        if response.status not in ("completed", "incomplete"):
            return None  # a failed answer is no turn to follow up on
        output = responses.encode(response.output)
        if self._items == b"[]":
            return output
        if output == b"[]":
            return self._items
        return self._items[:-1] + b"," + output[1:]


async def handle_responses(request: web.Request) -> web.StreamResponse:
    ctx = request[ctx_key]
    try:
        body = await read_body(request, responses.decode_request)
        # Counted before any is looked up or mapped, as for /api/chat.
        limit = request.app[settings_key].limits.max_messages
        if isinstance(body.input, list):
            check_message_count(body.input, limit)
        store = request.app[response_store_key]
        owner = owner_of(request.headers)
        kept = None
        if body.previous_response_id is not None:
            kept = store.get(body.previous_response_id, owner)
            if kept is None and store.shared:
                kept = await store.read(body.previous_response_id, owner)
        if isinstance(body.input, list) and any(
            item.type == "item_reference" for item in body.input
        ):
            body.input = await _referred(body.input, store, owner)
        items = _conversation(body, kept)
        check_message_count(items, limit)  # with the stored conversation's
        keeper = None
        if body.store is not False and store.max_bytes > 0:
            keeper = _Keeper(store, owner, responses.encode(items))
        echo = _echo(body, stored=keeper is not None)
        chat = map_request(body, items)
        estimate = estimate_chat_tokens(chat)
        answer = partial(
            _answer,
            request,
            echo,
            namespaces(body.tools),
            keeper,
            estimate,
            history_call_ids(items),
        )
        # Handed over, not kept here: serve_chat drops the request before the
        # answer streams, so a long conversation is not held to its end.
        pending = [chat]
        del chat
        must_call_tool = tool_choice(body).required
        del body, items
        return await serve_chat(
            request,
            pending.pop(),
            answer,
            think_is_a_hint=True,
            must_call_tool=must_call_tool,
        )
    except GatewayError as exc:
        note_failure(ctx, exc)
        code = "model_not_found" if isinstance(exc, ModelNotFoundError) else None
        param = None
        if isinstance(exc, ParamError):
            param, code = exc.param, exc.code
        elif _over_the_context(exc):
            # OpenAI's code for it, which Codex and OpenAI's clients act on
            # (see overflow.py).
            code = "context_length_exceeded"
        return openai_error(exc.status, exc.message, code, param, retry_after(exc))


async def _referred(
    items: list[responses.InputItem], store: ResponseStore, owner: str
) -> list[responses.InputItem]:
    """`items` with each `item_reference` replaced by the item it names, an
    output item of a response kept for this client (see `response_of`).

    The AI SDK's OpenAI provider, whose requests leave `store` out (true),
    sends the message and reasoning items of the responses it got as such
    references: refused, its second turn and any tool loop whose model said
    something before its call failed. An item not found is OpenAI's 400.
    """
    conversations: dict[str, dict[str, responses.InputItem]] = {}
    found: list[responses.InputItem] = []
    for position, item in enumerate(items):
        if item.type != "item_reference":
            found.append(item)
            continue
        ident = item.id or ""
        response_id = response_of(ident)
        by_id = conversations.get(response_id or "")
        if by_id is None and response_id is not None:
            kept = store.get(response_id, owner)
            if kept is None and store.shared:
                kept = await store.read(response_id, owner)
            decoded = responses.decode_items(kept) if kept is not None else []
            by_id = conversations[response_id] = {i.id: i for i in decoded if i.id}
        referred = by_id.get(ident) if by_id else None
        if referred is None:
            raise ParamError(
                f"Item with id '{ident}' not found. Items are not persisted when "
                "`store` is set to false. Try again with `store` set to true, or "
                "remove this item from your input.",
                f"input[{position}]",
            )
        found.append(referred)
    return found


def _over_the_context(exc: GatewayError) -> bool:
    """Whether `exc` is the backend's refusal of a prompt over the context."""
    return (
        isinstance(exc, UpstreamStatusError)
        and exc.status == 400
        and read_overflow(exc.message) is not None
    )


def _conversation(
    body: responses.ResponsesRequest, kept: bytes | None
) -> list[responses.InputItem]:
    """The items of the whole conversation: those `kept` for
    `previous_response_id`, then the request's own."""
    items: list[responses.InputItem] = []
    previous = body.previous_response_id
    if previous is not None:
        if kept is None:
            # OpenAI's answer for an unknown (or another client's) response.
            raise ParamError(
                f"Previous response with id '{previous}' not found.",
                "previous_response_id",
                status=404,
                code="previous_response_not_found",
            )
        items = responses.decode_items(kept)
    if isinstance(body.input, str):
        if body.input:
            items.append(responses.InputItem(role="user", content=body.input))
    elif body.input is not None:
        items.extend(body.input)
    return items


def _echo(body: responses.ResponsesRequest, *, stored: bool) -> responses.Response:
    """The response object before any output: the request's settings echoed,
    as the API does (the SDKs read them)."""
    response = responses.Response(
        store=stored,
        previous_response_id=body.previous_response_id,
        id=new_id("resp"),
        created_at=int(time.time()),
        model=body.model,
        instructions=body.instructions,
        tools=body.tools or [],
        temperature=body.temperature,
        top_p=body.top_p,
        max_output_tokens=body.max_output_tokens,
        reasoning=body.reasoning,
    )
    if body.tool_choice is not None:
        response.tool_choice = body.tool_choice
    if body.text is not None and body.text.format is not None:
        response.text = body.text
    return response


async def _answer(
    request: web.Request,
    response: responses.Response,
    namespaced: dict[str, str],
    keeper: _Keeper | None,
    input_estimate: int,
    used_ids: set[str],
    reader: ChunkReader,
) -> web.StreamResponse:
    ctx = request[ctx_key]
    # A conversation is kept before its response's end is sent: the client
    # may follow up at once, and with workers, to another one (a stream's
    # last event is held back by the builder and sent by relay's `ending`).
    builder = ResponseBuilder(
        response,
        ctx,
        namespaced,
        hold_end=keeper is not None,
        input_estimate=input_estimate,
        used_ids=used_ids,
    )
    if ctx.stream:
        return await relay(
            request,
            ctx,
            reader,
            builder.write,
            content_type=SSE,
            error_line=builder.error_events,
            ending=None if keeper is None else partial(_keep, keeper, builder),
        )
    builder.feed(await collect(reader), None)
    if keeper is not None:
        await keeper.keep(builder.response)
    return await send_whole(request, ctx, responses.encode(builder.response))


async def _keep(keeper: _Keeper, builder: ResponseBuilder) -> bytes:
    """A kept stream's ending: its conversation kept, then its last event."""
    await keeper.keep(builder.response)
    return builder.end_events()
