"""JSON logs: one line per request, startup lines, LOG_LEVEL, X-Request-ID end to
end, and never a key, an Authorization header or message text at any level."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import select
import threading
import time
from typing import Any

import aiohttp
import pytest

from ollama_gateway.log import (
    ACCESS_LOGGER,
    FLUSH_DELAY,
    BatchingStreamHandler,
    JsonFormatter,
)
from tests.conftest import FAST_DEMO
from tests.fakebackend import FakeBackend, Script, chat_chunk, sse
from tests.ndjson import CHAT, chat, post
from tests.ops import Gateway, start_gateway

BOUND = 30.0
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
REQUEST_FIELDS = {
    "request_id",
    "endpoint",
    "model",
    "status",
    "duration_ms",
    "ttft_ms",
    "prompt_tokens",
    "completion_tokens",
    "outcome",
}

INBOUND_KEY = "inbound-key-7b1f0c"
WRONG_KEY = "wrong-key-93aa2e"
BACKEND_KEY = "sk-backend-5d2e81"
SECRET_TEXT = "the-launch-code-is-4471"
URL_SECRET = "url-password-0c41d9"
SECRETS = (INBOUND_KEY, WRONG_KEY, BACKEND_KEY, SECRET_TEXT)


def _access(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ACCESS_LOGGER]


def _format(record: logging.LogRecord) -> dict[str, Any]:
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_formatter_fields_and_exceptions():
    logger = logging.getLogger("ollama_gateway.test")
    record = logger.makeRecord(
        logger.name,
        logging.INFO,
        __file__,
        1,
        "served %s",
        ("x",),
        None,
        extra={"request_id": "r1", "status": 200, "ratio": 0.5},
    )
    line = _format(record)
    assert TS.fullmatch(line["ts"])
    assert line["level"] == "INFO"
    assert line["logger"] == "ollama_gateway.test"
    assert line["msg"] == "served x"
    assert (line["request_id"], line["status"], line["ratio"]) == ("r1", 200, 0.5)
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "failed", (), _exc_info()
        )
    line = _format(failed)
    assert "ValueError: boom" in line["exc"]


def _exc_info() -> Any:
    import sys

    return sys.exc_info()


async def test_one_request_line_per_request(gateway, backend, caplog):
    caplog.set_level(logging.DEBUG)
    backend.queue(Script.text("one two three"), Script.error(500, "down"))
    client = await gateway(backend, "[translators.retry]\nattempts = 0\n")
    async with asyncio.timeout(BOUND):
        await (await post(client, "/api/chat", CHAT)).read()
        await (await post(client, "/api/chat", CHAT)).read()
        await (await post(client, "/api/chat", chat(model="nope"))).read()
        await (await client.get("/api/tags")).read()
    records = _access(caplog)
    assert len(records) == 4
    lines = [_format(r) for r in records]
    for line in lines:
        assert REQUEST_FIELDS <= set(line)
        assert re.fullmatch(r"[0-9a-f]{32}", line["request_id"])
    ok, failed, missing, tags = lines
    assert ok["endpoint"] == "/api/chat" and ok["status"] == 200
    assert ok["model"] == "gpt-4o" and ok["outcome"] == "ok"
    assert ok["prompt_tokens"] == 7 and ok["completion_tokens"] == 3
    assert ok["ttft_ms"] is not None and ok["duration_ms"] >= ok["ttft_ms"] >= 0
    assert ok["backend"] == "openai"
    assert (failed["status"], failed["outcome"]) == (500, "upstream_status")
    assert failed["ttft_ms"] is None
    assert (missing["status"], missing["outcome"]) == (404, "rejected")
    assert missing["model"] == "nope"
    assert (tags["endpoint"], tags["model"]) == ("/api/tags", None)


async def test_a_stream_cut_after_tokens_logs_its_time_to_first_token(
    gateway, backend, caplog
):
    caplog.set_level(logging.INFO)
    head = sse(
        chat_chunk({"role": "assistant", "content": ""}),
        chat_chunk({"content": "one "}),
        done=False,
    )
    backend.queue(Script(pieces=[head, b"never sent"], abort_after=1))
    client = await gateway(backend, "[translators.retry]\nattempts = 0\n")
    async with asyncio.timeout(BOUND):
        raw = await (await post(client, "/api/chat", CHAT)).read()
    assert b'"one "' in raw and b'"error"' in raw
    (line,) = [_format(r) for r in _access(caplog)]
    assert line["outcome"] == "upstream_protocol"
    assert line["ttft_ms"] is not None and line["duration_ms"] >= line["ttft_ms"] >= 0


async def test_the_openai_relay_logs_its_time_to_first_token(gateway, backend, caplog):
    # The relay passes the backend's events through unread: its first piece
    # stands for the first token (it was null on every /v1 request line, and
    # the TTFT histogram left out VS Code Copilot's chats).
    caplog.set_level(logging.INFO)
    backend.queue(Script.text("one two"), Script.text("one two"))
    backend.queue(Script.error(500, "down"))
    client = await gateway(backend, "[translators.retry]\nattempts = 0\n")
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    async with asyncio.timeout(BOUND):
        for extra in ({"stream": True}, {"stream": False}, {"stream": True}):
            resp = await client.post("/v1/chat/completions", json={**body, **extra})
            await resp.read()
    streamed, whole, failed = [_format(r) for r in _access(caplog)]
    for line in (streamed, whole):
        assert line["status"] == 200
        assert (
            line["ttft_ms"] is not None and line["duration_ms"] >= line["ttft_ms"] >= 0
        )
    assert failed["status"] == 500 and failed["ttft_ms"] is None


async def test_request_id_from_the_client_goes_everywhere(gateway, backend, caplog):
    caplog.set_level(logging.INFO)
    client = await gateway(backend)
    async with asyncio.timeout(BOUND):
        resp = await client.post(
            "/api/chat", data=json.dumps(CHAT), headers={"X-Request-ID": "trace-42.a"}
        )
        await resp.read()
    assert resp.headers["X-Request-ID"] == "trace-42.a"
    (sent,) = backend.completions()
    assert sent.headers["X-Request-ID"] == "trace-42.a"
    assert [r.request_id for r in _access(caplog)] == ["trace-42.a"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "wanted",
    ["", "has space", "x" * 129, "semi;colon", "ünïcode", "<script>"],
    ids=["empty", "space", "long", "semicolon", "unicode", "markup"],
)
async def test_unusable_request_ids_are_replaced(gateway, backend, wanted):
    client = await gateway(backend)
    headers = {"X-Request-ID": wanted} if wanted.isascii() else {}
    async with asyncio.timeout(BOUND):
        resp = await client.post("/api/chat", data=json.dumps(CHAT), headers=headers)
        await resp.read()
    generated = resp.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert backend.completions()[0].headers["X-Request-ID"] == generated


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nope", 404),
        ("GET", "/api/chat", 405),
        ("POST", "/api/chat", 400),
        ("GET", "/health", 200),
        ("GET", "/metrics", 200),
    ],
)
async def test_every_answer_carries_a_request_id(gateway, method, path, status):
    client = await gateway(toml=FAST_DEMO)
    async with asyncio.timeout(BOUND):
        resp = await client.request(method, path, headers={"X-Request-ID": "abc"})
        await resp.read()
    assert resp.status == status
    assert resp.headers["X-Request-ID"] == "abc"


async def test_no_secret_in_any_record_in_process(gateway, backend, caplog):
    caplog.set_level(logging.DEBUG)
    toml = "[auth]\npass_client_key = true\n"
    client = await gateway(backend, toml, OLLAMA_GATEWAY_API_KEYS=INBOUND_KEY)
    body = chat(messages=[{"role": "user", "content": SECRET_TEXT}])
    async with asyncio.timeout(BOUND):
        for headers in (
            {"Authorization": f"Bearer {INBOUND_KEY}"},
            {"X-API-Key": INBOUND_KEY},
            {"Authorization": f"Bearer {WRONG_KEY}"},
        ):
            await (
                await client.post("/api/chat", data=json.dumps(body), headers=headers)
            ).read()
    assert len(_access(caplog)) == 3
    for record in caplog.records:
        text = _format(record)
        dumped = json.dumps(text) + repr(record.__dict__)
        for secret in SECRETS:
            assert secret not in dumped, (secret, record.name)


async def _traffic(gateway: Gateway, backend: FakeBackend) -> dict[str, str]:
    """Every kind of request, with keys and secret text; returns request ids."""
    ids: dict[str, str] = {}
    secret_chat = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": SECRET_TEXT}],
    }
    auth = {"Authorization": f"Bearer {INBOUND_KEY}"}
    backend.queue(Script.text(f"echo {SECRET_TEXT}"), Script.error(400, SECRET_TEXT))
    async with aiohttp.ClientSession() as session:
        calls: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
            ("stream", "/api/chat", secret_chat, {**auth, "X-Request-ID": "mine-1"}),
            ("backend-400", "/api/chat", secret_chat, auth),
            ("generate", "/api/generate", {"model": "gpt-4o", "prompt": SECRET_TEXT}, {"X-API-Key": INBOUND_KEY}),
            ("embed", "/api/embed", {"model": "text-embedding-3-small", "input": SECRET_TEXT}, auth),
            ("wrong-key", "/api/chat", secret_chat, {"Authorization": f"Bearer {WRONG_KEY}"}),
            ("openai", "/v1/chat/completions", {**secret_chat, "stream": True}, auth),
            ("bad-json", "/api/chat", {"model": SECRET_TEXT[:3], "messages": SECRET_TEXT}, auth),
        ]  # fmt: skip
        for name, path, body, headers in calls:
            async with session.post(
                gateway.url + path, json=body, headers=headers
            ) as resp:
                await resp.read()
                ids[name] = resp.headers["X-Request-ID"]
    return ids


async def test_subprocess_log_is_json_without_secrets(tmp_path, backend):
    toml = f"""
