"""Limits: request body size (413), SSE event size from the backend, and the cap
on concurrent upstream requests (503 `server busy`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from ollama_gateway.app import HEAD_LINE_BYTES
from ollama_gateway.errors import UpstreamProtocolError
from ollama_gateway.settings import Settings
from ollama_gateway.sse import SSEParser
from tests.conftest import FAST_DEMO
from tests.fakebackend import Script, chat_chunk, sse
from tests.ndjson import CHAT, chat, ndjson, post
from tests.ops import error_message, read_metrics

BOUND = 20.0
BUSY = "server busy, please try again.  maximum pending requests exceeded"
ONE_AT_A_TIME = """
[limits]
max_concurrent_upstream = 1

[translators.retry]
attempts = 0
"""


def _slow_stream() -> Script:
    events = [sse(chat_chunk({"content": f"w{i} "}), done=False) for i in range(3)]
    return Script(pieces=[*events, sse(chat_chunk({}, finish="stop"))], delay=0.3)


def test_defaults():
    limits = Settings.load({}).limits
    assert limits.max_body_bytes == 128 * 1024 * 1024
    assert limits.max_event_bytes == 16 * 1024 * 1024
    assert limits.max_concurrent_upstream == 0  # no cap
    assert limits.max_messages == 100_000


@pytest.mark.parametrize("path", ["/api/chat", "/api/embed", "/v1/chat/completions"])
async def test_body_over_the_limit_is_a_413(gateway, backend, path):
    client = await gateway(backend, "[limits]\nmax_body_bytes = 1024\n")
    body = json.dumps(chat(padding="x" * 2000))
    async with asyncio.timeout(BOUND):
        resp = await client.post(path, data=body)
        raw = await resp.read()
    assert resp.status == 413
    assert resp.headers["Content-Type"].startswith("application/json")
    assert error_message(path, raw) == "request body too large"
    assert backend.completions() == []


async def test_chunked_body_over_the_limit_is_a_413(gateway, backend):
    client = await gateway(backend, "[limits]\nmax_body_bytes = 1024\n")

    async def pieces() -> AsyncIterator[bytes]:
        yield b'{"model": "gpt-4o", "padding": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    async with asyncio.timeout(BOUND):
        resp = await client.post("/api/chat", data=pieces())
        raw = await resp.read()
    assert resp.status == 413
    assert json.loads(raw) == {"error": "request body too large"}


@pytest.mark.parametrize("path", ["/api/chat", "/api/embed", "/v1/chat/completions"])
async def test_a_body_announced_over_the_limit_is_refused_before_it_comes(
    gateway, backend, path
):
    """A client that announces more than the limit and sends nothing more is
    answered at once, not held while the gateway waits for the body."""
    client = await gateway(backend, "[limits]\nmax_body_bytes = 1024\n")
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nContent-Length: 1025\r\n\r\n{".encode()
        )
        async with asyncio.timeout(BOUND):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            raw = await reader.readexactly(length)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 413 ")
    assert error_message(path, raw) == "request body too large"
    assert backend.completions() == []


@pytest.mark.parametrize(
    ("toml", "head", "status"),
    [
        ("[limits]\nmax_body_bytes = 1024\n", "", 413),
        ('[auth]\napi_keys = ["k"]\n', "", 401),
        ("", "Origin: http://evil.example\r\n", 403),
    ],
    ids=["too-large", "no-key", "foreign-origin"],
)
async def test_a_refused_request_gets_no_100_continue(
    gateway, backend, toml, head, status
):
    # curl sends `Expect: 100-continue` with any body over 1 KiB: aiohttp told
    # it to go on before these checks, so it sent the whole body to be
    # refused; Go's server sends the 100 only once the body is read.
    client = await gateway(backend, toml)
    answer = await _answer_without_body(client, "POST /api/chat", head)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer
    assert b"Connection: close\r\n" in answer
    assert backend.completions() == []


@pytest.mark.parametrize(
    ("request_line", "status", "text"),
    [
        ("POST /api/nothing", 404, "404 page not found"),
        ("PUT /api/chat", 405, "405 method not allowed"),
        ("POST /api/tags", 405, "405 method not allowed"),
    ],
    ids=["no-route", "wrong-method", "get-only"],
)
async def test_a_request_no_route_takes_gets_no_100_continue(
    gateway, backend, request_line, status, text
):
    # aiohttp's own answer to a path or method it has no route for told the
    # client to go on first, so curl uploaded its whole body to get a 404.
    client = await gateway(backend)
    answer = await _answer_without_body(client, request_line)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer
    assert b"100 Continue" not in answer
    assert b"Connection: close\r\n" in answer
    assert answer.endswith(text.encode())


async def _answer_without_body(client, request_line: str, head: str = "") -> bytes:
    """All a gateway answers a head that waits for `100 Continue` (a body of
    2000 bytes announced, never sent), read to the closed connection's end."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(
            f"{request_line} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}"
            "Content-Length: 2000\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        async with asyncio.timeout(BOUND):
            return await reader.read()
    finally:
        writer.close()


