"""The load generator: raw asyncio sockets, keep-alive HTTP/1.1, one JSON line out.

    python -m tests.bench.client nonstream --port P --kind ollama --concurrency 16
    python -m tests.bench.client streams --port P --kind ollama --streams 50
    python -m tests.bench.client paced --port P --kind ollama --streams 1000

Responses are parsed in `data_received` (no coroutine wake-up per read): the
chunked framing is undone and lines (NDJSON) or events (SSE) are counted, and
each answer is checked: status 200, the expected count, and a proper ending
(`"done": true`, or `[DONE]`). `paced` also prints progress events
(`tick`: how many streams are open and done, and the lines so far) so the
caller can sample the server's CPU and memory while all streams are open.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Literal, cast

import msgspec

from tests.bench.common import MODEL, PACED_MODEL, raise_nofile, run

__all__ = ["Result", "main"]

Kind = Literal["ollama", "openai"]

_DONE = re.compile(rb'"done":\s*true')
_TAIL = 256


@dataclass(slots=True)
class Result:
    """One answer as the client saw it."""

    status: int = 0
    lines: int = 0
    started: float = 0.0
    first_at: float = 0.0
    ended: float = 0.0
    tail: bytes = b""
    error: str = ""

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass(slots=True)
class Progress:
    """Counts shared by every connection of one run."""

    newlines: int = 0
    per_line: int = 1
    first_lines: int = 0

    @property
    def lines(self) -> int:
        return self.newlines // self.per_line


def body_for(kind: Kind, model: str, tokens: int, stream: bool) -> bytes:
    messages = [{"role": "user", "content": "Say something for the benchmark."}]
    body: dict[str, object] = {"model": model, "messages": messages, "stream": stream}
    if kind == "ollama":
        body["options"] = {"num_predict": tokens}
    else:
        body["max_tokens"] = tokens
        if stream:
            body["stream_options"] = {"include_usage": True}
    return msgspec.json.encode(body)


def request_bytes(kind: Kind, port: int, body: bytes) -> bytes:
    path = b"/api/chat" if kind == "ollama" else b"/v1/chat/completions"
    return (
        b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (path, port, len(body), body)
    )


def expected_lines(kind: Kind, tokens: int) -> int:
    # NDJSON: a line per token and the final line. SSE: role, tokens, finish,
    # usage and [DONE] events.
    return tokens + 1 if kind == "ollama" else tokens + 4


def check(result: Result, kind: Kind, stream: bool, tokens: int) -> str:
    """Why an answer is wrong, or ""."""
    if result.error:
        return result.error
    if result.status != 200:
        return f"status {result.status}: {result.tail[-200:]!r}"
    if not stream:
        ok = (
            _DONE.search(result.tail) if kind == "ollama" else b"choices" in result.tail
        )
        return "" if ok else f"bad answer: {result.tail[-200:]!r}"
    want = expected_lines(kind, tokens)
    if result.lines != want:
        return f"{result.lines} lines, expected {want}: {result.tail[-200:]!r}"
    last = result.tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    if kind == "ollama" and not _DONE.search(last):
        return f"bad last line: {last[-200:]!r}"
    if kind == "openai" and not result.tail.endswith(b"data: [DONE]\n\n"):
        return f"bad ending: {result.tail[-60:]!r}"
    return ""


class Exchange(asyncio.Protocol):
    """One keep-alive connection that runs one request at a time."""

    def __init__(self, progress: Progress, sse: bool) -> None:
        self._progress = progress
        # An SSE event has two newlines (its JSON has none); a split between
        # two reads would hide a "\n\n", so newlines are counted and halved.
        self._per_line = 2 if sse else 1
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Result] | None = None
        self._result = Result()
        self._buf = bytearray()
        self._head_done = False
        self._chunked = False
        self._length = 0
        self._data_left = 0
        self._crlf_left = 0
        self._last_chunk = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._finish(f"connection lost: {exc or 'EOF'}")

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def send(self, data: bytes) -> asyncio.Future[Result]:
        if self._transport is None:
            raise ConnectionError("not connected")
        self._result = Result(started=time.perf_counter())
        self._buf.clear()
        self._head_done = self._chunked = self._last_chunk = False
        self._data_left = self._crlf_left = self._length = 0
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(data)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._head_done:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self._head(bytes(buf[:end]).lower())
            del buf[: end + 4]
        if self._chunked:
            self._read_chunks()
        elif len(buf) >= self._length:
            self._body(0, self._length)
            self._finish()

    def _head(self, head: bytes) -> None:
        self._head_done = True
        self._result.status = int(head[9:12])
        self._chunked = b"\r\ntransfer-encoding: chunked" in head
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            self._length = int(head[at + 17 : stop if stop >= 0 else None])

    def _read_chunks(self) -> None:
        buf = self._buf
        pos, size = 0, len(buf)
        while pos < size:
            if self._data_left:
                take = min(self._data_left, size - pos)
                self._body(pos, pos + take)
                self._data_left -= take
                pos += take
            elif self._crlf_left:
                take = min(self._crlf_left, size - pos)
                self._crlf_left -= take
                pos += take
                if not self._crlf_left and self._last_chunk:
                    del buf[:pos]
                    self._finish()
                    return
            else:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    break
                length = int(bytes(buf[pos:end]).split(b";")[0], 16)
                pos = end + 2
                self._data_left = length
                self._crlf_left = 2
                self._last_chunk = length == 0
        del buf[:pos]
        if self._last_chunk and not self._crlf_left:
            self._finish()

    def _body(self, start: int, stop: int) -> None:
        buf, result = self._buf, self._result
        found = buf.count(b"\n", start, stop)
        if found:
            if not result.lines:
                result.first_at = time.perf_counter()
                self._progress.first_lines += 1
            result.lines += found
            self._progress.newlines += found
        result.tail = (result.tail + bytes(buf[max(start, stop - _TAIL) : stop]))[
            -_TAIL:
        ]

    def _finish(self, error: str = "") -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        self._result.ended = time.perf_counter()
        self._result.error = error
        self._result.lines //= self._per_line
        waiter.set_result(self._result)


async def connect(port: int, progress: Progress, sse: bool) -> Exchange:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: Exchange(progress, sse), "127.0.0.1", port
    )
    return protocol


def _emit(**fields: object) -> None:
    sys.stdout.write(msgspec.json.encode(fields).decode() + "\n")
    sys.stdout.flush()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def nonstream(args: argparse.Namespace) -> None:
    """Closed loop: `concurrency` connections, each sending as soon as answered."""
    kind: Kind = args.kind
    request = request_bytes(
        kind, args.port, body_for(kind, MODEL, args.tokens, stream=False)
    )
    progress = Progress()
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + args.warmup
    stop = measure_from + args.duration
    latencies: list[float] = []
    errors: list[str] = []

    async def worker() -> None:
        exchange = await connect(args.port, progress, sse=False)
        try:
            while loop.time() < stop:
                began = loop.time()
                result = await exchange.send(request)
                problem = check(result, kind, False, args.tokens)
                if began >= measure_from:
                    if problem:
                        errors.append(problem)
                    else:
                        latencies.append(result.seconds)
                if problem:
                    exchange.close()
                    exchange = await connect(args.port, progress, sse=False)
        finally:
            exchange.close()

    await asyncio.wait_for(
        asyncio.gather(*(worker() for _ in range(args.concurrency))),
        args.warmup + args.duration + 30,
    )
    elapsed = loop.time() - measure_from
    _emit(
        event="result",
        requests=len(latencies),
        errors=len(errors),
        first_error=errors[0] if errors else "",
        rps=len(latencies) / elapsed,
        p50_ms=_percentile(latencies, 0.5) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000,
    )


async def streams(args: argparse.Namespace) -> None:
    """`rounds` rounds of `streams` concurrent streams of `tokens` tokens each."""
    kind: Kind = args.kind
    sse = kind == "openai"
    request = request_bytes(
        kind, args.port, body_for(kind, MODEL, args.tokens, stream=True)
    )
    progress = Progress()
    exchanges = [await connect(args.port, progress, sse) for _ in range(args.streams)]
    # One unmeasured round warms up the connections and the server.
    await asyncio.gather(*(e.send(request) for e in exchanges))
    walls, ttfls, rates = [], [], []
    errors: list[str] = []
    for _ in range(args.rounds):
        began = time.perf_counter()
        results = await asyncio.wait_for(
            asyncio.gather(*(e.send(request) for e in exchanges)), args.timeout
        )
        wall = time.perf_counter() - began
        for result in results:
            problem = check(result, kind, True, args.tokens)
            if problem:
                errors.append(problem)
        walls.append(wall)
        ttfls.append(statistics.median(r.first_at - r.started for r in results))
        rates.append(sum(r.lines for r in results) / wall)
    for exchange in exchanges:
        exchange.close()
    _emit(
        event="result",
        streams=args.streams,
        rounds=args.rounds,
        errors=len(errors),
        first_error=errors[0] if errors else "",
        lines_per_stream=expected_lines(kind, args.tokens),
        wall_ms=statistics.median(walls) * 1000,
        ttfl_ms=statistics.median(ttfls) * 1000,
        lines_per_s=statistics.median(rates),
    )


async def paced(args: argparse.Namespace) -> None:
    """`streams` paced streams opened within `ramp` seconds, all held open.

    Every `tick` seconds a `tick` event tells how many streams have their first
    line (`open`) and how many ended (`done`), with the lines so far, so the
    caller can sample the server while every stream is open.
    """
    kind: Kind = args.kind
    sse = kind == "openai"
    request = request_bytes(
        kind, args.port, body_for(kind, PACED_MODEL, args.tokens, stream=True)
    )
    progress = Progress(per_line=2 if sse else 1)
    ended = 0

    async def one(delay: float) -> str:
        nonlocal ended
        await asyncio.sleep(delay)
        try:
            exchange = await connect(args.port, progress, sse)
        except OSError as exc:
            ended += 1
            return f"connect: {exc}"
        try:
            result = await exchange.send(request)
        finally:
            exchange.close()
            ended += 1
        return check(result, kind, True, args.tokens)

    async def ticker() -> None:
        while True:
            _emit(
                event="tick",
                t=time.perf_counter() - began,
                lines=progress.lines,
                open=progress.first_lines,
                done=ended,
            )
            await asyncio.sleep(args.tick)

    began = time.perf_counter()
    step = args.ramp / args.streams
    ticks = asyncio.ensure_future(ticker())
    tasks = [asyncio.ensure_future(one(i * step)) for i in range(args.streams)]
    done, pending = await asyncio.wait(tasks, timeout=args.timeout)
    ticks.cancel()
    for task in pending:
        task.cancel()
    problems = [t.result() for t in done]
    errors = [p for p in problems if p]
    _emit(
        event="result",
        streams=args.streams,
        completed=len(problems) - len(errors),
        errors=len(errors) + len(pending),
        first_error=errors[0] if errors else ("timeout" if pending else ""),
        lines=progress.lines,
        seconds=time.perf_counter() - began,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("nonstream", "streams", "paced"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kind", choices=("ollama", "openai"), default="ollama")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=2.5)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--ramp", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--tick", type=float, default=0.25)
    args = parser.parse_args()
    raise_nofile()
    modes = {"nonstream": nonstream, "streams": streams, "paced": paced}
    run(modes[args.mode](args))


if __name__ == "__main__":
    main()
