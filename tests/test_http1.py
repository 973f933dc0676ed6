"""`ollama_gateway.http1` on real loopback sockets, against a raw asyncio server.

The server records every request it reads (request line, headers, body by
Content-Length) and answers with scripted raw bytes, written in scripted pieces
with a short pause between them, so that each piece reaches the client in its
own socket read: responses are split at awkward places (byte by byte, inside a
chunk-size line, between "\\r" and "\\n").
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import socket
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field

import pytest

from ollama_gateway import http1
from ollama_gateway.errors import (
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from ollama_gateway.http1 import (
    HIGH_WATER,
    UNEXPECTED_EOF,
    Headers,
    Http1Pool,
    Http1Response,
)

BEFORE_ANSWER = "upstream failed before answering"
# Every test body runs under this bound: nothing here may hang.
LIMIT = 5.0


# -- the raw server -------------------------------------------------------------


@dataclass
class Reply:
    """What the server writes for one request."""

    pieces: Sequence[bytes] = ()
    gap: float = 0.001  # pause between pieces: each arrives in its own read
    close: bool = False  # close the connection once written
    close_when: asyncio.Event | None = None  # or close it later, when this is set


@dataclass
class Seen:
    """One request as the server read it."""

    conn: int
    request_line: str
    headers: list[tuple[str, str]]
    body: bytes

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class RawServer:
    port: int = 0
    replies: deque[Reply] = field(default_factory=deque)
    requests: list[Seen] = field(default_factory=list)
    # One event per accepted connection: the client closed its side (EOF).
    eof: list[asyncio.Event] = field(default_factory=list)
    # One event per accepted connection: the server closed it on a script's order.
    server_closed: list[asyncio.Event] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def connections(self) -> int:
        return len(self.eof)

    def url(self, path: str = "/v1", userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        index = len(self.eof)
        eof, closed = asyncio.Event(), asyncio.Event()
        self.eof.append(eof)
        self.server_closed.append(closed)
        try:
            await self._serve(index, reader, writer, eof, closed)
        except asyncio.CancelledError:
            pass  # stopped at teardown: not an error of the connection's task
        finally:
            writer.close()

    async def _serve(
        self,
        index: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        eof: asyncio.Event,
        closed: asyncio.Event,
    ) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                eof.set()
                return
            lines = head[:-4].decode("latin-1").split("\r\n")
            headers = []
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers.append((name, value.strip()))
            length = sum(int(v) for k, v in headers if k.lower() == "content-length")
            try:
                body = await reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError):
                eof.set()
                return
            self.requests.append(Seen(index, lines[0], headers, body))
            # No scripted reply left: never answer, just wait for the EOF.
            reply = self.replies.popleft() if self.replies else Reply()
            try:
                for i, piece in enumerate(reply.pieces):
                    if i:
                        await asyncio.sleep(reply.gap)
                    writer.write(piece)
                    await writer.drain()
            except ConnectionError:
                eof.set()
                return
            if reply.close_when is not None:
                await reply.close_when.wait()
            if reply.close or reply.close_when is not None:
                writer.close()
                with suppress(ConnectionError):
                    await writer.wait_closed()
                closed.set()
                return


class Servers:
    """Starts raw servers and stops them all at teardown."""

    def __init__(self) -> None:
        self._started: list[RawServer] = []

    async def __call__(self, *replies: Reply) -> RawServer:
        server = RawServer(replies=deque(replies))
        await server.start()
        self._started.append(server)
        return server

    async def stop(self) -> None:
        for server in self._started:
            await server.stop()


class Pools:
    """Makes pools (in the running loop) and closes them all at teardown."""

    def __init__(self) -> None:
        self._made: list[Http1Pool] = []

    def __call__(self, keepalive: float | None = None) -> Http1Pool:
        pool = Http1Pool() if keepalive is None else Http1Pool(keepalive=keepalive)
        self._made.append(pool)
        return pool

    async def aclose(self) -> None:
        for pool in self._made:
            await pool.aclose()


@pytest.fixture
async def serve() -> AsyncIterator[Servers]:
    servers = Servers()
    yield servers
    async with asyncio.timeout(LIMIT):
        await servers.stop()


@pytest.fixture
async def make_pool() -> AsyncIterator[Pools]:
    pools = Pools()
    yield pools
    async with asyncio.timeout(LIMIT):
        await pools.aclose()


@pytest.fixture
async def pool(make_pool: Pools) -> Http1Pool:
    return make_pool()  # in the test's running loop


# -- helpers --------------------------------------------------------------------


def ok(body: bytes = b"ok", *headers: str, status: str = "200 OK") -> bytes:
    """A complete HTTP/1.1 answer with a Content-Length."""
    head = "".join(f"{h}\r\n" for h in headers)
    return (
        f"HTTP/1.1 {status}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
CLOSED_BEFORE_ANSWER = f"{BEFORE_ANSWER}: the connection was closed"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def post(
    pool: Http1Pool,
    server: RawServer,
    body: bytes = b"{}",
    *,
    headers: Mapping[str, str] | None = None,
    path: str = "/chat/completions",
    method: str = "POST",
    base_url: str | None = None,
) -> Http1Response:
    return await pool.request(
        method,
        base_url or server.url(),
        path,
        headers if headers is not None else {"Content-Type": "application/json"},
        body,
        connect_timeout=LIMIT,
    )


async def read_all(resp: Http1Response) -> list[bytes]:
    pieces = [piece async for piece in resp.aiter_bytes()]
    await resp.aclose()
    assert all(pieces), "an empty piece was yielded"
    return pieces


async def read_body(resp: Http1Response) -> bytes:
    """The whole body, read piece by piece as `read_all` does."""
    return b"".join(await read_all(resp))


async def read_until_error(resp: Http1Response) -> tuple[bytes, UpstreamProtocolError]:
    got: list[bytes] = []
    with pytest.raises(UpstreamProtocolError) as info:
        async for piece in resp:
            got.append(piece)
    await resp.aclose()
    return b"".join(got), info.value


async def wait_until(check: Callable[[], bool], limit: float = 2.0) -> None:
    async with asyncio.timeout(limit):
        while not check():  # noqa: ASYNC110 - polls client state, no event for it
            await asyncio.sleep(0.001)


async def client_closed(server: RawServer, index: int = 0) -> None:
    """Wait until the client closed connection `index` (the server read its EOF)."""
    async with asyncio.timeout(1):
        await server.eof[index].wait()


async def fails_before_answering(
    pool: Http1Pool,
    server: RawServer,
    body: bytes = b"{}",
    *,
    headers: Mapping[str, str] | None = None,
) -> str:
    """Post a request that must fail before any answer: the error's message."""
    with pytest.raises(UpstreamProtocolError) as info:
        await post(pool, server, body, headers=headers)
    return info.value.message


async def assert_next_answer(
    pool: Http1Pool, server: RawServer, answer: bytes, body: bytes = b"{}"
) -> None:
    """Script `answer` as the server's next reply, post `body`, read it back."""
    server.replies.append(Reply([ok(answer)]))
    resp = await post(pool, server, body)
    assert await resp.aread() == answer
    await resp.aclose()


