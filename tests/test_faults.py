"""Backend faults on a real loopback socket: each gives the status or error line
the spec requires (1.3, 3.15), never hangs, logs no unhandled error, and never
makes the backend generate a completion twice."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import pytest

from tests.fakebackend import Script, chat_chunk, split_every, sse
from tests.ndjson import CHAT, chat, content_of, ndjson, post
from tests.ops import assert_clean_log, read_metrics, refused_url

BOUND = 20.0  # seconds: generous, only against hangs

FAST_RETRY = """
[translators.retry]
base_delay = 0.01
max_delay = 0.05
"""


@pytest.fixture(autouse=True)
def _debug_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


def _content_then(*tail: bytes) -> list[bytes]:
    head = sse(
        chat_chunk({"role": "assistant", "content": ""}),
        chat_chunk({"content": "one "}),
        chat_chunk({"content": "two "}),
        done=False,
    )
    return [head, *tail]


def _error_of(raw: bytes) -> str:
    body = json.loads(raw)
    assert list(body) == ["error"], body
    assert isinstance(body["error"], str) and body["error"]
    return str(body["error"])


async def test_refused_connection_is_a_502_after_bounded_retries(gateway, caplog):
    toml = f"""
[[backends]]
name = "down"
base_url = "{refused_url()}"
models = ["m1"]
{FAST_RETRY}
"""
    client = await gateway(toml=toml)
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", chat(model="m1"))
        raw = await resp.read()
        metrics = await read_metrics(client)
    assert resp.status == 502
    assert resp.headers["Content-Type"].startswith("application/json")
    assert _error_of(raw).startswith("upstream unavailable")
    assert metrics.get("ollama_gateway_upstream_retries_total") == 2
    assert metrics.get("ollama_gateway_upstream_errors_total", kind="connect") == 1
    assert_clean_log(caplog)


async def test_reset_mid_stream_ends_with_an_error_line(gateway, backend, caplog):
    backend.queue(Script(pieces=_content_then(b"never sent"), abort_after=1))
    client = await gateway(backend)
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        objs = ndjson(await resp.read())
        metrics = await read_metrics(client)
    assert resp.status == 200
    assert content_of(objs) == "one two "
    assert set(objs[-1]) == {"error"}
    assert not any(o.get("done") for o in objs)
    assert len(backend.completions()) == 1
    assert metrics.get("ollama_gateway_upstream_errors_total", kind="protocol") == 1
    assert_clean_log(caplog)


async def test_reset_before_any_byte_is_not_sent_twice(gateway, backend, caplog):
    # The backend had the request (and may have started generating): a dropped
    # connection then is no reason to send the completion again.
    backend.queue(Script(pieces=[b"x"], abort_after=0))
    client = await gateway(backend, FAST_RETRY)
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        raw = await resp.read()
    assert resp.status == 502
    _error_of(raw)
    assert len(backend.completions()) == 1
    assert_clean_log(caplog)


async def test_reset_without_streaming_is_a_502_json_error(gateway, backend, caplog):
    backend.queue(Script(pieces=_content_then(b"never sent"), abort_after=1))
    client = await gateway(backend)
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", chat(stream=False))
        raw = await resp.read()
    assert resp.status == 502
    assert "unexpected EOF" in _error_of(raw)
    assert len(backend.completions()) == 1
    assert_clean_log(caplog)


async def test_stall_before_first_token_is_a_504(gateway, backend, caplog):
    backend.queue(Script.text("too late", first_delay=30))
    client = await gateway(backend, "[timeouts]\nfirst_token = 0.3\n")
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        raw = await resp.read()
        # The gateway hangs up, so the backend stops working on it.
        await backend.disconnected.wait()
        metrics = await read_metrics(client)
    assert resp.status == 504
    assert _error_of(raw) == "upstream timeout"
    assert len(backend.completions()) == 1
    assert metrics.get("ollama_gateway_upstream_errors_total", kind="timeout") == 1
    assert_clean_log(caplog)


async def test_stall_after_headers_before_first_chunk_is_a_504(
    gateway, backend, caplog
):
    backend.queue(Script(pieces=[b"", *_content_then()], delay=30))
    client = await gateway(backend, "[timeouts]\nfirst_token = 0.3\n")
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        raw = await resp.read()
    assert resp.status == 504
    assert _error_of(raw) == "upstream timeout"
    assert len(backend.completions()) == 1
    assert_clean_log(caplog)


async def test_stall_between_chunks_ends_with_an_error_line(gateway, backend, caplog):
    backend.queue(Script(pieces=_content_then(b"data: late\n\n"), delay=30))
    client = await gateway(backend, "[timeouts]\nidle = 0.3\n")
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        objs = ndjson(await resp.read())
        await backend.disconnected.wait()
    assert resp.status == 200
    assert content_of(objs) == "one two "
    assert objs[-1] == {"error": "upstream timeout"}
    assert len(backend.completions()) == 1
    assert_clean_log(caplog)


async def test_total_timeout_ends_a_long_stream(gateway, backend, caplog):
    words = " ".join(f"w{i}" for i in range(200))
    backend.queue(Script.text(words, split=400, delay=0.05))
    client = await gateway(backend, "[timeouts]\ntotal = 0.5\nidle = 10\n")
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        objs = ndjson(await resp.read())
    assert resp.status == 200
    assert objs[-1] == {"error": "upstream timeout"}
    assert len(objs) > 1
    assert len(backend.completions()) == 1
    assert_clean_log(caplog)


async def test_429_with_retry_after_then_200_retries_once(gateway, backend, caplog):
    backend.queue(
        Script.error(429, "slow down", headers={"Retry-After": "0"}),
        Script.text("the one answer"),
    )
    client = await gateway(backend)
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        objs = ndjson(await resp.read())
        metrics = await read_metrics(client)
    assert resp.status == 200
    assert content_of(objs) == "the one answer"
    assert objs[-1]["done"] is True
    assert len(backend.completions()) == 2  # the refused one and the answer
    assert metrics.get("ollama_gateway_upstream_retries_total") == 1
    assert_clean_log(caplog)


async def test_500_is_passed_on_as_500_without_retry(gateway, backend, caplog):
    backend.queue(Script.error(500, "the model crashed"))
    client = await gateway(backend)
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        raw = await resp.read()
        metrics = await read_metrics(client)
    assert resp.status == 500
    assert _error_of(raw) == "the model crashed"
    assert len(backend.completions()) == 1
    assert metrics.get("ollama_gateway_upstream_errors_total", kind="status") == 1
    assert metrics.get("ollama_gateway_upstream_retries_total") == 0
    assert_clean_log(caplog)


async def test_malformed_sse_before_output_is_a_502(gateway, backend, caplog):
    backend.queue(Script(pieces=[b'data: {"choices": [nope\n\n']))
    client = await gateway(backend)
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        raw = await resp.read()
        metrics = await read_metrics(client)
    assert resp.status == 502
    assert "invalid event" in _error_of(raw)
    assert len(backend.completions()) == 1
    assert metrics.get("ollama_gateway_upstream_errors_total", kind="protocol") == 1
    assert_clean_log(caplog)


async def test_malformed_sse_after_output_is_an_error_line(gateway, backend, caplog):
    backend.queue(Script(pieces=_content_then(b"data: {oops\n\n"), delay=0.05))
    client = await gateway(backend)
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        objs = ndjson(await resp.read())
    assert resp.status == 200
    assert content_of(objs) == "one two "
    assert "invalid event" in objs[-1]["error"]
    assert len(backend.completions()) == 1
    assert_clean_log(caplog)


@pytest.mark.parametrize("split", [None, 1000], ids=["one-read", "in-pieces"])
async def test_event_over_the_cap_is_a_502(gateway, backend, caplog, split):
    big = sse(chat_chunk({"content": "x" * 8000}))
    pieces = split_every(big, split) if split else [big]
    backend.queue(Script(pieces=pieces))
    client = await gateway(backend, "[limits]\nmax_event_bytes = 4096\n")
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        raw = await resp.read()
    assert resp.status == 502
    assert "larger than 4096 bytes" in _error_of(raw)
    assert len(backend.completions()) == 1
    assert_clean_log(caplog)


async def test_event_over_the_cap_after_output_is_an_error_line(
    gateway, backend, caplog
):
    big = sse(chat_chunk({"content": "x" * 8000}), done=False)
    backend.queue(Script(pieces=_content_then(big), delay=0.05))
    client = await gateway(backend, "[limits]\nmax_event_bytes = 4096\n")
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        objs = ndjson(await resp.read())
    assert content_of(objs) == "one two "
    assert "larger than 4096 bytes" in objs[-1]["error"]
    assert "x" * 100 not in json.dumps(objs)
    assert_clean_log(caplog)


async def test_client_disconnect_closes_upstream_and_is_counted(
    gateway, backend, caplog
):
    backend.queue(Script(pieces=_content_then(*[b": ping\n\n"] * 50), delay=0.1))
    client = await gateway(backend)
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        assert resp.status == 200
        await resp.content.readline()
        resp.close()
        await backend.disconnected.wait()
        for _ in range(100):
            metrics = await read_metrics(client)
            if metrics.get("ollama_gateway_client_disconnects_total"):
                break
            await asyncio.sleep(0.05)
    assert metrics.get("ollama_gateway_client_disconnects_total") == 1
    assert metrics.get("ollama_gateway_streams_in_flight") == 0
    assert len(backend.completions()) == 1
    assert_clean_log(caplog)


class RawBackend:
    """A backend on a raw loopback socket that reads each request (head and
    body), counts it, and hands the writer to `answer`, which misbehaves.
    `closed` is set when the gateway closes the connection."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.requests = 0
        self.closed = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        self.requests += 1
        try:
            await self.answer(reader, writer)
        except ConnectionError:
            self.closed.set()
        finally:
            writer.close()

    async def aclose(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Close without a byte of answer."""


async def test_hang_up_after_the_request_arrived_is_not_retried(gateway, caplog):
    hangup = RawBackend(_hang_up)
    url = await hangup.start()
    toml = f"""
[[backends]]
name = "flaky"
base_url = "{url}"
models = ["m1"]
{FAST_RETRY}
"""
    try:
        client = await gateway(toml=toml)
        async with asyncio.timeout(BOUND):
            resp = await post(client, "/api/chat", chat(model="m1"))
            raw = await resp.read()
    finally:
        await hangup.aclose()
    assert resp.status == 502
    _error_of(raw)
    # The backend got the completion once; it may be generating it already.
    assert hangup.requests == 1
    assert_clean_log(caplog)


DEEP = 100_000  # far past any recursion limit


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", b'{"model":"m1","format":' + b"[" * DEEP + b"]" * DEEP + b"}"),
        ("/api/generate", b'{"model":"m1","options":' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}"),
        ("/api/embed", b'{"model":"m1","input":' + b"[" * DEEP + b"]" * DEEP + b"}"),
        ("/api/show", b'{"model":"m1","x":' + b"[" * DEEP + b"]" * DEEP + b"}"),
        # A null model first: the retry that reads it as "" meets the depth.
        ("/api/chat", b'{"model":null,"format":' + b"[" * DEEP + b"]" * DEEP + b"}"),
        ("/v1/chat/completions", b'{"model":"m1","x":' + b"[" * DEEP + b"]" * DEEP + b"}"),
    ],
)  # fmt: skip
async def test_deeply_nested_json_is_a_400_not_a_500(
    gateway, backend, caplog, path, body
):
    client = await gateway(backend)
    async with asyncio.timeout(BOUND):
        resp = await post(client, path, body)
        raw = await resp.read()
    assert resp.status == 400, raw
    assert "error" in json.loads(raw)  # Ollama's string, or OpenAI's object on /v1
    assert b"exceeded max depth" in raw
    assert backend.completions() == []
    assert_clean_log(caplog)


@pytest.mark.parametrize("path", ["/api/chat", "/api/embed", "/v1/chat/completions"])
async def test_a_body_that_does_not_decode_is_a_400_not_a_500(
    gateway, backend, caplog, path
):
    """`Content-Encoding: gzip` on a body that is not gzip: the client's
    mistake, answered as one, with nothing logged as an unhandled error."""
    client = await gateway(backend)
    async with asyncio.timeout(BOUND):
        resp = await client.post(
            path,
            data=json.dumps(chat()).encode(),
            headers={"Content-Encoding": "gzip"},
        )
        raw = await resp.read()
        # The gateway serves on afterwards.
        again = await post(client, "/api/chat", chat(stream=False))
        assert again.status == 200
    assert resp.status == 400, raw
    assert b"content-encoding" in raw.lower()
    error = json.loads(raw)["error"]
    if path.startswith("/api"):
        assert error == "invalid request body: Can not decode content-encoding: gzip"
    assert len(backend.completions()) == 1
    assert_clean_log(caplog)


def _raw_toml(url: str, extra: str = "") -> str:
    return f"""
[[backends]]
name = "raw"
base_url = "{url}"
models = ["m1"]
{FAST_RETRY}
{extra}
"""


async def _endless_json(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """A 200 JSON answer whose body never ends (spaces, as fast as read)."""
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"%x\r\n" % 65536 + b" " * 65536 + b"\r\n"
    for _ in range(100_000):  # 6.5 GB at most: far past any limit
        writer.write(piece)
        await writer.drain()
    raise AssertionError("the gateway read 6.5 GB of one answer")


@pytest.mark.parametrize("path", ["/api/embed", "/api/embeddings"])
async def test_an_endless_embeddings_answer_is_bounded(gateway, caplog, path):
    """An embeddings answer is read whole, so it is bounded (as one SSE event
    is): past `limits.max_answer_bytes` it is a 502 at once, the backend's
    connection is closed, and the gateway did not buffer it until the
    first-token timeout (gigabytes, at loopback speed)."""
    raw = RawBackend(_endless_json)
    url = await raw.start()
    toml = _raw_toml(
        url, "[limits]\nmax_answer_bytes = 1048576\n[timeouts]\nfirst_token = 60"
    )
    try:
        client = await gateway(toml=toml)
        body = {"model": "m1", "input": "x", "prompt": "x"}
        async with asyncio.timeout(10):
            resp = await post(client, path, body)
            raw_body = await resp.read()
            await raw.closed.wait()
    finally:
        await raw.aclose()
    assert resp.status == 502, raw_body
    assert "larger than 1048576 bytes" in _error_of(raw_body)
    assert raw.requests == 1
    assert_clean_log(caplog)


async def test_a_client_that_pauses_reading_does_not_time_out_the_backend(
    gateway, backend, caplog
):
    """While the client does not read, the gateway stops reading the backend
    (backpressure); that pause is the client's, not an idle backend's: the
    stream resumes whole when the client reads again, however long it paused,
    instead of ending with "upstream timeout" and the backend's answer lost."""
    word = "w" * 1000
    event = sse(chat_chunk({"content": word}), done=False)
    pieces = [event * 64] * 200  # 12,800 lines of 1 KB: more than socket buffers
    backend.queue(Script(pieces=[*pieces, sse(chat_chunk({}, finish="stop"))]))
    client = await gateway(backend, "[timeouts]\nidle = 0.5")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", client.port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    body = json.dumps(chat()).encode()
    writer.write(
        b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )
    try:
        async with asyncio.timeout(BOUND):
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(2.0)  # four idle timeouts without reading
            raw = await reader.read()
    finally:
        writer.close()
    lines = [line for line in raw.split(b"\r\n") if line.startswith(b"{")]
    last = json.loads(lines[-1].split(b"\n")[-2])
    assert last.get("done") is True, last
    assert len(backend.completions()) == 1
    assert_clean_log(caplog)


_V1_EVENTS = [
    sse(chat_chunk({"content": "one "}), done=False),
    sse(chat_chunk({"content": "two "}), done=False),
    sse(chat_chunk({}, finish="stop"), done=False),
    b"data: [DONE]\n\n",
]


def _v1_answer(head: bytes, body: bytes, then: str) -> Any:
    async def answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" + head)
        writer.write(body)
        await writer.drain()
        await asyncio.sleep(0.05)
        if then == "reset":
            writer.transport.abort()
        elif then == "close":
            writer.close()

    return answer


def _chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in pieces)


