"""Graceful shutdown of a real gateway process: on SIGTERM or SIGINT it stops
accepting, lets streams finish within `[server] shutdown_grace`, ends the rest
with an `{"error": ...}` line, closes its upstream connections and exits 0."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import aiohttp
import pytest

from ollama_gateway.shutdown import SHUTDOWN
from tests.fakebackend import FakeBackend, Script, chat_chunk, sse
from tests.ops import Gateway, start_gateway

STREAMS = 20
MARGIN = 15.0  # seconds on top of the grace period: generous, only against hangs


@pytest.fixture
async def launch(tmp_path):
    started: list[Gateway] = []

    async def make(toml: str, **env: str) -> Gateway:
        gateway = await start_gateway(tmp_path, toml, **env)
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        if gateway.proc.returncode is None:
            gateway.proc.kill()
            await gateway.proc.wait()


async def _stream(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    started: asyncio.Event,
) -> list[dict[str, Any]]:
    """Read one NDJSON stream to its end; set `started` at the first line."""
    lines: list[dict[str, Any]] = []
    async with session.post(url + "/api/chat", json=body) as resp:
        assert resp.status == 200, await resp.text()
        async for raw in resp.content:
            lines.append(json.loads(raw))
            started.set()
    return lines


def _demo(grace: float, tokens_per_second: float = 5) -> str:
    return f"""
[server]
shutdown_grace = {grace}

[translators.demo]
tokens_per_second = {tokens_per_second}
"""


def _fake_backend(backend: FakeBackend, grace: float) -> str:
    """Settings for a gateway in front of the fake backend, with a short grace."""
    return f"""
[server]
shutdown_grace = {grace}

[[backends]]
name = "fake"
base_url = "{backend.url}"
models = ["gpt-4o"]
"""


def _whole_or_error(lines: list[dict[str, Any]]) -> str:
    """ "whole" for a complete answer, "error" for one ended by an error line."""
    assert lines, "no line at all"
    last = lines[-1]
    if "error" in last:
        assert set(last) == {"error"}
        assert not any(line.get("done") for line in lines)
        return "error"
    assert last["done"] is True
    assert all(line["done"] is False for line in lines[:-1])
    return "whole"


def _assert_clean_log(gateway: Gateway) -> None:
    lines = gateway.lines()  # every line is JSON
    bad = [
        line
        for line in lines
        if line["level"] in ("ERROR", "CRITICAL") or "Traceback" in json.dumps(line)
    ]
    assert not bad, bad


async def _open_streams(
    session: aiohttp.ClientSession, gateway: Gateway, body: dict[str, Any]
) -> tuple[list[asyncio.Task[list[dict[str, Any]]]], float]:
    events = [asyncio.Event() for _ in range(STREAMS)]
    tasks = [
        asyncio.create_task(_stream(session, gateway.url, body, event))
        for event in events
    ]
    async with asyncio.timeout(30):
        await asyncio.gather(*(event.wait() for event in events))
    return tasks, time.monotonic()


async def _drain(
    gateway: Gateway, body: dict[str, Any], *signals: signal.Signals
) -> tuple[int, list[list[dict[str, Any]]]]:
    """Open the streams, send `signals` (the first alone), then the exit
    code and every stream's lines."""
    first, *more = signals
    async with aiohttp.ClientSession() as session:
        tasks, _ = await _open_streams(session, gateway, body)
        gateway.proc.send_signal(first)
        if more:
            await asyncio.sleep(0.2)  # in the drain
        for signum in more:
            gateway.proc.send_signal(signum)
        code = await gateway.wait_exit(20 + MARGIN)
        async with asyncio.timeout(MARGIN):
            return code, await asyncio.gather(*tasks)


async def test_sigterm_lets_streams_finish_within_the_grace(launch):
    gateway = await launch(_demo(grace=20))
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
    code, results = await _drain(gateway, body, signal.SIGTERM)
    assert code == 0
    assert [_whole_or_error(r) for r in results] == ["whole"] * STREAMS
    assert all(
        "You said: hi" in "".join(x["message"]["content"] for x in r) for r in results
    )
    _assert_clean_log(gateway)