async def assert_next_request_reuses_the_connection(
    pool: Http1Pool, server: RawServer, answer: bytes
) -> None:
    """The first answer was consumed exactly: the next one comes on its connection."""
    await assert_next_answer(pool, server, answer)
    assert server.connections == 1


async def assert_next_request_opens_a_new_connection(
    pool: Http1Pool, server: RawServer, answer: bytes, *, closed_by_server: bool = False
) -> None:
    """The first connection was closed, not pooled (by the client, unless
    `closed_by_server`): the next request opens a second one."""
    if closed_by_server:
        async with asyncio.timeout(1):
            await server.server_closed[0].wait()
    else:
        await client_closed(server)
    await assert_next_answer(pool, server, answer)
    assert server.connections == 2


# -- bodies -----------------------------------------------------------------------


async def test_content_length_body(pool: Http1Pool, serve: Servers) -> None:
    async with asyncio.timeout(LIMIT):
        body = b'{"id": "x", "text": "hello"}'
        server = await serve(Reply([ok(body, "Content-Type: application/json")]))
        resp = await post(pool, server)
        assert resp.status == 200
        assert resp.reason == "OK"
        assert resp.headers["content-type"] == "application/json"
        assert resp.headers["Content-Length"] == str(len(body))
        assert await resp.aread() == body
        await resp.aclose()


async def test_content_length_body_in_pieces(pool: Http1Pool, serve: Servers) -> None:
    async with asyncio.timeout(LIMIT):
        raw = ok(b"0123456789" * 3)
        head_end = raw.index(b"\r\n\r\n") + 4
        pieces = [raw[:head_end], raw[head_end : head_end + 7], raw[head_end + 7 :]]
        server = await serve(Reply(pieces, gap=0.01))
        got = await read_all(await post(pool, server))
        assert b"".join(got) == b"0123456789" * 3
        assert len(got) >= 2  # handed over as it arrived, not at the end


async def test_ready_says_whether_the_next_read_waits(
    pool: Http1Pool, serve: Servers
) -> None:
    async with asyncio.timeout(LIMIT):
        pieces = [CHUNKED_HEAD + chunk(b"one"), chunk(b"two") + b"0\r\n\r\n"]
        server = await serve(Reply(pieces, gap=0.05))
        resp = await post(pool, server)
        body = resp.aiter_bytes()
        assert await anext(body) == b"one"
        assert not resp.ready()  # "two" is 50 ms away
        assert await anext(body) == b"two"
        assert resp.ready()  # the end came with it: the next read raises at once
        with pytest.raises(StopAsyncIteration):
            await anext(body)
        await resp.aclose()


async def test_chunked_body_extensions_and_trailers(
    pool: Http1Pool, serve: Servers
) -> None:
    async with asyncio.timeout(LIMIT):
        raw = (
            CHUNKED_HEAD
            + b"5;a=b\r\nhello\r\n"
            + b'2;name="quoted;value"\r\n, \r\n'
            + b"A\r\n0123456789\r\n"
            + b"0;last=1\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n"
        )
        server = await serve(Reply([raw]))
        resp = await post(pool, server)
        assert resp.headers["transfer-encoding"] == "chunked"
        assert await read_body(resp) == b"hello, 0123456789"
        # Trailers are consumed: the connection is clean and is reused.
        await assert_next_request_reuses_the_connection(pool, server, b"again")


async def test_chunked_body_in_separate_reads(pool: Http1Pool, serve: Servers) -> None:
    async with asyncio.timeout(LIMIT):
        pieces = [
            CHUNKED_HEAD,
            chunk(b"one"),
            chunk(b"two"),
            chunk(b"three"),
            b"0\r\n\r\n",
        ]
        server = await serve(Reply(pieces, gap=0.01))
        got = await read_all(await post(pool, server))
        assert b"".join(got) == b"onetwothree"
        assert got == [b"one", b"two", b"three"]  # one piece per socket read


HEX_DATA = bytes(range(256)) * 2
GZIP_STREAM = b"data: " + b"z" * 3000 + b"\n\n"
GZIP_PACKED = gzip.compress(GZIP_STREAM)
DEFLATED = b"deflated " * 100
_RAW = zlib.compressobj(wbits=-zlib.MAX_WBITS)
RAW_DEFLATED = _RAW.compress(DEFLATED) + _RAW.flush()
GZIP_MEMBER_2 = gzip.compress(b"second member")
GZIP_MEMBERS = gzip.compress(b"first member, ") + GZIP_MEMBER_2


@pytest.mark.parametrize(
    ("reply", "body"),
    [
        pytest.param(
            Reply(
                [
                    CHUNKED_HEAD
                    + b"1FF\r\n"
                    + HEX_DATA[:511]
                    + b"\r\n"
                    + chunk(HEX_DATA[511:])
                    + b"0\r\n\r\n"
                ]
            ),
            HEX_DATA,
            id="chunked-uppercase-hex-size",
        ),
        pytest.param(
            Reply(
                [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nab", b"cd"],
                close=True,
            ),
            b"abcd",
            id="transfer-encoding-other-than-chunked-is-close-delimited",
        ),
        pytest.param(
            Reply(
                [
                    b"HTTP/1.1 200 OK\r\nContent-Encoding: x-gzip\r\n"
                    + b"Transfer-Encoding: chunked\r\n\r\n",
                    chunk(GZIP_PACKED[:10]),
                    chunk(GZIP_PACKED[10:]),
                    b"0\r\n\r\n",
                ]
            ),
            GZIP_STREAM,
            id="gzip-chunked-body-is-decoded",
        ),
        pytest.param(
            Reply([ok(zlib.compress(DEFLATED), "Content-Encoding: deflate")]),
            DEFLATED,
            id="deflate-content-encoding-is-decoded",
        ),
        pytest.param(
            Reply([ok(RAW_DEFLATED, "Content-Encoding: deflate")]),
            DEFLATED,
            id="raw-deflate-without-zlib-wrapper-is-decoded",
        ),
        pytest.param(
            Reply(
                [
                    ok(GZIP_MEMBERS, "Content-Encoding: gzip")[: -len(GZIP_MEMBER_2)],
                    GZIP_MEMBER_2,
                ]
            ),
            b"first member, second member",
            id="gzip-members-in-separate-reads-are-all-decoded",
        ),
        pytest.param(
            Reply(
                [
                    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                    + b"Transfer-Encoding: chunked\r\n\r\n"
                    + chunk(GZIP_MEMBERS[:5])
                    + chunk(GZIP_MEMBERS[5:])
                    + b"0\r\n\r\n"
                ]
            ),
            b"first member, second member",
            id="gzip-members-with-the-last-chunk-in-one-read",
        ),
        pytest.param(
            Reply([ok(b"", "Content-Encoding: gzip")]),
            b"",
            id="empty-gzip-body",
        ),
        pytest.param(
            Reply(
                [
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"
                    + b"abcde"
                ]
            ),
            b"abcde",
            id="repeated-equal-content-length-is-accepted",
        ),
    ],
)
async def test_body_is_framed_and_decoded(
    pool: Http1Pool, serve: Servers, reply: Reply, body: bytes
) -> None:
    async with asyncio.timeout(LIMIT):
        server = await serve(reply)
        assert await read_body(await post(pool, server)) == body


CHUNKED_RAW = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"5;a=b\r\nhello\r\n"
    + b"1\r\n,\r\n"
    + b"10\r\n world, again!!!\r\n"
    + b"0\r\nX-Trailer: yes\r\n\r\n"
)
CHUNKED_BODY = b"hello, world, again!!!"
INTERIM_RAW = (
    b"HTTP/1.1 100 Continue\r\n\r\n"
    + b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n"
    + CHUNKED_RAW
)