[[backends]]
name = "openai"
base_url = "{backend.url}"
"""
    gateway = await start_gateway(
        tmp_path,
        toml,
        LOG_LEVEL="DEBUG",
        OLLAMA_GATEWAY_API_KEYS=INBOUND_KEY,
        OPENAI_API_KEY=BACKEND_KEY,
    )
    try:
        async with asyncio.timeout(BOUND):
            ids = await _traffic(gateway, backend)
    finally:
        code = await gateway.stop(BOUND)
    assert code == 0
    raw = gateway.log.read_text()
    for secret in SECRETS:
        assert secret not in raw, secret
    assert f"Bearer {BACKEND_KEY}" in json.dumps(
        [r.headers for r in backend.completions()]
    )  # the key was really in play
    lines = gateway.lines()
    assert all(TS.fullmatch(line["ts"]) for line in lines)
    startup = next(
        line for line in lines if line["msg"].startswith("ollama-gateway listening")
    )
    assert startup["level"] == "INFO"
    assert startup["pipeline"]["transport:openai"] == ["retry", "openai-http"]
    assert startup["backends"] == [{"name": "openai", "url": backend.url}]
    requests = {
        line["request_id"]: line for line in lines if line["logger"] == ACCESS_LOGGER
    }
    assert set(ids.values()) <= set(requests)
    assert ids["stream"] == "mine-1"
    assert requests["mine-1"]["status"] == 200
    assert requests["mine-1"]["completion_tokens"] > 0
    assert requests[ids["wrong-key"]]["status"] == 401
    assert requests[ids["backend-400"]]["outcome"] == "upstream_status"
    for request_id in ids.values():
        assert REQUEST_FIELDS <= set(requests[request_id])


async def test_log_level_is_honoured(tmp_path):
    gateway = await start_gateway(tmp_path, FAST_DEMO, LOG_LEVEL="WARNING")
    try:
        async with asyncio.timeout(BOUND), aiohttp.ClientSession() as session:
            async with session.post(
                gateway.url + "/api/chat", json=chat(model="demo")
            ) as resp:
                await resp.read()
    finally:
        code = await gateway.stop(BOUND)
    assert code == 0
    lines = gateway.lines()
    assert lines  # the demo-backend warning
    assert {line["level"] for line in lines} == {"WARNING"}
    assert any("demo backend" in line["msg"] for line in lines)


def test_setup_logging_writes_json_to_stderr(monkeypatch):
    from ollama_gateway.log import setup_logging

    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    access_level = logging.getLogger("aiohttp.access").level
    try:
        setup_logging("WARNING")
        logging.getLogger("ollama_gateway.x").info("hidden")
        logging.getLogger("ollama_gateway.x").warning("shown %d", 1)
        logging.getLogger("aiohttp.access").info("aiohttp's own line")
    finally:
        added = [h for h in root.handlers if h not in saved[0]]
        for handler in added:
            root.removeHandler(handler)
            handler.close()
        for handler in saved[0]:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(saved[1])
        logging.getLogger("aiohttp.access").setLevel(access_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["msg"] for line in lines] == ["shown 1"]


async def test_startup_line_drops_credentials_from_backend_urls(tmp_path):
    url = f"http://user:{URL_SECRET}@127.0.0.1:9/v1"
    toml = f'[[backends]]\nname = "basic"\nbase_url = "{url}"\nmodels = ["m"]\n'
    gateway = await start_gateway(tmp_path, toml)
    assert await gateway.stop(BOUND) == 0
    assert URL_SECRET not in gateway.log.read_text()
    startup = gateway.lines()[0]
    assert startup["backends"] == [{"name": "basic", "url": "http://127.0.0.1:9/v1"}]


class _Writes(io.StringIO):
    """A stream that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def _record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    logger = logging.getLogger(ACCESS_LOGGER)
    return logger.makeRecord(logger.name, level, __file__, 1, message, (), None)


