"""The paced-stream shortcut of the callback path gives what the general path gives.

A read that is exactly one whole chunk, while a sink is attached, skips
`Http1Response.feed` (`feed_one_chunk`, called from `Connection.buffer_updated`).
Each script of reads below is run twice, in process, through the real
connection and response: once as it is and once with the shortcut turned off,
and what the sink was handed, the errors and the state left behind must be
the same.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from ollama_gateway.http1.connection import Connection
from ollama_gateway.http1.response import Http1Response

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
    "a size that is no number": (HEAD, [b"zz\r\nhello\r\n"]),
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
