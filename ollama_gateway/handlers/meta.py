"""`/`, `/api/version`, `/health` and `/ready`: answers from the process itself."""

from __future__ import annotations

import time

import msgspec
from aiohttp import web

from ollama_gateway.clock import now_rfc3339
from ollama_gateway.keys import catalogue_key, settings_key
from ollama_gateway.plugins import OWN_DISTRIBUTION
from ollama_gateway.schemas import ollama

__all__ = ["handle_health", "handle_ready", "handle_root", "handle_version"]


class _Health(msgspec.Struct):
    status: str
    version: str
    ollama_version: str
    environment: str
    timestamp: str
    uptime_seconds: float


class _Ready(msgspec.Struct):
    status: str
    backends: dict[str, str]


_STARTED = time.monotonic()


async def handle_root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running", content_type="text/plain")


async def handle_version(request: web.Request) -> web.Response:
    version = request.app[settings_key].server.ollama_version
    return _json(ollama.encode(ollama.VersionResponse(version)))


async def handle_health(request: web.Request) -> web.Response:
    """Liveness: never calls a backend, so it costs nothing and cannot cost money."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        own = version(OWN_DISTRIBUTION)
    except PackageNotFoundError:
        own = "0"
    server = request.app[settings_key].server
    body = _Health(
        status="ok",
        version=own,
        ollama_version=server.ollama_version,
        environment=server.environment,
        timestamp=now_rfc3339(),
        uptime_seconds=round(time.monotonic() - _STARTED, 3),
    )
    return _json(msgspec.json.encode(body))


async def handle_ready(request: web.Request) -> web.Response:
    """Readiness: whether each backend's model list could be read recently.

    It reuses the catalogue's cache, so it costs at most one `/v1/models` call per
    backend per cache period.
    """
    catalogue = request.app[catalogue_key]
    await catalogue.entries()
    errors = catalogue.backend_errors()
    backends = {
        b.name: errors.get(b.name, "ok") for b in request.app[settings_key].backends
    }
    ready = len(errors) < len(backends)
    body = _Ready(status="ok" if ready else "unavailable", backends=backends)
    return _json(msgspec.json.encode(body), status=200 if ready else 503)


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(
        body=body, status=status, content_type="application/json", charset="utf-8"
    )