async def test_a_request_that_will_be_read_gets_100_continue(gateway, backend):
    client = await gateway(backend)
    body = json.dumps(CHAT).encode()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(
            b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body)
        )
        async with asyncio.timeout(BOUND):
            go_on = await reader.readuntil(b"\r\n\r\n")
            writer.write(body)
            answer = await reader.read()
    finally:
        writer.close()
    assert go_on == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert len(backend.completions()) == 1


async def test_body_at_the_limit_is_served(gateway, backend):
    body = json.dumps(CHAT).encode()
    client = await gateway(backend, f"[limits]\nmax_body_bytes = {len(body)}\n")
    async with asyncio.timeout(BOUND):
        resp = await client.post("/api/chat", data=body)
        objs = ndjson(await resp.read())
    assert resp.status == 200
    assert objs[-1]["done"] is True


async def test_large_header_lines_are_served_as_ollama_serves_them(gateway, backend):
    # A session cookie and a token of a few dozen KiB (an SSO proxy's): Go's
    # server reads 1 MiB of head, aiohttp 8190 bytes a line (a plain 400).
    client = await gateway(backend)
    headers = {
        "Cookie": "session=" + "c" * 40_000,
        "Authorization": "Bearer " + "t" * 30_000,
    }
    async with asyncio.timeout(BOUND):
        version = await client.get("/api/version", headers=headers)
        chat = await client.post("/api/chat", json=CHAT, headers=headers)
        lines = ndjson(await chat.read())
    assert version.status == 200
    assert chat.status == 200 and lines[-1]["done"] is True
    # Past the bound, a 400 that says so, and the next connection is served.
    too_long = {"Cookie": "session=" + "c" * HEAD_LINE_BYTES}
    async with asyncio.timeout(BOUND):
        refused = await client.get("/api/version", headers=too_long)
        reason = await refused.text()
        after = await client.get("/api/version")
    assert refused.status == 400
    assert f"Got more than {HEAD_LINE_BYTES} bytes" in reason
    assert after.status == 200


def test_parser_caps_a_whole_event_and_a_partial_one():
    with pytest.raises(UpstreamProtocolError, match="larger than 100 bytes"):
        SSEParser(100).feed(b"data: " + b"x" * 200 + b"\n\n")
    parser = SSEParser(100)
    parser.feed(b"data: " + b"x" * 60)
    with pytest.raises(UpstreamProtocolError, match="larger than 100 bytes"):
        parser.feed(b"x" * 60)
    assert SSEParser(100).feed(b"data: " + b"x" * 90 + b"\n\n") == [b"x" * 90]


