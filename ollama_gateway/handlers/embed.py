"""`POST /api/embed` and the legacy `POST /api/embeddings` (spec 2.8, 2.9, 3.13)."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec
from aiohttp import web
from msgspec import UnsetType

from ollama_gateway.context import RequestContext
from ollama_gateway.durations import parse_keep_alive
from ollama_gateway.errors import (
    GatewayError,
    InvalidRequestError,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from ollama_gateway.handlers.models import json_response
from ollama_gateway.inbound import read_body
from ollama_gateway.inference import find_model, map_with, touch_running
from ollama_gateway.keys import ctx_key, pipeline_key, settings_key, upstream_key
from ollama_gateway.schemas import ollama, openai
from ollama_gateway.settings import openai_hosted
from ollama_gateway.token_estimate import tokens_for_characters
from ollama_gateway.upstream import (
    close_answer,
    map_error_object,
    read_whole,
    upstream_deadline,
)
from ollama_gateway.validation import check_options

__all__ = ["PER_TOKEN", "TOO_LONG", "handle_embed", "handle_embeddings"]

TOO_LONG = "the input length exceeds the context length"
# llama-cpp-python's server answers with a list of vectors per input, one per
# token, for a model whose GGUF sets no pooling type (a chat model, or an
# embedding model converted without it): there is no one vector to give.
# The most inputs OpenAI's API and Azure OpenAI embed in one request.
_OPENAI_MAX_INPUTS = 2048


class Fetch(Protocol):
    """`_fetch` with all but the body and the not-found text given."""

    def __call__(
        self, body: openai.EmbeddingRequest, *, not_found: str
    ) -> Awaitable[openai.EmbeddingResponse]: ...


PER_TOKEN = (
    "upstream sent one embedding per token, not one per input: the model has "
    "no pooling type (serve an embedding model, or one whose GGUF sets a pooling type)"
)


def _inputs(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise InvalidRequestError("invalid input type")


async def handle_embed(request: web.Request) -> web.Response:
    req = await read_body(request, ollama.decode_embed)
    keep_alive = parse_keep_alive(req.keep_alive)
    # Ollama checks the input as it reads the body, before the model lookup.
    inputs = _inputs(req.input)
    ctx = request[ctx_key]
    ctx.endpoint = "embed"
    ctx.model = req.model
    ctx.stream = False
    name = req.model.strip()
    not_found = (
        f'model "{req.model}" not found, try pulling it first'
        if name
        else "model '' not found"
    )
    entry = await find_model(request, name, not_found)
    ctx.use(entry)
    # Ollama's scheduler checks the options even when nothing is to be embedded.
    check_options(req.options)
    touch_running(request, entry, keep_alive)
    if not inputs:
        return json_response(
            ollama.encode(ollama.EmbedResponse(model=req.model, embeddings=[]))
        )
    req.input = inputs
    if req.dimensions is not None and req.dimensions <= 0:
        # Ollama cuts only to a positive number and ignores any other, so a
        # negative one answers whole vectors there; sent on, it is a 400 from
        # an OpenAI backend (or a crash in a lenient one).
        req.dimensions = None
    if req.dimensions:
        ctx.extra["dimensions"] = req.dimensions
    answer = await _embed(request, ctx, req, not_found)
    return json_response(ollama.encode(answer))


def _too_long(exc: UpstreamStatusError) -> bool:
    # vLLM and OpenAI word it "maximum context length"/"too long", with a 400;
    # Hugging Face's text-embeddings-inference "`inputs` must have less than
    # 512 tokens", with a 413. llama.cpp's server says "input is too large to
    # process. increase the physical batch size", with a 500, though the
    # input is the fault.
    message = exc.message.lower()
    if exc.upstream_status == 500:
        return "input is too large" in message
    return exc.status == 400 and any(
        words in message
        for words in ("context length", "too long", "must have less than")
    )


async def handle_embeddings(request: web.Request) -> web.Response:
    req = await read_body(request, ollama.decode_embeddings)
    keep_alive = parse_keep_alive(req.keep_alive)
    ctx = request[ctx_key]
    ctx.endpoint = "embeddings"
    ctx.model = req.model
    ctx.stream = False
    name = req.model.strip()
    if not name:
        raise InvalidRequestError("model is required")
    not_found = f'model "{req.model}" not found, try pulling it first'
    entry = await find_model(request, name, not_found)
    ctx.use(entry)
    check_options(req.options)
    touch_running(request, entry, keep_alive)
    if not req.prompt:
        return json_response(ollama.encode(ollama.EmbeddingsResponse(embedding=[])))
    embed = ollama.EmbedRequest(model=req.model, input=req.prompt, options=req.options)
    answer = await _embed(request, ctx, embed, not_found)
    vector = answer.embeddings[0] if answer.embeddings else []
    return json_response(ollama.encode(ollama.EmbeddingsResponse(embedding=vector)))


async def _embed(
    request: web.Request, ctx: RequestContext, req: ollama.EmbedRequest, not_found: str
) -> ollama.EmbedResponse:
    app = request.app
    pipeline = app[pipeline_key]
    upstream = app[upstream_key]
    ctx.backend_settings = upstream.backend(ctx.backend)

    def again() -> openai.EmbeddingRequest:
        # Also called again for a backend failed over to (its options, its id).
        return map_with(
            request,
            lambda: pipeline.request.map_embed(req, ctx),
            openai.EmbeddingRequest,
        )

    body = again()
    timeout = app[settings_key].timeouts.first_wait
    fetch = functools.partial(_fetch, app, ctx, again=again, truncate=req.truncate)
    async with upstream.slot(), upstream_deadline(timeout, request.task):
        try:
            decoded = await _fetch_all(ctx, body, fetch, not_found)
        except UpstreamStatusError as exc:
            if not (isinstance(body.input, list) and _batch_refused(exc)):
                raise
            ctx.retries += len(body.input)
            decoded = await _in_parts(body, body.input, 1, fetch, not_found)
    wanted = 1 if isinstance(req.input, str) else len(req.input)
    decoded.data = _in_input_order(decoded.data, wanted)
    answer = map_with(
        request,
        lambda: pipeline.response.map_embed(decoded, ctx),
        ollama.EmbedResponse,
        "response",
    )
    if len(answer.embeddings) != wanted:
        # One vector per input, in order, is what a client pairs them by; the
        # LiteLLM proxy's mocked embeddings send one whatever was asked.
        raise UpstreamProtocolError(
            f"upstream sent {len(answer.embeddings)} embeddings for {wanted} inputs"
        )
    _check_vector_lengths(answer.embeddings)
    # For the request line and the tokens metric, as chat counts: the
    # backend's figure, not the estimate below.
    ctx.prompt_tokens = answer.prompt_eval_count or 0
    if not answer.prompt_eval_count:
        # Ollama always counts the input, and strict clients (the AI SDK's
        # Ollama providers) require the count: estimate it when the backend
        # sent none.
        answer.prompt_eval_count = _estimate_tokens(req.input)
    return answer


def _in_input_order(
    data: list[openai.EmbeddingData], wanted: int
) -> list[openai.EmbeddingData]:
    """The vectors in input order, each numbered by its `index`.

    A client pairs the vectors with its inputs by position, so an answer whose
    indexes are not each input's exactly once (one repeated, one missing, one
    past the end) cannot be put in order: a 502, not vectors paired with the
    wrong texts. A backend that numbers none of them is taken in arrival order.
    """
    if len(data) != wanted:
        raise UpstreamProtocolError(
            f"upstream sent {len(data)} embeddings for {wanted} inputs"
        )
    if all(isinstance(d.index, UnsetType) for d in data):
        return [openai.EmbeddingData(d.embedding, i) for i, d in enumerate(data)]
    ordered: list[openai.EmbeddingData | None] = [None] * wanted
    for d in data:
        index = d.index
        if isinstance(index, UnsetType):
            fault = "an embedding without its index"
        elif not 0 <= index < wanted:
            fault = f"an embedding of index {index}"
        elif ordered[index] is not None:
            fault = f"two embeddings of index {index}"
        else:
            ordered[index] = d
            continue
        raise UpstreamProtocolError(
            f"upstream sent {fault} for {wanted} inputs (indexes 0 to "
            f"{wanted - 1}, each once)"
        )
    return [d for d in ordered if d is not None]


def _check_vector_lengths(vectors: list[list[float]]) -> None:
    """One model gives vectors of one length, never empty: anything else is a
    broken backend, and a vector store would refuse it later, further from
    the cause (Chroma, for one, fixes a collection's dimension)."""
    lengths = sorted({len(vector) for vector in vectors})
    if lengths and lengths[0] == 0:
        raise UpstreamProtocolError("upstream sent an empty embedding")
    if len(lengths) > 1:
        raise UpstreamProtocolError(
            f"upstream sent embeddings of different lengths ({lengths[0]} "
            f"to {lengths[-1]})"
        )


def _batch_refused(exc: UpstreamStatusError) -> bool:
    # llama-cpp-python's server 0.3.15 to 0.3.22 embeds several inputs as
    # sequences of one batch in a context made for one sequence, and fails
    # every request of more than one input with a 500 "llama_decode returned
    # -1" (abetlen/llama-cpp-python#2051); one input at a time works. Ollama's
    # clients batch their documents (`embed(input=[...])`), so those fail all.
    return exc.upstream_status == 500 and "llama_decode returned -1" in exc.message


async def _fetch_all(
    ctx: RequestContext, body: openai.EmbeddingRequest, fetch: Fetch, not_found: str
) -> openai.EmbeddingResponse:
    """The answer to the request, in one, or in parts of 2048 inputs from
    OpenAI's API and Azure OpenAI, which refuse more in one request (400
    "Invalid 'input': array too long"); Ollama takes any number, and
    LangChain's OllamaEmbeddings sends a whole document set at once."""
    inputs = body.input
    backend = ctx.backend_settings
    if (
        isinstance(inputs, list)
        and len(inputs) > _OPENAI_MAX_INPUTS
        and backend is not None
        and openai_hosted(backend)
    ):
        return await _in_parts(body, inputs, _OPENAI_MAX_INPUTS, fetch, not_found)
    return await fetch(body, not_found=not_found)


async def _in_parts(
    body: openai.EmbeddingRequest,
    inputs: list[str],
    size: int,
    fetch: Fetch,
    not_found: str,
) -> openai.EmbeddingResponse:
    """The answer to a batch, asked for `size` inputs at a time, in order."""
    data: list[openai.EmbeddingData] = []
    prompt_tokens = 0
    counted = True
    for start in range(0, len(inputs), size):
        texts = inputs[start : start + size]
        one = msgspec.structs.replace(body, input=texts if size > 1 else texts[0])
        part = await fetch(one, not_found=not_found)
        if size == 1 and len(part.data) != 1:
            raise UpstreamProtocolError(
                f"upstream sent {len(part.data)} embeddings for 1 input"
            )
        ordered = _in_input_order(part.data, len(texts))
        data.extend(
            openai.EmbeddingData(d.embedding, start + i) for i, d in enumerate(ordered)
        )
        tokens = part.usage.prompt_tokens if part.usage is not None else None
        if tokens is None:
            counted = False
        else:
            prompt_tokens += tokens
    usage = (
        openai.Usage(prompt_tokens=prompt_tokens, total_tokens=prompt_tokens)
        if counted
        else None
    )
    return openai.EmbeddingResponse(data=data, usage=usage)


async def _fetch(
    app: web.Application,
    ctx: RequestContext,
    body: openai.EmbeddingRequest,
    *,
    again: Callable[[], openai.EmbeddingRequest],
    truncate: bool | None,
    not_found: str,
) -> openai.EmbeddingResponse:
    upstream = app[upstream_key]

    def remap() -> bytes:
        # `body` may be one input of the batch: that input, as the backend
        # failed over to takes the request.
        return openai.encode(msgspec.structs.replace(again(), input=body.input))

    try:
        response = await upstream.send(
            ctx,
            "/embeddings",
            openai.encode(body),
            stream=False,
            not_found=not_found,
            remap=remap,
        )
    except UpstreamStatusError as exc:
        if not _too_long(exc):
            raise
        # Ollama's own words when told not to truncate; else the backend's,
        # as a 400: the same input would fail again.
        message = TOO_LONG if truncate is False else exc.message
        raise InvalidRequestError(message) from exc
    try:
        data = await read_whole(response, app[settings_key].limits.max_answer_bytes)
    except GatewayError:
        raise
    except Exception as exc:
        # A transport translator's bug in its body: named, as on the chat
        # routes (the built-in transports raise only GatewayErrors).
        failure = app[pipeline_key].translator_failure(exc, ctx.backend)
        if failure is None:
            raise
        raise failure from exc
    finally:
        await close_answer(response, ctx.backend)
    try:
        return openai.decode_embedding_response(data)
    except msgspec.DecodeError as exc:
        non_finite = _with_non_finite_numbers(data)
        if non_finite is not None:
            return non_finite
        refusal = _error_answer(data, not_found)
        if refusal is not None:
            raise refusal from None
        if _per_token(data):
            raise UpstreamProtocolError(PER_TOKEN) from None
        raise UpstreamProtocolError(
            f"upstream sent an invalid embeddings answer: {exc}"
        ) from None


def _with_non_finite_numbers(data: bytes) -> openai.EmbeddingResponse | None:
    """The answer read as Python's json reads it, with NaN and Infinity, which
    servers written in Python send (`json.dumps` writes them by default) and
    strict JSON has not: the vector check then names them as Ollama does,
    not as a malformed answer. None when the answer is not that."""
    if b"NaN" not in data and b"Infinity" not in data:
        return None
    try:
        return msgspec.convert(json.loads(data), openai.EmbeddingResponse)
    except (ValueError, RecursionError, msgspec.ValidationError):
        return None


def _per_token(data: bytes) -> bool:
    """Whether the answer's first vector is a list of vectors."""
    try:
        found = msgspec.json.decode(data)
        vector = found["data"][0]["embedding"]
    except (msgspec.DecodeError, LookupError, TypeError):
        return False
    return isinstance(vector, list) and bool(vector) and isinstance(vector[0], list)


def _error_answer(data: bytes, not_found: str) -> GatewayError | None:
    """A 200 whose body is an error object (`{"error": ...}`, as some proxies
    answer), as that error; None when the body is not one."""
    try:
        found = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    error = found.get("error") if isinstance(found, dict) else None
    return map_error_object(error, not_found) if error else None


def _estimate_tokens(inputs: str | list[str]) -> int:
    """About four characters a token, at least one a text."""
    texts = [inputs] if isinstance(inputs, str) else inputs
    return sum(tokens_for_characters(len(text)) for text in texts)
