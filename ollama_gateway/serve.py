"""Running the server: logging, the startup lines, signals and worker processes."""

from __future__ import annotations

import logging

from aiohttp import web

from ollama_gateway.app import create_app
from ollama_gateway.keys import pipeline_key
from ollama_gateway.log import setup_logging
from ollama_gateway.settings import Settings

__all__ = ["serve"]

log = logging.getLogger("ollama_gateway")


def serve(settings: Settings) -> int:
    """Serve until SIGINT or SIGTERM; in-flight streams get the grace period."""
    setup_logging(settings.log_level)
    app = create_app(settings)
    _log_startup(settings, app)
    server = settings.server
    web.run_app(
        app,
        host=server.host,
        port=server.port,
        backlog=server.backlog,
        # Our own timer ends streams at the grace period (with an error line);
        # aiohttp's is the backstop that cancels anything left after it.
        shutdown_timeout=server.shutdown_grace + 5.0,
        handler_cancellation=True,
        access_log=None,
        print=None,
    )
    return 0


def _log_startup(settings: Settings, app: web.Application) -> None:
    pipeline = app[pipeline_key]
    names = {stage: list(chain) for stage, chain in pipeline.names.items()}
    backends = [
        {"name": b.name, "url": "in-process demo" if b.demo else b.base_url}
        for b in settings.backends
    ]
    log.info(
        "ollama-gateway listening on http://%s:%d",
        settings.server.host,
        settings.server.port,
        extra={"pipeline": names, "backends": backends},
    )
    if settings.uses_demo_only:
        log.warning(
            "no backend configured (OPENAI_BASE_URL is not set): serving the built-in "
            "demo backend, whose models are named demo*"
        )