async def test_batching_handler_writes_lines_of_the_loop_together():
    stream = _Writes()
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.attach(asyncio.get_running_loop())
    try:
        for n in range(3):
            handler.handle(_record(f"line {n}"))
        assert stream.getvalue() == ""  # held back, at most FLUSH_DELAY
        await asyncio.sleep(FLUSH_DELAY * 3)
        assert [json.loads(x)["msg"] for x in stream.getvalue().splitlines()] == [
            "line 0",
            "line 1",
            "line 2",
        ]
        assert stream.writes == 1
        handler.handle(_record("pending"))
        handler.handle(_record("boom", logging.ERROR))  # an error goes out at once
        assert [json.loads(x)["msg"] for x in stream.getvalue().splitlines()][3:] == [
            "pending",
            "boom",
        ]
        await asyncio.to_thread(handler.handle, _record("from a thread"))
        assert stream.getvalue().splitlines()[-1].endswith('"msg":"from a thread"}')
        handler.handle(_record("last"))
    finally:
        handler.detach()  # writes what is pending
    assert json.loads(stream.getvalue().splitlines()[-1])["msg"] == "last"
    handler.handle(_record("detached"))  # no loop: written at once
    assert json.loads(stream.getvalue().splitlines()[-1])["msg"] == "detached"