@pytest.mark.parametrize("raw", [CHUNKED_RAW, INTERIM_RAW], ids=["chunked", "interim"])
async def test_chunked_split_at_every_byte_boundary(
    pool: Http1Pool, serve: Servers, raw: bytes
) -> None:
    """The same body whatever the split: in the status line, in a header, in a
    chunk-size line, between "\\r" and "\\n", inside the trailers."""
    async with asyncio.timeout(LIMIT):
        cuts = range(1, len(raw))
        server = await serve(*(Reply([raw[:i], raw[i:]]) for i in cuts))
        for i in cuts:
            resp = await post(pool, server, b"%d" % i)
            assert resp.status == 200, i
            assert resp.headers["content-type"] == "text/plain", i
            assert "link" not in resp.headers, i
            assert await read_body(resp) == CHUNKED_BODY, i
        # Every answer was consumed exactly: one connection served them all.
        assert server.connections == 1
        assert [r.body for r in server.requests] == [b"%d" % i for i in cuts]


async def test_chunked_byte_by_byte(pool: Http1Pool, serve: Servers) -> None:
    async with asyncio.timeout(LIMIT):
        pieces = [CHUNKED_RAW[i : i + 1] for i in range(len(CHUNKED_RAW))]
        server = await serve(Reply(pieces, gap=0.0005))
        got = await read_all(await post(pool, server))
        assert b"".join(got) == CHUNKED_BODY
        assert len(got) > 1
        await assert_next_request_reuses_the_connection(pool, server, b"after")


@pytest.mark.parametrize("split", [False, True], ids=["together", "apart"])
async def test_interim_response_then_the_answer(
    pool: Http1Pool, serve: Servers, split: bool
) -> None:
    async with asyncio.timeout(LIMIT):
        interim = b"HTTP/1.1 100 Continue\r\n\r\n"
        final = ok(b"real", "X-Final: 1", status="201 Created")
        server = await serve(Reply([interim, final] if split else [interim + final]))
        resp = await post(pool, server)
        assert resp.status == 201
        assert resp.reason == "Created"
        assert resp.headers["x-final"] == "1"
        assert await read_body(resp) == b"real"


LF_HEADS = {
    "all-lf": b"HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 5\n\nhello",
    "crlf-status-lf-fields": (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\nContent-Length: 5\r\n\r\nhello"
    ),
    # The body's CRLF CRLF is no end of the head: the bare-LF one came first.
    "lf-head-crlf-body": (
        b"HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 14\n\n"
        + b"data: a\r\n\r\nxyz"
    ),
    "lf-interim-then-lf-answer": (
        b"HTTP/1.1 100 Continue\n\n"
        + b"HTTP/1.1 200 OK\nContent-Type: text/plain\nTransfer-Encoding: chunked\n\n"
        + b"2\nhe\n3\nllo\n0\n\n"
    ),
}


@pytest.mark.parametrize("raw", LF_HEADS.values(), ids=LF_HEADS.keys())
async def test_head_with_bare_lf_line_ends(
    pool: Http1Pool, serve: Servers, raw: bytes
) -> None:
    """RFC 9112 2.2: a recipient may take a bare LF as a line's end. Such a
    head was never found (the request waited for its first-token timeout),
    and a CRLF CRLF in the body was taken for its end."""
    async with asyncio.timeout(LIMIT):
        cuts = range(1, len(raw))
        server = await serve(*(Reply([raw[:i], raw[i:]]) for i in cuts))
        expected = b"data: a\r\n\r\nxyz" if b"xyz" in raw else b"hello"
        for i in cuts:
            resp = await post(pool, server, b"%d" % i)
            assert resp.status == 200, i
            assert resp.headers["content-type"] == "text/plain", i
            assert await read_body(resp) == expected, i
        assert server.connections == 1  # each consumed exactly


async def test_switching_protocols_unasked_fails_before_answering(
    pool: Http1Pool, serve: Servers
) -> None:
    """A 101 is no interim answer to wait past: the connection speaks
    something else after it (and we never ask for an Upgrade)."""
    async with asyncio.timeout(LIMIT):
        raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n" + ok(b"x")
        server = await serve(Reply([raw]))
        message = await fails_before_answering(pool, server)
        assert message == f"{BEFORE_ANSWER}: the server switched protocols unasked"
        await client_closed(server)


async def test_204_has_no_body_and_keeps_the_connection(
    pool: Http1Pool, serve: Servers
) -> None:
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([b"HTTP/1.1 204 No Content\r\nX-Id: 1\r\n\r\n"]))
        resp = await post(pool, server)
        assert resp.status == 204
        assert await read_all(resp) == []
        await assert_next_request_reuses_the_connection(pool, server, b"second")


@pytest.mark.parametrize(
    ("reply", "status", "body"),
    [
        (Reply([b"HTTP/1.1 204 No Content\r\n\r\n"]), 204, b""),
        (
            Reply([b"HTTP/1.0 200 OK\r\n\r\n", b"until close"], close=True),
            200,
            b"until close",
        ),
    ],
    ids=["204", "close-delimited"],
)
async def test_answer_with_no_header_lines(
    pool: Http1Pool, serve: Servers, reply: Reply, status: int, body: bytes
) -> None:
    """A status line straight followed by the blank line is a valid answer
    (RFC 9112: zero or more field lines)."""
    async with asyncio.timeout(LIMIT):
        server = await serve(reply)
        resp = await post(pool, server)
        assert resp.status == status
        assert len(resp.headers) == 0
        assert await read_body(resp) == body


async def test_head_request_has_no_body(pool: Http1Pool, serve: Servers) -> None:
    async with asyncio.timeout(LIMIT):
        head_only = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
        server = await serve(Reply([head_only]))
        resp = await post(pool, server, b"", method="HEAD")
        assert resp.headers["content-length"] == "1234"
        assert await read_all(resp) == []
        assert server.requests[0].request_line == "HEAD /v1/chat/completions HTTP/1.1"
        assert server.requests[0].values("content-length") == []
        await assert_next_request_reuses_the_connection(pool, server, b"x")


async def test_gzip_content_encoding_is_decoded(
    pool: Http1Pool, serve: Servers
) -> None:
    async with asyncio.timeout(LIMIT):
        body = b'{"choices": [{"text": "compressed"}]}' * 50
        packed = gzip.compress(body)
        raw = ok(packed, "Content-Encoding: gzip")
        cut = raw.index(b"\r\n\r\n") + 4 + len(packed) // 2
        server = await serve(Reply([raw[:cut], raw[cut:]]))
        resp = await post(pool, server)
        assert resp.headers["content-encoding"] == "gzip"
        assert await read_body(resp) == body
        await assert_next_request_reuses_the_connection(pool, server, b"plain")