async def _v1_stream_from(gateway: Any, raw: RawBackend) -> bytes:
    """A `/v1` stream through the gateway from `raw`: its 200 body (the
    read's error if it fails); the backend got the request once."""
    url = await raw.start()
    try:
        client = await gateway(toml=_raw_toml(url))
        body = {"model": "m1", "messages": [{"role": "user", "content": "x"}]}
        async with asyncio.timeout(BOUND):
            resp = await post(client, "/v1/chat/completions", {**body, "stream": True})
            assert resp.status == 200
            try:
                return bytes(await resp.read())
            finally:
                assert raw.requests == 1
    finally:
        await raw.aclose()


CUT = _V1_EVENTS[0] + _V1_EVENTS[1][:20]  # ends inside the second event


@pytest.mark.parametrize(
    "answer",
    [
        # Content-Length says the body ends there (a proxy that cut it, say).
        _v1_answer(b"Content-Length: %d\r\n\r\n" % len(CUT), CUT, "keep"),
        # No framing: the body ends with the connection.
        _v1_answer(b"\r\n", CUT, "close"),
    ],
    ids=["content-length", "until-close"],
)
async def test_a_v1_stream_whose_body_ends_inside_an_event_is_not_ended_cleanly(
    gateway, caplog, answer
):
    """An SSE body that ends (by its framing) in the middle of an event is a
    cut answer: the client's connection is dropped, as for a lost backend,
    rather than a clean end after half an event."""
    import aiohttp

    with pytest.raises(aiohttp.ClientPayloadError):
        await _v1_stream_from(gateway, RawBackend(answer))
    assert_clean_log(caplog)


