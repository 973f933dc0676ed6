"""`--workers N`: N processes on one port. A scrape reaches one worker, yet
counts every worker's requests (one metrics directory for all of them), and a
`/v1/responses` follow-up finds its conversation whichever worker kept it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from ollama_gateway.metrics import MULTIPROCESS_DIR
from ollama_gateway.serve import START_ATTEMPTS, failed_workers
from tests.conftest import FAST_DEMO
from tests.fakebackend import FakeBackend, Script, chat_chunk, sse
from tests.ops import Gateway, Samples, free_port, start_gateway

BOUND = 30.0
REQUESTS = 40
WORKERS = "[server]\nworkers = 2\n"  # no backend: the demo answers


async def _both_workers_up(gateway: Gateway) -> None:
    """Until two processes have answered `/health` (the gateway is reported up
    as soon as the first one does)."""
    pids: set[int] = set()
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with asyncio.timeout(BOUND):
            while len(pids) < 2:
                try:
                    async with session.get(gateway.url + "/health") as resp:
                        pids.add((await resp.json())["pid"])
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.02)


async def _tags_then_scrapes(gateway: Gateway) -> list[float]:
    """REQUESTS `/api/tags` and six scrapes, each on a new connection, so that
    the kernel spreads them over the workers."""
    counts = []
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(REQUESTS):
            async with session.get(gateway.url + "/api/tags") as resp:
                assert resp.status == 200
        await asyncio.sleep(0.1)  # the last request line is recorded after its answer
        for _ in range(6):
            async with session.get(gateway.url + "/metrics") as resp:
                samples = Samples(await resp.text())
            counts.append(
                samples.get("ollama_gateway_requests_total", endpoint="/api/tags")
            )
    return counts


def _metric_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("ollama-gateway-metrics-*"))


def _writers(shared: Path) -> set[str]:
    """The processes that wrote counters there (one file per process)."""
    return {p.stem.rsplit("_", 1)[1] for p in shared.glob("counter_*.db")}


async def test_every_scrape_counts_the_requests_of_all_workers(tmp_path: Path):
    shared = tmp_path / "metrics"
    shared.mkdir()
    gateway = await start_gateway(
        tmp_path, WORKERS, PROMETHEUS_MULTIPROC_DIR=str(shared)
    )
    try:
        await _both_workers_up(gateway)
        counts = await _tags_then_scrapes(gateway)
        # Both workers served and recorded requests (one file per process)...
        writers = _writers(shared)
        assert len(writers) == 2, (writers, gateway.log.read_text()[-3000:])
    finally:
        assert await gateway.stop(BOUND) == 0, gateway.log.read_text()[-3000:]
    # ... and every scrape, whichever worker answered it, counts them all.
    assert counts == [REQUESTS] * 6


async def test_the_supervisor_makes_and_removes_its_own_metrics_directory(
    tmp_path: Path,
):
    before = _metric_dirs()
    gateway = await start_gateway(tmp_path, WORKERS)
    try:
        made = _metric_dirs() - before
        assert len(made) == 1
        await _both_workers_up(gateway)
        assert await _tags_then_scrapes(gateway) == [REQUESTS] * 6
    finally:
        assert await gateway.stop(BOUND) == 0, gateway.log.read_text()[-3000:]
    assert not made & _metric_dirs()


async def test_a_worker_stopped_while_starting_exits_cleanly() -> None:
    # What a worker runs first: SIGTERM before its server is up ends it with 0.
    code = (
        "import os, signal, time\n"
        "from ollama_gateway.serve import stop_cleanly_until_serving\n"
        "stop_cleanly_until_serving()\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(10)\n"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
    async with asyncio.timeout(BOUND):
        assert await proc.wait() == 0


async def test_a_worker_stopped_while_starting_takes_one_stop_only() -> None:
    # Ctrl-C reaches a starting worker twice (from the terminal, and passed
    # on by the supervisor): the second, met during the exit, raised again,
    # an "Exception ignored" traceback.
    code = (
        "import atexit, os, signal, time\n"
        "from ollama_gateway.serve import stop_cleanly_until_serving\n"
        "stop_cleanly_until_serving()\n"
        "atexit.register(os.kill, os.getpid(), signal.SIGINT)\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(10)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(BOUND):
        _, stderr = await proc.communicate()
    assert (proc.returncode, stderr.decode()) == (0, "")


async def test_a_worker_stopped_in_a_callback_while_starting_exits() -> None:
    # A stop that landed in a callback (importlib's module locks have them,
    # and a starting worker is mostly importing) raised its SystemExit
    # there, where it is "ignored": the worker, deaf to any further stop,
    # went on to serve while the supervisor waited for it (seen as a hung
    # stop under load).
    code = (
        "import os, signal, time, weakref\n"
        "from ollama_gateway.serve import stop_cleanly_until_serving\n"
        "stop_cleanly_until_serving()\n"
        "def stop(ref):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "class Thing: pass\n"
        "thing = Thing()\n"
        "ref = weakref.ref(thing, stop)\n"
        "del thing\n"
        "print('served on', flush=True)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(BOUND):
        stdout, stderr = await proc.communicate()
    assert (proc.returncode, stdout.decode(), stderr.decode()) == (0, "", "")


def test_a_worker_the_stop_ended_before_its_handlers_is_no_failure() -> None:
    # Still importing when the supervisor passes SIGTERM on (a loaded host),
    # a worker dies of the signal's default action: that is the stop asked
    # for. The same death without a stop, or any other code, is a failure.
    codes = {"worker-1": 0, "worker-2": -signal.SIGTERM, "worker-3": -signal.SIGINT}
    assert failed_workers(codes, stopping=True) == []
    assert failed_workers(codes, stopping=False) == ["worker-2", "worker-3"]
    assert failed_workers({"worker-1": 1, "worker-2": -9}, stopping=True) == [
        "worker-1",
        "worker-2",
    ]


async def _live_pids(gateway: Gateway, wanted: int, without: int) -> set[int]:
    """Until `wanted` processes other than `without` have answered `/health`."""
    pids: set[int] = set()
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with asyncio.timeout(BOUND):
            while len(pids - {without}) < wanted:
                try:
                    async with session.get(gateway.url + "/health") as resp:
                        pids.add((await resp.json())["pid"])
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.02)
    return pids - {without}


async def test_a_killed_worker_is_replaced_and_its_live_gauges_dropped(
    tmp_path: Path, backend: FakeBackend
):
    # The OOM killer, or `kill -9`: the supervisor noticed nothing until it
    # stopped, served on with one worker less, and every scrape still counted
    # the dead worker's stream as in flight.
    shared = tmp_path / "metrics"
    shared.mkdir()
    events = [sse(chat_chunk({"content": f"w{i} "}), done=False) for i in range(100)]
    backend.queue(Script(pieces=events, delay=0.1))
    gateway = await start_gateway(
        tmp_path,
        WORKERS,
        OPENAI_BASE_URL=backend.url,
        OPENAI_API_KEY="sk-test",
        PROMETHEUS_MULTIPROC_DIR=str(shared),
    )
    try:
        await _both_workers_up(gateway)
        # One connection: the stream is served by the worker /health named.
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.get(gateway.url + "/health") as resp:
                killed = (await resp.json())["pid"]
            body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
            async with session.post(gateway.url + "/api/chat", json=body) as resp:
                await resp.content.readline()  # the stream is open
                os.kill(killed, signal.SIGKILL)
                try:
                    await resp.read()
                except aiohttp.ClientPayloadError:
                    pass
        # Two workers answer again, neither of them the one killed.
        await _live_pids(gateway, 2, without=killed)
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.get(gateway.url + "/metrics") as resp:
                samples = Samples(await resp.text())
        assert samples.get("ollama_gateway_streams_in_flight") == 0
        errors = [line for line in gateway.lines() if line["level"] == "ERROR"]
        assert len(errors) == 1, errors
        [error] = errors
        assert re.fullmatch(
            rf"worker-\d \(pid {killed}\) was killed by SIGKILL; "
            "starting another in its place",
            error["msg"],
        ), error
    finally:
        # The drain is clean, yet a worker was lost with its requests.
        assert await gateway.stop(BOUND) == 1, gateway.log.read_text()[-3000:]
    assert gateway.lines()[-1]["msg"].startswith(
        "workers exited with an error: worker-"
    )


async def test_every_worker_lists_the_models_any_worker_served(tmp_path: Path):
    # Each request on a new connection, which the kernel gives either worker:
    # `/api/ps` listed the model on the worker that served it only.
    temporary = tmp_path / "tmp"  # where the supervisor makes its directories
    temporary.mkdir()
    gateway = await start_gateway(tmp_path, FAST_DEMO + WORKERS, TMPDIR=str(temporary))
    try:
        await _both_workers_up(gateway)
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            body = {"model": "demo", "stream": False, "messages": []}
            async with session.post(gateway.url + "/api/chat", json=body) as resp:
                assert resp.status == 200
            listed = []
            for _ in range(REQUESTS):
                async with session.get(gateway.url + "/api/ps") as resp:
                    models = (await resp.json())["models"]
                listed.append([m["name"] for m in models])
        [running] = temporary.glob("ollama-gateway-running-*")
        assert stat.S_IMODE(running.stat().st_mode) == 0o700
    finally:
        assert await gateway.stop(BOUND) == 0, gateway.log.read_text()[-3000:]
    assert listed == [["demo:latest"]] * REQUESTS
    assert list(temporary.iterdir()) == []


async def _stream_lines(
    session: aiohttp.ClientSession, gateway: Gateway, opened: asyncio.Event
) -> list[dict[str, Any]]:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    async with session.post(gateway.url + "/api/chat", json=body) as resp:
        lines = [json.loads(await resp.content.readline())]
        opened.set()
        async for line in resp.content:
            lines.append(json.loads(line))
    return lines


async def test_a_stop_sent_to_every_process_lets_the_streams_finish(
    tmp_path: Path, backend: FakeBackend
):
    # Ctrl-C in a terminal signals the whole process group, and systemd's
    # default KillMode every process of the unit: a worker got the stop from
    # there and again from the supervisor, and the second ended its drain at
    # once, cutting its streams without their last line.
    events = [sse(chat_chunk({"content": f"w{i} "}), done=False) for i in range(20)]
    events.append(sse(chat_chunk({}, finish="stop")))
    streams = 12
    backend.queue(*[Script(pieces=events, delay=0.1) for _ in range(streams)])
    gateway = await start_gateway(
        tmp_path,
        WORKERS + "shutdown_grace = 20\n",
        OPENAI_BASE_URL=backend.url,
        OPENAI_API_KEY="sk-test",
    )
    try:
        workers = await _live_pids(gateway, 2, without=0)
        # New connections, which the kernel gives either worker.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            opened = [asyncio.Event() for _ in range(streams)]
            reads = [
                asyncio.create_task(_stream_lines(session, gateway, event))
                for event in opened
            ]
            async with asyncio.timeout(BOUND):
                for event in opened:
                    await event.wait()
            for pid in workers:
                os.kill(pid, signal.SIGTERM)
            await asyncio.sleep(0.2)  # the supervisor's comes after, on its own
            assert gateway.proc.returncode is None
            gateway.proc.send_signal(signal.SIGTERM)
            answers = await asyncio.gather(*reads)
        words = [f"w{i} " for i in range(20)]
        for *tokens, last in answers:
            assert last["done"] is True, last
            assert [t["message"]["content"] for t in tokens] == words
    finally:
        assert await gateway.stop(BOUND) == 0, gateway.log.read_text()[-3000:]


def _gone(pid: int) -> bool:
    """Exited (a zombie, once its parent is gone, until init reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            return stat_file.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def test_workers_drain_and_exit_when_the_supervisor_is_killed(
    tmp_path: Path, backend: FakeBackend
):
    # SIGKILL cannot be passed on: the workers served on as orphans for ever,
    # old settings and all, sharing the port with any gateway started after.
    events = [sse(chat_chunk({"content": f"w{i} "}), done=False) for i in range(20)]
    events.append(sse(chat_chunk({}, finish="stop")))
    backend.queue(Script(pieces=events, delay=0.1))
    temporary = tmp_path / "tmp"  # where the supervisor makes its directories
    temporary.mkdir()
    gateway = await start_gateway(
        tmp_path,
        WORKERS,
        OPENAI_BASE_URL=backend.url,
        OPENAI_API_KEY="sk-test",
        TMPDIR=str(temporary),
    )
    try:
        workers = await _live_pids(gateway, 2, without=0)
        async with aiohttp.ClientSession() as session:
            opened = asyncio.Event()
            read = asyncio.create_task(_stream_lines(session, gateway, opened))
            async with asyncio.timeout(BOUND):
                await opened.wait()
            gateway.proc.kill()
            *tokens, last = await read
        # The open stream was let finish...
        assert last["done"] is True
        assert len(tokens) == 20
        # ... and both workers exited.
        for _ in range(int(BOUND / 0.05)):
            if all(_gone(pid) for pid in workers):
                break
            await asyncio.sleep(0.05)
        assert all(_gone(pid) for pid in workers)
    finally:
        await gateway.stop(BOUND)
        for pid in workers:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
    warnings = [line["msg"] for line in gateway.lines() if line["level"] == "WARNING"]
    assert sorted(warnings) == [
        f"the supervisor is gone: worker-{n} stops" for n in (1, 2)
    ]


# Each turn is on a new connection, which the kernel gives either worker: a
# chain of this many stays on one worker once in 2**(TURNS - 1) runs.
TURNS = 16


async def _turn(
    session: aiohttp.ClientSession, gateway: Gateway, turn: int, previous: str | None
) -> str:
    """One `/v1/responses` request of the chain (streamed every other turn);
    the id of its response."""
    body: dict[str, object] = {"model": "gpt-4o", "input": f"turn {turn}"}
    if previous is not None:
        body["previous_response_id"] = previous
    body["stream"] = turn % 2 == 1
    async with session.post(gateway.url + "/v1/responses", json=body) as resp:
        text = await resp.text()
        assert resp.status == 200, text
    if not body["stream"]:
        return str(json.loads(text)["id"])
    *_, last = (line for line in text.splitlines() if line.startswith("data: "))
    event = json.loads(last.removeprefix("data: "))
    assert event["type"] == "response.completed", event
    return str(event["response"]["id"])


def _responders(shared: Path) -> set[str]:
    """The processes that counted a `/v1/responses` request."""
    found = set()
    for path in shared.glob("counter_*.db"):
        merged = MultiProcessCollector.merge([str(path)])  # type: ignore[no-untyped-call]
        for family in merged:
            for sample in family.samples:
                if sample.labels.get("endpoint") == "/v1/responses" and sample.value:
                    found.add(path.stem.rsplit("_", 1)[1])
    return found


async def test_a_follow_up_finds_its_conversation_on_any_worker(
    tmp_path: Path, backend: FakeBackend
):
    shared = tmp_path / "metrics"
    shared.mkdir()
    temporary = tmp_path / "tmp"  # where the supervisor makes its directories
    temporary.mkdir()
    gateway = await start_gateway(
        tmp_path,
        WORKERS,
        OPENAI_BASE_URL=backend.url,
        OPENAI_API_KEY="sk-test",
        PROMETHEUS_MULTIPROC_DIR=str(shared),
        TMPDIR=str(temporary),
    )
    try:
        await _both_workers_up(gateway)
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            previous = None
            for turn in range(TURNS):
                previous = await _turn(session, gateway, turn, previous)
        [kept] = temporary.glob("ollama-gateway-responses-*")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o700
        files = list(kept.iterdir())
        assert len(files) == TURNS
        assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
    finally:
        assert await gateway.stop(BOUND) == 0, gateway.log.read_text()[-3000:]
    assert not kept.exists()
    # The chain went from one worker to the other (counted by both; read once
    # they have exited, as a count is recorded after its answer).
    assert len(_responders(shared)) == 2
    # Every turn reached the backend with the whole conversation before it.
    sent = [r.body["messages"] for r in backend.completions()]
    assert len(sent) == TURNS
    for turn, messages in enumerate(sent):
        expected = []
        for earlier in range(turn):
            expected += [f"turn {earlier}", "Hello from fake"]
        assert [m["content"] for m in messages] == [*expected, f"turn {turn}"]


def test_a_failed_start_leaves_no_directory_behind(tmp_path: Path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    (tmp_path / "w.toml").write_text(WORKERS)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
    environ.pop(MULTIPROCESS_DIR, None)
    environ["TMPDIR"] = str(temporary)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = subprocess.run(
            [sys.executable, "-m", "ollama_gateway", "serve", "--port", port],
            env={**environ, "OLLAMA_GATEWAY_CONFIG": str(tmp_path / "w.toml")},
            capture_output=True,
            text=True,
            timeout=BOUND,
        )
    # Both workers failed to listen, and the supervisor removed what it made.
    assert result.returncode == 1
    assert result.stderr.count("cannot listen") == 2, result.stderr
    assert list(temporary.iterdir()) == []


async def test_a_worker_that_fails_by_itself_is_replaced(tmp_path: Path):
    # An unexpected exception (here at its start) ended worker-2 with code 1:
    # only a worker killed by a signal was replaced, so the gateway served on
    # with one worker less until it was stopped.
    gateway = await start_gateway(
        tmp_path,
        FAST_DEMO + WORKERS,
        module="tests.flaky_worker",
        FLAKY_WORKER="2:1",
        FLAKY_WORKER_DIR=str(tmp_path),
    )
    try:
        await _both_workers_up(gateway)
        # Each a JSON line: the worker's error with its traceback, then the
        # supervisor's.
        lines = gateway.lines()
        failure, replaced = [line for line in lines if line["level"] == "ERROR"]
        assert failure["msg"] == "worker-2 failed"
        assert "RuntimeError: worker-2 fails its start 1" in failure["exc"]
        assert re.fullmatch(
            r"worker-2 \(pid \d+\) exited with code 1; "
            "starting another in its place",
            replaced["msg"],
        ), replaced
        assert (tmp_path / "worker-2").read_text() == "start\n" * 2
    finally:
        # The drain is clean, yet a worker had failed.
        assert await gateway.stop(BOUND) == 1, gateway.log.read_text()[-3000:]


def test_a_worker_that_never_starts_stops_the_gateway(tmp_path: Path):
    # Failing at every start, it was restarted (or, before, left out) for
    # ever: the supervisor gives up after START_ATTEMPTS, stops the worker
    # that serves, and exits 1 for the orchestrator to see.
    (tmp_path / "w.toml").write_text(FAST_DEMO + WORKERS)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
    environ.pop(MULTIPROCESS_DIR, None)
    environ.update(
        OLLAMA_GATEWAY_CONFIG=str(tmp_path / "w.toml"),
        FLAKY_WORKER="2:*",
        FLAKY_WORKER_DIR=str(tmp_path),
        FLAKY_WORKER_PAUSE="0.05",
    )
    port = str(free_port())
    result = subprocess.run(
        [sys.executable, "-m", "tests.flaky_worker", "serve", "--port", port],
        env=environ,
        capture_output=True,
        text=True,
        timeout=BOUND * 2,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert (tmp_path / "worker-2").read_text() == "start\n" * START_ATTEMPTS
    lines = [json.loads(line) for line in result.stderr.splitlines() if line[:1] == "{"]
    messages = [line["msg"] for line in lines if line["level"] == "ERROR"]
    assert messages[-2:] == [
        f"worker-2 failed {START_ATTEMPTS} times in a row before serving "
        "(last: exited with code 1); giving up: stopping the other workers",
        "workers exited with an error: " + ", ".join(["worker-2"] * START_ATTEMPTS),
    ]


async def test_a_worker_stopped_alone_is_replaced(tmp_path: Path):
    # A SIGTERM sent to one worker's pid: it drained and exited 0, and the
    # supervisor, not stopping itself, took that for the end of it and served
    # on one worker short for good.
    gateway = await start_gateway(tmp_path, FAST_DEMO + WORKERS)
    try:
        await _both_workers_up(gateway)
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.get(gateway.url + "/health") as resp:
                stopped = (await resp.json())["pid"]
        os.kill(stopped, signal.SIGTERM)
        # Two workers answer again, neither of them the one stopped.
        await _live_pids(gateway, 2, without=stopped)
        [warning] = [
            line["msg"]
            for line in gateway.lines()
            if line["level"] == "WARNING" and "worker-" in line["msg"]
        ]
        assert re.fullmatch(
            rf"worker-\d \(pid {stopped}\) exited though the gateway was not "
            "stopping; starting another in its place",
            warning,
        ), warning
    finally:
        # Nothing was lost: the worker drained.
        assert await gateway.stop(BOUND) == 0, gateway.log.read_text()[-3000:]


async def test_port_0_gives_every_worker_the_same_port(tmp_path: Path):
    # Each worker asked the kernel for a port of its own: the gateway listened
    # on two random ports and logged one, so half its capacity was unreachable.
    config = tmp_path / "w.toml"
    config.write_text(FAST_DEMO + WORKERS)
    log = tmp_path / "stderr.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
    environ.pop(MULTIPROCESS_DIR, None)
    environ.update(OLLAMA_GATEWAY_CONFIG=str(config), LOG_LEVEL="INFO")
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "ollama_gateway", "serve", "--port", "0"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
            env=environ,
        )
    gateway = Gateway(proc, 0, log)
    try:
        async with asyncio.timeout(BOUND):
            while not (
                found := re.search(r"listening on (http://[\w.:]+)", log.read_text())
            ):
                assert proc.returncode is None, log.read_text()
                await asyncio.sleep(0.05)
        gateway.url = found.group(1)
        # Both workers answer on the port the line names...
        await _both_workers_up(gateway)
        # ... and every connection is answered: none is left to the port's
        # holder, the supervisor, which does not listen.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(REQUESTS):
                async with session.get(gateway.url + "/health") as resp:
                    assert resp.status == 200
    finally:
        assert await gateway.stop(BOUND) == 0, log.read_text()[-3000:]


def test_ctrl_c_while_a_worker_starts_stops_without_a_traceback(tmp_path: Path):
    # The terminal's SIGINT reached a worker still importing: Python's
    # KeyboardInterrupt traceback, and the supervisor took it for a failure.
    (tmp_path / "w.toml").write_text(FAST_DEMO + WORKERS)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
    environ.pop(MULTIPROCESS_DIR, None)
    environ.update(
        OLLAMA_GATEWAY_CONFIG=str(tmp_path / "w.toml"), FLAKY_WORKER_CTRL_C="2"
    )
    result = subprocess.run(
        [sys.executable, "-m", "tests.flaky_worker", "serve", "--port", "0"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=BOUND,
        start_new_session=True,  # its own process group, as a terminal's job
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "KeyboardInterrupt" not in result.stderr


async def _session_per_worker(gateway: Gateway) -> list[aiohttp.ClientSession]:
    """Two sessions of one kept-alive connection each, answered by two
    different workers: a request on one reaches the worker it names."""
    sessions: dict[int, aiohttp.ClientSession] = {}
    async with asyncio.timeout(BOUND):
        while len(sessions) < 2:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
            pid = await _pid_of(session, gateway)
            if pid in sessions:
                await session.close()
            else:
                sessions[pid] = session
    return list(sessions.values())


async def _pid_of(session: aiohttp.ClientSession, gateway: Gateway) -> int:
    async with session.get(gateway.url + "/health") as resp:
        return int((await resp.json())["pid"])


async def _alias_seen(
    session: aiohttp.ClientSession, gateway: Gateway, name: str
) -> tuple[int, int, bool]:
    """The status of a chat to `name` and of its /api/show, and whether
    /api/tags lists it."""
    body = {"model": name, "stream": False, "messages": []}
    async with session.post(gateway.url + "/api/chat", json=body) as resp:
        chat = resp.status
        if chat == 200:
            assert (await resp.json())["model"] == name
    async with session.post(gateway.url + "/api/show", json={"model": name}) as resp:
        show = resp.status
    async with session.get(gateway.url + "/api/tags") as resp:
        listed = [m["name"] for m in (await resp.json())["models"]]
    return chat, show, f"{name}:latest" in listed


@pytest.mark.parametrize("configured", [False, True])
async def test_every_worker_serves_the_aliases_any_worker_made(
    tmp_path: Path, configured: bool
):
    # `ollama cp demo mine` reached one worker: the other answered 404 for
    # `mine` (chat, show, tags, delete), until its own next copy or delete,
    # or for good without `catalogue.aliases_file`.
    temporary = tmp_path / "tmp"  # where the supervisor makes its directories
    temporary.mkdir()
    toml = FAST_DEMO + WORKERS
    if configured:
        toml += f'[catalogue]\naliases_file = "{tmp_path / "aliases.json"}"\n'
    gateway = await start_gateway(tmp_path, toml, TMPDIR=str(temporary))
    sessions: list[aiohttp.ClientSession] = []
    try:
        await _both_workers_up(gateway)
        sessions = await _session_per_worker(gateway)
        one, other = sessions
        pids = [await _pid_of(s, gateway) for s in sessions]
        copy = {"source": "demo", "destination": "mine"}
        async with one.post(gateway.url + "/api/copy", json=copy) as resp:
            assert resp.status == 200
        assert await _alias_seen(other, gateway, "mine") == (200, 200, True)
        # As a client sees it: any connection, either worker.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as fresh:
            for _ in range(REQUESTS // 2):
                assert await _alias_seen(fresh, gateway, "mine") == (200, 200, True)
        gone = {"model": "mine"}
        async with other.delete(gateway.url + "/api/delete", json=gone) as resp:
            assert resp.status == 200
        assert await _alias_seen(one, gateway, "mine") == (404, 404, False)
        async with one.delete(gateway.url + "/api/delete", json=gone) as resp:
            assert resp.status == 404
        # Each session stayed on its worker throughout.
        assert [await _pid_of(s, gateway) for s in sessions] == pids
        made = list(temporary.glob("ollama-gateway-aliases-*"))
        if configured:
            assert made == []
        else:
            [shared] = made
            assert stat.S_IMODE(shared.stat().st_mode) == 0o700
    finally:
        for session in sessions:
            await session.close()
        assert await gateway.stop(BOUND) == 0, gateway.log.read_text()[-3000:]
    assert list(temporary.iterdir()) == []
