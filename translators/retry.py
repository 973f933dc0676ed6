"""`retry`: a transport wrapper that sends a request again, but only when no
answer can have been generated: a connection that could not be made, or a
429/502/503/504 status before any body byte. `Retry-After` (seconds or an HTTP
date; a LiteLLM proxy's `llm_provider-retry-after` too) is honoured: the retry
waits at least that long, plus jitter; when the backend asks for more than
`max_delay`, its answer is passed on instead of retried early. Without it,
delays back off exponentially with jitter. A 2xx answer is never retried, so a
completion is never generated twice.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import ClassVar

import msgspec

from ollama_gateway.context import RequestContext
from ollama_gateway.errors import UpstreamConnectError, retry_after_header
from ollama_gateway.protocols import Stage, Transport, UpstreamRequest, UpstreamResponse
from ollama_gateway.wrappers import TransportWrapper

__all__ = [
    "RetryConfig",
    "RetryTransport",
    "backoff_delay",
    "retry_after_seconds",
    "retry_delay",
]


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
        if any(status < 400 for status in config.statuses):
            # A 2xx answer is a completion under way: never ask for a second one.
            raise ValueError("statuses: only 4xx and 5xx statuses can be retried")
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
                await self._pause(backoff_delay(policy, attempt), ctx)
                continue
            if last or response.status not in self._statuses:
                return response
            delay = retry_delay(policy, attempt, retry_after_seconds(response.headers))
            if delay is None:
                return response  # the backend wants longer than we may wait
            await response.aclose()
            await self._pause(delay, ctx)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _pause(self, delay: float, ctx: RequestContext) -> None:
        ctx.retries += 1
        await asyncio.sleep(delay)


def retry_delay(
    policy: RetryConfig,
    attempt: int,
    retry_after: float | None,
    jitter: Callable[[float, float], float] = random.uniform,
) -> float | None:
    """Seconds to wait before retry number `attempt + 1`, or None not to retry.

    Jitter only lengthens a wait (by up to a quarter), so a `Retry-After` is
    never cut short, and clients told the same moment do not return together.
    """
    if retry_after is None:
        return backoff_delay(policy, attempt, jitter)
    if retry_after > policy.max_delay:
        return None
    return min(retry_after * jitter(1.0, 1.25), policy.max_delay)


def backoff_delay(
    policy: RetryConfig,
    attempt: int,
    jitter: Callable[[float, float], float] = random.uniform,
) -> float:
    """`base_delay` doubled per attempt, with jitter, at most `max_delay`."""
    backoff = min(policy.base_delay * 2.0**attempt, policy.max_delay)
    return min(backoff * jitter(1.0, 1.25), policy.max_delay)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` (see `retry_after_header`) as seconds: a number, or an
    HTTP date; None if absent or bad."""
    value = retry_after_header(headers)
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # HTTP dates are always GMT
    return max(moment.timestamp() - time.time(), 0.0)