def test_batching_handler_flush_writes_pending_lines():
    stream = _Writes()
    handler = BatchingStreamHandler(stream)
    loop = asyncio.new_event_loop()
    try:
        handler.attach(loop)
        handler.handle(_record("waiting"))
        assert stream.getvalue() == ""
        handler.flush()  # what logging.shutdown() does at exit
        assert stream.getvalue() == "waiting\n"
    finally:
        handler.detach()
        loop.close()


class _Pieces(io.StringIO):
    """A stream that keeps each write's text."""

    def __init__(self) -> None:
        super().__init__()
        self.pieces: list[str] = []

    def write(self, text: str) -> int:
        self.pieces.append(text)
        return super().write(text)


def test_a_batch_goes_out_in_whole_lines_of_at_most_an_atomic_pipe_write():
    # With `--workers N` every worker writes to the one stderr; a write to a
    # pipe longer than PIPE_BUF may be cut by another worker's when the pipe
    # is full (journald, docker), which left two half lines (the soak saw it).
    stream = _Pieces()
    handler = BatchingStreamHandler(stream)
    loop = asyncio.new_event_loop()
    lines = [f"line {n} " + "x" * 300 + " \u00e9" * 20 for n in range(60)]
    try:
        handler.attach(loop)
        for line in lines:
            handler.handle(_record(line))
        handler.flush()
    finally:
        handler.detach()
        loop.close()
    assert stream.getvalue() == "".join(line + "\n" for line in lines)
    assert 1 < len(stream.pieces) < len(lines)  # still batched
    for piece in stream.pieces:
        assert piece.endswith("\n")
        assert len(piece.encode()) <= select.PIPE_BUF


