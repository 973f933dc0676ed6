"""Correctness of the hot-path shortcuts the benchmarks led to (run by `make test`).

`ChunkReader` splits a long read into MAX_BATCH parts and keeps one deadline
timer per stream instead of `asyncio.timeout_at` per read; `SSEParser` takes a
read of one whole event by a shortcut; `now_rfc3339` formats the second once.
Each must behave exactly as the plain version did.
No timing is asserted: the timeouts here only have to fire at all.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime

import msgspec
import pytest

from ollama_gateway.clock import now_rfc3339
from ollama_gateway.completion import MAX_BATCH, ChunkReader
from ollama_gateway.context import RequestContext
from ollama_gateway.errors import UpstreamProtocolError, UpstreamTimeoutError
from ollama_gateway.protocols import NoConfig
from ollama_gateway.schemas import ollama
from ollama_gateway.settings import Settings, TimeoutSettings
from ollama_gateway.sse import SSEParser
from ollama_gateway_translators.openai_to_ollama import ChatResponseMapper


def _event(content: str | None = None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


class _Upstream:
    """Pieces as given; a piece of None waits until cancelled (a stall)."""

    status = 200
    headers: Mapping[str, str] = {"Content-Type": "text/event-stream"}

    def __init__(self, pieces: list[bytes | None]) -> None:
        self._pieces = pieces

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            if piece is None:
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(0)
                yield piece

    async def aread(self) -> bytes:
        return b""

    async def aclose(self) -> None:
        pass


def _reader(pieces: list[bytes | None], **timeouts: float) -> ChunkReader:
    settings = Settings.load({})
    if timeouts:
        settings = msgspec.structs.replace(
            settings, timeouts=TimeoutSettings(**timeouts)
        )
    ctx = RequestContext(request_id="t", endpoint="chat", model="m")
    ctx.upstream_sent_ns = time.perf_counter_ns()
    session = ChatResponseMapper(NoConfig(), None).open_stream(ctx)
    return ChunkReader(ctx, _Upstream(pieces), session, settings)


async def _batches(reader: ChunkReader) -> list[list[ollama.ChatResponse]]:
    out = []
    while (batch := await reader.read()) is not None:
        out.append(list(batch))
    return out


async def test_a_long_read_goes_out_in_parts_in_order() -> None:
    count = 3 * MAX_BATCH + 5
    body = b"".join(_event(f"t{i}") for i in range(count))
    body += _event(finish="stop") + b"data: [DONE]\n\n"
    batches = await _batches(_reader([body]))
    assert all(len(b) <= MAX_BATCH for b in batches[:-1])
    lines = [c for b in batches for c in b]
    assert [c.message.content for c in lines[:-1]] == [f"t{i}" for i in range(count)]
    assert lines[-1].done and lines[-1].eval_count == count


async def test_lines_before_a_bad_event_in_a_long_read_still_go_out() -> None:
    good = MAX_BATCH + 10
    body = b"".join(_event(f"t{i}") for i in range(good))
    body += b"data: {not json\n\n" + _event("never") + b"data: [DONE]\n\n"
    reader = _reader([body])
    seen: list[str] = []
    with pytest.raises(UpstreamProtocolError):
        while (batch := await reader.read()) is not None:
            seen += [c.message.content for c in batch]
    assert seen == [f"t{i}" for i in range(good)]


async def test_idle_timeout_fires_after_some_chunks() -> None:
    reader = _reader([_event("a"), None], idle=0.05, first_token=30.0)
    first = await reader.read()
    assert first is not None and first[0].message.content == "a"
    with pytest.raises(UpstreamTimeoutError):
        await reader.read()
    assert reader._timer is None


async def test_first_token_timeout_fires_on_a_silent_backend() -> None:
    reader = _reader([None], first_token=0.05, idle=30.0)
    with pytest.raises(UpstreamTimeoutError):
        await reader.read()


async def test_reads_that_keep_coming_move_the_deadline_on() -> None:
    # Each piece comes well within `idle` of the last, so no timeout at all,
    # although the whole answer takes longer than `idle`.
    class Slow(_Upstream):
        async def aiter_bytes(self) -> AsyncIterator[bytes]:
            for i in range(6):
                await asyncio.sleep(0.02)
                yield _event(f"t{i}")
            yield _event(finish="stop") + b"data: [DONE]\n\n"

    reader = _reader([], idle=0.08, first_token=30.0)
    reader._it = aiter(Slow([]).aiter_bytes())
    lines = [c for b in await _batches(reader) for c in b]
    assert [c.message.content for c in lines[:-1]] == [f"t{i}" for i in range(6)]
    assert reader._timer is None


async def test_a_cancel_from_outside_stays_a_cancel() -> None:
    reader = _reader([None], first_token=30.0)
    task = asyncio.ensure_future(reader.read())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelling() == 1
    assert reader._timer is None


async def test_the_timer_is_released_when_the_answer_ends() -> None:
    reader = _reader([_event("a") + _event(finish="stop") + b"data: [DONE]\n\n"])
    await _batches(reader)
    assert reader._timer is None


def test_now_rfc3339_is_ollamas_format_and_current() -> None:
    stamp = now_rfc3339()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 5


def test_sse_one_whole_event_per_read_is_the_same_as_the_general_path() -> None:
    parser = SSEParser(max_event_bytes=64)
    assert parser.feed(b"data: {}\n\n") == [b"{}"]
    assert parser.feed(b"data: \n\n") == [b""]
    assert parser.feed(b"data: a\ndata: b\n\n") == [b"a\nb"]
    assert parser.feed(b"data: x\r\n\r\n") == [b"x"]
    assert parser.feed(b"data: part") == []
    assert parser.feed(b"ial\n\n") == [b"partial"]
    assert parser.feed(b"data: " + b"x" * 58 + b"\n\n") == [b"x" * 58]
    with pytest.raises(UpstreamProtocolError):
        parser.feed(b"data: " + b"x" * 59 + b"\n\n")
