"""`retry`: a transport wrapper that sends a request again, but only when no
answer can have been generated: a refused connection, or a 429/502/503/504
status before any body byte. `Retry-After` (seconds or an HTTP date) is
honoured up to `max_delay`; otherwise delays back off exponentially with jitter.
A 2xx answer is never retried, so a completion is never generated twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import ClassVar

import msgspec

from ollama_gateway.context import RequestContext
from ollama_gateway.errors import UpstreamConnectError
from ollama_gateway.protocols import Stage, Transport, UpstreamRequest, UpstreamResponse
from ollama_gateway.wrappers import TransportWrapper

__all__ = ["RetryConfig", "RetryTransport", "retry_after_seconds"]


class RetryConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`[translators.retry]`: `attempts` is the number of extra tries."""

    attempts: int = 2
    base_delay: float = 0.25
    max_delay: float = 10.0
    statuses: list[int] = msgspec.field(default_factory=lambda: [429, 502, 503, 504])


class RetryTransport(TransportWrapper):
    """Retries connect errors and retryable statuses before the first byte."""

    stage: ClassVar[Stage] = "transport"
    Config: ClassVar[type[msgspec.Struct]] = RetryConfig

    def __init__(self, config: msgspec.Struct, inner: Transport | None) -> None:
        super().__init__(config, inner)
        assert isinstance(config, RetryConfig)
        self.policy = config
        self._statuses = frozenset(config.statuses)

    async def send(
        self, request: UpstreamRequest, ctx: RequestContext
    ) -> UpstreamResponse:
        policy = self.policy
        for attempt in range(policy.attempts + 1):
            last = attempt == policy.attempts
            try:
                response = await self.inner.send(request, ctx)
            except UpstreamConnectError:
                if last:
                    raise
                await self._pause(attempt, None, ctx)
                continue
            if last or response.status not in self._statuses:
                return response
            wait = retry_after_seconds(response.headers)
            await response.aclose()
            await self._pause(attempt, wait, ctx)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _pause(
        self, attempt: int, wait: float | None, ctx: RequestContext
    ) -> None:
        ctx.retries += 1
        policy = self.policy
        if wait is None:
            wait = policy.base_delay * (2**attempt)
        # Jitter spreads clients that were all told the same Retry-After.
        delay = min(wait, policy.max_delay) * random.uniform(1.0, 1.25)
        await asyncio.sleep(min(delay, policy.max_delay))


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` as seconds: a number, or an HTTP date; None if absent or bad."""
    value = headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(moment.timestamp() - time.time(), 0.0)
