"""The paced-stream shortcuts of the callback path give what the general path gives.

A read that is exactly one whole chunk, while a sink is attached, skips
`Http1Response.feed` (`feed_one_chunk`, called from
`Connection.buffer_updated`), and a read of one event skips
`ChunkReader._convert` in `_sink` (`_convert_one`). Each script of reads
below is run twice, in process, through the real connection, response, chunk
reader, session and direct writer: once as it is and once with
the shortcut turned off, and what the sink was handed, what the client was
written, the errors and the state left behind must be the same; the lines
written must also be those the request's task reads from the same reads.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from ollama_gateway.completion import ChunkReader, _DirectWriter
from ollama_gateway.context import RequestContext
from ollama_gateway.http1.connection import Connection
from ollama_gateway.http1.response import Http1Response
from ollama_gateway.protocols import NoConfig
from ollama_gateway.schemas import ollama
from ollama_gateway.settings import Settings
from ollama_gateway_translators.openai_to_ollama import ChatResponseMapper

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def _event(content: str | None = None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class _Pool:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.keepalive = 60.0
        self.read_buffer = memoryview(bytearray(256 * 1024))

    def keepalive_for(self, key: object) -> float:
        return 60.0

    def _forget(self, conn: object) -> None:
        pass


class _Transport:
    def __init__(self) -> None:
        self.written = bytearray()

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (16 * 1024, 64 * 1024)


@dataclass
class _Seen:
    """What one run of a script left: comparable between the two paths."""

    handed: list[list[bytes]] = field(default_factory=list)  # per read
    left: bytes = b""  # bytes not handed to the sink (for `__anext__`)
    done: bool = False
    error: str = ""
    woken: int = 0
    buffered: bytes = b""  # the connection's unparsed bytes


def _connection() -> tuple[Connection, Http1Response, Callable[[bytes], None]]:
    loop = asyncio.new_event_loop()
    pool = _Pool(loop)
    conn = Connection(pool, ("backend", 1, False))  # type: ignore[arg-type]
    response = Http1Response(conn, no_body=False)
    conn.response = response

    def deliver(data: bytes) -> None:
        pool.read_buffer[: len(data)] = data
        conn.buffer_updated(len(data))

    return conn, response, deliver


def _run_transport(
    head: bytes, reads: list[bytes], detach_after: int | None = None
) -> _Seen:
    """`reads` through a connection whose answer has a sink attached that
    records each piece (and detaches after `detach_after` of them)."""
    conn, response, deliver = _connection()
    seen = _Seen()
    deliver(head)
    response._head = None  # nobody awaits it
    taken: list[bytes] = []

    def sink(piece: bytes) -> None:
        taken.append(piece)
        if detach_after is not None and len(taken) >= detach_after:
            response.detach()

    def woken() -> None:
        seen.woken += 1

    response.attach(sink)
    for data in reads:
        taken_before = len(taken)
        waiter = response._waiter = conn.loop.create_future()
        waiter.add_done_callback(lambda _: woken())
        deliver(data)
        conn.loop.run_until_complete(asyncio.sleep(0))  # run the callback
        seen.handed.append(taken[taken_before:])
    seen.left = b"".join(response._pieces)
    seen.done = response._done
    seen.error = repr(response._error)
    seen.buffered = bytes(conn._buf)
    conn.loop.close()
    return seen


@contextmanager
def _general_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The shortcut turned off; yields how often it was asked otherwise."""
    taken: list[int] = []
    original = Http1Response.feed_one_chunk

    def counted(self: Http1Response, data: bytes) -> bool:
        done = original(self, data)
        taken.append(int(done))
        return done

    with monkeypatch.context() as patch:
        patch.setattr(Http1Response, "feed_one_chunk", lambda self, data: False)
        yield taken
    monkeypatch.setattr(Http1Response, "feed_one_chunk", counted)


ONE = _frame(_event("a"))
TWO = _frame(_event("b"))
SCRIPTS: dict[str, tuple[bytes, list[bytes]]] = {
    "one chunk per read": (HEAD, [ONE, TWO, ONE, b"0\r\n\r\n"]),
    "the head and a chunk in one read": (HEAD + ONE, [TWO]),
    "two chunks in one read": (HEAD, [ONE + TWO, ONE]),
    "a chunk split across reads": (HEAD, [ONE[:5], ONE[5:], TWO[:-1], TWO[-1:]]),
    "a chunk then part of the next": (HEAD, [ONE + TWO[:3], TWO[3:], ONE]),
    "CRLF line ends in the event": (HEAD, [_frame(b"data: {}\r\n\r\n"), ONE]),
    "a chunk and the last chunk": (HEAD, [ONE + b"0\r\n\r\n"]),
    "the last chunk alone": (HEAD, [ONE, b"0\r\n\r\n"]),
    "a chunk extension": (HEAD, [b"5;x=y\r\nhello\r\n", ONE]),
    "a size line ended by a bare LF": (HEAD, [b"5\nhello\r\n", ONE]),
    "a size with spaces": (HEAD, [b" 5 \r\nhello\r\n", ONE]),
    "an upper-case size": (HEAD, [b"A\r\nhellohello\r\n", ONE]),
    "a size with leading zeros": (HEAD, [b"005\r\nhello\r\n", ONE]),
    "a size that is no number": (HEAD, [b"zz\r\nhello\r\n"]),
    "a size line with a bare CR": (HEAD, [b"5\r\r\nhello\r\n"]),
    "a chunk without its CRLF": (HEAD, [b"5\r\nhelloXY"]),
    "a chunk longer than said": (HEAD, [b"3\r\nhello\r\n"]),
    "a gzip body": (
        HEAD.replace(b"\r\n\r\n", b"\r\nContent-Encoding: gzip\r\n\r\n"),
        [_frame(gzip.compress(_event("z"))), b"0\r\n\r\n"],
    ),
}