async def test_headers_mapping(pool: Http1Pool, serve: Servers) -> None:
    async with asyncio.timeout(LIMIT):
        raw = ok(
            b"missing",
            "Content-Type: application/json",
            "X-Multi: a",
            "x-multi:  b ",
            "X-Empty:",
            status="404 Not Found",
        )
        server = await serve(Reply([raw]))
        resp = await post(pool, server)
        assert resp.status == 404
        assert resp.reason == "Not Found"
        headers = resp.headers
        assert isinstance(headers, Headers)
        assert headers["X-MULTI"] == "a, b"
        assert headers.get("x-Multi") == "a, b"
        assert headers["x-empty"] == ""
        assert "CONTENT-TYPE" in headers
        assert headers.get("absent") is None
        assert headers.get("absent", "dflt") == "dflt"
        with pytest.raises(KeyError):
            headers["absent"]
        assert sorted(headers) == [
            "content-length",
            "content-type",
            "x-empty",
            "x-multi",
        ]
        assert len(headers) == 4
        assert await resp.aread() == b"missing"
        await resp.aclose()


async def test_status_line_without_reason(pool: Http1Pool, serve: Servers) -> None:
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([b"HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx"]))
        resp = await post(pool, server)
        assert (resp.status, resp.reason) == (200, "")
        assert await resp.aread() == b"x"
        await resp.aclose()


# -- the request bytes ---------------------------------------------------------------


async def test_request_line_host_length_and_headers(
    pool: Http1Pool, serve: Servers
) -> None:
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([ok()]))
        body = b'{"model": "m", "messages": []}'
        headers = {"Content-Type": "application/json", "X-Custom": "v 1; two"}
        resp = await post(pool, server, body, headers=headers)
        await resp.aread()
        await resp.aclose()
        [seen] = server.requests
        assert seen.request_line == "POST /v1/chat/completions HTTP/1.1"
        assert seen.values("Host") == [f"127.0.0.1:{server.port}"]
        assert seen.values("Content-Length") == [str(len(body))]
        assert seen.values("Content-Type") == ["application/json"]
        assert seen.values("X-Custom") == ["v 1; two"]
        assert seen.values("Accept-Encoding") == ["identity"]
        assert seen.values("Authorization") == []
        assert seen.body == body


async def test_base_url_trailing_slash(pool: Http1Pool, serve: Servers) -> None:
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([ok()]))
        await read_all(await post(pool, server, base_url=server.url("/api/v1/")))
        assert (
            server.requests[0].request_line == "POST /api/v1/chat/completions HTTP/1.1"
        )


async def test_get_without_body_sends_no_content_length(
    pool: Http1Pool, serve: Servers
) -> None:
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([ok(b"[]")]))
        resp = await post(pool, server, b"", method="GET", path="/models", headers={})
        assert await resp.aread() == b"[]"
        await resp.aclose()
        [seen] = server.requests
        assert seen.request_line == "GET /v1/models HTTP/1.1"
        assert seen.values("content-length") == []
        assert seen.body == b""


async def test_post_with_empty_body_sends_content_length_zero(
    pool: Http1Pool, serve: Servers
) -> None:
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([ok()]))
        await read_all(await post(pool, server, b""))
        assert server.requests[0].values("content-length") == ["0"]


async def test_basic_authorization_from_url(pool: Http1Pool, serve: Servers) -> None:
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([ok()]), Reply([ok()]))
        await read_all(
            await post(pool, server, base_url=server.url(userinfo="user:pass@"))
        )
        assert server.requests[0].values("Authorization") == [
            "Basic " + base64.b64encode(b"user:pass").decode()
        ]
        assert server.requests[0].values("Host") == [f"127.0.0.1:{server.port}"]
        # Percent-escapes in the userinfo are decoded before encoding.
        base_url = server.url(userinfo="us%40er:p%3Ass@")
        await read_all(await post(pool, server, base_url=base_url))
        assert server.requests[1].values("Authorization") == [
            "Basic " + base64.b64encode(b"us@er:p:ss").decode()
        ]


@pytest.mark.parametrize("name", ["Authorization", "authorization"])
async def test_given_authorization_wins_over_url_credentials(
    pool: Http1Pool, serve: Servers, name: str
) -> None:
    """Exactly one Authorization header, the one given, whatever its case
    (header names are case-insensitive)."""
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([ok()]))
        resp = await post(
            pool,
            server,
            headers={name: "Bearer sk-given"},
            base_url=server.url(userinfo="user:pass@"),
        )
        await read_all(resp)
        assert server.requests[0].values("Authorization") == ["Bearer sk-given"]


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Evil": "a\r\nX-Injected: 1"},
        {"X-Evil": "a\nb"},
        {"X-Evil": "a\rb"},
        {"X-Evil\r\nX-Injected": "1"},
    ],
    ids=["crlf-value", "lf-value", "cr-value", "crlf-name"],
)
async def test_header_with_line_break_is_refused_and_nothing_sent(
    pool: Http1Pool, serve: Servers, headers: dict[str, str]
) -> None:
    async with asyncio.timeout(LIMIT):
        server = await serve()
        # Fresh pool: no connection is even opened.
        message = await fails_before_answering(pool, server, headers=headers)
        assert message.startswith(BEFORE_ANSWER)
        assert "line break" in message
        await asyncio.sleep(0.01)
        assert server.connections == 0
        # With an idle connection: nothing is written on it either.
        await assert_next_answer(pool, server, b"1")
        await fails_before_answering(pool, server, headers=headers)
        await assert_next_answer(pool, server, b"2")
        assert server.connections == 1
        assert len(server.requests) == 2
        assert all("X-Injected" not in str(r.headers) for r in server.requests)


async def test_target_host_header_and_bad_urls(pool: Http1Pool) -> None:
    """No socket here: how a base URL is worked out."""
    assert pool.target("http://[::1]:8080/v1").host_header == "[::1]:8080"
    assert pool.target("http://example.test/v1").host_header == "example.test"
    assert pool.target("https://example.test:443/").host_header == "example.test"
    assert pool.target("https://example.test:80/").host_header == "example.test:80"
    assert pool.target("http://example.test/v1/").base_path == "/v1"
    for bad in ("ftp://example.test/", "http:///v1", "not a url"):
        with pytest.raises(UpstreamConnectError) as info:
            pool.target(bad)
        assert info.value.message.startswith("upstream unavailable: bad backend URL")
    with pytest.raises(UpstreamConnectError) as info:
        pool.target("http://example.test:99999/")
    assert "bad port" in info.value.message


def test_pool_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        Http1Pool()


# -- keep-alive ---------------------------------------------------------------------


async def test_sequential_requests_reuse_one_connection(
    pool: Http1Pool, serve: Servers
) -> None:
    async with asyncio.timeout(LIMIT):
        server = await serve()
        for i in range(3):
            await assert_next_answer(pool, server, b"answer %d" % i, b"request %d" % i)
        assert server.connections == 1
        assert [r.body for r in server.requests] == [
            b"request %d" % i for i in range(3)
        ]
        assert not server.eof[0].is_set()


async def test_concurrent_requests_use_separate_connections(
    pool: Http1Pool, serve: Servers
) -> None:
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([ok(b"a")]), Reply([ok(b"b")]))
        first = asyncio.create_task(post(pool, server, b"1"))
        second = asyncio.create_task(post(pool, server, b"2"))
        bodies = set()
        for resp in await asyncio.gather(first, second):
            bodies.add(await resp.aread())
            await resp.aclose()
        assert bodies == {b"a", b"b"}
        assert server.connections == 2


