"""Inbound API keys: off by default; Bearer or X-API-Key; 401 as an Ollama error;
optional pass-through of the client's own key to the backend."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import ollama
import pytest
from aiohttp import ClientResponse

from ollama_gateway.settings import Settings
from tests.conftest import FAST_DEMO, base_url
from tests.ndjson import CHAT, chat
from tests.ops import Client, read_metrics

BOUND = 20.0
KEYS = "key-one,key-two"


def _basic(credentials: str) -> str:
    return base64.b64encode(credentials.encode()).decode()


async def _chat(
    client: Client,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> tuple[ClientResponse, bytes]:
    async with asyncio.timeout(BOUND):
        resp = await client.post(
            "/api/chat",
            data=json.dumps(body or chat(model="demo", stream=False)),
            headers=headers or {},
        )
        return resp, await resp.read()


async def test_auth_is_off_by_default(gateway):
    client = await gateway(toml=FAST_DEMO)
    resp, _ = await _chat(client)
    assert resp.status == 200
    assert Settings.load({}).auth.api_keys == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer key-one"},
        {"Authorization": "bearer   key-two "},
        {"X-API-Key": "key-two"},
        {"Authorization": "Basic abc", "X-API-Key": "key-one"},
        # Basic: the password is the key, or the user name when the password
        # is empty (langchain-ollama's `http://user:key@host`, `http://key@host`).
        {"Authorization": f"Basic {_basic('user:key-one')}"},
        {"Authorization": f"basic  {_basic('key-two:')} "},
        {"Authorization": f"Basic {_basic(':key-two')}"},
    ],
)
async def test_accepted_keys(gateway, headers):
    client = await gateway(toml=FAST_DEMO, OLLAMA_GATEWAY_API_KEYS=KEYS)
    resp, raw = await _chat(client, headers)
    assert resp.status == 200, raw
    assert json.loads(raw)["done"] is True


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer key-three"},
        {"Authorization": "Bearer key-on"},
        {"Authorization": "Bearer key-one-and-more"},
        {"Authorization": "Bearer "},
        {"Authorization": "key-one"},
        {"X-API-Key": ""},
        {"X-API-Key": "KEY-ONE"},
        {"Authorization": "Bearer ключ"},
        {"Authorization": f"Basic {_basic('user:key-three')}"},
        {"Authorization": f"Basic {_basic('key-one:wrong')}"},
        {"Authorization": f"Basic {_basic('user:')}"},
        {"Authorization": f"Basic {_basic(':')}"},
        {"Authorization": "Basic "},
        {"Authorization": "Basic a2V5LW9uZQ"},  # key-one, its padding cut
        {"Authorization": "Basic key-one"},
        {"Authorization": "Basic ключ"},
    ],
)
async def test_rejected_keys_get_an_ollama_401(gateway, headers):
    client = await gateway(toml=FAST_DEMO, OLLAMA_GATEWAY_API_KEYS=KEYS)
    resp, raw = await _chat(client, headers)
    assert resp.status == 401
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert json.loads(raw) == {"error": "unauthorized: a valid API key is required"}


async def test_keys_from_the_config_file(gateway):
    toml = FAST_DEMO + '\n[auth]\napi_keys = ["from-file"]\n'
    client = await gateway(toml=toml)
    assert (await _chat(client))[0].status == 401
    assert (await _chat(client, {"X-API-Key": "from-file"}))[0].status == 200


async def test_every_api_route_is_guarded(gateway):
    client = await gateway(toml=FAST_DEMO, OLLAMA_GATEWAY_API_KEYS=KEYS)
    async with asyncio.timeout(BOUND):
        for method, path in [
            ("GET", "/api/tags"),
            ("GET", "/api/version"),
            ("GET", "/api/ps"),
            ("POST", "/api/generate"),
            ("POST", "/api/embed"),
            ("POST", "/api/show"),
            ("DELETE", "/api/delete"),
            ("GET", "/v1/models"),
            ("GET", "/v1/models/demo"),
            ("POST", "/v1/chat/completions"),
            ("POST", "/v1/embeddings"),
            ("POST", "/v1/responses"),
            ("POST", "/v1/messages"),
        ]:
            resp = await client.request(method, path, data="{}")
            assert resp.status == 401, path
            # Each front's clients find the message where they look for it.
            error = (await resp.json())["error"]
            if path.startswith("/api/"):
                assert isinstance(error, str), path
            else:
                assert error["message"], path
        for path in ("/", "/health", "/ready", "/metrics"):
            resp = await client.get(path)
            assert resp.status == 200, path


async def test_rejections_are_counted_as_4xx(gateway):
    client = await gateway(toml=FAST_DEMO, OLLAMA_GATEWAY_API_KEYS=KEYS)
    await _chat(client)
    metrics = await read_metrics(client)
    requests = "ollama_gateway_requests_total"
    assert metrics.get(requests, endpoint="/api/chat", status_class="4xx") == 1


async def test_official_client_with_a_key(gateway):
    client = await gateway(toml=FAST_DEMO, OLLAMA_GATEWAY_API_KEYS=KEYS)
    host = base_url(client)
    async with asyncio.timeout(BOUND):
        async with ollama.AsyncClient(
            host=host, headers={"Authorization": "Bearer key-one"}
        ) as api:
            reply = await api.chat(
                model="demo", messages=[{"role": "user", "content": "hi"}]
            )
        assert reply.done
        async with ollama.AsyncClient(host=host) as api:
            with pytest.raises(ollama.ResponseError) as caught:
                await api.chat(
                    model="demo", messages=[{"role": "user", "content": "x"}]
                )
    assert caught.value.status_code == 401


async def test_backend_gets_its_own_key_by_default(gateway, backend):
    client = await gateway(backend, OLLAMA_GATEWAY_API_KEYS=KEYS)
    resp, _ = await _chat(client, {"Authorization": "Bearer key-one"}, CHAT)
    assert resp.status == 200
    (sent,) = backend.completions()
    assert sent.headers["Authorization"] == "Bearer sk-test"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer key-one"},
        {"X-API-Key": "key-one"},
        {"Authorization": f"Basic {_basic('user:key-one')}"},
    ],
)
async def test_pass_client_key_sends_the_clients_key(gateway, backend, headers):
    toml = "[auth]\npass_client_key = true\n"
    client = await gateway(backend, toml, OLLAMA_GATEWAY_API_KEYS=KEYS)
    resp, _ = await _chat(client, headers, CHAT)
    assert resp.status == 200
    (sent,) = backend.completions()
    assert sent.headers["Authorization"] == "Bearer key-one"
    assert "X-API-Key" not in sent.headers


async def test_pass_client_key_without_inbound_keys(gateway, backend):
    client = await gateway(backend, "[auth]\npass_client_key = true\n")
    resp, _ = await _chat(client, {"Authorization": "Bearer users-own"}, CHAT)
    assert resp.status == 200
    resp, _ = await _chat(client, {}, CHAT)
    assert resp.status == 200
    first, second = backend.completions()
    assert first.headers["Authorization"] == "Bearer users-own"
    assert second.headers["Authorization"] == "Bearer sk-test"


async def test_a_passed_key_that_is_not_text_is_refused_not_a_crash(
    gateway, backend, caplog
):
    # With pass_client_key, a key of bytes that are not UTF-8 (aiohttp keeps
    # them as lone surrogates) reached the HTTP client, which could not encode
    # the request: a 500 and an ERROR traceback per request, for anyone.
    client = await gateway(backend, "[auth]\npass_client_key = true\n")
    body = json.dumps(CHAT).encode()
    async with asyncio.timeout(BOUND):
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(
            b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer \xff\xfe\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        answer = await reader.read()
        writer.close()
    status = int(answer.split(b" ", 2)[1])
    assert status == 401
    assert b"WWW-Authenticate" in answer
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert backend.completions() == []


@pytest.mark.parametrize("transport", ["openai-http", "openai-aiohttp"])
async def test_a_backend_header_in_lower_case_is_replaced_not_doubled(
    gateway, transport
):
    # `headers = { authorization = … }` in a backend's table and the client's
    # key (pass_client_key) went upstream as two Authorization headers, and
    # two X-Request-IDs likewise: which one a backend reads is its choice.
    heads: list[bytes] = []
    writers: list[asyncio.StreamWriter] = []
    answer = json.dumps(
        {"object": "list", "data": [{"id": "m", "object": "model", "created": 0}]}
    ).encode()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                heads.append(head)
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(answer) + answer
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    toml = f"""
[auth]
pass_client_key = true
[[backends]]
name = "raw"
base_url = "http://127.0.0.1:{port}/v1"
transport = ["{transport}"]
headers = {{ authorization = "Bearer from-config", x-request-id = "from-config" }}
"""
    try:
        client = await gateway(toml=toml)
        async with asyncio.timeout(BOUND):
            resp = await client.post(
                "/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
                headers={"Authorization": "Bearer users-own", "X-Request-ID": "r-1"},
            )
            assert resp.status == 200
            await client.close()
    finally:
        server.close()
        for writer in writers:
            writer.close()
            await writer.wait_closed()
        await server.wait_closed()
    (head,) = [h for h in heads if h.startswith(b"POST ")]
    lines = [line.lower() for line in head.split(b"\r\n")]
    assert [x for x in lines if x.startswith(b"authorization:")] == [
        b"authorization: bearer users-own"
    ]
    assert [x for x in lines if x.startswith(b"x-request-id:")] == [
        b"x-request-id: r-1"
    ]


async def test_a_basic_password_that_is_not_text_is_refused(gateway, backend):
    # The same through Basic credentials, whose bytes are decoded by us.
    client = await gateway(backend, "[auth]\npass_client_key = true\n")
    garbled = base64.b64encode(b"user:\xff\xfe").decode()
    resp, _ = await _chat(client, {"Authorization": f"Basic {garbled}"}, CHAT)
    assert resp.status == 401
    assert backend.completions() == []
