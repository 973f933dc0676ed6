"""Backends over https: the gateway's upstream transports against a fake backend
served with TLS on loopback, using the self-signed certificate in
`fixtures/tls/` (CN 127.0.0.1, subjectAltName IP:127.0.0.1 and DNS:localhost).

Trust comes from `SSL_CERT_FILE`, which `ssl.create_default_context()` reads;
without it the certificate must be refused.

The default transport (`openai-http`) builds its context at its first https
request, so a variable set by the test is seen in process. aiohttp builds its
verified default context once, when `aiohttp` is imported (before any test
runs), so `openai-aiohttp` is tested with trust in a gateway child process
that has `SSL_CERT_FILE` from its start, as a deployment would.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ollama_gateway.keys import pipeline_key
from tests.conftest import MakeGateway
from tests.fakebackend import FakeBackend
from tests.ndjson import NO_RETRY, assert_final, chat, content_of, post, read_ndjson
from tests.ops import start_gateway

TLS = Path(__file__).parent / "fixtures" / "tls"
CERT = TLS / "cert.pem"
KEY = TLS / "key.pem"
REPLY = "Hello from fake"
BOUND = 30.0

# The default chain (`retry`, `openai-http`), and the aiohttp one.
TRANSPORTS = [
    pytest.param("", ["retry", "openai-http"], id="openai-http"),
    pytest.param(
        'transport = ["openai-aiohttp"]\n', ["openai-aiohttp"], id="openai-aiohttp"
    ),
]


@dataclass
class Seen:
    """What the TLS backend saw of one request."""

    path: str
    host: str | None
    peer: tuple[str, int]
    tls_version: str | None


@dataclass
class TlsBackend:
    """A FakeBackend behind TLS, recording connections, requests and SNI."""

    fake: FakeBackend
    port: int
    seen: list[Seen] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    handshakes: int = 0

    def url(self, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}/v1"

    def toml(self, extra: str = "", *, host: str = "127.0.0.1") -> str:
        return (
            f'[[backends]]\nname = "o"\nbase_url = "{self.url(host)}"\n'
            f'api_key = "sk-test"\n{extra}'
        )

    def peers(self) -> set[tuple[str, int]]:
        return {s.peer for s in self.seen}


def server_context(backend: TlsBackend) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERT, KEY)

    def on_sni(obj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        # Called once per handshake, with None when the client sent no SNI.
        backend.handshakes += 1
        backend.sni.append(name)

    context.sni_callback = on_sni
    return context


@pytest.fixture
async def tls_backend(aiohttp_server: Any) -> TlsBackend:
    fake = FakeBackend()
    backend = TlsBackend(fake, port=0)

    @web.middleware
    async def record(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        transport = request.transport
        assert transport is not None
        ssl_object = transport.get_extra_info("ssl_object")
        peer = transport.get_extra_info("peername")
        backend.seen.append(
            Seen(
                request.path,
                request.headers.get("Host"),
                (peer[0], peer[1]),
                None if ssl_object is None else ssl_object.version(),
            )
        )
        return await handler(request)

    fake.app.middlewares.insert(0, record)
    server: TestServer = await aiohttp_server(fake.app, ssl=server_context(backend))
    assert server.port is not None
    backend.port = server.port
    fake.url = backend.url()
    return backend


@pytest.fixture
def trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(CERT))


@pytest.fixture
def untrusted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


async def test_fixture_certificate_verifies_as_loopback(
    tls_backend: TlsBackend,
) -> None:
    """The fixture is what the tests below rely on: trusted as a CA, the
    certificate verifies for 127.0.0.1 and localhost and lasts past 2100."""
    context = ssl.create_default_context(cafile=str(CERT))
    for name in ("127.0.0.1", "localhost"):
        _, writer = await asyncio.open_connection(
            "127.0.0.1", tls_backend.port, ssl=context, server_hostname=name
        )
        ssl_object = writer.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        cert = ssl_object.getpeercert()
        writer.close()
        await writer.wait_closed()
        assert cert is not None
        assert set(cert["subjectAltName"]) == {
            ("IP Address", "127.0.0.1"),
            ("DNS", "localhost"),
        }
        assert cert["subject"] == ((("commonName", "127.0.0.1"),),)
        assert cert["subject"] == cert["issuer"]  # self-signed
        not_after = ssl.cert_time_to_seconds(str(cert["notAfter"]))
        assert not_after > ssl.cert_time_to_seconds("Jan  1 00:00:00 2100 GMT")


@pytest.mark.usefixtures("trusted")
async def test_streaming_chat_over_tls(
    gateway: MakeGateway, tls_backend: TlsBackend
) -> None:
    client = await gateway(toml=tls_backend.toml())
    resp = await post(client, "/api/chat", chat())
    objs = await read_ndjson(resp)
    assert_final(objs)
    assert content_of(objs) == REPLY
    completions = tls_backend.fake.completions()
    assert len(completions) == 1
    assert completions[0].body["stream"] is True
    assert completions[0].headers["Authorization"] == "Bearer sk-test"
    # The model listing and the completion, both over TLS.
    assert [s.path for s in tls_backend.seen] == ["/v1/models", "/v1/chat/completions"]
    assert all(s.tls_version in ("TLSv1.2", "TLSv1.3") for s in tls_backend.seen)


@pytest.mark.usefixtures("trusted")
async def test_non_streaming_chat_over_tls(
    gateway: MakeGateway, tls_backend: TlsBackend
) -> None:
    client = await gateway(toml=tls_backend.toml())
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/json")
    body = await resp.json()
    assert body["done"] is True
    assert body["message"] == {"role": "assistant", "content": REPLY}
    assert len(tls_backend.fake.completions()) == 1
    assert tls_backend.seen
    assert all(s.tls_version is not None for s in tls_backend.seen)


@pytest.mark.parametrize(("extra", "chain"), TRANSPORTS)
async def test_chats_over_tls_in_a_gateway_process(
    tmp_path: Path, tls_backend: TlsBackend, extra: str, chain: list[str]
) -> None:
    """Both transports, in a real `serve` process started with SSL_CERT_FILE."""
    toml = tls_backend.toml('models = ["gpt-4o"]\n' + extra)
    gateway = await start_gateway(tmp_path, toml, SSL_CERT_FILE=str(CERT))
    try:
        async with asyncio.timeout(BOUND), aiohttp.ClientSession() as session:
            async with session.post(gateway.url + "/api/chat", json=chat()) as resp:
                objs = await read_ndjson(resp)
            async with session.post(
                gateway.url + "/api/chat", json=chat(stream=False)
            ) as resp:
                assert resp.status == 200, await resp.text()
                body = await resp.json()
    finally:
        code = await gateway.stop(BOUND)
    assert code == 0
    assert_final(objs)
    assert content_of(objs) == REPLY
    assert body["done"] is True
    assert body["message"] == {"role": "assistant", "content": REPLY}
    assert len(tls_backend.fake.completions()) == 2
    startup = next(
        line
        for line in gateway.lines()
        if line["msg"].startswith("ollama-gateway listening")
    )
    assert startup["pipeline"]["transport:o"] == chain
    host = f"127.0.0.1:{tls_backend.port}"
    assert [s.host for s in tls_backend.seen] == [host, host]
    assert all(s.tls_version is not None for s in tls_backend.seen)


@pytest.mark.usefixtures("trusted")
async def test_keep_alive_reuses_one_tls_connection(
    gateway: MakeGateway, tls_backend: TlsBackend
) -> None:
    # Models pinned: only the two completions go upstream.
    client = await gateway(toml=tls_backend.toml('models = ["gpt-4o"]\n'))
    objs = await read_ndjson(await post(client, "/api/chat", chat()))
    assert content_of(objs) == REPLY
    resp = await post(client, "/api/chat", chat())
    assert content_of(await read_ndjson(resp)) == REPLY
    assert [s.path for s in tls_backend.seen] == ["/v1/chat/completions"] * 2
    assert len(tls_backend.peers()) == 1, tls_backend.seen
    assert tls_backend.handshakes == 1


@pytest.mark.usefixtures("untrusted")
@pytest.mark.parametrize(("extra", "chain"), TRANSPORTS)
async def test_untrusted_certificate_is_refused(
    gateway: MakeGateway, tls_backend: TlsBackend, extra: str, chain: list[str]
) -> None:
    toml = tls_backend.toml('models = ["gpt-4o"]\n' + extra) + NO_RETRY
    client = await gateway(toml=toml)
    assert client.app is not None
    assert list(client.app[pipeline_key].names["transport:o"]) == chain
    for body in (chat(), chat(stream=False)):
        resp = await post(client, "/api/chat", body)
        assert resp.status == 502, await resp.text()
        assert resp.headers["Content-Type"].startswith("application/json")
        error = json.loads(await resp.read())
        assert list(error) == ["error"], error
        message = error["error"]
        assert message.startswith("upstream unavailable: "), message
        assert "certificate verify failed" in message, message
    # The handshakes failed, so no request ever reached the backend.
    assert tls_backend.handshakes == 2
    assert tls_backend.seen == []
    assert tls_backend.fake.completions() == []


@pytest.mark.usefixtures("trusted")
@pytest.mark.parametrize(
    ("host", "sni"),
    [
        # RFC 6066: no SNI for an IP literal; the certificate's IP SAN verifies.
        pytest.param("127.0.0.1", None, id="ip"),
        pytest.param("localhost", "localhost", id="name"),
    ],
)
async def test_host_header_and_sni(
    gateway: MakeGateway, tls_backend: TlsBackend, host: str, sni: str | None
) -> None:
    toml = tls_backend.toml('models = ["gpt-4o"]\n', host=host)
    client = await gateway(toml=toml)
    objs = await read_ndjson(await post(client, "/api/chat", chat()))
    assert content_of(objs) == REPLY
    expected = f"{host}:{tls_backend.port}"
    assert [s.host for s in tls_backend.seen] == [expected]
    assert tls_backend.fake.completions()[0].headers["Host"] == expected
    assert tls_backend.sni == [sni]
