"""Helpers for the operations tests: metric samples, refused ports, clean logs."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "Gateway",
    "Samples",
    "assert_clean_log",
    "free_port",
    "read_metrics",
    "refused_url",
    "start_gateway",
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


def error_message(path: str, raw: bytes) -> str:
    """The message of an error body: OpenAI's clients read it from OpenAI's
    envelope on the /v1 routes, Ollama's from `{"error": "..."}`."""
    body = json.loads(raw)
    if path.startswith("/v1/"):
        assert set(body["error"]) >= {"message", "type"}
        return str(body["error"]["message"])
    assert set(body) == {"error"}
    return str(body["error"])


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


class Gateway:
    """`python -m ollama_gateway serve` as a child process."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, log: Path):
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    async def wait_exit(self, bound: float) -> int:
        async with asyncio.timeout(bound):
            return await self.proc.wait()

    async def stop(self, bound: float) -> int:
        """SIGTERM, then the exit code; killed if it has not exited by `bound`."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await self.wait_exit(bound)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


async def start_gateway(
    tmp_path: Path, toml: str, *, module: str = "ollama_gateway", **env: str
) -> Gateway:
    """Start `python -m <module> serve` on a free port with `toml` as its
    config and stderr in a file; return once `/health` answers."""
    port = free_port()
    config = tmp_path / f"gateway-{port}.toml"
    config.write_text(toml)
    log = tmp_path / f"stderr-{port}.log"
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OLLAMA_"))
    }
    environ.update({"OLLAMA_GATEWAY_CONFIG": str(config), "LOG_LEVEL": "INFO"})
    environ.update(env)
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            "serve",
            "--port",
            str(port),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
            env=environ,
        )
    gateway = Gateway(proc, port, log)
    async with asyncio.timeout(30), aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(gateway.url + "/health") as resp:
                    if resp.status == 200:
                        return gateway
            except aiohttp.ClientConnectionError:
                pass
            assert proc.returncode is None, log.read_text()
            await asyncio.sleep(0.1)