async def test_unfinished_response_is_closed_on_aclose(
    pool: Http1Pool, serve: Servers
) -> None:
    async with asyncio.timeout(LIMIT):
        partial = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nfirst bytes"
        server = await serve(Reply([partial]))
        resp = await post(pool, server)
        assert await resp.__anext__() == b"first bytes"
        await resp.aclose()
        await assert_next_request_opens_a_new_connection(pool, server, b"fresh")
        assert [r.conn for r in server.requests] == [0, 1]


async def test_ended_answer_keeps_its_connection_until_the_body_ends(
    pool: Http1Pool, serve: Servers
) -> None:
    """The consumer has all it wants (`expect_end`) before the chunked
    terminator arrives: `aclose()` returns at once, the terminator still comes,
    and the connection serves the next request."""
    async with asyncio.timeout(LIMIT):
        last = CHUNKED_HEAD + chunk(b"data: [DONE]\n\n")
        server = await serve(Reply([last, b"0\r\n\r\n"], gap=0.05))
        resp = await post(pool, server)
        assert await resp.__anext__() == b"data: [DONE]\n\n"
        resp.expect_end()
        await resp.aclose()  # does not wait for the terminator
        await asyncio.sleep(0.2)  # the terminator is 50 ms behind
        await assert_next_request_reuses_the_connection(pool, server, b"second")
        assert [r.conn for r in server.requests] == [0, 0]


async def test_ended_gzip_answer_keeps_its_connection_until_the_body_ends(
    pool: Http1Pool, serve: Servers
) -> None:
    """As above with a gzip body: the rest of its stream, drained unread, is
    not taken for a stream cut short."""
    async with asyncio.timeout(LIMIT):
        packed = gzip.compress(b"data: [DONE]\n\n")
        head = CHUNKED_HEAD.replace(b"\r\n\r\n", b"\r\nContent-Encoding: gzip\r\n\r\n")
        # zlib hands out what it can decode before the stream's checksum.
        first = head + chunk(packed[:-8])
        server = await serve(
            Reply([first, chunk(packed[-8:]) + b"0\r\n\r\n"], gap=0.05)
        )
        resp = await post(pool, server)
        assert await resp.__anext__() == b"data: [DONE]\n\n"
        resp.expect_end()
        await resp.aclose()
        await asyncio.sleep(0.2)
        await assert_next_request_reuses_the_connection(pool, server, b"second")
        assert [r.conn for r in server.requests] == [0, 0]


async def test_ended_answer_whose_body_never_ends_is_closed_after_drain(
    pool: Http1Pool, serve: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http1.response, "DRAIN", 0.1)
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([CHUNKED_HEAD + chunk(b"data: [DONE]\n\n")]))
        resp = await post(pool, server)
        assert await resp.__anext__() == b"data: [DONE]\n\n"
        resp.expect_end()
        await resp.aclose()
        assert not server.eof[0].is_set()  # kept while the end may still come
        await client_closed(server)  # then given up
        await assert_next_request_opens_a_new_connection(pool, server, b"fresh")


async def test_data_after_an_ended_answer_is_dropped_until_the_end(
    pool: Http1Pool, serve: Servers
) -> None:
    async with asyncio.timeout(LIMIT):
        more = chunk(b"x" * 100_000) + b"0\r\n\r\n"
        server = await serve(
            Reply([CHUNKED_HEAD + chunk(b"data: [DONE]\n\n"), more], gap=0.05)
        )
        resp = await post(pool, server)
        assert await resp.__anext__() == b"data: [DONE]\n\n"
        resp.expect_end()
        await resp.aclose()
        await asyncio.sleep(0.2)
        await assert_next_request_reuses_the_connection(pool, server, b"b")


async def test_arrived_but_unread_body_still_frees_the_connection(
    pool: Http1Pool, serve: Servers
) -> None:
    """The whole body arrived (the consumer just did not iterate it): nothing is
    left on the wire, so the connection is reused, and the next answer is not
    mixed with the old body."""
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([ok(b"x" * 100)]))
        resp = await post(pool, server)
        await wait_until(lambda: resp._done)
        await resp.aclose()
        await resp.aclose()  # twice is harmless
        await assert_next_request_reuses_the_connection(pool, server, b"fresh")
        assert not server.eof[0].is_set()


@pytest.mark.parametrize(
    ("reply", "body"),
    [
        pytest.param(
            Reply([ok(b"bye", "Connection: close")]),
            b"bye",
            id="connection-close-answer",
        ),
        pytest.param(
            Reply(
                [
                    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n"
                    + b"old"
                ]
            ),
            b"old",
            id="http10-answer",
        ),
        pytest.param(
            Reply([ok(b"ok") + b"HTTP/1.1 200 OK\r\n"]),
            b"ok",
            id="extra-bytes-after-the-body",
        ),
        pytest.param(
            Reply(
                [
                    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                    + b"Transfer-Encoding: chunked\r\n\r\n"
                    + chunk(b"chunked wins")
                    + b"0\r\n\r\n"
                ]
            ),
            b"chunked wins",
            id="both-content-length-and-chunked",
        ),
        pytest.param(
            Reply([ok(b"ok"), b"HTTP/1.1 200 OK\r\n\r\n"], gap=0.05),
            b"ok",
            id="unsolicited-bytes-on-an-idle-connection",
        ),
        pytest.param(
            Reply(
                [
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
                    b"first ",
                    b"second ",
                    b"third",
                ],
                close=True,
            ),
            b"first second third",
            id="close-delimited-body",
        ),
    ],
)
async def test_answer_is_not_reused(
    pool: Http1Pool, serve: Servers, reply: Reply, body: bytes
) -> None:
    """After this answer the connection is closed: by the client (the server
    did not), or by the server where the body is delimited by the close. The
    next request opens a new connection."""
    async with asyncio.timeout(LIMIT):
        server = await serve(reply)
        resp = await post(pool, server)
        assert resp.status == 200
        assert await read_body(resp) == body
        await assert_next_request_opens_a_new_connection(
            pool, server, b"next", closed_by_server=reply.close
        )


@pytest.mark.parametrize(
    ("keepalive", "plain_limit", "announced"),
    [
        (0.1, None, ()),
        (None, 0.1, ()),
        (15.0, None, ("Keep-Alive: timeout=0.2",)),
    ],
    ids=["pool keepalive", "plain-HTTP limit", "server's Keep-Alive timeout"],
)
async def test_idle_connection_older_than_keepalive_is_not_reused(
    make_pool: Pools,
    serve: Servers,
    monkeypatch: pytest.MonkeyPatch,
    keepalive: float | None,
    plain_limit: float | None,
    announced: tuple[str, ...],
) -> None:
    """The plain-HTTP limit: uvicorn (vLLM, LiteLLM) and llama.cpp's server
    drop a connection idle for 5 s without announcing it; one reused up to
    the pool's 15 s was now and then written to as the server closed it (a
    502 that cannot be sent again). Over plain HTTP the pool stops reusing
    one at 4 s (0.1 s here)."""
    if plain_limit is not None:
        monkeypatch.setattr(http1.pool, "PLAIN_KEEPALIVE", plain_limit)
    async with asyncio.timeout(LIMIT):
        pool = make_pool(keepalive=keepalive)
        server = await serve(*(Reply([ok(b"%d" % i, *announced)]) for i in range(3)))
        assert await read_body(await post(pool, server)) == b"0"
        # Reused while young.
        assert await read_body(await post(pool, server)) == b"1"
        assert server.connections == 1
        await asyncio.sleep(0.15)
        assert await read_body(await post(pool, server)) == b"2"
        assert server.connections == 2
        await client_closed(server)  # the expired one was closed, not leaked
        assert [r.conn for r in server.requests] == [0, 0, 1]


