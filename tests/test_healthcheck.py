"""`docker/healthcheck.py`, the image's HEALTHCHECK: it must ask the port the
gateway listens on, read from OLLAMA_HOST as the gateway reads it."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from ollama_gateway.settings import Settings
from tests.conftest import FAST_DEMO

HEALTHCHECK = Path(__file__).parent.parent / "docker" / "healthcheck.py"


def _healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", HEALTHCHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "value",
    [
        "0.0.0.0:18080",
        ":18080",
        "127.0.0.1",
        "[::1]:18080",
        # A scheme's own default port: the check asked 11434 of these.
        "http://0.0.0.0",
        "https://127.0.0.1",
        "http://127.0.0.1:18080/",
        # Quoted, as Windows' setx or a quoted unit file leaves it.
        "'0.0.0.0:18080'",
        ' "http://0.0.0.0" ',
    ],
)
def test_the_check_asks_the_port_the_gateway_listens_on(value):
    port = Settings.load({"OLLAMA_HOST": value}).server.port
    url = _healthcheck().health_url(value)
    assert url.endswith(f":{port}/health"), url


async def test_the_check_passes_against_a_running_gateway(gateway, monkeypatch):
    client = await gateway(toml=FAST_DEMO)
    port = client.server.port
    monkeypatch.setenv("OLLAMA_HOST", f"'127.0.0.1:{port}'")
    async with asyncio.timeout(20):
        assert await asyncio.to_thread(_healthcheck().main) == 0
