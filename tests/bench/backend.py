"""A fake OpenAI backend for the benchmarks: raw asyncio, keep-alive HTTP/1.1.

`python -m tests.bench.backend --port 0` prints `READY <port>` once listening.

- `GET /v1/models` lists `bench` and `bench-paced`.
- `POST /v1/chat/completions` answers `max_tokens` tokens (16 by default):
  a JSON `chat.completion` for `"stream": false`, else SSE chunks (a first
  `role` chunk, one chunk per token, a `finish_reason` chunk, the usage chunk
  when `stream_options.include_usage`, `[DONE]`), chunked transfer encoding.
  `bench` streams as fast as the socket takes them, 32 events per write
  (pre-encoded, so the backend stays well ahead of what it feeds; a
  short answer goes in one write); `bench-paced`
  sends each token on its own, each stream at its own rate of 30-40 tokens/s.

It is deliberately small and cheap per event: the direct figures of the table
show how far ahead of the gateway it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import sys
from functools import lru_cache
from typing import cast

import msgspec

from tests.bench.common import MODEL, PACED_MODEL, TOKENS, raise_nofile, run

__all__ = ["main"]

BURST = 32
PACED_RATE = (30.0, 40.0)

_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
)
_END = b"0\r\n\r\n"
_NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
    b'Content-Length: 30\r\n\r\n{"error":{"message":"no such"}}'
)
_encode = msgspec.json.encode


class _Request(msgspec.Struct):
    model: str = MODEL
    stream: bool = False
    max_tokens: int | None = None
    stream_options: dict[str, bool] | None = None


_decode_request = msgspec.json.Decoder(_Request).decode


def _chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, object]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        ],
    }


def _event(obj: object) -> bytes:
    return b"data: " + _encode(obj) + b"\n\n"


def _frame(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


_ROLE = _event(_chunk({"role": "assistant", "content": ""}))
_TOKEN_EVENTS = [_event(_chunk({"content": t})) for t in TOKENS]
_TOKEN_FRAMES = [_frame(e) for e in _TOKEN_EVENTS]


@lru_cache(maxsize=64)
def _tail(tokens: int, usage: bool) -> bytes:
    """The events after the last token: finish, usage, [DONE]."""
    out = [_event(_chunk({}, "length" if tokens else "stop"))]
    if usage:
        counts = {"prompt_tokens": 12, "completion_tokens": tokens}
        counts["total_tokens"] = 12 + tokens
        out.append(_event({"id": "chatcmpl-bench", "choices": [], "usage": counts}))
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


@lru_cache(maxsize=64)
def _stream_writes(tokens: int, usage: bool) -> tuple[bytes, ...]:
    """The writes of an unpaced stream: BURST events each, in one chunk frame;
    the head rides with the first and the terminator with the last, so a
    short answer is one write, as a non-stream JSON body is."""
    events = [_ROLE]
    events += [_TOKEN_EVENTS[i % len(TOKENS)] for i in range(tokens)]
    events.append(_tail(tokens, usage))
    writes = [
        _frame(b"".join(events[i : i + BURST])) for i in range(0, len(events), BURST)
    ]
    writes[0] = _SSE_HEAD + writes[0]
    writes[-1] += _END
    return tuple(writes)


@lru_cache(maxsize=64)
def _whole(tokens: int) -> bytes:
    content = "".join(TOKENS[i % len(TOKENS)] for i in range(tokens))
    body = _encode(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1700000000,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "length",
                }
            ],
            "usage": {
                "prompt_tokens": 12,
                "completion_tokens": tokens,
                "total_tokens": 12 + tokens,
            },
        }
    )
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def _models() -> bytes:
    body = _encode(
        {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "bench"}
                for name in (MODEL, PACED_MODEL)
            ],
        }
    )
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


_MODELS = _models()
_TASKS: set[asyncio.Future[None]] = set()


class _Connection(asyncio.Protocol):
    """One keep-alive connection; requests are answered one after another."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._busy = False
        self._can_write: asyncio.Event | None = None
        self._paced: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._paced is not None:
            self._paced.cancel()
        if self._can_write is not None:
            self._can_write.set()

    def pause_writing(self) -> None:
        self._can_write = asyncio.Event()

    def resume_writing(self) -> None:
        if self._can_write is not None:
            self._can_write.set()
            self._can_write = None

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._busy:
            self._next_request()

    def _next_request(self) -> None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buf[:end]).lower()
        length = 0
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop >= 0 else None])
        if len(buf) < end + 4 + length:
            return
        body = bytes(buf[end + 4 : end + 4 + length])
        del buf[: end + 4 + length]
        method, _, rest = head.partition(b" ")
        path = rest.partition(b" ")[0]
        self._dispatch(method, path, body)

    def _dispatch(self, method: bytes, path: bytes, body: bytes) -> None:
        transport = self._transport
        assert transport is not None
        if method == b"get" and path.endswith(b"/models"):
            transport.write(_MODELS)
        elif method == b"post" and path.endswith(b"/chat/completions"):
            request = _decode_request(body)
            tokens = request.max_tokens if request.max_tokens is not None else 16
            usage = bool((request.stream_options or {}).get("include_usage"))
            if not request.stream:
                transport.write(_whole(tokens))
            elif request.model == PACED_MODEL:
                self._busy = True
                transport.write(_SSE_HEAD + _frame(_ROLE))
                interval = 1.0 / random.uniform(*PACED_RATE)
                loop = asyncio.get_running_loop()
                due = loop.time() + interval
                self._paced = loop.call_at(
                    due, self._pace, loop, 0, tokens, usage, interval, due
                )
                return
            else:
                # The first write at once, as for a JSON answer (and as nginx
                # sends a static body): a short answer is one write, and a task
                # for it would cost streamed answers a loop pass that the JSON
                # ones do not pay.
                writes = _stream_writes(tokens, usage)
                transport.write(writes[0])
                if len(writes) > 1:
                    self._busy = True
                    task = asyncio.ensure_future(self._burst(writes[1:]))
                    _TASKS.add(task)
                    task.add_done_callback(_TASKS.discard)
                    return
        else:
            transport.write(_NOT_FOUND)
        self._done()

    def _done(self) -> None:
        self._busy = False
        if self._buf:
            self._next_request()

    async def _burst(self, writes: tuple[bytes, ...]) -> None:
        """The rest of an unpaced stream, after its first write."""
        for data in writes:
            if self._can_write is not None:
                await self._can_write.wait()
            else:
                await asyncio.sleep(0)  # let the other streams have a turn
            transport = self._transport
            if transport is None:
                return
            transport.write(data)
        self._done()

    def _pace(
        self,
        loop: asyncio.AbstractEventLoop,
        sent: int,
        tokens: int,
        usage: bool,
        interval: float,
        due: float,
    ) -> None:
        transport = self._transport
        if transport is None:
            return
        if sent < tokens:
            transport.write(_TOKEN_FRAMES[sent % len(TOKENS)])
            sent += 1
        if sent >= tokens:
            transport.write(_frame(_tail(tokens, usage)) + _END)
            self._paced = None
            self._done()
            return
        due += interval
        self._paced = loop.call_at(
            due, self._pace, loop, sent, tokens, usage, interval, due
        )


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        _Connection, "127.0.0.1", port, backlog=4096, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"READY {bound}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    raise_nofile()
    try:
        run(_serve(args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