async def test_tls_connections_keep_the_pools_own_idle_limit() -> None:
    """Hosted APIs keep connections longer, and a TLS handshake costs more."""
    pool = Http1Pool()
    assert pool.keepalive_for(("api.openai.com", 443, True)) == http1.KEEPALIVE
    assert pool.keepalive_for(("127.0.0.1", 8000, False)) == http1.PLAIN_KEEPALIVE
    await pool.aclose()


async def test_idle_connections_are_closed_when_they_expire_with_no_new_request(
    make_pool: Pools, serve: Servers
) -> None:
    """A burst's connections go idle and no request follows (the load
    stopped): each is still closed once its keep-alive time is up, not kept
    open (a socket here, one at the backend) until some next request."""
    async with asyncio.timeout(LIMIT):
        pool = make_pool(keepalive=0.1)
        server = await serve(*(Reply([ok(b"%d" % i)]) for i in range(3)))
        responses = await asyncio.gather(*(post(pool, server) for _ in range(3)))
        assert sorted([await read_body(resp) for resp in responses]) == [
            b"0",
            b"1",
            b"2",
        ]
        assert server.connections == 3
        async with asyncio.timeout(1):
            await asyncio.gather(*(eof.wait() for eof in server.eof))


@pytest.mark.parametrize("read_by_loop", [True, False], ids=["eof-read", "fin-unread"])
async def test_connection_closed_by_server_while_idle_is_not_reused(
    pool: Http1Pool, serve: Servers, read_by_loop: bool
) -> None:
    """The server closes an idle connection. Either the loop has read its EOF,
    or (the server closed just as the gateway reuses it) the FIN is in the
    socket but not read yet: the pool sees it before sending, either way, and
    the request goes on a new connection instead of failing unsent."""
    async with asyncio.timeout(LIMIT):
        drop = asyncio.Event()
        server = await serve(Reply([ok(b"one")], close_when=drop), Reply([ok(b"two")]))
        resp = await post(pool, server, b"first")
        conn = resp._conn
        assert await read_body(resp) == b"one"
        assert conn.transport is not None and not conn.closed  # idle in the pool
        if not read_by_loop:
            conn.transport.pause_reading()  # the loop does not see the EOF
        drop.set()
        await server.server_closed[0].wait()
        if read_by_loop:
            await wait_until(lambda: conn.closed)  # the client saw the EOF
        else:
            await asyncio.sleep(0.05)  # the FIN reaches the client's socket
            assert not conn.closed
            conn.transport.resume_reading()  # read only once this task yields
        assert await read_body(await post(pool, server, b"second")) == b"two"
        assert server.connections == 2
        # Exactly one copy of each request, never a duplicate.
        assert [(r.conn, r.body) for r in server.requests] == [
            (0, b"first"),
            (1, b"second"),
        ]


async def test_request_on_a_connection_dropped_without_answer_is_not_retried(
    pool: Http1Pool, serve: Servers
) -> None:
    """The backend may have had the request: the failure is reported, never
    retried on a new connection (no second, paid generation)."""
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([ok(b"one")]), Reply(close=True))
        assert await read_body(await post(pool, server, b"first")) == b"one"
        message = await fails_before_answering(pool, server, b"second")
        assert message == CLOSED_BEFORE_ANSWER
        await asyncio.sleep(0.02)
        assert server.connections == 1
        assert [r.body for r in server.requests] == [b"first", b"second"]


async def test_pool_aclose_closes_idle_connections(
    pool: Http1Pool, serve: Servers
) -> None:
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([ok()]), Reply([ok()]))
        responses = [await post(pool, server), await post(pool, server)]
        for resp in responses:
            await read_all(resp)
        assert server.connections == 2
        assert not any(e.is_set() for e in server.eof)
        await pool.aclose()
        async with asyncio.timeout(1):
            await asyncio.gather(*(e.wait() for e in server.eof))


# -- errors ----------------------------------------------------------------------------


async def test_connection_refused(pool: Http1Pool) -> None:
    async with asyncio.timeout(LIMIT):
        # Bound but not listening: connecting to it is refused.
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            with pytest.raises(UpstreamConnectError) as info:
                await pool.request(
                    "POST",
                    f"http://127.0.0.1:{port}/v1",
                    "/x",
                    {},
                    b"{}",
                    connect_timeout=LIMIT,
                )
        assert info.value.message.startswith(
            f"upstream unavailable: cannot connect to 127.0.0.1:{port}"
        )
        assert info.value.message.startswith(
            "upstream unavailable: cannot connect to 127.0.0.1:"
        )
        assert info.value.status == 502
        assert not pool._open


async def test_connect_timeout(pool: Http1Pool, serve: Servers) -> None:
    """A zero connect timeout expires at the connect's first wait, even on
    loopback: the expiry is mapped, and no connection is left open."""
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([ok()]))
        with pytest.raises(UpstreamTimeoutError) as info:
            await pool.request("POST", server.url(), "/x", {}, b"{}", connect_timeout=0)
        assert info.value.message == "upstream timeout"
        assert info.value.status == 504
        assert not pool._open
        assert server.requests == []


@pytest.mark.parametrize(
    "pieces",
    [[], [b"HTTP/1.1 200 OK\r\nContent-"], [b"HTTP/1.1 2", b"00 OK\r\n"]],
    ids=["nothing", "part-of-head", "status-line-only"],
)
async def test_server_closes_before_the_answer(
    pool: Http1Pool, serve: Servers, pieces: list[bytes]
) -> None:
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply(pieces, close=True))
        assert await fails_before_answering(pool, server) == CLOSED_BEFORE_ANSWER
        assert not pool._open
        assert len(server.requests) == 1


async def test_server_closes_mid_content_length_body(
    pool: Http1Pool, serve: Servers
) -> None:
    async with asyncio.timeout(LIMIT):
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
        server = await serve(Reply([head, b"part one, ", b"part two"], close=True))
        resp = await post(pool, server)
        got, error = await read_until_error(resp)
        assert got == b"part one, part two"
        assert error.message.endswith("unexpected EOF")
        assert error.message == UNEXPECTED_EOF
        # The error stays: iterating again raises it again.
        with pytest.raises(UpstreamProtocolError):
            await resp.__anext__()


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (b"", b"arrived"),
        (b"5\r\nab", b"arrivedab"),
        (b"5", b"arrived"),
        (b"5\r", b"arrived"),
        (b"5\r\nabcde", b"arrivedabcde"),
        (b"5\r\nabcde\r", b"arrivedabcde"),
        (b"5\r\nabcde\r\n0\r\n", b"arrivedabcde"),
        (b"5\r\nabcde\r\n0\r\nX-Trailer: 1\r\n", b"arrivedabcde"),
    ],
    ids=[
        "after-chunk",
        "mid-chunk",
        "mid-size-line",
        "size-line-mid-crlf",
        "before-crlf",
        "mid-crlf",
        "before-trailers-end",
        "mid-trailers",
    ],
)
async def test_server_closes_mid_chunked_body(
    pool: Http1Pool, serve: Servers, tail: bytes, expected: bytes
) -> None:
    async with asyncio.timeout(LIMIT):
        pieces = [CHUNKED_HEAD, chunk(b"arrived")]
        if tail:
            pieces.append(tail)
        server = await serve(Reply(pieces, close=True))
        got, error = await read_until_error(await post(pool, server))
        assert got == expected
        assert error.message.endswith("unexpected EOF")