async def test_sigterm_ends_long_streams_with_an_error_line(launch):
    grace = 1.0
    gateway = await launch(_demo(grace=grace))
    words = " ".join(f"word{i}" for i in range(40))  # about 10 s at 5 words/s
    body = {"model": "demo", "messages": [{"role": "user", "content": words}]}
    async with aiohttp.ClientSession() as session:
        tasks, _ = await _open_streams(session, gateway, body)
        waiting = asyncio.create_task(
            session.post(gateway.url + "/api/chat", json={**body, "stream": False})
        )
        await asyncio.sleep(0.2)
        signalled = time.monotonic()
        gateway.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(gateway.url + "/health")
        code = await gateway.wait_exit(grace + MARGIN)
        exited = time.monotonic() - signalled
        async with asyncio.timeout(MARGIN):
            results = await asyncio.gather(*tasks)
            plain = await waiting
            plain_body = await plain.json()
    assert code == 0
    assert exited < grace + MARGIN
    assert [_whole_or_error(r) for r in results] == ["error"] * STREAMS
    assert all(r[-1] == {"error": SHUTDOWN} for r in results)
    assert all(len(r) > 1 for r in results)  # the output before it was kept
    assert plain.status == 503
    assert plain_body == {"error": SHUTDOWN}
    _assert_clean_log(gateway)
    shutdown_lines = [
        line
        for line in gateway.lines()
        if line.get("logger") == "ollama_gateway.access"
        and line.get("outcome") == "shutdown"
    ]
    assert len(shutdown_lines) == STREAMS


async def test_sigint_drains_too(launch):
    gateway = await launch(_demo(grace=20))
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
    code, results = await _drain(gateway, body, signal.SIGINT)
    assert code == 0
    assert {_whole_or_error(r) for r in results} == {"whole"}
    _assert_clean_log(gateway)


async def test_idle_gateway_exits_at_once(launch):
    gateway = await launch(_demo(grace=60))
    started = time.monotonic()
    gateway.proc.send_signal(signal.SIGTERM)
    assert await gateway.wait_exit(MARGIN) == 0
    assert time.monotonic() - started < MARGIN
    _assert_clean_log(gateway)


async def test_upstream_connections_are_closed(launch, backend: FakeBackend):
    events = [sse(chat_chunk({"content": f"w{i} "}), done=False) for i in range(200)]
    for _ in range(3):
        backend.queue(Script(pieces=events, delay=0.1))
    gateway = await launch(_fake_backend(backend, grace=0.5))
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    async with aiohttp.ClientSession() as session:
        started = [asyncio.Event() for _ in range(3)]
        tasks = [
            asyncio.create_task(_stream(session, gateway.url, body, event))
            for event in started
        ]
        async with asyncio.timeout(30):
            await asyncio.gather(*(event.wait() for event in started))
        gateway.proc.send_signal(signal.SIGTERM)
        assert await gateway.wait_exit(0.5 + MARGIN) == 0
        async with asyncio.timeout(MARGIN):
            results = await asyncio.gather(*tasks)
            # The backend saw its clients hang up: no generation left running.
            await backend.disconnected.wait()
    assert {_whole_or_error(r) for r in results} == {"error"}
    assert len(backend.completions()) == 3
    _assert_clean_log(gateway)


async def test_other_requests_in_flight_end_at_the_grace_too(
    launch, backend: FakeBackend
):
    backend.queue(Script.text("far too late", first_delay=60))
    gateway = await launch(_fake_backend(backend, grace=0.5))
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    async with aiohttp.ClientSession() as session:
        waiting = asyncio.create_task(
            session.post(gateway.url + "/v1/chat/completions", json=body)
        )
        for _ in range(600):  # the request reached the backend
            if backend.completions():
                break
            await asyncio.sleep(0.05)
        assert backend.completions()
        gateway.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(MARGIN):
            resp = await waiting
            answer = await resp.json()
        assert await gateway.wait_exit(MARGIN) == 0
    assert resp.status == 503
    # An OpenAI route: the message in OpenAI's envelope, which its clients read.
    assert answer["error"]["message"] == SHUTDOWN
    await asyncio.wait_for(backend.disconnected.wait(), MARGIN)
    _assert_clean_log(gateway)


async def test_sigterm_ends_a_long_v1_stream_with_an_error_event(launch):
    grace = 1.0
    gateway = await launch(_demo(grace=grace))
    words = " ".join(f"word{i}" for i in range(40))  # about 10 s at 5 words/s
    body = {
        "model": "demo",
        "messages": [{"role": "user", "content": words}],
        "stream": True,
    }
    events: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        async with session.post(
            gateway.url + "/v1/chat/completions", json=body
        ) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/event-stream"
            async with asyncio.timeout(grace + MARGIN):
                async for raw in resp.content:
                    line = raw.decode().strip()
                    if line.startswith("data: ") and line != "data: [DONE]":
                        events.append(json.loads(line.removeprefix("data: ")))
                        if len(events) == 3:
                            gateway.proc.send_signal(signal.SIGTERM)
    assert await gateway.wait_exit(MARGIN) == 0
    assert len(events) > 3 and all("choices" in e for e in events[:-1])
    assert events[-1] == {
        "error": {
            "message": SHUTDOWN,
            "type": "api_error",
            "code": "shutting_down",
            "param": None,
        }
    }
    _assert_clean_log(gateway)


