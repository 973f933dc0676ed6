"""Graceful shutdown: on SIGTERM or SIGINT, let answers in flight finish within
the grace period, then end the rest cleanly.

aiohttp stops accepting, runs `on_shutdown`, then waits for handlers. We arm a
timer there; when it fires, every tracked request (the accounting middleware
tracks them all) is cancelled with `SHUTDOWN` as the message. An NDJSON stream
that already started ends with one `{"error": ...}` line; a request that has not
answered yet gets a 503; a started `/v1` SSE stream ends with an error event.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

__all__ = ["SHUTDOWN", "InFlight", "is_shutdown", "setup_shutdown"]

SHUTDOWN = "ollama-gateway is shutting down"


class InFlight:
    """The tasks serving upstream requests right now."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()
        self.closing = False
        self.ended = False  # the grace is over

    def __len__(self) -> int:
        return len(self._tasks)

    def add(self, task: asyncio.Task[object]) -> None:
        self._tasks.add(task)
        if self.ended:
            # Its head came in as the drain went on: no grace left for it.
            task.cancel(SHUTDOWN)

    def discard(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)

    def end_all(self) -> None:
        self.ended = True
        for task in list(self._tasks):
            task.cancel(SHUTDOWN)


def is_shutdown(exc: asyncio.CancelledError) -> bool:
    """True when the cancellation is ours, not a client that went away."""
    return bool(exc.args) and exc.args[0] == SHUTDOWN


def setup_shutdown(app: web.Application, in_flight: InFlight, grace: float) -> None:
    async def arm(app: web.Application) -> None:
        in_flight.closing = True
        # Armed even with nothing in flight: a request whose head was read in
        # the same turn of the loop starts its handler only after this runs.
        asyncio.get_running_loop().call_later(grace, in_flight.end_all)

    app.on_shutdown.append(arm)