STATUS_LINES = {
    "garbage": b"garbage",
    "http2": b"HTTP/2 200 OK",
    "code-not-digits": b"HTTP/1.1 2x0 OK",
    "code-two-digits": b"HTTP/1.1 20 OK",
    "not-http": b"ICY 200 OK",
    "code-not-ascii-digits": "HTTP/1.1 ²00 OK".encode("latin-1"),
}
HEADER_LINES = {
    "no-colon": b"Content-Length 5",
    "folded": b" X-Folded: a",
    "no-name": b": no-name",
    "space-before-colon": b"X-Space : a",
    # RFC 9110 5.5: a CR or NUL in a field is refused (or replaced), never kept.
    "bare-cr": b"X-A: one\rX-B: two",
    "bare-cr-at-the-end": b"X-A: one\r",
    "nul": b"X-A: o\x00ne",
}
CONTENT_LENGTHS = {
    "abc": b"abc",
    "two-values": b"5, 6",
    "negative": b"-1",
    "empty": b"",
    "not-ascii-digit": "¹".encode("latin-1"),
}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        *(
            pytest.param(
                line + b"\r\nContent-Length: 0\r\n\r\n",
                "not an HTTP/1.x status line",
                id=f"garbage-status-line-{name}",
            )
            for name, line in STATUS_LINES.items()
        ),
        *(
            pytest.param(
                b"HTTP/1.1 200 OK\r\nX-Ok: 1\r\n" + line + b"\r\n\r\n",
                "invalid header line",
                id=f"invalid-header-line-{name}",
            )
            for name, line in HEADER_LINES.items()
        ),
        *(
            pytest.param(
                b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\nabcde",
                "invalid Content-Length",
                id=f"invalid-content-length-{name}",
            )
            for name, value in CONTENT_LENGTHS.items()
        ),
    ],
)
async def test_malformed_head_fails_before_answering(
    pool: Http1Pool, serve: Servers, raw: bytes, message: str
) -> None:
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([raw]))
        failure = await fails_before_answering(pool, server)
        assert failure.startswith(f"{BEFORE_ANSWER}: {message}")
        await client_closed(server)  # the connection is dropped


@pytest.mark.parametrize("size_line", [b"zz", b"", b"5 5", b"-5"])
async def test_invalid_chunk_size(
    pool: Http1Pool, serve: Servers, size_line: bytes
) -> None:
    async with asyncio.timeout(LIMIT):
        raw = CHUNKED_HEAD + size_line + b"\r\nhello\r\n0\r\n\r\n"
        server = await serve(Reply([raw]))
        got, error = await read_until_error(await post(pool, server))
        assert got == b""
        assert error.message.startswith("upstream sent an invalid chunk size")
        await client_closed(server)


async def test_many_chunks_in_one_read(pool: Http1Pool, serve: Servers) -> None:
    # Whole chunks in one read (upper-case hex with leading zeros, an extension,
    # a bare-LF size line) and the last chunk: one piece, then the end.
    async with asyncio.timeout(LIMIT):
        raw = (
            CHUNKED_HEAD
            + chunk(b"one ")
            + b"00A\r\n0123456789\r\n"
            + b"4;x=y\r\n abc\r\n"
            + b"5\n four\r\n"
            + chunk(b" end")
            + b"0\r\n\r\n"
        )
        server = await serve(Reply([raw]))
        got = await read_all(await post(pool, server))
        assert got == [b"one 0123456789 abc four end"]
        await assert_next_request_reuses_the_connection(pool, server, b"again")


async def test_malformed_chunk_after_whole_ones(
    pool: Http1Pool, serve: Servers
) -> None:
    async with asyncio.timeout(LIMIT):
        raw = CHUNKED_HEAD + chunk(b"fine") + b"3\r\nabcdef\r\n0\r\n\r\n"
        server = await serve(Reply([raw]))
        got, error = await read_until_error(await post(pool, server))
        assert error.message == "upstream sent a malformed chunk"
        assert got in (b"", b"fine")  # what came before the fault may be handed on


async def test_chunk_longer_than_its_size(pool: Http1Pool, serve: Servers) -> None:
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([CHUNKED_HEAD + b"3\r\nabcdef\r\n0\r\n\r\n"]))
        _, error = await read_until_error(await post(pool, server))
        assert error.message == "upstream sent a malformed chunk"


async def test_oversized_chunk_size_line(pool: Http1Pool, serve: Servers) -> None:
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([CHUNKED_HEAD + b"5;" + b"x" * 8192]))
        _, error = await read_until_error(await post(pool, server))
        assert error.message == UNEXPECTED_EOF
        await client_closed(server)


async def test_oversized_headers(pool: Http1Pool, serve: Servers) -> None:
    async with asyncio.timeout(LIMIT):
        filler = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(70))
        assert len(filler) > 64 * 1024
        raw = b"HTTP/1.1 200 OK\r\n" + filler  # no blank line, ever
        pieces = [raw[i : i + 8192] for i in range(0, len(raw), 8192)]
        server = await serve(Reply(pieces, gap=0))
        message = await fails_before_answering(pool, server)
        assert message == f"{BEFORE_ANSWER}: response headers too large"
        await client_closed(server)


async def test_unsupported_content_encoding(pool: Http1Pool, serve: Servers) -> None:
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([ok(b"\x1b\x00", "Content-Encoding: br")]))
        message = await fails_before_answering(pool, server)
        assert message == f"{BEFORE_ANSWER}: unsupported content encoding 'br'"


PACKED = gzip.compress(b"a whole answer")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(ok(b"this is not gzip", "Content-Encoding: gzip"), id="not-gzip"),
        pytest.param(
            ok(PACKED + b"garbage", "Content-Encoding: gzip"),
            id="gzip-then-garbage",
        ),
        pytest.param(
            ok(PACKED[:-4], "Content-Encoding: gzip"),
            id="gzip-cut-short",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
            + b"Transfer-Encoding: chunked\r\n\r\n"
            + chunk(PACKED[:-4])
            + b"0\r\n\r\n",
            id="chunked-gzip-cut-short",
        ),
        pytest.param(
            ok(zlib.compress(b"x") + b"more", "Content-Encoding: deflate"),
            id="deflate-then-more",
        ),
    ],
)
async def test_corrupt_compressed_body(
    pool: Http1Pool, serve: Servers, raw: bytes
) -> None:
    """Never a quietly shorter body: bytes a decoder would drop, or a stream
    that does not reach its end, fail the answer."""
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([raw]))
        _, error = await read_until_error(await post(pool, server))
        assert error.message.startswith("upstream sent a bad body:")
        await client_closed(server)


