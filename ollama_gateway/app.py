"""The application factory: settings in, a ready `web.Application` out."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import AsyncIterator, Iterable, Mapping
from importlib.metadata import EntryPoint

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from ollama_gateway.catalogue import Catalogue
from ollama_gateway.durations import parse_default_keep_alive
from ollama_gateway.errors import GatewayError
from ollama_gateway.keys import (
    catalogue_key,
    in_flight_key,
    metrics_key,
    pipeline_key,
    response_store_key,
    running_key,
    settings_key,
    specs_key,
    upstream_key,
)
from ollama_gateway.metrics import Metrics
from ollama_gateway.middlewares import setup_middlewares
from ollama_gateway.pipeline import build_pipeline
from ollama_gateway.plugins import load_translators
from ollama_gateway.protocols import Transport
from ollama_gateway.response_store import ResponseStore
from ollama_gateway.routes import setup_routes
from ollama_gateway.running import RunningModels
from ollama_gateway.settings import Settings, SettingsError
from ollama_gateway.shutdown import InFlight, setup_shutdown
from ollama_gateway.upstream import Upstream

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    entry_points: Iterable[EntryPoint] | None = None,
    transports: Mapping[str, Transport] | None = None,
    response_dir: str | None = None,
    running_dir: str | None = None,
    aliases_file: str | None = None,
) -> web.Application:
    """Build the gateway. Translators are discovered here, never at import time.

    `entry_points` replaces discovery and `transports` replaces the transport of
    named backends; tests use both to inject their own parts. `response_dir` is
    the directory through which workers share kept `/v1/responses`
    conversations (see response_store.py), and `running_dir` the one through
    which they share the models `/api/ps` lists (see running.py); without them,
    both stay in memory. `aliases_file` is the file through which they share
    the aliases `/api/copy` makes, each taking the others' changes (see
    aliases.py); without it, `catalogue.aliases_file` is this process's own.
    """
    specs = load_translators(entry_points, allow=settings.plugins)
    pipeline = build_pipeline(settings, specs)
    if transports:
        merged = {**pipeline.transports, **transports}
        pipeline = dataclasses.replace(pipeline, transports=merged)
    app = web.Application(
        client_max_size=settings.limits.max_body_bytes,
        # Here, not in run_app, so every runner (tests' too) serves with it.
        handler_args={
            "keepalive_timeout": _head_timeout(settings),
            "max_line_size": HEAD_LINE_BYTES,
            "max_field_size": HEAD_LINE_BYTES,
        },
    )
    app[settings_key] = settings
    app[specs_key] = specs
    app[pipeline_key] = pipeline
    upstream = Upstream(settings, pipeline.transports, pipeline.blame_transport)
    app[upstream_key] = upstream
    app[catalogue_key] = Catalogue(
        settings,
        upstream.list_models,
        upstream.litellm_model_info,
        shared_aliases_file=aliases_file,
    )
    app[running_key] = RunningModels(_default_keep_alive(settings), running_dir)
    metrics = Metrics()
    app[metrics_key] = metrics
    app[response_store_key] = ResponseStore(
        max_bytes=settings.limits.response_store_bytes,
        ttl=RESPONSE_TTL,
        on_size=metrics.kept_conversations.set,
        directory=response_dir,
    )
    in_flight = InFlight()
    app[in_flight_key] = in_flight
    setup_shutdown(app, in_flight, settings.server.shutdown_grace)
    expect = setup_middlewares(app)
    setup_routes(
        app,
        metrics_handler=make_aiohttp_handler(metrics.registry),
        expect_handler=expect,
    )
    app.cleanup_ctx.append(_close_on_cleanup)
    return app


async def _close_on_cleanup(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[catalogue_key].aclose()
    await app[pipeline_key].aclose()
    app[response_store_key].close()


# The longest request line or header line read. aiohttp's 8190 bytes
# refused with a 400 what Ollama (Go's server: 1 MiB of head in all) serves:
# the large Cookie or Authorization token a client sends through an SSO
# proxy. aiohttp bounds each line and their number (128), not the whole
# head, so a line is not given Go's whole 1 MiB: 128 of them would be 128
# MiB for one connection's head.
HEAD_LINE_BYTES = 64 * 1024

# How long a `/v1/responses` conversation is kept (Ollama's 30 minutes).
RESPONSE_TTL = 30 * 60.0


def _default_keep_alive(settings: Settings) -> float:
    try:
        seconds = parse_default_keep_alive(settings.server.default_keep_alive)
    except GatewayError as exc:
        raise SettingsError(f"OLLAMA_KEEP_ALIVE: {exc.message}") from None
    return 300.0 if seconds is None else seconds


def _head_timeout(settings: Settings) -> float:
    """aiohttp's keep-alive timeout: it closes a connection that has no whole
    request head that long after it opened or after its last answer (0 there
    would close idle connections at once, so `off` is no timer at all)."""
    seconds = settings.timeouts.request_head
    return seconds if seconds else math.inf
