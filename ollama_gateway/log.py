"""Logging: JSON lines through python-json-logger, and the one line per request.

Never log per chunk, and never log Authorization headers, API keys or message
contents: the request line carries ids, names, numbers and outcomes only.
"""

from __future__ import annotations

import logging
import logging.config
from datetime import UTC, datetime

from pythonjsonlogger import json as jsonlogger

from ollama_gateway.context import RequestContext
from ollama_gateway.errors import GatewayError, TranslationError, error_kind

__all__ = ["ACCESS_LOGGER", "FIELDS", "JsonFormatter", "note_failure", "setup_logging"]

ACCESS_LOGGER = "ollama_gateway.access"
_failures = logging.getLogger("ollama_gateway.errors")
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Short names for the standard fields; `extra=` keys are added as they are.
FIELDS = {
    "asctime": "ts",
    "levelname": "level",
    "name": "logger",
    "message": "msg",
    "exc_info": "exc",
}


class JsonFormatter(jsonlogger.JsonFormatter):
    """One JSON object per line, `ts` in UTC to the millisecond.

    Example:

        {"ts": "2026-01-02T03:04:05.678Z", "level": "INFO", "logger": "…", "msg": "…"}
    """

    def __init__(self) -> None:
        super().__init__(FORMAT, rename_fields=FIELDS)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def setup_logging(level: str) -> None:
    """JSON lines on stderr at `level` for the gateway and aiohttp."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"json": {"()": JsonFormatter}},
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "json",
                    "stream": "ext://sys.stderr",
                }
            },
            "root": {"handlers": ["stderr"], "level": level},
            # aiohttp's own access log is replaced by our request line.
            "loggers": {"aiohttp.access": {"level": "WARNING"}},
        }
    )


def note_failure(ctx: RequestContext, exc: GatewayError) -> None:
    """Record a failed request's outcome; a translator's bug is logged with its
    traceback (the client only sees its message)."""
    ctx.outcome = error_kind(exc)
    if isinstance(exc, TranslationError):
        _failures.error(
            "translator %s failed",
            exc.translator,
            exc_info=exc.__cause__ or exc,
            extra={"request_id": ctx.request_id},
        )