async def test_second_upstream_request_is_refused_while_busy(gateway, backend):
    backend.queue(_slow_stream())
    client = await gateway(backend, ONE_AT_A_TIME)
    async with asyncio.timeout(BOUND):
        first = await post(client, "/api/chat", CHAT)
        await first.content.readline()
        second = await post(client, "/api/chat", CHAT)
        busy = await second.json()
        generate = await post(
            client, "/api/generate", {"model": "gpt-4o", "prompt": "x"}
        )
        embed = await post(client, "/api/embed", {"model": "gpt-4o", "input": "x"})
        proxy = await post(client, "/v1/chat/completions", {"model": "gpt-4o"})
        rest = ndjson(await first.read())
        metrics = await read_metrics(client)
    assert second.status == 503
    assert busy == {"error": BUSY}
    assert generate.status == 503 and embed.status == 503 and proxy.status == 503
    assert rest[-1]["done"] is True
    assert len(backend.completions()) == 1
    requests = "ollama_gateway_requests_total"
    assert metrics.get(requests, endpoint="/api/chat", status_class="5xx") == 1


async def test_slots_are_released_after_success_errors_and_disconnects(
    gateway, backend
):
    backend.queue(
        Script.text("ok"),
        Script.error(500, "boom"),
        Script(pieces=[b"data: {broken\n\n"]),
        _slow_stream(),
    )
    client = await gateway(backend, ONE_AT_A_TIME)
    async with asyncio.timeout(BOUND):
        for _ in range(3):
            await (await post(client, "/api/chat", CHAT)).read()
        leaving = await post(client, "/api/chat", CHAT)
        await leaving.content.readline()
        leaving.close()
        await backend.disconnected.wait()
        for _ in range(100):
            resp = await post(client, "/api/chat", chat(stream=False))
            if resp.status != 503:
                break
            await asyncio.sleep(0.05)
        answer = await resp.json()
    assert resp.status == 200
    assert answer["done"] is True
    assert len(backend.completions()) == 5


async def test_no_cap_by_default(gateway):
    client = await gateway(
        toml=FAST_DEMO.replace("tokens_per_second = 0", "tokens_per_second = 20")
    )
    async with asyncio.timeout(BOUND):
        answers = await asyncio.gather(
            *(post(client, "/api/chat", chat(model="demo")) for _ in range(10))
        )
        bodies = [ndjson(await a.read()) for a in answers]
    assert {a.status for a in answers} == {200}
    assert all(b[-1]["done"] is True for b in bodies)


async def test_more_messages_than_the_cap_is_a_400_before_any_is_mapped(
    gateway, backend
):
    client = await gateway(backend, "[limits]\nmax_messages = 3\n")
    message = {"role": "user", "content": "x"}
    resp = await post(client, "/api/chat", chat(messages=[message] * 4))
    assert resp.status == 400
    assert await resp.json() == {
        "error": "too many messages: 4, the most is 3 (limits.max_messages)"
    }
    assert backend.completions() == []
    resp = await post(client, "/api/chat", chat(messages=[message] * 3, stream=False))
    assert resp.status == 200
    (sent,) = backend.completions()
    assert len(sent.body["messages"]) == 3


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/v1/messages", "/v1/responses"]
)
async def test_the_message_cap_holds_on_every_chat_route(gateway, backend, path):
    # Four user turns: the fronts join consecutive ones into one before the
    # chat is checked, and the OpenAI relay did not check at all, so the cap
    # (and what it guards: the decoded conversation mapped in one step) let
    # any number through.
    client = await gateway(backend, "[limits]\nmax_messages = 3\n")
    turns = [{"role": "user", "content": "x"}] * 4
    body: dict[str, object] = {"model": "gpt-4o", "stream": False}
    if path == "/v1/responses":
        body["input"] = turns
    else:
        body["messages"] = turns
    if path == "/v1/messages":
        body["max_tokens"] = 5
    resp = await post(client, path, body)
    assert resp.status == 400
    said = await resp.json()
    wanted = "too many messages: 4, the most is 3 (limits.max_messages)"
    assert said["error"]["message"] == wanted
    assert backend.completions() == []
    resp = await post(client, path, body | {"messages": turns[:3], "input": turns[:3]})
    assert resp.status == 200
