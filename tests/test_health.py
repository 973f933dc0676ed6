"""`GET /health` answers from the process alone; `GET /ready` says whether a
backend answered recently, at a bounded cost."""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

from aiohttp import web

from ollama_gateway import upstream as upstream_module
from ollama_gateway.handlers import meta
from tests.conftest import FAST_DEMO
from tests.fakebackend import FakeBackend
from tests.ndjson import chat, post
from tests.ops import refused_url

BOUND = 20.0
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def _pinned(url: str, name: str = "pinned") -> str:
    return f"""
[[backends]]
name = "{name}"
base_url = "{url}"
models = ["m-{name}"]

[translators.retry]
attempts = 0
"""


async def test_health_answers_without_the_backend(gateway, backend):
    toml = '[server]\nenvironment = "staging"\n'
    client = await gateway(backend, toml)
    async with asyncio.timeout(BOUND):
        for _ in range(5):
            resp = await client.get("/health")
            assert resp.status == 200
            body = await resp.json()
        head = await client.head("/health")
    assert backend.requests == []
    assert head.status == 200
    assert body["status"] == "ok"
    assert body["environment"] == "staging"
    assert re.fullmatch(r"\d+(\.\d+)*.*", body["version"])
    assert RFC3339.fullmatch(body["timestamp"])
    assert body["uptime_seconds"] >= 0
    assert body["pid"] == os.getpid()  # in-process here
    assert resp.headers["Content-Type"].startswith("application/json")


async def test_health_is_ok_while_the_backend_is_down(gateway):
    client = await gateway(toml=_pinned(refused_url()))
    async with asyncio.timeout(BOUND):
        resp = await client.get("/health")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"


async def test_ready_with_a_reachable_backend(gateway, backend):
    client = await gateway(backend)
    async with asyncio.timeout(BOUND):
        resp = await client.get("/ready")
        body = await resp.json()
    assert resp.status == 200
    assert body == {"status": "ok", "backends": {"openai": "ok"}}


async def test_ready_probes_at_most_once_per_period(gateway, backend):
    client = await gateway(backend)
    async with asyncio.timeout(BOUND):
        answers = await asyncio.gather(*(client.get("/ready") for _ in range(20)))
        for _ in range(20):
            answers.append(await client.get("/ready"))
    assert {a.status for a in answers} == {200}
    assert [r.path for r in backend.requests] == ["/v1/models"]


async def test_real_traffic_counts_as_contact(gateway, backend):
    client = await gateway(backend)
    async with asyncio.timeout(BOUND):
        await (await post(client, "/api/chat", chat())).read()
        resp = await client.get("/ready")
    assert resp.status == 200
    # The catalogue's model list and the chat: no probe of its own.
    assert [r.path for r in backend.requests] == [
        "/v1/models",
        "/v1/chat/completions",
    ]


async def test_ready_is_503_when_the_backend_refuses(gateway):
    client = await gateway(toml=_pinned(refused_url()))
    async with asyncio.timeout(BOUND):
        resp = await client.get("/ready")
        body = await resp.json()
    assert resp.status == 503
    assert body["status"] == "unavailable"
    assert body["backends"]["pinned"].startswith("upstream unavailable")


async def test_failed_traffic_makes_ready_fail_at_once(gateway, monkeypatch):
    client = await gateway(toml=_pinned(refused_url()))
    monkeypatch.setattr(meta, "READY_MAX_AGE", 3600.0)
    calls = 0
    real_probe = upstream_module.Upstream._probe

    async def counting_probe(self: Any, backend: Any) -> None:
        nonlocal calls
        calls += 1
        await real_probe(self, backend)

    monkeypatch.setattr(upstream_module.Upstream, "_probe", counting_probe)
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", chat(model="m-pinned"))
        assert resp.status == 502
        ready = await client.get("/ready")
    assert ready.status == 503
    assert calls == 0


async def test_ready_notices_a_backend_that_went_away(
    gateway, aiohttp_server, monkeypatch
):
    fake = FakeBackend()
    server = await aiohttp_server(fake.app)
    fake.url = str(server.make_url("/v1"))
    client = await gateway(fake)
    monkeypatch.setattr(meta, "READY_MAX_AGE", 0.1)
    async with asyncio.timeout(BOUND):
        assert (await client.get("/ready")).status == 200
        await server.close()
        await asyncio.sleep(0.2)
        resp = await client.get("/ready")
        body = await resp.json()
    assert resp.status == 503
    assert body["backends"]["openai"] != "ok"


async def test_ready_times_out_a_hanging_backend(gateway, aiohttp_server, monkeypatch):
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(60)
        return web.Response()

    app = web.Application()
    app.router.add_get("/v1/models", hang)
    server = await aiohttp_server(app)
    monkeypatch.setattr(upstream_module, "PROBE_TIMEOUT", 0.3)
    client = await gateway(toml=_pinned(str(server.make_url("/v1"))))
    async with asyncio.timeout(BOUND):
        resp = await client.get("/ready")
        body = await resp.json()
    assert resp.status == 503
    assert body["backends"] == {"pinned": "upstream timeout"}


async def test_ready_with_one_of_two_backends_down(gateway, backend):
    toml = _pinned(refused_url(), "down")
    client = await gateway(backend, toml)
    async with asyncio.timeout(BOUND):
        resp = await client.get("/ready")
        body = await resp.json()
    assert resp.status == 200
    assert body["backends"]["openai"] == "ok"
    assert body["backends"]["down"].startswith("upstream unavailable")


async def test_a_backend_answering_with_an_error_is_reachable(gateway, backend):
    backend.models_status = 500
    client = await gateway(backend)
    async with asyncio.timeout(BOUND):
        resp = await client.get("/ready")
    assert resp.status == 200


async def test_ready_with_the_demo_backend(gateway):
    client = await gateway(toml=FAST_DEMO)
    async with asyncio.timeout(BOUND):
        resp = await client.get("/ready")
        body = await resp.json()
    assert resp.status == 200
    assert body == {"status": "ok", "backends": {"demo": "ok"}}


async def test_health_and_ready_need_no_key(gateway, backend):
    client = await gateway(backend, OLLAMA_GATEWAY_API_KEYS="k")
    async with asyncio.timeout(BOUND):
        assert (await client.get("/health")).status == 200
        assert (await client.get("/ready")).status == 200
        assert (await client.get("/api/tags")).status == 401


async def test_ready_is_503_when_the_backend_does_not_speak_http(gateway):
    # A backend that answers something other than HTTP failed /ready with a
    # 500 and an ERROR traceback in the log per call (a KeyError), for anyone:
    # /ready needs no key.
    async def not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(not_http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = await gateway(toml=_pinned(f"http://127.0.0.1:{port}/v1"))
        async with asyncio.timeout(BOUND):
            resp = await client.get("/ready")
            body = await resp.json()
        assert resp.status == 503
        assert body["status"] == "unavailable"
        assert body["backends"]["pinned"].startswith("upstream failed before answering")
    finally:
        server.close()
        await server.wait_closed()
