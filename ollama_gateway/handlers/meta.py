"""`/`, `/api/version`, `/health` and `/ready`: answers from the process itself."""

from __future__ import annotations

import os
import time
from functools import cache
from importlib.metadata import PackageNotFoundError, version

import msgspec
from aiohttp import web

from ollama_gateway.clock import now_rfc3339
from ollama_gateway.keys import settings_key, upstream_key
from ollama_gateway.plugins import OWN_DISTRIBUTION
from ollama_gateway.schemas import ollama

__all__ = [
    "READY_MAX_AGE",
    "handle_health",
    "handle_ready",
    "handle_root",
    "handle_version",
]

# How recent a backend's last answer must be for /ready to trust it unprobed.
READY_MAX_AGE = 10.0


class _Health(msgspec.Struct):
    status: str
    version: str
    ollama_version: str
    environment: str
    timestamp: str
    uptime_seconds: float
    # Which process answered: with `--workers N`, which worker.
    pid: int


class _Ready(msgspec.Struct):
    status: str
    backends: dict[str, str]


_STARTED = time.monotonic()


async def handle_root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running", content_type="text/plain")


async def handle_version(request: web.Request) -> web.Response:
    ollama_version = request.app[settings_key].server.ollama_version
    return _json(ollama.encode(ollama.VersionResponse(ollama_version)))


async def handle_health(request: web.Request) -> web.Response:
    """Liveness: never calls a backend, so it costs nothing and cannot cost money."""
    server = request.app[settings_key].server
    body = _Health(
        status="ok",
        version=_own_version(),
        ollama_version=server.ollama_version,
        environment=server.environment,
        timestamp=now_rfc3339(),
        uptime_seconds=round(time.monotonic() - _STARTED, 3),
        pid=os.getpid(),
    )
    return _json(msgspec.json.encode(body))


async def handle_ready(request: web.Request) -> web.Response:
    """Readiness: 200 while at least one backend answered recently, else 503.

    A backend counts as reachable when it answered any HTTP request (real
    traffic or a probe) within `READY_MAX_AGE` seconds; others get one bounded
    `GET /models` probe, so a burst of checks costs at most one call each.
    """
    backends = await request.app[upstream_key].reachability(READY_MAX_AGE)
    ready = any(state == "ok" for state in backends.values())
    body = _Ready(status="ok" if ready else "unavailable", backends=backends)
    return _json(msgspec.json.encode(body), status=200 if ready else 503)


@cache
def _own_version() -> str:
    try:
        return version(OWN_DISTRIBUTION)
    except PackageNotFoundError:
        return "0"


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(
        body=body, status=status, content_type="application/json", charset="utf-8"
    )