@pytest.mark.parametrize("name", SCRIPTS)
def test_one_chunk_reads_are_handed_on_as_by_the_general_path(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    head, reads = SCRIPTS[name]
    with _general_path(monkeypatch) as taken:
        general = _run_transport(head, reads)
    shortcut = _run_transport(head, reads)
    assert shortcut == general
    if name == "one chunk per read":
        assert taken[:3] == [1, 1, 1]  # the shortcut did run


def test_a_sink_that_detaches_wakes_the_reader_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads = [ONE, TWO, ONE]
    with _general_path(monkeypatch):
        general = _run_transport(HEAD, reads, detach_after=2)
    shortcut = _run_transport(HEAD, reads, detach_after=2)
    assert shortcut == general
    assert shortcut.woken >= 1 and shortcut.left == _event("a")


# -- one event per read in the chunk reader's callback (`_sink`) ----------------

_STAMP = re.compile(rb'"created_at":"[^"]*"')
_DURATION = re.compile(rb'_duration":\d+')


def _run_reader(reads: list[bytes]) -> tuple[list[bytes], str, bool]:
    """Each read's SSE bytes through a direct reader's `_sink`: the client's
    bytes (times masked), the failure kept, and whether it stopped."""
    conn, response, deliver = _connection()
    deliver(HEAD)
    response._head = None
    ctx = RequestContext(request_id="t", endpoint="chat", model="m")
    ctx.stream = True
    ctx.upstream_sent_ns = time.perf_counter_ns()
    session = ChatResponseMapper(NoConfig(), None).open_stream(ctx)
    reader = ChunkReader(ctx, response, session, Settings.load({}), loop=conn.loop)
    transport = _Transport()
    reader._writer = _DirectWriter(
        transport,  # type: ignore[arg-type]
        lambda chunk, buffer: buffer.extend(ollama.encode(chunk) + b"\n"),
    )
    response.attach(reader._sink)
    for data in reads:
        deliver(_frame(data))
    stopped = response._sink is None
    conn.loop.close()
    return _frames(bytes(transport.written)), repr(reader._error), stopped


def _frames(written: bytes) -> list[bytes]:
    """The chunks written, each checked against its size line, with the
    times in them masked."""
    out = []
    while written:
        size, _, rest = written.partition(b"\r\n")
        length = int(size, 16)
        assert rest[length : length + 2] == b"\r\n"
        line = _STAMP.sub(b'"created_at":""', rest[:length])
        out.append(_DURATION.sub(b'_duration":0', line))
        written = rest[length + 2 :]
    return out


READER_SCRIPTS: dict[str, list[bytes]] = {
    "one event per read": [_event("a"), _event("b"), _event(finish="stop")],
    "two events in one read": [_event("a") + _event("b"), _event("c")],
    "an event split across reads": [_event("a")[:9], _event("a")[9:], _event("b")],
    "CRLF line ends": [_event("a").replace(b"\n", b"\r\n"), _event("b")],
    "the end": [_event("a"), _event(finish="stop"), b"data: [DONE]\n\n"],
    "an invalid event": [_event("a"), b"data: {nope\n\n", _event("b")],
    "a keep-alive": [b"data: \n\n", b": ping\n\n", _event("a")],
    "an error event": [_event("a"), b'data: {"error":{"message":"down"}}\n\n'],
}


@pytest.mark.parametrize("name", READER_SCRIPTS)
def test_one_event_reads_are_written_as_by_the_general_path(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = READER_SCRIPTS[name]
    shortcut = _run_reader(reads)
    with monkeypatch.context() as patch:
        patch.setattr(
            ChunkReader, "_convert_one", lambda self, payload: self._convert([payload])
        )
        general = _run_reader(reads)
    assert shortcut == general
    assert shortcut[0]  # something was written
    # And the lines are those the request's task would read, one by one,
    # from the same reads (no callback, no `_sink` at all).
    lines = [json.loads(line) for frame in shortcut[0] for line in frame.splitlines()]
    failed = shortcut[1] != "None"
    assert [(c["message"]["content"], c["done"]) for c in lines] == _task_path(
        reads, failed
    )


class _Drained(Exception):
    """The upstream has no more reads: the direct run was not ended either."""


class _Upstream:
    headers = {"Content-Type": "text/event-stream"}

    def __init__(self, reads: list[bytes]) -> None:
        self._reads = reads

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        for data in self._reads:
            yield data
        raise _Drained


def _task_path(reads: list[bytes], failed: bool) -> list[tuple[str, bool]]:
    """The (content, done) of each line `ChunkReader.read` gives for `reads`
    (up to its failure, which must come if and only if `failed`)."""
    ctx = RequestContext(request_id="t", endpoint="chat", model="m")
    ctx.stream = True
    ctx.upstream_sent_ns = time.perf_counter_ns()
    session = ChatResponseMapper(NoConfig(), None).open_stream(ctx)
    upstream = _Upstream(reads)
    out: list[tuple[str, bool]] = []
    error: BaseException | None = None

    async def run() -> None:
        reader = ChunkReader(ctx, upstream, session, Settings.load({}))  # type: ignore[arg-type]
        while (batch := await reader.read()) is not None:
            out.extend((c.message.content, c.done) for c in batch)

    try:
        asyncio.run(run())
    except Exception as exc:
        error = exc
    drained = error is not None and isinstance(error.__cause__, _Drained)
    assert failed == (error is not None and not drained), error
    return out