async def test_sigterm_ends_a_long_responses_stream_with_failed(launch):
    grace = 1.0
    gateway = await launch(_demo(grace=grace))
    words = " ".join(f"word{i}" for i in range(40))  # about 10 s at 5 words/s
    body = {"model": "demo", "input": words, "stream": True}
    events: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        async with session.post(gateway.url + "/v1/responses", json=body) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/event-stream"
            async with asyncio.timeout(grace + MARGIN):
                async for raw in resp.content:
                    line = raw.decode().strip()
                    if line.startswith("data: "):
                        events.append(json.loads(line.removeprefix("data: ")))
                        if len(events) == 6:
                            gateway.proc.send_signal(signal.SIGTERM)
    assert await gateway.wait_exit(MARGIN) == 0
    kinds = [e["type"] for e in events]
    assert "response.output_text.delta" in kinds
    assert kinds[-2:] == ["error", "response.failed"]
    assert events[-2]["code"] == "shutting_down"
    assert events[-1]["response"]["error"] == {
        "code": "shutting_down",
        "message": SHUTDOWN,
    }
    # The message the shutdown cut ends incomplete, with its text so far.
    [message] = events[-1]["response"]["output"]
    assert message["status"] == "incomplete"
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert message["content"][0]["text"] == "".join(deltas)
    assert events[-3]["type"] == "response.output_item.done"
    _assert_clean_log(gateway)


async def test_sigterm_ends_a_long_messages_stream_with_an_error_event(launch):
    grace = 1.0
    gateway = await launch(_demo(grace=grace))
    words = " ".join(f"word{i}" for i in range(40))  # about 10 s at 5 words/s
    body = {
        "model": "demo",
        "max_tokens": 500,
        "messages": [{"role": "user", "content": words}],
        "stream": True,
    }
    events: list[tuple[str, dict[str, Any]]] = []
    async with aiohttp.ClientSession() as session:
        async with session.post(gateway.url + "/v1/messages", json=body) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/event-stream"
            name = ""
            async with asyncio.timeout(grace + MARGIN):
                async for raw in resp.content:
                    line = raw.decode().strip()
                    if line.startswith("event: "):
                        name = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        events.append((name, json.loads(line.removeprefix("data: "))))
                        if len(events) == 5:
                            gateway.proc.send_signal(signal.SIGTERM)
    assert await gateway.wait_exit(MARGIN) == 0
    names = [name for name, _ in events]
    assert names[0] == "message_start" and "message_stop" not in names
    assert len(events) > 5
    assert events[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": SHUTDOWN}},
    )
    _assert_clean_log(gateway)


async def test_a_second_signal_does_not_cut_the_drain(launch):
    # Ctrl-C twice, or a stop sent to the process and again to its group:
    # aiohttp's own handlers raised again in the drain, so the streams were
    # cut without their last line, two tracebacks were logged and the exit
    # code was 1.
    gateway = await launch(_demo(grace=20))
    words = " ".join(f"word{i}" for i in range(10))  # about 3 s at 5 words/s
    body = {"model": "demo", "messages": [{"role": "user", "content": words}]}
    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGTERM)
    code, results = await _drain(gateway, body, *signals)
    assert code == 0
    assert [_whole_or_error(r) for r in results] == ["whole"] * STREAMS
    _assert_clean_log(gateway)


@pytest.mark.parametrize("late", [False, True])
async def test_a_request_that_starts_once_the_drain_began_is_bounded_too(
    gateway, backend: FakeBackend, late: bool
):
    # The grace timer was armed only if a request was in flight when the drain
    # began; one whose handler started a moment later (its head read in the
    # same turn of the loop) then ran unbounded, held by a slow backend until
    # aiohttp's own timeout cut its connection without an answer. One that
    # starts once the grace is over gets its 503 before it is sent upstream.
    backend.queue(Script.text("far too late", first_delay=60))
    client = await gateway(backend, toml="[server]\nshutdown_grace = 0.3\n")
    await client.app.shutdown()  # the drain begins with nothing in flight
    if late:
        await asyncio.sleep(0.5)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    async with asyncio.timeout(MARGIN):
        resp = await client.post("/api/chat", json=body)
        answer = await resp.json()
        if not late:
            await backend.disconnected.wait()
    assert resp.status == 503
    assert answer == {"error": SHUTDOWN}
    assert len(backend.completions()) == (0 if late else 1)