def test_workers_writing_batches_to_one_slow_pipe_keep_their_lines_whole():
    read_end, write_end = os.pipe()
    lines_per_writer, writers = 400, 2

    def write_batches(number: int) -> None:
        # Each worker's stderr: its own file object on the shared pipe.
        stream = os.fdopen(os.dup(write_end), "w", buffering=1)
        handler = BatchingStreamHandler(stream)
        loop = asyncio.new_event_loop()
        try:
            handler.attach(loop)
            for n in range(lines_per_writer):
                handler.handle(_record(f"writer {number} line {n} " + "y" * 200))
                if n % 100 == 99:
                    handler.flush()
        finally:
            handler.detach()
            loop.close()
            stream.close()

    threads = [
        threading.Thread(target=write_batches, args=(n,)) for n in range(writers)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # the writers fill the pipe and wait for room, part-way
    os.close(write_end)
    received = bytearray()
    with os.fdopen(read_end, "rb", buffering=0) as reader:
        while chunk := reader.read(512):
            received += chunk
            time.sleep(0.0005)
    for thread in threads:
        thread.join()
    lines = received.decode().splitlines()
    assert len(lines) == writers * lines_per_writer
    assert all(re.fullmatch(r"writer \d line \d+ y{200}", line) for line in lines)


@pytest.fixture
def access_logger():
    """A logger set up as setup_logging sets up the root logger (one
    BatchingStreamHandler with our JsonFormatter), but outside the logger tree:
    while a test runs, pytest adds its capture handlers to the root logger and
    to every logger of the tree that does not propagate."""
    logger = logging.Logger(ACCESS_LOGGER, logging.INFO)
    stream = _Writes()
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    return logger, handler, stream


FIELDS = {
    "request_id": "r-1",
    "method": "POST",
    "endpoint": "/api/chat",
    "model": "m",
    "status": 200,
    "duration_ms": 1.5,
    "ttft_ms": None,
    "outcome": "ok",
}


def test_access_line_is_the_line_of_a_record(access_logger):
    from ollama_gateway.log import AccessLog

    logger, _, stream = access_logger
    made = []
    factory = logging.getLogRecordFactory()

    def counting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append(args)
        return factory(*args, **kwargs)

    logging.setLogRecordFactory(counting)
    try:
        AccessLog(logger)("POST /api/chat 200", dict(FIELDS))
        assert made == []  # no record: the line went straight to the handler
        logger.info("%s", "POST /api/chat 200", extra=FIELDS)
        assert len(made) == 1
    finally:
        logging.setLogRecordFactory(factory)
    direct, through_logging = (json.loads(x) for x in stream.getvalue().splitlines())
    assert list(direct) == list(through_logging)  # same keys, same order
    assert TS.fullmatch(direct.pop("ts"))
    through_logging.pop("ts")
    assert direct == through_logging
    assert direct["msg"] == "POST /api/chat 200"
    assert direct["logger"] == logger.name


class _Counting(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_access_line_goes_through_logging_when_anything_else_would_see_it(
    access_logger,
):
    from ollama_gateway.log import AccessLog

    logger, handler, stream = access_logger
    log = AccessLog(logger)
    other = _Counting()
    logger.addHandler(other)  # a second handler: it gets the record
    try:
        log("POST /api/chat 200", dict(FIELDS))
    finally:
        logger.removeHandler(other)
    assert [r.getMessage() for r in other.records] == ["POST /api/chat 200"]
    assert other.records[0].request_id == "r-1"  # type: ignore[attr-defined]
    hidden = logging.Filter("nothing")  # a filter on the handler drops the line
    handler.addFilter(hidden)
    try:
        log("POST /api/tags 200", dict(FIELDS))
    finally:
        handler.removeFilter(hidden)
    quiet = logging.Logger(ACCESS_LOGGER, logging.WARNING)  # INFO is below it
    quiet.addHandler(handler)
    AccessLog(quiet)("POST /api/ps 200", dict(FIELDS))
    messages = [json.loads(x)["msg"] for x in stream.getvalue().splitlines()]
    assert messages == ["POST /api/chat 200"]


MALFORMED = [
    b"Content-Length: 99999999999999999999999\r\n\r\n{}",
    b"Content-Length: -5\r\n\r\n{}",
    b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}",
    b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"Content-Length: 2\r\n\r\n{}",
    # Over the line bound: aiohttp's reason quotes the line's start, a token.
    b"Authorization: Bearer sk-hidden-" + b"k" * 70_000 + b"\r\n\r\n",
]


async def test_malformed_http_from_a_client_logs_no_traceback(tmp_path):
    """A client's broken HTTP gets aiohttp's 400, and the log says so in one
    line without a traceback or an ERROR (the client's fault, not ours)."""
    gateway = await start_gateway(tmp_path, FAST_DEMO, LOG_LEVEL="DEBUG")
    port = int(gateway.url.rsplit(":", 1)[1])
    try:
        async with asyncio.timeout(BOUND):
            for tail in MALFORMED:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"POST /api/chat HTTP/1.1\r\nHost: x\r\n" + tail)
                answer = await reader.read()
                writer.close()
                assert answer.startswith(b"HTTP/1.") and b" 400 " in answer[:20]
    finally:
        code = await gateway.stop(BOUND)
    assert code == 0
    lines = gateway.lines()
    bad = [
        line
        for line in lines
        if line["level"] in ("ERROR", "CRITICAL") or "exc" in line
    ]
    assert not bad, bad
    noted = [line for line in lines if "bad HTTP request" in line["msg"]]
    assert len(noted) == len(MALFORMED), lines
    assert noted[-1]["msg"].endswith(
        ": a request or header line longer than 65536 bytes"
    )
    assert "sk-hidden" not in gateway.log.read_text()


