"""A backend that sends its finish_reason (and maybe usage) and then neither
[DONE] nor EOF: the answer is whole, so a deadline that expires after the
finish ends it as its [DONE] would (spec 3.8 step 6), not with an error; and
the wait after the finish is `timeouts.after_finish`, not the idle timeout."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import base_url
from tests.fakebackend import FakeBackend, Script, chat_chunk, sse
from tests.ndjson import CHAT, GENERATE, assert_final, content_of, ndjson, post
from tests.ops import assert_clean_log

BOUND = 20.0  # seconds: generous, only against hangs
STALL = 30.0  # the backend's silence after the finish: longer than any wait here
USAGE = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
# The idle timeout is what ends the wait (after_finish off).
IDLE_ONLY = "[timeouts]\nidle = 0.3\nafter_finish = 0\n"
# The idle timeout is long: the short wait after the finish ends it.
AFTER_FINISH = "[timeouts]\nidle = 60\nafter_finish = 0.3\n"
USER: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def _debug_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


def _events(*, usage: bool) -> list[dict[str, Any]]:
    events = [
        chat_chunk({"role": "assistant", "content": ""}),
        chat_chunk({"content": "one "}),
        chat_chunk({"content": "two"}),
        chat_chunk({}, finish="stop"),
    ]
    if usage:
        events.append(chat_chunk(choices=False, usage=USAGE))
    return events


def _stalling(*, usage: bool, pieces: str) -> Script:
    """The answer up to its finish (and usage), then a long silence, then
    [DONE]: in one piece, or one piece per event (`pieces="events"`)."""
    events = _events(usage=usage)
    if pieces == "one":
        head = [sse(*events, done=False)]
    else:
        head = [sse(event, done=False) for event in events]
    return Script(
        pieces=[*head, sse(done=True)],
        delay=0.01 if pieces == "events" else 0.0,
        stall_after=len(head),
        stall=STALL,
    )


async def _timed_post(
    client: Any, path: str, body: dict[str, Any]
) -> tuple[int, bytes, float]:
    started = time.monotonic()
    async with asyncio.timeout(BOUND):
        resp = await post(client, path, body)
        raw = await resp.read()
    return resp.status, raw, time.monotonic() - started


@pytest.mark.parametrize("pieces", ["one", "events"])
@pytest.mark.parametrize("toml", [IDLE_ONLY, AFTER_FINISH], ids=["idle", "after"])
async def test_streamed_chat_ends_normally(
    gateway, backend: FakeBackend, caplog, pieces: str, toml: str
):
    backend.queue(_stalling(usage=True, pieces=pieces))
    client = await gateway(backend, toml)
    status, raw, elapsed = await _timed_post(client, "/api/chat", CHAT)
    objs = ndjson(raw)
    assert status == 200
    final = assert_final(objs)
    assert content_of(objs) == "one two"
    assert final["done_reason"] == "stop"
    assert final["prompt_eval_count"] == 11
    assert final["eval_count"] == 3
    assert elapsed < 5.0
    # The gateway hung up: the backend stops waiting to send its [DONE].
    async with asyncio.timeout(BOUND):
        await backend.disconnected.wait()
    assert len(backend.completions()) == 1
    assert_clean_log(caplog)


@pytest.mark.parametrize("pieces", ["one", "events"])
@pytest.mark.parametrize("toml", [IDLE_ONLY, AFTER_FINISH], ids=["idle", "after"])
async def test_whole_chat_ends_normally_without_usage(
    gateway, backend: FakeBackend, caplog, pieces: str, toml: str
):
    backend.queue(_stalling(usage=False, pieces=pieces))
    client = await gateway(backend, toml)
    status, raw, elapsed = await _timed_post(
        client, "/api/chat", {**CHAT, "stream": False}
    )
    assert status == 200, raw
    body = json.loads(raw)
    assert body["done"] is True
    assert body["done_reason"] == "stop"
    assert body["message"]["content"] == "one two"
    # No usage: the counts fall back (spec 3.10): two content deltas.
    assert body["eval_count"] == 2
    assert elapsed < 5.0
    assert len(backend.completions()) == 1
    assert_clean_log(caplog)


@pytest.mark.parametrize("stream", [True, False])
async def test_generate_ends_normally(
    gateway, backend: FakeBackend, caplog, stream: bool
):
    backend.queue(_stalling(usage=True, pieces="events"))
    client = await gateway(backend, AFTER_FINISH)
    status, raw, _ = await _timed_post(
        client, "/api/generate", {**GENERATE, "stream": stream}
    )
    assert status == 200, raw
    objs = ndjson(raw) if stream else [json.loads(raw)]
    final = assert_final(objs)
    assert "".join(o["response"] for o in objs) == "one two"
    assert final["eval_count"] == 3
    assert_clean_log(caplog)


async def test_stall_before_the_finish_is_still_a_timeout(
    gateway, backend: FakeBackend, caplog
):
    # after_finish shortens nothing before the finish: the idle timeout ends
    # a stream that stops mid-answer, with the error line.
    events = _events(usage=False)[:3]
    backend.queue(
        Script(
            pieces=[sse(*events, done=False), sse(done=True)],
            stall_after=1,
            stall=1.0,
        )
    )
    client = await gateway(backend, "[timeouts]\nidle = 3\nafter_finish = 0.1\n")
    status, raw, elapsed = await _timed_post(client, "/api/chat", CHAT)
    objs = ndjson(raw)
    # The 1 s pause is under the idle timeout, so the answer is whole.
    assert status == 200
    assert content_of(objs) == "one two"
    assert_final(objs)
    assert elapsed >= 1.0
    assert_clean_log(caplog)


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_front_ends_normally(gateway, backend: FakeBackend, stream):
    """/v1/messages runs through the same reader: its message ends with its
    stop reason and the usage the backend gave."""
    backend.queue(_stalling(usage=True, pieces="events"))
    client = await gateway(backend, AFTER_FINISH)
    async with (
        asyncio.timeout(BOUND),
        anthropic.AsyncAnthropic(
            base_url=base_url(client), api_key="unused", max_retries=0
        ) as claude,
    ):
        ask: Any = dict(model="gpt-4o", max_tokens=50, messages=USER)
        if stream:
            async with claude.messages.stream(**ask) as events:
                message = await events.get_final_message()
        else:
            message = await claude.messages.create(**ask)
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert message.content[0].text == "one two"
    assert message.usage.output_tokens == 3


@pytest.mark.parametrize("stream", [False, True])
async def test_responses_front_ends_normally(gateway, backend: FakeBackend, stream):
    """/v1/responses too: a completed response, not a failed one."""
    backend.queue(_stalling(usage=True, pieces="events"))
    client = await gateway(backend, AFTER_FINISH)
    async with (
        asyncio.timeout(BOUND),
        openai.AsyncOpenAI(
            base_url=base_url(client) + "/v1", api_key="unused", max_retries=0
        ) as oai,
    ):
        if stream:
            events = await oai.responses.create(model="gpt-4o", input="hi", stream=True)
            last = [event async for event in events][-1]
            assert last.type == "response.completed"
            response = last.response
        else:
            response = await oai.responses.create(model="gpt-4o", input="hi")
    assert response.status == "completed"
    assert response.output_text == "one two"
    assert response.usage is not None
    assert response.usage.output_tokens == 3


@pytest.mark.parametrize("stream", [True, False])
async def test_keep_alive_comments_do_not_hold_a_finished_answer(
    gateway, backend: FakeBackend, caplog, stream: bool
):
    """A server that sends `: ping` comments until its generator ends (as
    sse-starlette does) and whose generator hangs after the finish: the
    comments are reads, but `after_finish` bounds the rest of the stream all
    told, so the answer still ends."""
    head = sse(*_events(usage=True), done=False)
    pings = [b": ping\n\n"] * 300  # 30 s of them
    backend.queue(Script(pieces=[head, *pings, sse()], delay=0.1))
    client = await gateway(backend, AFTER_FINISH)
    status, raw, elapsed = await _timed_post(
        client, "/api/chat", {**CHAT, "stream": stream}
    )
    assert status == 200, raw
    objs = ndjson(raw) if stream else [json.loads(raw)]
    final = assert_final(objs)
    assert content_of(objs) == "one two"
    assert final["eval_count"] == 3
    assert elapsed < 5.0
    assert len(backend.completions()) == 1
    assert_clean_log(caplog)


def _text_chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    """One legacy `text_completion` stream chunk (raw generate's path)."""
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    return {"id": "cmpl-fake", "object": "text_completion", "choices": [choice]}


@pytest.mark.parametrize("stream", [True, False])
async def test_raw_generate_ends_normally(
    gateway, backend: FakeBackend, caplog, stream: bool
):
    """Raw generate runs through /v1/completions, and the same reader."""
    events = [
        _text_chunk("one "),
        _text_chunk("two"),
        _text_chunk("", "stop"),
        chat_chunk(choices=False, usage=USAGE),
    ]
    backend.queue(
        Script(pieces=[sse(*events, done=False), sse()], stall_after=1, stall=STALL)
    )
    client = await gateway(backend, AFTER_FINISH)
    status, raw, elapsed = await _timed_post(
        client, "/api/generate", {**GENERATE, "raw": True, "stream": stream}
    )
    assert status == 200, raw
    objs = ndjson(raw) if stream else [json.loads(raw)]
    final = assert_final(objs)
    assert "".join(o["response"] for o in objs) == "one two"
    assert final["eval_count"] == 3
    assert elapsed < 5.0
    assert backend.completions()[0].path.endswith("/completions")
    assert_clean_log(caplog)


async def _relayed(client: Any, **extra: Any) -> tuple[str, float]:
    """A streamed `/v1/chat/completions` through the relay, read with
    OpenAI's SDK: the text and how long it took."""
    started = time.monotonic()
    async with (
        asyncio.timeout(BOUND),
        openai.AsyncOpenAI(
            base_url=base_url(client) + "/v1", api_key="unused", max_retries=0
        ) as oai,
    ):
        chunks = await oai.chat.completions.create(
            model="gpt-4o", messages=USER, stream=True, **extra
        )
        text = "".join(
            [c.choices[0].delta.content or "" async for c in chunks if c.choices]
        )
    return text, time.monotonic() - started


@pytest.mark.parametrize("usage", [False, True])
async def test_the_relay_ends_a_finished_stream_that_stalls(
    gateway, backend: FakeBackend, caplog, usage: bool
):
    """The `/v1` relay too: the one choice finished, so the stall after it
    ends with the `[DONE]` the backend did not send, not an error event."""
    backend.queue(_stalling(usage=usage, pieces="events"))
    client = await gateway(backend, AFTER_FINISH)
    text, elapsed = await _relayed(client)
    assert text == "one two"
    assert elapsed < 5.0
    assert len(backend.completions()) == 1
    assert_clean_log(caplog)


async def test_the_relay_waits_for_every_choice_of_several(
    gateway, backend: FakeBackend
):
    """With `n` > 1 another choice may still be streaming after the first
    finished: the relay does not end the stream at `after_finish` then, and
    the stall is the idle timeout's error, as before."""
    backend.queue(_stalling(usage=False, pieces="events"))
    client = await gateway(backend, "[timeouts]\nidle = 1.0\nafter_finish = 0.2\n")
    with pytest.raises(openai.APIError, match="upstream timeout"):
        await _relayed(client, n=2)