@pytest.mark.parametrize("then", ["reset", "close"])
async def test_a_v1_stream_lost_after_done_ends_cleanly(gateway, caplog, then):
    """A backend lost after `data: [DONE]` but before the end of its chunked
    body gave the whole answer: the client's stream ends with `[DONE]`, with
    no error event after it (the Ollama endpoints end normally too)."""
    head = b"Transfer-Encoding: chunked\r\n\r\n"
    raw = RawBackend(_v1_answer(head, _chunked(*_V1_EVENTS), then))
    data = await _v1_stream_from(gateway, raw)
    assert data == b"".join(_V1_EVENTS), data[-200:]
    assert_clean_log(caplog)


@pytest.mark.parametrize("end", [b"\r\n", b"\r"], ids=["crlf", "cr"])
async def test_a_v1_stream_in_one_byte_pieces_ends_cleanly(gateway, caplog, end):
    """Where events end is seen across pieces, whatever the line endings: a
    whole stream whose backend writes a byte at a time is relayed whole."""
    stream = b"".join(_V1_EVENTS).replace(b"\n", end)

    async def answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for byte in stream:
            writer.write(_chunked(bytes([byte])))
            await writer.drain()
            await asyncio.sleep(0)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    assert await _v1_stream_from(gateway, RawBackend(answer)) == stream
    assert_clean_log(caplog)


@pytest.mark.parametrize(
    ("stream", "expected"),
    [(True, "text/event-stream"), (False, "application/json")],
)
async def test_a_v1_answer_without_a_type_is_labelled_as_what_was_asked(
    gateway, caplog, stream, expected
):
    """A backend that sends no Content-Type: the client gets the type of what
    it asked for, since OpenAI's clients choose their parser by it."""
    body = b"".join(_V1_EVENTS) if stream else b'{"id": "x", "choices": []}'

    async def answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        writer.write(body)
        await writer.drain()

    raw = RawBackend(answer)
    url = await raw.start()
    try:
        client = await gateway(toml=_raw_toml(url))
        request = {"model": "m1", "messages": [{"role": "user", "content": "x"}]}
        async with asyncio.timeout(BOUND):
            resp = await post(
                client, "/v1/chat/completions", {**request, "stream": stream}
            )
            data = await resp.read()
    finally:
        await raw.aclose()
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith(expected)
    assert data == body
    assert_clean_log(caplog)
