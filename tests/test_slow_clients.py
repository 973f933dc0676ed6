"""Slow clients on a real socket: a request head or body that stops arriving is
bounded (`timeouts.request_head`, `timeouts.request_body`), no upstream request
is made for it, and slow-but-steady clients and idle keep-alive still work."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from ollama_gateway.settings import Settings, SettingsError
from tests.ops import assert_clean_log, error_message

BOUND = 20.0  # seconds: generous, only against hangs
SHORT = "[timeouts]\nrequest_head = 0.3\nrequest_body = 0.2\n"
STALL = "request body timeout: no data for 0.2 seconds"


@pytest.fixture(autouse=True)
def _debug_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


async def _open(client: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(client.host, client.port)


def _head(path: str, length: int | None = None, chunked: bool = False) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The status line and headers, and the body of a Content-Length answer."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head, await reader.readexactly(length)


@pytest.mark.parametrize("name", ["request_head", "request_body"])
def test_defaults_and_a_negative_bound_is_refused(settings_for, name):
    timeouts = Settings.load({}).timeouts
    assert (timeouts.request_head, timeouts.request_body) == (75.0, 30.0)
    with pytest.raises(SettingsError, match=f"timeouts.{name}: must be 0"):
        settings_for(toml=f"[timeouts]\n{name} = -1\n")


@pytest.mark.parametrize("path", ["/api/chat", "/api/embed", "/v1/chat/completions"])
async def test_a_stalled_body_is_a_408_and_no_upstream_request(
    gateway, backend, caplog, path
):
    client = await gateway(backend, SHORT)
    reader, writer = await _open(client)
    try:
        writer.write(_head(path, length=1000) + b'{"model": "gpt-4o", ')
        async with asyncio.timeout(BOUND):
            head, body = await _answer(reader)
            rest = await reader.read()
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"Content-Type: application/json" in head
    assert b"Connection: close" in head
    assert error_message(path, body) == STALL
    assert rest == b""  # and the connection is closed
    assert backend.requests == []
    assert_clean_log(caplog)


async def test_a_stalled_chunked_body_is_a_408(gateway, backend, caplog):
    client = await gateway(backend, SHORT)
    reader, writer = await _open(client)
    try:
        writer.write(_head("/api/chat", chunked=True) + b'5\r\n{"mod\r\n')
        async with asyncio.timeout(BOUND):
            head, body = await _answer(reader)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body) == {"error": STALL}
    assert backend.requests == []
    assert_clean_log(caplog)


async def test_a_slow_but_steady_body_is_served_intact(gateway, backend, caplog):
    """Pieces 0.1 s apart over about 1.5 s, five times the body timeout: the
    bound is on silence, not on the whole body."""
    client = await gateway(backend, SHORT)
    messages = [{"role": "user", "content": "steady " * 400}]
    chat = {"model": "gpt-4o", "messages": messages, "stream": False}
    body = json.dumps(chat).encode()
    pieces = [body[i : i + 200] for i in range(0, len(body), 200)]
    assert len(pieces) >= 15
    reader, writer = await _open(client)
    try:
        writer.write(_head("/api/chat", length=len(body)))
        for piece in pieces:
            await asyncio.sleep(0.1)
            writer.write(piece)
            await writer.drain()
        async with asyncio.timeout(BOUND):
            head, answer = await _answer(reader)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert json.loads(answer)["done"] is True
    (sent,) = backend.completions()
    assert sent.body["messages"] == messages
    assert_clean_log(caplog)


async def test_a_head_sent_a_byte_at_a_time_is_cut(gateway, backend):
    client = await gateway(backend, SHORT)
    reader, writer = await _open(client)
    head = b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 200
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(BOUND):
            for byte in head:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.01)
                if reader.at_eof() or writer.is_closing():
                    break
                try:
                    await asyncio.wait_for(reader.read(1), 0.001)
                except TimeoutError:
                    continue
                break
            closed = await reader.read()
    except ConnectionError:
        closed = b""
    finally:
        writer.close()
    assert closed == b""
    assert loop.time() - started < 2.0  # 200 bytes at 10 ms would take 2.5 s


async def test_an_idle_keep_alive_connection_is_reused_within_the_bound(
    gateway, backend
):
    client = await gateway(backend, SHORT)
    reader, writer = await _open(client)
    ask = b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    try:
        async with asyncio.timeout(BOUND):
            for _ in range(3):
                writer.write(ask)
                head, _ = await _answer(reader)
                assert head.startswith(b"HTTP/1.1 200 ")
                await asyncio.sleep(0.15)  # idle, under request_head
            await asyncio.sleep(0.6)  # idle past it: aiohttp closes
            assert await reader.read() == b""
    finally:
        writer.close()