async def test_close_delimited_gzip_body_cut_short(
    pool: Http1Pool, serve: Servers
) -> None:
    """A close-delimited body ends with the connection, however it was cut:
    its compressed stream still says whether it is whole."""
    async with asyncio.timeout(LIMIT):
        head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n"
        server = await serve(Reply([head + PACKED[:-4]], close=True))
        _, error = await read_until_error(await post(pool, server))
        assert error.message.startswith("upstream sent a bad body:")


# -- flow control --------------------------------------------------------------------


async def test_reading_pauses_while_the_consumer_is_behind(
    pool: Http1Pool, serve: Servers
) -> None:
    async with asyncio.timeout(LIMIT):
        body = bytes(range(256)) * (8 * 1024)  # 2 MiB
        bound = HIGH_WATER + 256 * 1024
        server = await serve(Reply([ok(body)]))
        resp = await post(pool, server)
        await asyncio.sleep(0.1)  # the server writes all it can meanwhile
        assert HIGH_WATER <= resp._buffered <= bound
        assert resp._conn._paused
        got: list[bytes] = []
        while True:
            assert resp._buffered <= bound
            try:
                piece = await resp.__anext__()
            except StopAsyncIteration:
                break
            assert len(piece) <= bound
            got.append(piece)
            if len(got) % 4 == 0:
                await asyncio.sleep(0.005)  # fall behind now and then
        await resp.aclose()
        assert b"".join(got) == body
        assert len(got) > 1
        # Resumed and finished cleanly: the connection is reused.
        await assert_next_request_reuses_the_connection(pool, server, b"next")


# -- cancellation --------------------------------------------------------------------


async def test_cancelling_a_waiting_request_closes_the_connection(
    pool: Http1Pool, serve: Servers
) -> None:
    async with asyncio.timeout(LIMIT):
        server = await serve()  # never answers
        task = asyncio.create_task(post(pool, server, b"wait"))
        await wait_until(lambda: len(server.requests) == 1)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client_closed(server)
        await wait_until(lambda: not pool._open)
        assert [r.body for r in server.requests] == [b"wait"]


async def test_answer_arriving_as_the_waiting_request_is_cancelled(
    pool: Http1Pool, serve: Servers
) -> None:
    """The head comes in the same loop turn as the cancel (a client that left
    just then), before the cancelled request has closed the connection: it is
    dropped quietly, not a fatal error of the transport."""
    async with asyncio.timeout(LIMIT):
        server = await serve()  # never answers on its own
        task = asyncio.create_task(post(pool, server, b"wait"))
        await wait_until(lambda: len(server.requests) == 1)
        (conn,) = pool._open
        task.cancel()  # cancels the wait for the head at once
        conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        with pytest.raises(asyncio.CancelledError):
            await task
        await client_closed(server)
        await wait_until(lambda: not pool._open)
        assert [r.body for r in server.requests] == [b"wait"]


async def test_cancelling_a_body_read_then_aclose_closes_the_connection(
    pool: Http1Pool, serve: Servers
) -> None:
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"]))
        resp = await post(pool, server)
        reader = asyncio.create_task(resp.aread())
        await asyncio.sleep(0.01)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        await resp.aclose()
        await client_closed(server)


async def test_aclose_from_another_task_wakes_a_pending_read(
    pool: Http1Pool, serve: Servers
) -> None:
    """A reader waiting for more body when the response is closed elsewhere (a
    watchdog, a shutdown) must not wait forever: the body is unfinished, so it
    ends with an error, not as if complete."""
    async with asyncio.timeout(LIMIT):
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab"
        server = await serve(Reply([head]))
        resp = await post(pool, server)
        assert await resp.__anext__() == b"ab"
        reader = asyncio.create_task(resp.__anext__())
        await asyncio.sleep(0.01)
        assert not reader.done()
        await resp.aclose()
        await client_closed(server)
        done, _ = await asyncio.wait([reader], timeout=0.5)
        if not done:
            reader.cancel()
            with suppress(asyncio.CancelledError):
                await reader
        assert done, "the pending read still waits after aclose()"
        assert isinstance(reader.exception(), UpstreamProtocolError)


async def test_pool_aclose_fails_a_read_in_progress(
    pool: Http1Pool, serve: Servers
) -> None:
    async with asyncio.timeout(LIMIT):
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab"
        server = await serve(Reply([head]))
        reader = asyncio.create_task(read_until_error(await post(pool, server)))
        await asyncio.sleep(0.01)
        await pool.aclose()
        async with asyncio.timeout(1):
            got, error = await reader
        assert got == b"ab"
        assert error.message == UNEXPECTED_EOF
        await client_closed(server)


# -- name lookups -------------------------------------------------------------------


class Lookups:
    """Counts the pool's getaddrinfo calls; `fail` makes them fail."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.calls: list[str] = []
        self.fail = False
        self._real = loop.getaddrinfo

    async def __call__(
        self, host: str, port: int, **kwargs: int
    ) -> list[tuple[int, int, int, str, tuple[str, int]]]:
        self.calls.append(host)
        if self.fail:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        await asyncio.sleep(0.01)  # concurrent connections arrive meanwhile
        infos = await self._real(host, port, **kwargs)
        return [i for i in infos if i[0] == socket.AF_INET]  # the server's family


async def test_a_host_name_is_looked_up_once_for_new_connections(
    pool: Http1Pool, serve: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups = Lookups(pool.loop)
    monkeypatch.setattr(pool.loop, "getaddrinfo", lookups)
    monkeypatch.setattr(http1.pool, "DNS_TTL", 0.2)
    async with asyncio.timeout(LIMIT):
        server = await serve(Reply([ok(b"a")]), Reply([ok(b"b")]), Reply([ok(b"c")]))
        url = f"http://localhost:{server.port}/v1"
        first, second = await asyncio.gather(
            post(pool, server, base_url=url), post(pool, server, base_url=url)
        )
        assert {await first.aread(), await second.aread()} == {b"a", b"b"}
        assert server.connections == 2 and lookups.calls == ["localhost"]
        assert all(
            r.values("Host") == [f"localhost:{server.port}"] for r in server.requests
        )
        await asyncio.sleep(0.3)  # the addresses have expired
        third = await post(pool, server, base_url=url)  # both others are in use
        assert await third.aread() == b"c"
        await asyncio.gather(first.aclose(), second.aclose(), third.aclose())
        assert server.connections == 3 and lookups.calls == ["localhost"] * 2


async def test_a_failed_lookup_is_reported_and_not_kept(
    pool: Http1Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups = Lookups(pool.loop)
    lookups.fail = True
    monkeypatch.setattr(pool.loop, "getaddrinfo", lookups)
    async with asyncio.timeout(LIMIT):
        for _ in range(2):
            with pytest.raises(UpstreamConnectError) as info:
                await pool.request(
                    "POST", "http://nowhere.test/v1", "/x", {}, b"{}", connect_timeout=1
                )
            assert info.value.message == (
                "upstream unavailable: cannot connect to nowhere.test:80: "
                "Name or service not known"
            )
        assert lookups.calls == ["nowhere.test", "nowhere.test"]
