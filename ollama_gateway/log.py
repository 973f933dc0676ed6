"""Logging: JSON lines through python-json-logger, and the one line per request.

Never log per chunk, and never log Authorization headers, API keys or message
contents: the request line carries ids, names, numbers and outcomes only.
"""

from __future__ import annotations

import asyncio
import logging
import logging.config
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

import msgspec
from pythonjsonlogger import json as jsonlogger

from ollama_gateway.context import RequestContext
from ollama_gateway.errors import GatewayError, TranslationError, error_kind

__all__ = [
    "ACCESS_LOGGER",
    "FIELDS",
    "BatchingStreamHandler",
    "JsonFormatter",
    "batch_log_lines",
    "note_failure",
    "setup_logging",
]

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

    A record without exception or stack information (every request line) is
    encoded directly with msgspec, in the same shape python-json-logger gives:
    its own path cost as much as a tenth of a short request's CPU.
    """

    def __init__(self) -> None:
        super().__init__(FORMAT, rename_fields=FIELDS)
        self._second = -1
        self._second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        msg = record.msg
        if isinstance(msg, dict):
            return super().format(record)
        fields: dict[str, object] = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        skip = self._skip_fields
        for key, value in record.__dict__.items():
            if key not in skip:
                fields[key] = value
        return _encode(fields).decode()

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        created = record.created
        second = int(created)
        if second != self._second:
            moment = time.gmtime(second)
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", moment)
            self._second = second
        millis = int((created - second) * 1000)
        return f"{self._second_text}.{millis:03d}Z"


def _jsonable(value: object) -> object:
    # What python-json-logger's encoder does for what JSON cannot hold.
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, type):
        return value.__name__
    return str(value)


_encode = msgspec.json.Encoder(enc_hook=_jsonable).encode


# How late a line may be written: lines logged within this time on the event
# loop's thread go out in one write.
FLUSH_DELAY = 0.05


class BatchingStreamHandler(logging.StreamHandler[TextIO]):
    """A StreamHandler that, once attached to the running event loop, writes
    the lines logged on the loop's thread in batches, at most `FLUSH_DELAY`
    seconds late: a write (a system call) per request line was the largest
    part of logging it. Errors, and lines from other threads, are written at
    once, after whatever is pending; `flush()` (also at exit) writes the rest.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._timer: asyncio.TimerHandle | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Batch from now on; call on the loop's thread."""
        self._loop = loop
        self._thread = threading.get_ident()

    def detach(self) -> None:
        """Write what is pending and stop batching."""
        self.acquire()
        try:
            self._loop = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._write_pending()
        finally:
            self.release()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._pending.append(line)
        loop = self._loop
        if (
            loop is None
            or record.levelno >= logging.ERROR
            or threading.get_ident() != self._thread
            or loop.is_closed()
        ):
            self._write_pending()
        elif self._timer is None:
            self._timer = loop.call_later(FLUSH_DELAY, self._on_timer)

    def flush(self) -> None:
        self.acquire()
        try:
            self._write_pending()
        finally:
            self.release()

    def _on_timer(self) -> None:
        self.acquire()
        try:
            self._timer = None
            self._write_pending()
        finally:
            self.release()

    def _write_pending(self) -> None:
        try:
            if self._pending:
                text = "".join(self._pending)
                self._pending.clear()
                self.stream.write(text)
            if hasattr(self.stream, "flush"):
                self.stream.flush()
        except Exception:
            # As StreamHandler does: a broken stderr must not break serving.
            self._pending.clear()


def batch_log_lines(loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Attach the root logger's batching handlers to `loop`; returns the call
    that detaches them (and writes what is pending)."""
    handlers = [
        h for h in logging.getLogger().handlers if isinstance(h, BatchingStreamHandler)
    ]
    for handler in handlers:
        handler.attach(loop)

    def detach() -> None:
        for handler in handlers:
            handler.detach()

    return detach


def setup_logging(level: str) -> None:
    """JSON lines on stderr at `level` for the gateway and aiohttp."""
    # Our lines carry none of the caller, thread or process fields: skip
    # gathering them for every record (the logging module's own advice for
    # `_srcfile`: "avoid the overhead of fetching caller information").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"json": {"()": JsonFormatter}},
            "handlers": {
                "stderr": {
                    "class": "ollama_gateway.log.BatchingStreamHandler",
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
