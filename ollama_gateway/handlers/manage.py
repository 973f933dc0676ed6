"""Model management: pull, copy and delete work on the catalogue; push, create
and blobs are not offered (spec 2.10-2.15, documented deviations)."""

from __future__ import annotations

import re

from aiohttp import web

from ollama_gateway.errors import (
    GatewayError,
    InvalidRequestError,
    ModelNotFoundError,
    UnsupportedError,
    error_body,
)
from ollama_gateway.handlers.models import json_response
from ollama_gateway.inbound import read_body
from ollama_gateway.inference import missing_model
from ollama_gateway.keys import catalogue_key
from ollama_gateway.modelinfo import is_usable_name
from ollama_gateway.schemas import ollama

__all__ = [
    "handle_blob_head",
    "handle_blob_post",
    "handle_copy",
    "handle_create",
    "handle_delete",
    "handle_pull",
    "handle_push",
]

PULL_MISSING = "pull model manifest: file does not exist"
# Ollama's `GetBlobsPath` pattern: a dash may stand for the colon.
_DIGEST = re.compile(r"sha256[:-][0-9a-fA-F]{64}")
_PULL_STEPS = (
    "pulling manifest",
    "verifying sha256 digest",
    "writing manifest",
    "success",
)


async def handle_pull(request: web.Request) -> web.StreamResponse:
    """A model the backends serve "pulls" at once; others fail as Ollama's do."""
    req = await read_body(request, ollama.decode_model_name)
    name = req.model_name
    if not name:
        raise InvalidRequestError("invalid model name")
    entry = await request.app[catalogue_key].resolve(name)
    if entry is None:
        if not is_usable_name(name):
            raise InvalidRequestError("invalid model name")
        missing = missing_model(request, f"model '{name}' not found")
        if not isinstance(missing, ModelNotFoundError):
            raise missing  # the model list is unreadable: not "file does not exist"
    stream = req.stream is not False
    if not stream:
        if entry is None:
            raise GatewayError(PULL_MISSING, status=500)
        return json_response(ollama.encode(ollama.ProgressResponse(status="success")))
    lines = [ollama.encode(ollama.ProgressResponse(status=_PULL_STEPS[0]))]
    if entry is None:
        lines.append(error_body(PULL_MISSING))
    else:
        lines += [
            ollama.encode(ollama.ProgressResponse(status=s)) for s in _PULL_STEPS[1:]
        ]
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    await response.write(b"\n".join(lines) + b"\n")
    await response.write_eof()
    return response


async def handle_copy(request: web.Request) -> web.Response:
    """Make `destination` an alias of `source`; it persists if a file is configured."""
    req = await read_body(request, ollama.decode_copy)
    if not req.source.strip():
        raise InvalidRequestError(f'source "{req.source}" is invalid')
    if not is_usable_name(req.destination.strip()):
        raise InvalidRequestError(f'destination "{req.destination}" is invalid')
    catalogue = request.app[catalogue_key]
    # What the source is now, whichever worker last changed it.
    source = await catalogue.resolve(req.source, recheck_aliases=True)
    if source is None:
        if not is_usable_name(req.source.strip()):
            raise InvalidRequestError(f'source "{req.source}" is invalid')
        raise ModelNotFoundError(f'model "{req.source}" not found')
    catalogue.add_alias(req.destination.strip(), source)
    return web.Response(status=200)


async def handle_delete(request: web.Request) -> web.Response:
    """Delete an alias made by copy; backend models cannot be deleted from here."""
    req = await read_body(request, ollama.decode_model_name)
    name = req.model_name
    if not name:
        raise InvalidRequestError(f'name "{name}" is invalid')
    catalogue = request.app[catalogue_key]
    if catalogue.remove_alias(name):
        return web.Response(status=200)
    if await catalogue.resolve(name) is None:
        if not is_usable_name(name):
            raise InvalidRequestError(f'name "{name}" is invalid')
        raise ModelNotFoundError(f"model '{name}' not found")
    raise UnsupportedError(
        f"model '{name}' is served by a backend and cannot be deleted through this "
        "gateway; only aliases made with copy can"
    )


async def handle_push(request: web.Request) -> web.Response:
    req = await read_body(request, ollama.decode_model_name)
    if not req.model_name:
        raise InvalidRequestError("model is required")
    raise UnsupportedError("push is not supported by this gateway")


async def handle_create(request: web.Request) -> web.Response:
    """Not offered; the body and the name are still checked as Ollama does first."""
    req = await read_body(request, ollama.decode_model_name)
    if not is_usable_name(req.model_name):
        raise InvalidRequestError("invalid model name")
    raise UnsupportedError(
        "create is not supported by this gateway; use /api/copy to make an alias"
    )


def _blob_digest(request: web.Request) -> str:
    """The path's digest; Ollama answers one of another form with 400."""
    digest = request.match_info["digest"]
    if _DIGEST.fullmatch(digest) is None:
        raise InvalidRequestError("invalid digest format")
    return digest


async def handle_blob_head(request: web.Request) -> web.Response:
    digest = _blob_digest(request)
    return web.Response(
        body=error_body(f'blob "{digest}" not found'),
        status=404,
        content_type="application/json",
        charset="utf-8",
    )


async def handle_blob_post(request: web.Request) -> web.Response:
    _blob_digest(request)
    raise UnsupportedError("blobs are not supported by this gateway")
