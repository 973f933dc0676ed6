"""Streamed reads written from the upstream connection's callback.

After the first line, `relay` lets the gateway's own HTTP/1.1 transport hand
each upstream read to the chunk reader in the connection's callback, which
writes its lines at once (`completion._DirectWriter`). These tests check that
this path is taken, and that it keeps every rule of the task path: the
HTTP/1.0 framing, the bound on buffered bytes when the client stops reading,
timeouts, failures mid-stream and a client that leaves.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Sequence
from typing import Any

import pytest

from ollama_gateway import completion, ollama
from ollama_gateway.keys import in_flight_key
from ollama_gateway.shutdown import SHUTDOWN
from tests.fakebackend import Script, chat_chunk, sse
from tests.ndjson import CHAT, NO_RETRY, content_of, ndjson, post, read_ndjson


class DirectWrites:
    """Counts the batches written directly and the largest write buffer seen
    right after one (the client's socket buffer in the gateway)."""

    def __init__(self) -> None:
        self.calls = 0
        self.most_buffered = 0


@pytest.fixture
def direct_writes(monkeypatch: pytest.MonkeyPatch) -> DirectWrites:
    seen = DirectWrites()
    write = completion._DirectWriter.__call__

    def counted(
        self: completion._DirectWriter, batch: Sequence[ollama.ChatResponse]
    ) -> bool:
        seen.calls += 1
        taken = write(self, batch)
        buffered = self._transport.get_write_buffer_size()
        seen.most_buffered = max(seen.most_buffered, buffered)
        return taken

    monkeypatch.setattr(completion._DirectWriter, "__call__", counted)
    return seen


def _paced(count: int, **kwargs: Any) -> Script:
    pieces = [sse(chat_chunk({"content": f"{i} "}), done=False) for i in range(count)]
    return Script(pieces=[*pieces, sse(chat_chunk({}, finish="stop"))], **kwargs)


async def test_paced_reads_are_written_from_the_connection_callback(
    gateway, backend, direct_writes
):
    backend.queue(_paced(20, delay=0.01))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", CHAT)
    assert resp.status == 200
    assert resp.headers["Transfer-Encoding"] == "chunked"
    objs = await asyncio.wait_for(read_ndjson(resp), 10.0)  # a framing bug hangs
    assert content_of(objs) == "".join(f"{i} " for i in range(20))
    assert objs[-1]["done"] is True and objs[-1]["done_reason"] == "stop"
    assert not any(o.get("done") for o in objs[:-1])
    # The first line goes out through aiohttp (it sends the head); most of the
    # rest arrive one read at a time and are written directly.
    assert direct_writes.calls >= 10
    assert len(backend.completions()) == 1


async def test_a_non_stream_answer_is_never_written_directly(
    gateway, backend, direct_writes
):
    backend.queue(_paced(5, delay=0.01))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", {**CHAT, "stream": False})
    assert resp.status == 200
    body = await resp.json()
    assert body["message"]["content"] == "0 1 2 3 4 "
    assert direct_writes.calls == 0


async def _raw_exchange(client: Any, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(
        client.server.host, client.server.port
    )
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5.0)  # to EOF
    finally:
        writer.close()


async def test_an_http_10_client_gets_an_unframed_stream(
    gateway, backend, direct_writes
):
    backend.queue(_paced(8, delay=0.01))
    client = await gateway(backend)
    body = json.dumps(CHAT).encode()
    host = f"{client.server.host}:{client.server.port}"
    raw = await _raw_exchange(
        client,
        b"POST /api/chat HTTP/1.0\r\nHost: %s\r\n" % host.encode()
        + b"Content-Type: application/json\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body,
    )
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
    assert b"transfer-encoding" not in head.lower()
    objs = ndjson(payload)  # no chunk sizes between the lines
    assert content_of(objs) == "".join(f"{i} " for i in range(8))
    assert objs[-1]["done"] is True
    assert direct_writes.calls == 0


async def test_a_client_that_stops_reading_bounds_what_is_buffered(
    gateway, backend, direct_writes
):
    # 24 MiB of answer to a client that reads nothing for a while: the gateway
    # stops writing directly once the socket's buffer is over its limit, waits
    # for it to drain, and stops reading the backend meanwhile.
    word = "x" * (32 * 1024)
    pieces = [sse(chat_chunk({"content": word}), done=False) for _ in range(768)]
    backend.queue(Script(pieces=[*pieces, sse(chat_chunk({}, finish="stop"))]))
    client = await gateway(backend)
    body = json.dumps(CHAT).encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (client.server.host, client.server.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        host = f"{client.server.host}:{client.server.port}"
        writer.write(
            b"POST /api/chat HTTP/1.1\r\nHost: %s\r\n" % host.encode()
            + b"Content-Type: application/json\r\nConnection: close\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )
        await writer.drain()
        await asyncio.sleep(1.0)  # not reading
        stalled_at = direct_writes.most_buffered
        raw = await asyncio.wait_for(reader.read(), 20.0)  # now all of it
    finally:
        writer.close()
    assert direct_writes.calls > 0
    # The socket's limit (64 KiB) plus one read's lines, not the whole answer.
    assert stalled_at < 1024 * 1024
    assert direct_writes.most_buffered < 1024 * 1024
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert b"200 OK" in head
    text = payload.replace(b"\r\n", b"\n")
    assert text.count(word.encode()) == 768
    assert len(backend.completions()) == 1


async def test_idle_timeout_while_written_directly(gateway, backend, direct_writes):
    client = await gateway(backend, "[timeouts]\nidle = 0.3\n" + NO_RETRY)
    # Gaps under the idle timeout, for longer than it in all: no timeout.
    backend.queue(_paced(25, delay=0.03))
    resp = await post(client, "/api/chat", CHAT)
    objs = await read_ndjson(resp)
    assert objs[-1]["done"] is True
    assert direct_writes.calls >= 10
    # A gap over it after some direct writes: an error line.
    backend.queue(_paced(8, delay=0.02, stall_after=5, stall=2.0))
    resp = await post(client, "/api/chat", CHAT)
    objs = await read_ndjson(resp)
    assert content_of(objs) == "0 1 2 3 4 "
    assert objs[-1] == {"error": "upstream timeout"}
    assert direct_writes.calls >= 2
    assert len(backend.completions()) == 2


def _with_error_event() -> Script:
    pieces = [sse(chat_chunk({"content": f"{i} "}), done=False) for i in range(5)]
    pieces.append(sse({"error": {"message": "boom"}}, done=False))
    return Script(pieces=pieces, delay=0.02)


@pytest.mark.parametrize(
    ("script", "content", "error"),
    [
        (_with_error_event(), "0 1 2 3 4 ", "boom"),
        (
            _paced(10, delay=0.02, abort_after=6),
            "0 1 2 3 4 5 ",
            "an error was encountered while running the model: unexpected EOF",
        ),
    ],
    ids=["error-event", "upstream-breaks"],
)
async def test_a_failure_after_direct_writes_is_the_last_line(
    gateway, backend, direct_writes, script, content, error
):
    backend.queue(script)
    client = await gateway(backend, NO_RETRY)
    resp = await post(client, "/api/chat", CHAT)
    objs = await read_ndjson(resp)
    assert content_of(objs) == content
    assert objs[-1] == {"error": error}
    assert direct_writes.calls >= 2
    assert len(backend.completions()) == 1


async def _midway(gateway, backend, direct_writes) -> tuple[Any, Any]:
    """A slow stream, read until some of its lines were written directly."""
    backend.queue(_paced(40, delay=0.05))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", CHAT)
    for _ in range(4):
        json.loads(await resp.content.readline())
    assert direct_writes.calls >= 2
    return client, resp


async def test_a_client_that_leaves_while_written_directly(
    gateway, backend, direct_writes
):
    client, resp = await _midway(gateway, backend, direct_writes)
    resp.close()
    await asyncio.wait_for(backend.disconnected.wait(), 1.0)
    assert len(backend.completions()) == 1
    # The gateway serves on.
    backend.queue(Script.text("after"))
    resp = await post(client, "/api/chat", CHAT)
    assert content_of(await read_ndjson(resp)) == "after"


async def test_shutdown_while_written_directly_ends_with_an_error_line(
    gateway, backend, direct_writes
):
    client, resp = await _midway(gateway, backend, direct_writes)
    client.app[in_flight_key].end_all()  # what the grace timer does
    rest = await asyncio.wait_for(read_ndjson(resp), 5.0)
    assert rest[-1] == {"error": SHUTDOWN}
    assert not any(o.get("done") for o in rest)
    await asyncio.wait_for(backend.disconnected.wait(), 1.0)
    assert len(backend.completions()) == 1
