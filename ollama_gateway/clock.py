"""Time formatting for the wire: RFC 3339 timestamps and nanosecond durations."""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["format_unix", "now_rfc3339"]


def now_rfc3339() -> str:
    """The current UTC time as Ollama stamps chunks: `2024-09-12T21:17:29.110811Z`."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def format_unix(seconds: float) -> str:
    """A Unix time as RFC 3339 UTC with a `Z`."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def monotonic_ns() -> int:
    return time.perf_counter_ns()
