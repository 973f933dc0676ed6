"""The whole upstream path on real sockets: gateway -> aiohttp client -> fake backend.

Every fault test also checks that the completion was sent upstream exactly once:
a broken stream must never be retried into a second, paid generation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from importlib.metadata import EntryPoint

import msgspec
import pytest

from ollama_gateway import (
    RequestContext,
    ResponseMapperWrapper,
    StreamSession,
    StreamSessionWrapper,
    ollama,
)
from ollama_gateway.app import create_app
from ollama_gateway.completion import ChunkReader
from ollama_gateway.errors import UpstreamTimeoutError
from ollama_gateway.settings import Settings
from tests.fakebackend import Script, chat_chunk, reply_sse, split_every, sse
from tests.ndjson import (
    CHAT,
    NO_RETRY,
    PiecesResponse,
    assert_final,
    chat,
    content_of,
    ndjson,
    post,
    read_ndjson,
    split_at,
)
from translators.openai_to_ollama import ChatStreamSession

UNEXPECTED_EOF = "an error was encountered while running the model: unexpected EOF"
PINNED = """
[[backends]]
name = "openai"
models = ["gpt-4o"]
"""


def _content_events(*texts: str) -> list[dict[str, object]]:
    return [chat_chunk({"content": t}) for t in texts]


def _event(obj: dict[str, object] | str) -> bytes:
    return sse(obj, done=False)


async def _stream(gateway, backend, script: Script, body=CHAT, toml: str = ""):
    backend.queue(script)
    client = await gateway(backend, toml)
    resp = await post(client, "/api/chat", body)
    return resp


async def test_emoji_split_mid_utf8_gives_valid_ndjson(gateway, backend):
    text = "Hi 👋🏽 naïve ✓ done"
    events = [chat_chunk({"role": "assistant", "content": ""})]
    events += _content_events("Hi 👋🏽 ", "naïve ✓", " done")
    events.append(chat_chunk({}, finish="stop"))
    data = sse(*(json.dumps(e, ensure_ascii=False) for e in events))
    wave = data.index("👋".encode())
    check = data.index("✓".encode())
    pieces = split_at(data, wave + 1, wave + 2, wave + 3, check + 1, check + 2)
    pieces = [p for piece in pieces for p in split_every(piece, 97)]
    resp = await _stream(gateway, backend, Script(pieces=pieces, delay=0.005))
    objs = await read_ndjson(resp)
    assert content_of(objs) == text
    assert_final(objs)
    assert len(backend.completions()) == 1


async def test_crlf_line_endings(gateway, backend):
    events = [*_content_events("one ", "two"), chat_chunk({}, finish="stop")]
    data = sse(*events, eol="\r\n")
    # Cut between each CR and its LF, and inside the `data:` prefixes.
    crs = [i + 1 for i in range(len(data)) if data[i : i + 1] == b"\r"]
    pieces = split_at(data, *crs[::3], 3, 200)
    resp = await _stream(gateway, backend, Script(pieces=pieces, delay=0.002))
    objs = await read_ndjson(resp)
    assert content_of(objs) == "one two"
    assert assert_final(objs)["done_reason"] == "stop"


async def test_comments_and_keepalives_are_skipped(gateway, backend):
    data = (
        b": OPENROUTER PROCESSING\n\n"
        + _event(chat_chunk({"content": "a"}))
        + b": OPENROUTER PROCESSING\n\n:\n\nevent: ping\n\n"
        + _event(chat_chunk({"content": "b"}))
        + sse(chat_chunk({}, finish="stop"))
    )
    resp = await _stream(gateway, backend, Script(pieces=split_every(data, 40)))
    objs = await read_ndjson(resp)
    assert content_of(objs) == "ab"
    assert_final(objs)


async def test_several_events_in_one_read(gateway, backend):
    resp = await _stream(gateway, backend, Script(pieces=[reply_sse("a b c d e")]))
    objs = await read_ndjson(resp)
    assert [o["message"]["content"] for o in objs[:-1]] == ["a ", "b ", "c ", "d ", "e"]
    assert assert_final(objs)["eval_count"] == 5


async def test_one_mib_event_passes_through_intact(gateway, backend):
    big = "0123456789abcdef✓" * (1 << 16)  # 1 MiB of text, 1.1 MiB of UTF-8
    data = sse(
        json.dumps(chat_chunk({"content": big}), ensure_ascii=False),
        chat_chunk({}, finish="stop"),
    )
    assert len(data) > 1 << 20
    script = Script(pieces=split_every(data, 64 * 1024))
    resp = await _stream(gateway, backend, script)
    objs = await read_ndjson(resp)
    assert objs[0]["message"]["content"] == big
    assert_final(objs)


async def test_usage_after_finish_reason_is_in_the_final_chunk(gateway, backend):
    usage = {"prompt_tokens": 11, "completion_tokens": 42, "total_tokens": 53}
    data = sse(
        *_content_events("x", "y"),
        chat_chunk({}, finish="stop"),
        chat_chunk(choices=False, usage=usage),
    )
    resp = await _stream(gateway, backend, Script(pieces=split_every(data, 50)))
    final = assert_final(await read_ndjson(resp))
    assert final["prompt_eval_count"] == 11
    assert final["eval_count"] == 42
    assert final["done_reason"] == "stop"


async def test_no_usage_falls_back_to_delta_count(gateway, backend):
    data = sse(*_content_events("a", "b", "c"), chat_chunk({}, finish="stop"))
    resp = await _stream(gateway, backend, Script(pieces=[data]))
    final = assert_final(await read_ndjson(resp))
    assert final["eval_count"] == 3
    # And the prompt's count is estimated, at about four bytes of the request
    # sent a token: real Ollama always counts it, and LangChain's
    # usage_metadata needs both counts.
    sent = json.dumps(backend.completions()[0].body, separators=(",", ":"))
    assert final["prompt_eval_count"] == -(-len(sent.encode()) // 4)
    assert final["eval_duration"] >= 1


async def test_eof_without_done_after_finish_reason_is_a_normal_end(gateway, backend):
    data = sse(*_content_events("ok"), chat_chunk({}, finish="length"), done=False)
    resp = await _stream(gateway, backend, Script(pieces=[data]))
    objs = await read_ndjson(resp)
    assert content_of(objs) == "ok"
    assert assert_final(objs)["done_reason"] == "length"
    assert len(backend.completions()) == 1


async def test_eof_without_finish_reason_or_done_is_an_error(gateway, backend):
    data = sse(*_content_events("a", "b"), done=False)
    resp = await _stream(gateway, backend, Script(pieces=[data]))
    objs = await read_ndjson(resp)
    assert objs[:-1] == [
        {**o, "message": {"role": "assistant", "content": t}}
        for o, t in zip(objs[:-1], "ab", strict=True)
    ]
    assert objs[-1] == {"error": UNEXPECTED_EOF}
    assert not any(o.get("done") for o in objs)
    assert len(backend.completions()) == 1


async def test_reset_mid_stream_gives_an_error_line(gateway, backend):
    pieces = [_event(e) for e in _content_events("1", "2", "3", "4")]
    script = Script(pieces=pieces, abort_after=3, delay=0.02)
    resp = await _stream(gateway, backend, script)
    objs = await read_ndjson(resp)
    assert content_of(objs) == "123"
    assert objs[-1] == {"error": UNEXPECTED_EOF}
    assert not any(o.get("done") for o in objs)
    assert len(backend.completions()) == 1


async def test_reset_mid_stream_without_streaming_is_a_502(gateway, backend):
    pieces = [_event(e) for e in _content_events("1", "2")]
    script = Script(pieces=pieces, abort_after=1, delay=0.02)
    resp = await _stream(gateway, backend, script, chat(stream=False))
    assert resp.status == 502
    assert await resp.json() == {"error": UNEXPECTED_EOF}
    assert len(backend.completions()) == 1


async def test_429_before_streaming_keeps_its_status(gateway, backend):
    script = Script.error(429, "Rate limit reached for gpt-4o")
    resp = await _stream(gateway, backend, script, toml=NO_RETRY)
    assert resp.status == 429
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert await resp.json() == {"error": "Rate limit reached for gpt-4o"}
    assert len(backend.completions()) == 1


async def test_500_before_streaming_is_a_500(gateway, backend):
    resp = await _stream(gateway, backend, Script.error(500, "kaboom"), toml=NO_RETRY)
    assert resp.status == 500
    assert resp.content_type == "application/json"
    assert await resp.json() == {"error": "kaboom"}
    assert len(backend.completions()) == 1


async def test_503_with_a_fastapi_detail_body(gateway, backend):
    script = Script(status=503, error_body={"detail": "engine overloaded"})
    resp = await _stream(gateway, backend, script, toml=NO_RETRY)
    assert resp.status == 503
    assert await resp.json() == {"error": "engine overloaded"}
    assert len(backend.completions()) == 1


async def test_401_and_403_become_502_never_401(gateway, backend):
    client = await gateway(backend, NO_RETRY)
    for status in (401, 403):
        backend.queue(Script.error(status, "Incorrect API key provided"))
        resp = await post(client, "/api/chat", CHAT)
        assert resp.status == 502
        assert await resp.json() == {
            "error": "upstream authentication failed: Incorrect API key provided"
        }
    assert len(backend.completions()) == 2


async def test_upstream_400_passes_through_as_400(gateway, backend):
    script = Script.error(400, "max_tokens is too large")
    resp = await _stream(gateway, backend, script, toml=NO_RETRY)
    assert resp.status == 400
    assert await resp.json() == {"error": "max_tokens is too large"}
    assert len(backend.completions()) == 1


async def test_upstream_404_is_model_not_found(gateway, backend):
    script = Script.error(404, "The model `gpt-4o` does not exist")
    resp = await _stream(gateway, backend, script, chat(model="GPT-4o"))
    assert resp.status == 404
    assert await resp.json() == {"error": "model 'GPT-4o' not found"}
    assert len(backend.completions()) == 1


async def test_unreachable_upstream_is_a_quick_502(gateway, unused_tcp_port):
    url = f"http://127.0.0.1:{unused_tcp_port}/v1"
    client = await gateway(toml=NO_RETRY + PINNED, OPENAI_BASE_URL=url)
    started = time.monotonic()
    resp = await post(client, "/api/chat", CHAT)
    assert resp.status == 502
    assert resp.content_type == "application/json"
    error = (await resp.json())["error"]
    assert error.startswith("upstream unavailable: ")
    assert str(unused_tcp_port) in error
    assert time.monotonic() - started < 1.0


async def test_unreachable_model_list_is_a_quick_502(gateway, unused_tcp_port):
    url = f"http://127.0.0.1:{unused_tcp_port}/v1"
    client = await gateway(toml=NO_RETRY, OPENAI_BASE_URL=url)
    started = time.monotonic()
    resp = await post(client, "/api/chat", CHAT)
    assert resp.status == 502
    assert "model 'gpt-4o' not found" in (await resp.json())["error"]
    assert time.monotonic() - started < 1.0


async def test_slow_first_token_still_streams(gateway, backend):
    script = Script.text("slow but fine", split=64, first_delay=0.3)
    resp = await _stream(gateway, backend, script)
    objs = await read_ndjson(resp)
    assert content_of(objs) == "slow but fine"
    final = assert_final(objs)
    assert final["prompt_eval_duration"] >= 250_000_000  # the wait shows as TTFT
    assert final["total_duration"] >= 300_000_000


async def test_first_token_timeout_is_a_504_before_streaming(gateway, backend):
    toml = "[timeouts]\nfirst_token = 0.2\n"
    script = Script.text("too late", first_delay=1.0)
    started = time.monotonic()
    resp = await _stream(gateway, backend, script, toml=toml)
    assert resp.status == 504
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert await resp.json() == {"error": "upstream timeout"}
    assert time.monotonic() - started < 0.9
    assert len(backend.completions()) == 1


async def test_first_token_timeout_after_headers(gateway, backend):
    # Headers come at once, but the first body byte does not.
    toml = "[timeouts]\nfirst_token = 0.2\n"
    pieces = [b"", reply_sse("late")]
    resp = await _stream(gateway, backend, Script(pieces=pieces, delay=1.0), toml=toml)
    assert resp.status == 504
    assert await resp.json() == {"error": "upstream timeout"}
    assert len(backend.completions()) == 1


async def test_idle_timeout_between_chunks_is_an_error_line(gateway, backend):
    toml = "[timeouts]\nidle = 0.2\n"
    pieces = [_event(chat_chunk({"content": "first"})), reply_sse("never")]
    script = Script(pieces=pieces, delay=1.0)
    started = time.monotonic()
    resp = await _stream(gateway, backend, script, toml=toml)
    objs = await read_ndjson(resp)
    assert content_of(objs) == "first"
    assert objs[-1] == {"error": "upstream timeout"}
    assert not any(o.get("done") for o in objs)
    assert time.monotonic() - started < 0.9
    assert len(backend.completions()) == 1


async def test_error_event_mid_stream(gateway, backend):
    data = (
        _event(chat_chunk({"content": "partial"}))
        + _event({"error": {"message": "boom"}})
        + reply_sse("ignored")
    )
    resp = await _stream(gateway, backend, Script(pieces=split_every(data, 33)))
    objs = await read_ndjson(resp)
    assert content_of(objs) == "partial"
    assert objs[-1] == {"error": "boom"}
    assert len(objs) == 2
    assert len(backend.completions()) == 1


async def test_string_error_event_mid_stream(gateway, backend):
    data = _event(chat_chunk({"content": "x"})) + _event({"error": "overloaded"})
    resp = await _stream(gateway, backend, Script(pieces=[data]))
    objs = await read_ndjson(resp)
    assert objs[-1] == {"error": "overloaded"}
    assert len(backend.completions()) == 1


async def test_error_event_before_any_output_keeps_a_status(gateway, backend):
    data = _event({"error": {"message": "context too long", "code": 400}})
    resp = await _stream(gateway, backend, Script(pieces=[data]))
    assert resp.status == 400
    assert await resp.json() == {"error": "context too long"}
    assert len(backend.completions()) == 1


async def test_invalid_json_event_is_an_error_line(gateway, backend):
    data = _event(chat_chunk({"content": "a"})) + b"data: {not json\n\n"
    resp = await _stream(gateway, backend, Script(pieces=[data], delay=0.01))
    objs = ndjson(await resp.read())
    assert objs[-1]["error"].startswith("upstream sent an invalid event")
    assert len(backend.completions()) == 1


async def test_json_answer_to_a_stream_request(gateway, backend):
    # Some backends ignore `stream: true` and answer one chat.completion object.
    answer = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "whole"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 1},
    }
    script = Script(
        pieces=[json.dumps(answer).encode()], content_type="application/json"
    )
    resp = await _stream(gateway, backend, script)
    objs = await read_ndjson(resp)
    assert content_of(objs) == "whole"
    final = assert_final(objs)
    assert final["prompt_eval_count"] == 4


async def test_content_and_error_in_one_read_keeps_the_content(gateway, backend):
    data = _event(chat_chunk({"content": "kept"})) + _event({"error": "late failure"})
    resp = await _stream(gateway, backend, Script(pieces=[data]))
    objs = await read_ndjson(resp)
    assert objs == [objs[0], {"error": "late failure"}]
    assert objs[0]["message"]["content"] == "kept"
    assert len(backend.completions()) == 1


async def test_content_and_error_in_one_read_without_streaming(gateway, backend):
    data = _event(chat_chunk({"content": "lost"})) + _event({"error": "late failure"})
    resp = await _stream(gateway, backend, Script(pieces=[data]), chat(stream=False))
    assert resp.status == 500
    assert await resp.json() == {"error": "late failure"}
    assert len(backend.completions()) == 1


async def test_unterminated_last_event_then_eof_keeps_its_content(gateway, backend):
    data = _event(chat_chunk({"content": "a"})) + b'data: {"choices":['
    data += json.dumps({"index": 0, "delta": {"content": "b"}}).encode() + b"]}"
    resp = await _stream(gateway, backend, Script(pieces=[data]))
    objs = await read_ndjson(resp)
    assert content_of(objs) == "ab"
    assert objs[-1] == {"error": UNEXPECTED_EOF}
    assert len(backend.completions()) == 1


async def test_unterminated_finish_event_then_eof_is_a_normal_end(gateway, backend):
    data = _event(chat_chunk({"content": "a"}))
    data += b"data: " + json.dumps(chat_chunk({}, finish="stop")).encode()
    resp = await _stream(gateway, backend, Script(pieces=[data]))
    objs = await read_ndjson(resp)
    assert content_of(objs) == "a"
    assert assert_final(objs)["done_reason"] == "stop"


async def test_reset_after_finish_reason_is_a_normal_end(gateway, backend):
    usage = {"prompt_tokens": 2, "completion_tokens": 1}
    pieces = [
        _event(chat_chunk({"content": "done"})),
        _event(chat_chunk({}, finish="stop")),
        _event(chat_chunk(choices=False, usage=usage)),
    ]
    script = Script(pieces=pieces, abort_after=2, delay=0.02)
    resp = await _stream(gateway, backend, script)
    objs = await read_ndjson(resp)
    assert content_of(objs) == "done"
    assert assert_final(objs)["eval_count"] == 1
    assert len(backend.completions()) == 1


class _ExplodeAtTheEnd(StreamSessionWrapper):
    def transform(
        self, chunks: Sequence[ollama.ChatResponse]
    ) -> Sequence[ollama.ChatResponse]:
        if any(chunk.done for chunk in chunks):
            raise RuntimeError("late kaboom")
        return chunks


class LateExplodingResponse(ResponseMapperWrapper):
    """A response translator that fails after output has started."""

    def wrap_session(
        self, session: StreamSession, ctx: RequestContext
    ) -> StreamSession:
        return _ExplodeAtTheEnd(session)


async def test_translator_failure_mid_stream_is_logged(
    backend, aiohttp_client, settings_for, caplog
):
    late = EntryPoint(
        "late", f"{__name__}:LateExplodingResponse", "ollama_gateway.translators"
    )
    toml = '[pipeline]\nresponse = ["late", "openai-to-ollama"]'
    app = create_app(settings_for(backend, toml), entry_points=[late])
    client = await aiohttp_client(app)
    pieces = [_event(chat_chunk({"content": "a"})), sse(chat_chunk({}, finish="stop"))]
    backend.queue(Script(pieces=pieces, delay=0.02))
    objs = await read_ndjson(await post(client, "/api/chat", CHAT))
    assert content_of(objs) == "a"
    assert objs[-1] == {"error": "translator 'late' failed: late kaboom"}
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in logged] == ["translator late failed"]
    assert logged[0].exc_info is not None


async def test_total_timeout_mid_stream_is_an_error_line(gateway, backend):
    toml = "[timeouts]\ntotal = 0.3\n"
    pieces = [_event(chat_chunk({"content": f"{i} "})) for i in range(20)]
    started = time.monotonic()
    resp = await _stream(gateway, backend, Script(pieces=pieces, delay=0.05), toml=toml)
    objs = await read_ndjson(resp)
    assert objs[-1] == {"error": "upstream timeout"}
    assert 2 <= len(objs) <= 12
    assert time.monotonic() - started < 0.9
    assert len(backend.completions()) == 1


async def test_total_timeout_bounds_the_wait_for_headers(gateway, backend):
    toml = "[timeouts]\ntotal = 0.3\nfirst_token = 30\n"
    started = time.monotonic()
    script = Script.text("late", first_delay=2.0)
    resp = await _stream(gateway, backend, script, toml=toml)
    assert resp.status == 504
    assert await resp.json() == {"error": "upstream timeout"}
    assert time.monotonic() - started < 1.5
    assert len(backend.completions()) == 1


async def test_reader_refuses_a_spent_budget_even_with_data_buffered():
    settings = Settings.load({}, config_path=None)
    settings = msgspec.structs.replace(
        settings, timeouts=msgspec.structs.replace(settings.timeouts, total=0.1)
    )
    ctx = RequestContext(request_id="t", endpoint="chat", model="gpt-4o")
    ctx.upstream_sent_ns = time.perf_counter_ns() - 200_000_000  # 0.2 s ago
    upstream = PiecesResponse([reply_sse("already here")], buffered=True)
    reader = ChunkReader(ctx, upstream, ChatStreamSession(ctx), settings)
    with pytest.raises(UpstreamTimeoutError, match="upstream timeout"):
        await reader.read()


class _ReadyPieces:
    """A body iterator that says, as our transport's does, whether its next
    read can return at once (`ready()`); `None` in `pieces` is a read that
    waits (one pass through the event loop)."""

    def __init__(self, pieces: list[bytes | None]) -> None:
        self._pieces = pieces

    def __aiter__(self) -> _ReadyPieces:
        return self

    def ready(self) -> bool:
        return bool(self._pieces) and self._pieces[0] is not None

    async def __anext__(self) -> bytes:
        while self._pieces:
            piece = self._pieces.pop(0)
            if piece is not None:
                return piece
            await asyncio.sleep(0.05)
        raise StopAsyncIteration


class _ReadyResponse(PiecesResponse):
    def __init__(self, body: _ReadyPieces) -> None:
        super().__init__([])
        self._body = body

    def aiter_bytes(self) -> _ReadyPieces:
        return self._body


def _reader(
    total: float, pieces: list[bytes | None], sent_ago: float = 0.0
) -> ChunkReader:
    settings = Settings.load({}, config_path=None)
    settings = msgspec.structs.replace(
        settings, timeouts=msgspec.structs.replace(settings.timeouts, total=total)
    )
    ctx = RequestContext(request_id="t", endpoint="chat", model="gpt-4o")
    ctx.upstream_sent_ns = time.perf_counter_ns() - int(sent_ago * 1e9)
    upstream = _ReadyResponse(_ReadyPieces(pieces))
    return ChunkReader(ctx, upstream, ChatStreamSession(ctx), settings)


async def test_reader_sets_no_timer_for_a_read_that_cannot_wait():
    reader = _reader(30.0, [sse(chat_chunk({"content": "here"}), done=False), None])
    batch = await reader.read()
    assert batch and batch[0].message.content == "here"
    # The deadline timer is made only for a read that has to wait.
    assert reader._timer is None
    await reader.aclose()


async def test_reader_times_a_read_that_waits_after_one_that_did_not():
    first = sse(chat_chunk({"content": "first"}), done=False)
    reader = _reader(0.02, [first, None, None])
    batch = await reader.read()
    assert batch and batch[0].message.content == "first"
    with pytest.raises(UpstreamTimeoutError, match="upstream timeout"):
        await reader.read()


async def test_reader_refuses_a_spent_budget_even_when_the_read_cannot_wait():
    reader = _reader(0.1, [reply_sse("already here")], sent_ago=0.2)
    with pytest.raises(UpstreamTimeoutError, match="upstream timeout"):
        await reader.read()


async def test_json_answer_over_the_event_cap_is_refused(gateway, backend):
    answer = {"choices": [{"index": 0, "message": {"content": "x" * 4096}}]}
    body = json.dumps(answer).encode()
    script = Script(pieces=split_every(body, 512), content_type="application/json")
    toml = "[limits]\nmax_event_bytes = 1024\n"
    resp = await _stream(gateway, backend, script, toml=toml)
    assert resp.status == 502
    assert "larger than 1024 bytes" in (await resp.json())["error"]
    assert len(backend.completions()) == 1


async def test_concurrent_streams_do_not_mix(gateway, backend):
    texts = [f"stream {n} says {'hi ' * n}".strip() for n in range(1, 7)]
    backend.queue(*(Script.text(t, split=60, delay=0.002) for t in texts))
    client = await gateway(backend)
    responses = await asyncio.gather(*(post(client, "/api/chat", CHAT) for _ in texts))
    results = [await read_ndjson(resp) for resp in responses]
    assert sorted(content_of(objs) for objs in results) == sorted(texts)
    for objs in results:
        final = assert_final(objs)
        assert final["eval_count"] == len(content_of(objs).split(" "))
    assert len(backend.completions()) == len(texts)


async def test_connection_is_reused_when_the_body_ends_after_done(gateway, backend):
    # The backend ends its chunked body 0.1 s after `[DONE]`: the answer is
    # complete for the client at once, and the connection still serves the
    # next request instead of being closed mid-body.
    pieces = [reply_sse("first answer"), b""]
    backend.queue(Script(pieces=pieces, delay=0.1), Script.text("second answer"))
    client = await gateway(backend)
    first = await read_ndjson(await post(client, "/api/chat", CHAT))
    assert content_of(first) == "first answer"
    await asyncio.sleep(0.3)  # the end of the first body has arrived by now
    second = await read_ndjson(await post(client, "/api/chat", CHAT))
    assert content_of(second) == "second answer"
    peers = [r.peer for r in backend.completions()]
    assert len(peers) == 2 and peers[0] == peers[1]
