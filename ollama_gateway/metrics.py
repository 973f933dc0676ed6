"""Prometheus metrics: one registry per app, recorded once per request.

Label values are bounded: `endpoint` comes from the route table, `model` only
from the catalogue (anything else is `other`), so a client cannot grow the
series count or break the exposition format with a hostile model name.
"""

from __future__ import annotations

import os
from typing import Generic, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.multiprocess import MultiProcessCollector

from ollama_gateway.settings import SettingsError

__all__ = ["MULTIPROCESS_DIR", "Metrics", "check_multiprocess_dir"]

# Set (by the `--workers` supervisor) to a directory shared by the workers.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
)
UPSTREAM_ERROR_KINDS = ("connect", "timeout", "status", "protocol")


def check_multiprocess_dir() -> None:
    """The shared directory, when the environment names one, must be one:
    prometheus-client's own error was a traceback at start."""
    directory = os.environ.get(MULTIPROCESS_DIR)
    if directory and not os.path.isdir(directory):
        raise SettingsError(f"{MULTIPROCESS_DIR}: {directory!r} is not a directory")


M = TypeVar("M", Counter, Histogram)


class _Children(Generic[M]):
    """A labelled metric's children by label values.

    `labels()` validates and locks on every call, and was most of the cost of
    recording a request. Bounded as the label values are (see above).
    """

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: M) -> None:
        self._metric: M = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class Metrics:
    """The gateway's metrics and the `record_*` calls that update them."""

    def __init__(self) -> None:
        # A `_created` series per child doubles the scrape for nothing we chart.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r: CollectorRegistry | None = self.registry
        check_multiprocess_dir()
        if os.environ.get(MULTIPROCESS_DIR):
            # `--workers N`: each worker writes its values to files there and
            # any worker's scrape adds them all up (prometheus-client's
            # multiprocess mode); the metrics are then not registered here.
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
            r = None
        self.requests = Counter(
            "ollama_gateway_requests_total",
            "Requests served, by endpoint, model and status class.",
            ["endpoint", "model", "status_class"],
            registry=r,
        )
        self.duration = Histogram(
            "ollama_gateway_request_duration_seconds",
            "Time from request received to response finished.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "ollama_gateway_time_to_first_token_seconds",
            "Time from request received to the first generated token.",
            ["endpoint", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "ollama_gateway_tokens_total",
            "Prompt and completion tokens, as the backend reported them.",
            ["model", "kind"],
            registry=r,
        )
        self.streams_in_flight = Gauge(
            "ollama_gateway_streams_in_flight",
            "Streaming responses open right now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.kept_conversations = Gauge(
            "ollama_gateway_kept_conversation_bytes",
            "JSON of the conversations /v1/responses keeps for previous_response_id.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.upstream_errors = Counter(
            "ollama_gateway_upstream_errors_total",
            "Failed upstream requests, by kind.",
            ["kind"],
            registry=r,
        )
        self.disconnects = Counter(
            "ollama_gateway_client_disconnects_total",
            "Clients that went away before their answer was finished.",
            registry=r,
        )
        self.retries = Counter(
            "ollama_gateway_upstream_retries_total",
            "Upstream requests sent again before any output (connect error, 429, 5xx).",
            registry=r,
        )
        for kind in UPSTREAM_ERROR_KINDS:
            self.upstream_errors.labels(kind=kind)
        self._requests = _Children(self.requests)
        self._duration = _Children(self.duration)
        self._ttft = _Children(self.ttft)
        self._tokens = _Children(self.tokens)

    def record_request(
        self,
        *,
        endpoint: str,
        model: str,
        status: int,
        duration: float,
        ttft: float | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        """Record one finished request; called once per request, never per chunk."""
        self._requests(endpoint, model, f"{status // 100}xx").inc()
        self._duration(endpoint).observe(duration)
        if ttft is not None:
            self._ttft(endpoint, model).observe(ttft)
        if prompt_tokens:
            self._tokens(model, "prompt").inc(prompt_tokens)
        if completion_tokens:
            self._tokens(model, "completion").inc(completion_tokens)

    def record_upstream_error(self, kind: str) -> None:
        self.upstream_errors.labels(
            kind if kind in UPSTREAM_ERROR_KINDS else "status"
        ).inc()

    def record_stream_start(self) -> None:
        """A streaming response sent its headers; paired with `record_stream_end`."""
        self.streams_in_flight.inc()

    def record_stream_end(self) -> None:
        self.streams_in_flight.dec()

    def record_disconnect(self) -> None:
        self.disconnects.inc()

    def record_retries(self, count: int) -> None:
        self.retries.inc(count)
