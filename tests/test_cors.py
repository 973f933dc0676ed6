"""CORS and Host checks for browser and VS Code clients (spec 1.10; case 13)."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from ollama_gateway.cors import HostCheck, HostVerdict

PREFLIGHT = {"Access-Control-Request-Method": "POST"}

DEFAULT_ALLOWED = [
    "http://localhost",
    "https://localhost",
    "http://localhost:3000",
    "https://localhost:8443",
    "http://127.0.0.1",
    "http://127.0.0.1:5173",
    "https://127.0.0.1:1",
    "http://0.0.0.0",
    "http://0.0.0.0:8080",
    "app://obsidian.md",
    "file://",
    "tauri://localhost",
    "vscode-webview://1a2b3c",
    "vscode-file://vscode-app",
]
REFUSED = [
    "https://evil.example",
    "http://localhost.evil.example",
    "http://127.0.0.1.nip.io",
    "http://192.168.1.10:3000",
    "null",
]


async def preflight(client: Any, origin: str, path: str = "/api/chat") -> Any:
    return await client.options(path, headers={"Origin": origin, **PREFLIGHT})


async def test_case_13_preflight_from_localhost_is_204(backend, gateway):
    client = await gateway(backend)
    resp = await preflight(client, "http://localhost:3000")
    assert resp.status == 204
    headers = resp.headers
    assert headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    allowed = {
        h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")
    }
    for name in (
        "authorization",
        "content-type",
        "user-agent",
        "accept",
        "x-requested-with",
        "openai-beta",
        "x-stainless-os",
        "x-stainless-runtime",
    ):
        assert name in allowed, name
    assert "Origin" in headers.get("Vary", "")
    assert await resp.read() == b""
    assert backend.completions() == []


async def test_preflight_allows_the_headers_of_anthropics_sdks(backend, gateway):
    """Anthropic's SDKs in a browser (`dangerouslyAllowBrowser`) send these
    on every request; a preflight that left the `anthropic-*` ones out made
    the browser refuse to send it at all."""
    client = await gateway(backend)
    sent = (
        "anthropic-version",
        "anthropic-beta",
        "anthropic-dangerous-direct-browser-access",
        "x-api-key",
        "content-type",
        "x-stainless-lang",
    )
    resp = await client.options(
        "/v1/messages",
        headers={
            "Origin": "app://obsidian.md",
            "Access-Control-Request-Headers": ",".join(sent),
            **PREFLIGHT,
        },
    )
    assert resp.status == 204
    allowed = {
        h.strip().lower()
        for h in resp.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert set(sent) <= allowed


async def test_case_13_preflight_from_an_evil_origin_is_403(backend, gateway):
    client = await gateway(backend)
    resp = await preflight(client, "https://evil.example")
    assert resp.status == 403
    assert "Access-Control-Allow-Origin" not in resp.headers


@pytest.mark.parametrize("origin", DEFAULT_ALLOWED)
async def test_default_origins_are_allowed(backend, gateway, origin):
    client = await gateway(backend)
    resp = await preflight(client, origin)
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == origin


@pytest.mark.parametrize("origin", REFUSED)
async def test_other_origins_are_refused_on_every_method(backend, gateway, origin):
    client = await gateway(backend)
    assert (await preflight(client, origin)).status == 403
    simple = await client.get("/api/tags", headers={"Origin": origin})
    assert simple.status == 403
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    post = await client.post(
        "/api/chat", data=json.dumps(body), headers={"Origin": origin}
    )
    assert post.status == 403
    assert backend.completions() == []


async def test_simple_and_streamed_responses_carry_the_allow_origin(backend, gateway):
    client = await gateway(backend)
    origin = {"Origin": "http://localhost:5173"}
    tags = await client.get("/api/tags", headers=origin)
    assert tags.status == 200
    assert tags.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    stream = await client.post("/api/chat", data=json.dumps(body), headers=origin)
    assert stream.headers["Content-Type"] == "application/x-ndjson"
    assert stream.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    await stream.read()
    # A browser can only read an error body if the error carries the header too.
    missing = await client.post(
        "/api/show", data=json.dumps({"model": "nope"}), headers=origin
    )
    assert missing.status == 404
    assert missing.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"


async def test_requests_without_origin_get_no_cors_headers(backend, gateway):
    client = await gateway(backend)
    resp = await client.get("/api/tags")
    assert resp.status == 200
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_ollama_origins_adds_origins_and_patterns(backend, gateway):
    client = await gateway(
        backend, OLLAMA_ORIGINS="https://my.app, https://*.example.org"
    )
    for origin in ("https://my.app", "https://chat.example.org", "http://localhost"):
        resp = await preflight(client, origin)
        assert resp.status == 204, origin
        assert resp.headers["Access-Control-Allow-Origin"] == origin
    assert (await preflight(client, "https://other.app")).status == 403


async def test_ollama_origins_star_allows_any_origin(backend, gateway):
    client = await gateway(backend, OLLAMA_ORIGINS="*")
    resp = await preflight(client, "https://anything.example")
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    tags = await client.get("/api/tags", headers={"Origin": "https://x.example"})
    assert tags.status == 200


async def test_cors_origins_from_the_config_file(backend, gateway):
    toml = '[server]\ncors_origins = ["chrome-extension://abcdef"]\n'
    client = await gateway(backend, toml)
    assert (await preflight(client, "chrome-extension://abcdef")).status == 204


HOSTS_ALLOWED = [
    "localhost",
    "localhost:11434",
    "127.0.0.1:11434",
    "[::1]:11434",
    "0.0.0.0",
    "10.1.2.3",
    "192.168.1.5:8080",
    "172.16.0.1",
    "app.localhost",
    "printer.local",
    "ollama.internal:11434",
    socket.gethostname(),
]
HOSTS_REFUSED = ["evil.example", "evil.example:11434", "8.8.8.8", "localhost.evil.com"]


@pytest.mark.parametrize("host", HOSTS_ALLOWED)
async def test_host_check_allows_local_names(backend, gateway, host):
    client = await gateway(backend)
    resp = await client.get("/api/version", headers={"Host": host})
    assert resp.status == 200


@pytest.mark.parametrize("host", HOSTS_REFUSED)
async def test_host_check_refuses_foreign_names_when_bound_to_loopback(
    backend, gateway, host
):
    client = await gateway(backend)
    resp = await client.get("/api/tags", headers={"Host": host})
    assert resp.status == 403
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    post = await client.post("/api/chat", data=json.dumps(body), headers={"Host": host})
    assert post.status == 403
    assert backend.completions() == []


async def test_host_check_is_off_when_bound_to_all_interfaces(backend, gateway):
    client = await gateway(backend, OLLAMA_HOST="0.0.0.0:11434")
    resp = await client.get("/api/version", headers={"Host": "gateway.example.com"})
    assert resp.status == 200


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("192.168.1.5:11434", "http://192.168.1.5:11434"),
        ("ollama.internal", "https://ollama.internal"),
    ],
)
async def test_same_origin_requests_are_not_refused(backend, gateway, host, origin):
    """A page served from the gateway's own address (a web UI behind the same
    reverse proxy) sends `Origin` equal to the Host on fetch POSTs; Ollama's CORS
    layer treats that as no CORS request at all and lets it through."""
    client = await gateway(backend)
    headers = {"Host": host, "Origin": origin}
    tags = await client.get("/api/tags", headers=headers)
    assert tags.status == 200
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    post = await client.post("/api/chat", data=json.dumps(body), headers=headers)
    assert post.status == 200
    await post.read()
    # Only the exact scheme://host counts: another port is another origin.
    other = await client.get(
        "/api/tags", headers={"Host": host, "Origin": origin + "0"}
    )
    assert other.status == 403


# Go's server refuses these bytes in a Host before Ollama's check runs (400);
# each once slipped past a split on the last colon as 127.0.0.1 or localhost.
HOSTS_MALFORMED = [
    "127.0.0.1:80@evil.com",
    "user:pass@localhost:11434",
    "localhost@evil.com",
    "localhost:11434/evil",
    "localhost#.evil.com",
    "localhost?.evil.com",
    "local host",
    "localhost\\evil.com",
    '"localhost"',
    "lócalhost",
]
# Forms Go's split refuses are judged whole, so they are no address; and the
# ranges Python calls private but Go does not.
HOSTS_FORBIDDEN = [
    "127.0.0.1:80:90",
    "localhost:11434:11434",
    "[::1]x",
    "[::1]:80]",
    "127.0.0.1.evil.com",
    "localhost.",
    "[::ffff:8.8.8.8]:11434",
    "169.254.169.254",
    "[fe80::1]:11434",
    "192.0.2.1",
    "198.18.0.1",
    "240.0.0.1",
    "[2001:db8::1]:11434",
    "100.64.0.1",
]
HOSTS_LOCAL = [
    "",
    "LOCALHOST:11434",
    "localhost:",
    "[::1]",
    "[::ffff:127.0.0.1]:11434",
    "[::ffff:10.0.0.1]",
    "[fd00::1]:11434",
    "[::]:11434",
    "172.31.255.255",
]


@pytest.mark.parametrize("host", HOSTS_MALFORMED)
def test_host_check_calls_odd_bytes_malformed_whatever_the_bind(host):
    assert HostCheck("127.0.0.1").verdict(host) is HostVerdict.MALFORMED
    assert HostCheck("0.0.0.0").verdict(host) is HostVerdict.MALFORMED


@pytest.mark.parametrize("host", HOSTS_FORBIDDEN)
def test_host_check_forbids_what_ollama_forbids(host):
    assert HostCheck("127.0.0.1").verdict(host) is HostVerdict.FORBIDDEN
    assert HostCheck("0.0.0.0").verdict(host) is HostVerdict.ALLOWED


@pytest.mark.parametrize("host", HOSTS_LOCAL)
def test_host_check_allows_local_forms(host):
    assert HostCheck("::1").verdict(host) is HostVerdict.ALLOWED


@pytest.mark.parametrize("host", ["127.0.0.1:80@evil.com", "localhost:11434/x"])
async def test_a_malformed_host_is_go_s_400_and_reaches_no_backend(
    backend, gateway, host
):
    client = await gateway(backend)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    resp = await client.post("/api/chat", data=json.dumps(body), headers={"Host": host})
    assert resp.status == 400
    assert await resp.text() == "400 Bad Request: malformed Host header"
    assert resp.headers["Connection"] == "close"
    assert backend.completions() == []


@pytest.mark.parametrize("host", ["127.0.0.1:80:90", "[::ffff:8.8.8.8]:11434"])
async def test_an_odd_host_is_forbidden_and_reaches_no_backend(backend, gateway, host):
    client = await gateway(backend)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    resp = await client.post("/api/chat", data=json.dumps(body), headers={"Host": host})
    assert resp.status == 403
    assert backend.completions() == []


async def test_an_empty_origin_is_no_cors_request(backend, gateway):
    # gin's CORS layer passes a request whose Origin is empty as one with no
    # Origin at all (a proxy may forward the header empty); it was a 403.
    client = await gateway(backend)
    tags = await client.get("/api/tags", headers={"Origin": ""})
    assert tags.status == 200
    assert "Access-Control-Allow-Origin" not in tags.headers
    body = {"model": "gpt-4o", "stream": False}
    body["messages"] = [{"role": "user", "content": "x"}]
    chat = await client.post("/api/chat", data=json.dumps(body), headers={"Origin": ""})
    assert chat.status == 200
    assert len(backend.completions()) == 1
