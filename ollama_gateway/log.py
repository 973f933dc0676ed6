"""Logging: JSON lines through python-json-logger, and the one line per request.

Never log per chunk, and never log Authorization headers, API keys or message
contents: the request line carries ids, names, numbers and outcomes only.
"""

from __future__ import annotations

import logging
import logging.config

__all__ = ["ACCESS_LOGGER", "setup_logging"]

ACCESS_LOGGER = "ollama_gateway.access"


def setup_logging(level: str) -> None:
    """JSON lines on stderr at `level` for the gateway and aiohttp."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "json": {
                    "()": "pythonjsonlogger.json.JsonFormatter",
                    "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                    "rename_fields": {
                        "asctime": "ts",
                        "levelname": "level",
                        "name": "logger",
                        "message": "msg",
                    },
                    "datefmt": "%Y-%m-%dT%H:%M:%S%z",
                }
            },
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
