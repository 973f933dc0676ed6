"""Helpers for the operations tests: metric samples, refused ports, clean logs."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "Samples",
    "assert_clean_log",
    "free_port",
    "read_metrics",
    "refused_url",
]

Client = TestClient[web.Request, web.Application]


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def refused_url() -> str:
    """A backend base URL whose connections are refused."""
    return f"http://127.0.0.1:{free_port()}/v1"


class Samples:
    """The samples of one `/metrics` scrape, looked up by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = list(text_string_to_metric_families(text))
        self.rows: list[tuple[str, dict[str, str], float]] = [
            (s.name, dict(s.labels), s.value) for f in self.families for s in f.samples
        ]

    def names(self) -> set[str]:
        return {name for name, _, _ in self.rows}

    def get(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels`."""
        return sum(
            value
            for n, have, value in self.rows
            if n == name and all(have.get(k) == v for k, v in labels.items())
        )

    def label_values(self, name: str, label: str) -> set[str]:
        return {have[label] for n, have, _ in self.rows if n == name and label in have}


async def read_metrics(client: Client, accept: str | None = None) -> Samples:
    headers = {"Accept": accept} if accept else {}
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == 200
    return Samples(await resp.text())


def assert_clean_log(caplog: pytest.LogCaptureFixture) -> None:
    """No ERROR records, no unhandled exceptions, no lost task exceptions."""
    bad: list[Any] = [
        (r.name, r.levelname, r.getMessage())
        for r in caplog.records
        if r.levelno >= logging.ERROR
        or "unhandled" in r.getMessage().lower()
        or "never retrieved" in r.getMessage()
        or r.exc_info
    ]
    assert not bad, bad