async def test_the_request_line_says_why_the_backend_failed(gateway, backend, caplog):
    # The client saw the backend's message, the operator only `outcome`:
    # which of the model's backends failed, and how, was nowhere in the log.
    caplog.set_level(logging.INFO)
    cut = sse(chat_chunk({"role": "assistant", "content": "one "}), done=False)
    backend.queue(
        Script.error(500, f"CUDA out of memory (key {BACKEND_KEY})"),
        Script(pieces=[cut, b"never sent"], abort_after=1),
        Script.error(400, f"bad prompt: {SECRET_TEXT}"),
        Script(pieces=[cut]),  # no [DONE]: the relay ends it with an error event
    )
    client = await gateway(
        backend, "[translators.retry]\nattempts = 0\n", OPENAI_API_KEY=BACKEND_KEY
    )
    async with asyncio.timeout(BOUND):
        for _ in range(3):
            await (await post(client, "/api/chat", CHAT)).read()
        body = {**CHAT, "stream": True}
        await (await post(client, "/v1/chat/completions", body)).read()
    status, cut_line, rejected, relayed = [_format(r) for r in _access(caplog)]
    assert status["status"] == 500
    assert "CUDA out of memory (key ***)" in status["error"]
    assert (cut_line["status"], cut_line["outcome"]) == (200, "upstream_protocol")
    assert cut_line["error"]
    # A 4xx is the client's: its message may quote the request.
    assert rejected["status"] == 400 and rejected["error"] is None
    assert (relayed["status"], relayed["outcome"]) == (200, "upstream_protocol")
    assert "unexpected EOF" in relayed["error"]
    assert not any(s in caplog.text for s in SECRETS)
