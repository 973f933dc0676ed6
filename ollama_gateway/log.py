"""Logging: JSON lines through python-json-logger, and the one line per request.

Never log per chunk, and never log Authorization headers, API keys or message
contents: the request line carries ids, names, numbers and outcomes only.
"""

from __future__ import annotations

import asyncio
import logging
import logging.config
import select
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TextIO

import msgspec
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from pythonjsonlogger import json as jsonlogger

from ollama_gateway.context import RequestContext
from ollama_gateway.errors import GatewayError, TranslationError, error_kind

__all__ = [
    "ACCESS_LOGGER",
    "AccessLog",
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
        skip = self._skip_fields
        extra = {k: v for k, v in record.__dict__.items() if k not in skip}
        return self.line(
            record.created, record.levelname, record.name, record.getMessage(), extra
        )

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        extra: Mapping[str, object],
    ) -> str:
        """The JSON line of a record without exception or stack information."""
        fields: dict[str, object] = {
            "ts": self._time(created),
            "level": level,
            "logger": logger,
            "msg": message,
        }
        fields.update(extra)
        return _encode(fields).decode()

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self._time(record.created)

    def _time(self, created: float) -> str:
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
# loop's thread go out together.
FLUSH_DELAY = 0.05
# The most one write may carry. With `--workers N` the workers write to one
# stderr, and a write to a pipe (journald, docker) of more than PIPE_BUF bytes
# may be cut by another worker's when the pipe is full: two half lines.
ATOMIC_WRITE = select.PIPE_BUF


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
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._add(line, record.levelno)

    def add_line(self, line: str, levelno: int) -> None:
        """Write an already formatted line (see `AccessLog`), as `emit` would."""
        self.acquire()
        try:
            self._add(line, levelno)
        finally:
            self.release()

    def _add(self, line: str, levelno: int) -> None:
        self._pending.append(line + self.terminator)
        loop = self._loop
        if (
            loop is None
            or levelno >= logging.ERROR
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
            flush = getattr(self.stream, "flush", None)
            # One write (a flush each) per piece: the stream's own buffer
            # would join them again.
            for piece in _whole_line_pieces(self._pending):
                self.stream.write(piece)
                if flush is not None:
                    flush()
            self._pending.clear()
            if flush is not None:
                flush()
        except Exception:
            # As StreamHandler does: a broken stderr must not break serving.
            self._pending.clear()


def _whole_line_pieces(lines: list[str]) -> list[str]:
    """`lines` (each ending in a newline) joined into as few pieces as fit in
    `ATOMIC_WRITE` bytes each; a longer line is a piece of its own."""
    if len(lines) == 1:
        return lines
    pieces: list[str] = []
    start = size = 0
    for end, line in enumerate(lines):
        length = len(line) if line.isascii() else _encoded_length(line)
        if size + length > ATOMIC_WRITE and end > start:
            pieces.append("".join(lines[start:end]))
            start, size = end, 0
        size += length
    if start < len(lines):
        pieces.append("".join(lines[start:]))
    return pieces


def _encoded_length(line: str) -> int:
    # At most what stderr writes (its errors handler is backslashreplace).
    return len(line.encode("utf-8", "backslashreplace"))


class AccessLog:
    """The request line: `ollama_gateway.access` at INFO, one per request.

    When the line would reach one handler only, a `BatchingStreamHandler`
    with our `JsonFormatter`, and nothing filters it (what `setup_logging`
    sets up), it is encoded straight from its fields: the same line, without
    the record, the walk over the handlers and the formatting of a record,
    which together took about 28 µs a request here, while the next request
    waited. Any other set-up (another handler, a filter, pytest's `caplog`)
    gets the record through the logging module as before.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger(ACCESS_LOGGER)

    def __call__(self, message: str, fields: dict[str, object]) -> None:
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        handler = self._sole_handler()
        if handler is not None:
            formatter = handler.formatter
            assert isinstance(formatter, JsonFormatter)
            try:
                line = formatter.line(time.time(), "INFO", logger.name, message, fields)
            except Exception:
                pass  # the record's path below: its handler reports what failed
            else:
                handler.add_line(line, logging.INFO)
                return
        logger.info("%s", message, extra=fields)

    def _sole_handler(self) -> BatchingStreamHandler | None:
        """The one handler the line would reach, if it is ours and unfiltered;
        the same walk as `Logger.callHandlers`."""
        logger: logging.Logger | None = self._logger
        if self._logger.filters:
            return None
        found = None
        while logger is not None:
            for handler in logger.handlers:
                if (
                    found is not None
                    or type(handler) is not BatchingStreamHandler
                    or handler.filters
                    or handler.level > logging.INFO
                    or not isinstance(handler.formatter, JsonFormatter)
                ):
                    return None
                found = handler
            logger = logger.parent if logger.propagate else None
        return found


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


class ClientHttpErrors(logging.Filter):
    """aiohttp's server logs a client's malformed HTTP (a bad Content-Length,
    a broken chunked body, too many headers) as an ERROR with a traceback,
    though it is the client's fault and answered with a 400: one INFO line
    with the reason instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        remote = (
            record.args[0] if isinstance(record.args, tuple) and record.args else ""
        )
        record.msg = "bad HTTP request from %s: %s"
        if isinstance(exc, LineTooLong):
            # Its message quotes the line, whose start may be a token
            # (`Authorization: Bearer ...`, a session cookie).
            reason = f"a request or header line longer than {exc.args[1]} bytes"
        else:
            reason = str(exc.message).strip().split("\n", 1)[0].rstrip(":")
        record.args = (remote, reason)
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.exc_info = record.exc_text = None
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


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
            "filters": {"client_http": {"()": ClientHttpErrors}},
            "handlers": {
                "stderr": {
                    "class": "ollama_gateway.log.BatchingStreamHandler",
                    "formatter": "json",
                    "stream": "ext://sys.stderr",
                }
            },
            "root": {"handlers": ["stderr"], "level": level},
            # aiohttp's own access log is replaced by our request line.
            "loggers": {
                "aiohttp.access": {"level": "WARNING"},
                "aiohttp.server": {"filters": ["client_http"]},
            },
        }
    )


def note_error(ctx: RequestContext, exc: GatewayError) -> None:
    """Record a failed request's outcome and message, for its request line
    (written once, when it ends: nothing per chunk)."""
    ctx.outcome = error_kind(exc)
    ctx.error = exc.message


def note_failure(ctx: RequestContext, exc: GatewayError) -> None:
    """Record a failed request's outcome; a translator's bug is logged with its
    traceback (the client only sees its message)."""
    note_error(ctx, exc)
    if isinstance(exc, TranslationError):
        _failures.error(
            "translator %s failed",
            exc.translator,
            exc_info=exc.__cause__ or exc,
            extra={"request_id": ctx.request_id},
        )
