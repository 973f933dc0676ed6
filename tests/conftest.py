"""Shared fixtures: the fake backend on loopback and gateways built against it."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ollama_gateway.app import create_app
from ollama_gateway.settings import Settings
from tests.fakebackend import FakeBackend

MakeSettings = Callable[..., Settings]
MakeGateway = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture(autouse=True)
def no_proxy_from_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests are hermetic: a proxy the host's environment sets (HTTPS_PROXY,
    NO_PROXY, ...) is not theirs; tests/test_proxy.py sets its own."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


@pytest.fixture
async def backend(aiohttp_server: Any) -> FakeBackend:
    fake = FakeBackend()
    server: TestServer = await aiohttp_server(fake.app)
    fake.url = str(server.make_url("/v1"))
    return fake


@pytest.fixture
def settings_for(tmp_path: Any) -> MakeSettings:
    """Build Settings from a fake backend, a TOML text and env overrides."""

    def make(
        backend: FakeBackend | None = None, toml: str = "", **env: str
    ) -> Settings:
        environ = {}
        if backend is not None:
            environ = {"OPENAI_BASE_URL": backend.url, "OPENAI_API_KEY": "sk-test"}
        if toml:
            path = tmp_path / f"gateway-{len(list(tmp_path.iterdir()))}.toml"
            path.write_text(toml)
            environ["OLLAMA_GATEWAY_CONFIG"] = str(path)
        environ.update(env)
        return Settings.load(environ)

    return make


@pytest.fixture
def gateway(aiohttp_client: Any, settings_for: MakeSettings) -> MakeGateway:
    """Start a gateway (in-process, real socket) in front of a backend."""

    async def make(
        backend: FakeBackend | None = None, toml: str = "", **env: str
    ) -> TestClient[web.Request, web.Application]:
        app = create_app(settings_for(backend, toml, **env))
        # TestServer runs with handler_cancellation, as `serve` does.
        client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
        return client

    return make


FAST_DEMO = """
[translators.demo]
tokens_per_second = 0
"""


def base_url(client: TestClient[web.Request, web.Application]) -> str:
    """The gateway's URL on its real loopback socket, for the official clients."""
    return str(client.make_url("")).rstrip("/")
