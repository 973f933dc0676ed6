"""Outbound proxies from the environment (`ollama_gateway/proxy.py`).

The proxy here is a real forward proxy on loopback: it takes absolute-form
requests (`POST http://backend.test:PORT/v1/... HTTP/1.1`) and CONNECT
tunnels, and sends every host name to 127.0.0.1 (the port kept), so a backend
can be named `backend.test`, a name no resolver knows: only a request that
went through the proxy can reach it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from ollama_gateway.errors import UpstreamConnectError
from ollama_gateway.proxy import Proxy, proxy_for
from tests.conftest import MakeGateway
from tests.fakebackend import FakeBackend
from tests.ndjson import NO_RETRY, assert_final, chat, content_of, post, read_ndjson
from tests.ops import free_port, start_gateway

TLS = Path(__file__).parent / "fixtures" / "tls"
# Self-signed for DNS:backend.test only.
CERT = TLS / "backend-test.pem"
KEY = TLS / "backend-test-key.pem"
REPLY = "Hello from fake"
BOUND = 30.0

TRANSPORTS = [
    pytest.param("", id="openai-http"),
    pytest.param('transport = ["openai-aiohttp"]\n', id="openai-aiohttp"),
]


@dataclass
class ForwardProxy:
    """A forward proxy on loopback that records what it was asked."""

    port: int = 0
    # The request line of each request and tunnel, in order.
    lines: list[str] = field(default_factory=list)
    # Each request's Proxy-Authorization header (None when absent).
    auth: list[str | None] = field(default_factory=list)
    # When set, every request and tunnel is refused with this status.
    refuse: int | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                line, *fields = head.decode("latin-1").rstrip("\r\n").split("\r\n")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (f.partition(":") for f in fields)
                }
                self.lines.append(line)
                self.auth.append(headers.get("proxy-authorization"))
                if self.refuse is not None:
                    writer.write(
                        b"HTTP/1.1 %d Refused\r\nContent-Length: 0\r\n"
                        b"Connection: close\r\n\r\n" % self.refuse
                    )
                    await writer.drain()
                    return
                method, target, version = line.split(" ")
                if method == "CONNECT":
                    await self._tunnel(target, reader, writer)
                    return
                await self._forward(
                    method, target, version, fields, headers, reader, writer
                )
                # The answer ended with the backend's close (see `_forward`).
                return
        finally:
            writer.close()

    async def _tunnel(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        _, _, port = target.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()

    async def _forward(
        self,
        method: str,
        target: str,
        version: str,
        fields: list[str],
        headers: dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """One absolute-form request, sent on in origin form with `Connection:
        close`; the answer is piped back as it comes, and ends with a close."""
        parts = urlsplit(target)
        assert parts.scheme == "http" and parts.port, target
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        kept = [f for f in fields if not f.lower().startswith(("proxy-", "connection"))]
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", parts.port)
        head = [f"{method} {path} {version}", *kept, "Connection: close", "", ""]
        try:
            up_writer.write("\r\n".join(head).encode("latin-1") + body)
            await _pipe(up_reader, writer)
        finally:
            up_writer.close()

    async def start(self) -> asyncio.Server:
        async def guarded(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            with contextlib.suppress(ConnectionError):
                await self.serve(reader, writer)

        server = await asyncio.start_server(guarded, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials}127.0.0.1:{self.port}"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(ConnectionError, RuntimeError):
            writer.write_eof()


@pytest.fixture
async def proxy() -> Any:
    forward = ForwardProxy()
    server = await forward.start()
    yield forward
    server.close()


def _toml(port: int, extra: str = "", *, scheme: str = "http") -> str:
    return (
        f'[[backends]]\nname = "o"\nbase_url = "{scheme}://backend.test:{port}/v1"\n'
        f'api_key = "sk-test"\n{extra}'
    )


# -- which proxy a backend's requests take -------------------------------------


@pytest.mark.parametrize(
    ("env", "url", "expected"),
    [
        (
            {"HTTPS_PROXY": "http://p:3128"},
            "https://api.openai.com/v1",
            "http://p:3128",
        ),
        ({"HTTPS_PROXY": "http://p:3128"}, "http://api.openai.com/v1", None),
        ({"HTTP_PROXY": "http://p:3128"}, "http://vllm.lan:8000/v1", "http://p:3128"),
        ({"ALL_PROXY": "http://p:1"}, "https://api.openai.com/v1", "http://p:1"),
        (
            {"ALL_PROXY": "http://p:1", "HTTPS_PROXY": "http://q:2"},
            "https://api.openai.com/v1",
            "http://q:2",
        ),
        # Lower case wins, as urllib and curl read them.
        (
            {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2"},
            "https://x.org/v1",
            "http://lower:2",
        ),
        # No scheme: http://, as curl takes it.
        ({"HTTPS_PROXY": "p.corp:3128"}, "https://x.org/v1", "http://p.corp:3128"),
        ({"HTTPS_PROXY": "https://p.corp"}, "https://x.org/v1", "https://p.corp"),
        # Loopback backends never go through a proxy.
        ({"HTTP_PROXY": "http://p:1"}, "http://127.0.0.1:8000/v1", None),
        ({"HTTP_PROXY": "http://p:1"}, "http://127.8.9.10:8000/v1", None),
        ({"HTTP_PROXY": "http://p:1"}, "http://localhost:8000/v1", None),
        ({"HTTP_PROXY": "http://p:1"}, "http://llm.localhost/v1", None),
        ({"HTTP_PROXY": "http://p:1"}, "http://[::1]:8000/v1", None),
    ],
)
def test_the_proxy_the_environment_sets(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], url: str, expected: str | None
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    found = proxy_for(url)
    assert (found.url if found else None) == expected


@pytest.mark.parametrize(
    ("no_proxy", "url", "direct"),
    [
        ("*", "https://api.openai.com/v1", True),
        ("api.openai.com", "https://api.openai.com/v1", True),
        ("openai.com", "https://api.openai.com/v1", True),
        (".openai.com", "https://api.openai.com/v1", True),
        ("penai.com", "https://api.openai.com/v1", False),
        ("x.org, .internal", "https://llm.internal/v1", True),
        ("LLM.Internal", "https://llm.internal/v1", True),
        ("10.0.0.0/8", "http://10.1.2.3:8000/v1", True),
        ("10.0.0.0/8", "http://11.1.2.3:8000/v1", False),
        ("fd00::/8", "http://[fd00::5]:8000/v1", True),
        ("[fd00::5]", "http://[fd00::5]:8000/v1", True),
        ("vllm.lan:8000", "http://vllm.lan:8000/v1", True),
        ("vllm.lan:9000", "http://vllm.lan:8000/v1", False),
        ("", "https://api.openai.com/v1", False),
    ],
)
def test_no_proxy_sends_a_backend_direct(
    monkeypatch: pytest.MonkeyPatch, no_proxy: str, url: str, direct: bool
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://p:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://p:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert (proxy_for(url) is None) == direct


def test_proxy_credentials_are_taken_out_of_its_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://me%40corp:p%3Ass@p.corp:3128")
    assert proxy_for("https://api.openai.com/v1") == Proxy(
        "http://p.corp:3128", "me@corp", "p:ss"
    )


def test_a_proxy_of_another_kind_fails_instead_of_going_around_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALL_PROXY", "socks5://p.corp:1080")
    with pytest.raises(UpstreamConnectError) as caught:
        proxy_for("https://api.openai.com/v1")
    assert caught.value.message == (
        "upstream unavailable: unsupported proxy socks5://p.corp "
        "(only http:// and https:// proxies are)"
    )


# -- through the gateway ---------------------------------------------------------


@pytest.mark.parametrize("extra", TRANSPORTS)
async def test_a_backend_behind_a_proxy_is_reached_through_it(
    monkeypatch: pytest.MonkeyPatch,
    gateway: MakeGateway,
    backend: FakeBackend,
    proxy: ForwardProxy,
    extra: str,
) -> None:
    port = urlsplit(backend.url).port
    assert port is not None
    monkeypatch.setenv("HTTP_PROXY", proxy.url("me:s%3Acret@"))
    client = await gateway(toml=_toml(port, extra))
    objs = await read_ndjson(await post(client, "/api/chat", chat()))
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 200, await resp.text()
    whole = await resp.json()
    assert_final(objs)
    assert content_of(objs) == REPLY
    assert whole["message"]["content"] == REPLY
    completions = backend.completions()
    assert [c.body["stream"] for c in completions] == [True, True]
    assert completions[0].headers["Authorization"] == "Bearer sk-test"
    # Everything went through the proxy: the model list and both completions,
    # with the proxy's credentials for the proxy only.
    base = f"http://backend.test:{port}/v1"
    assert proxy.lines == [
        f"GET {base}/models HTTP/1.1",
        f"POST {base}/chat/completions HTTP/1.1",
        f"POST {base}/chat/completions HTTP/1.1",
    ]
    secret = base64.b64encode(b"me:s:cret").decode()
    assert proxy.auth == [f"Basic {secret}"] * 3
    assert all("Proxy-Authorization" not in c.headers for c in completions)


async def test_a_loopback_backend_does_not_go_through_the_proxy(
    monkeypatch: pytest.MonkeyPatch, gateway: MakeGateway, backend: FakeBackend
) -> None:
    # A proxy nobody listens on: a request that tried it would fail.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{free_port()}")
    client = await gateway(backend)
    objs = await read_ndjson(await post(client, "/api/chat", chat()))
    assert content_of(objs) == REPLY
    assert len(backend.completions()) == 1


async def test_a_refused_tunnel_is_an_unavailable_upstream(
    monkeypatch: pytest.MonkeyPatch,
    gateway: MakeGateway,
    proxy: ForwardProxy,
) -> None:
    proxy.refuse = 407
    monkeypatch.setenv("HTTPS_PROXY", proxy.url())
    toml = _toml(443, 'models = ["gpt-4o"]\n' + NO_RETRY, scheme="https")
    client = await gateway(toml=toml)
    resp = await post(client, "/api/chat", chat())
    assert resp.status == 502
    assert await resp.json() == {
        "error": "upstream unavailable: the proxy refused: 407 Refused"
    }
    assert proxy.lines == ["CONNECT backend.test:443 HTTP/1.1"]


async def test_an_unusable_proxy_fails_the_request_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, gateway: MakeGateway
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
    toml = _toml(443, 'models = ["gpt-4o"]\n' + NO_RETRY, scheme="https")
    client = await gateway(toml=toml)
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 502
    assert (await resp.json())["error"].startswith(
        "upstream unavailable: unsupported proxy socks5://127.0.0.1"
    )


@pytest.fixture
async def tls_backend(aiohttp_server: Any) -> tuple[FakeBackend, int]:
    fake = FakeBackend()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERT, KEY)
    server: TestServer = await aiohttp_server(fake.app, ssl=context)
    assert server.port is not None
    return fake, server.port


@pytest.mark.parametrize("extra", TRANSPORTS)
async def test_an_https_backend_is_reached_through_a_tunnel(
    tmp_path: Path,
    proxy: ForwardProxy,
    tls_backend: tuple[FakeBackend, int],
    extra: str,
) -> None:
    """In a `serve` process started with HTTPS_PROXY, as deployed: the
    tunnel is end to end, so the backend's certificate is checked for its own
    name (trusted through SSL_CERT_FILE) and the proxy sees no request."""
    fake, port = tls_backend
    toml = _toml(port, 'models = ["gpt-4o"]\n' + extra, scheme="https")
    gateway = await start_gateway(
        tmp_path, toml, HTTPS_PROXY=proxy.url(), SSL_CERT_FILE=str(CERT)
    )
    try:
        async with asyncio.timeout(BOUND), aiohttp.ClientSession() as session:
            async with session.post(gateway.url + "/api/chat", json=chat()) as resp:
                objs = await read_ndjson(resp)
    finally:
        code = await gateway.stop(BOUND)
    assert code == 0
    assert content_of(objs) == REPLY
    assert len(fake.completions()) == 1
    assert proxy.lines == [f"CONNECT backend.test:{port} HTTP/1.1"]
