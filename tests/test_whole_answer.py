"""A non-stream answer folded by the session (`absorb`) equals the generic fold.

The built-in session has `absorb`; the same session behind a
`StreamSessionWrapper` (which has none) is folded chunk by chunk through
`feed`, the way any plugin's session is. Both folds must give the same answer,
whatever the events carry and however the reads are cut.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest

from ollama_gateway import (
    MemoryResponse,
    StreamSessionWrapper,
    WholeAnswerSession,
    completion,
)
from ollama_gateway.completion import ChunkReader, collect
from ollama_gateway.context import RequestContext
from ollama_gateway.errors import UpstreamError
from ollama_gateway.protocols import NoConfig, StreamSession
from ollama_gateway.schemas import ollama
from ollama_gateway.settings import Settings
from ollama_gateway_translators.openai_to_ollama import (
    ChatResponseMapper,
    ChatStreamSession,
)
from tests.fakebackend import chat_chunk, split_every, sse

SSE_HEADERS = {"Content-Type": "text/event-stream"}


def _tool(
    index: int, *, name: str = "", args: str = "", id: str = ""
) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {}}
    if id:
        call["id"] = id
    if name:
        call["function"]["name"] = name
    if args:
        call["function"]["arguments"] = args
    return call


def _logprob(token: str) -> dict[str, Any]:
    return {"content": [{"token": token, "logprob": -0.5, "bytes": [65]}]}


ANSWERS: dict[str, bytes] = {
    "content": sse(
        chat_chunk({"role": "assistant", "content": ""}),
        *(chat_chunk({"content": t}) for t in ["Hel", "lo", ", wor", "ld ✓"]),
        chat_chunk(finish="stop"),
        chat_chunk(choices=False, usage={"prompt_tokens": 7, "completion_tokens": 4}),
    ),
    "thinking then content": sse(
        chat_chunk({"reasoning_content": "Let me "}),
        chat_chunk({"reasoning": "think."}),
        chat_chunk({"content": "42"}),
        chat_chunk(finish="length"),
    ),
    "tool calls among content": sse(
        chat_chunk({"content": "Checking."}),
        chat_chunk({"tool_calls": [_tool(0, name="get_weather", id="call_a")]}),
        chat_chunk({"tool_calls": [_tool(0, args='{"city": ')]}),
        chat_chunk({"tool_calls": [_tool(0, args='"Tokyo"}')]}),
        chat_chunk({"tool_calls": [_tool(1, name="get_time", args="{}", id="b")]}),
        chat_chunk(
            {"content": " And", "tool_calls": [_tool(2, name="ping", args="{}")]}
        ),
        chat_chunk(finish="tool_calls"),
    ),
    "logprobs": sse(
        chat_chunk({"content": "A"}, logprobs=None),
        {
            **chat_chunk({"content": "B"}),
            "choices": [
                {"index": 0, "delta": {"content": "B"}, "logprobs": _logprob("B")}
            ],
        },
        {
            **chat_chunk({"content": ""}),
            "choices": [
                {"index": 0, "delta": {"content": ""}, "logprobs": _logprob("")}
            ],
        },
        chat_chunk(finish="stop"),
    ),  # fmt: skip
    "reasoning and content in one chunk": sse(
        chat_chunk({"reasoning": "so ", "content": "a"}),
        chat_chunk({"reasoning_content": "then ", "content": "b"}),
        chat_chunk(finish="stop"),
    ),
    "no content at all": sse(chat_chunk(finish="stop")),
    "keep-alives and comments": (
        b": ping\n\ndata: \n\n"
        + sse(chat_chunk({"content": "x"}), chat_chunk(finish="stop"))
    ),
    "a refusal": sse(chat_chunk({"refusal": "I can't."}), chat_chunk(finish="stop")),
    "usage on the finish chunk, and content with it": sse(
        chat_chunk({"content": "a"}),
        chat_chunk(
            {"content": "b"},
            finish="stop",
            usage={"prompt_tokens": 3, "completion_tokens": 2},
        ),
    ),
    "Groq's usage in x_groq": sse(
        chat_chunk({"content": "a"}),
        {
            **chat_chunk(finish="stop"),
            "x_groq": {"usage": {"prompt_tokens": 5, "completion_tokens": 1}},
        },
    ),
    "multi-line data": (
        b'data: {"choices": [{"index": 0,\ndata:  "delta": {"content": "m"}}]}\n\n'
        + sse(chat_chunk(finish="stop"))
    ),
    "no [DONE]": sse(
        chat_chunk({"content": "x"}), chat_chunk(finish="stop"), done=False
    ),
}

# Events that fail the answer: each fold must fail it alike, with the same
# message, whether the event-by-event path or the one-decode path meets them.
BROKEN: dict[str, bytes] = {
    "an event of two values": sse(chat_chunk({"content": "x"}), "{},{}"),
    "an event that is not JSON": sse(chat_chunk({"content": "x"}), "{oops"),
    "an event that is not an object": sse(chat_chunk({"content": "x"}), "[1]"),
    "JSON cut across two events": sse('{"choices": [', "]}"),
    "an error event between content": sse(
        chat_chunk({"content": "x"}),
        {"error": {"message": "overloaded"}},
        chat_chunk({"content": "y"}),
    ),
    "cut off before the finish": sse(chat_chunk({"content": "x"}), done=False),
}


def _ctx(*, logprobs: bool = True) -> RequestContext:
    ctx = RequestContext(
        request_id="t", endpoint="chat", model="m", stream=False, started_ns=1
    )
    ctx.upstream_sent_ns = time.perf_counter_ns()
    ctx.logprobs = logprobs
    ctx.top_logprobs = 0
    return ctx


async def _fold(
    body: bytes, cut: int, *, wrapped: bool, logprobs: bool = True
) -> tuple[ollama.ChatResponse, StreamSession]:
    ctx = _ctx(logprobs=logprobs)
    session: StreamSession = ChatResponseMapper(NoConfig(), None).open_stream(ctx)
    if wrapped:
        session = StreamSessionWrapper(session)
    upstream = MemoryResponse(200, body=split_every(body, cut), headers=SSE_HEADERS)
    reader = ChunkReader(ctx, upstream, session, Settings.load({}))
    try:
        return await collect(reader), session
    finally:
        await reader.aclose()


def _comparable(answer: ollama.ChatResponse) -> dict[str, Any]:
    """The answer without its clock readings (and without generated call ids)."""
    out: dict[str, Any] = msgspec.to_builtins(answer)
    for key in ("created_at", "total_duration", "load_duration"):
        out.pop(key, None)
    for key in ("prompt_eval_duration", "eval_duration"):
        out[key] = bool(out.get(key))
    for call in out["message"].get("tool_calls", []):
        call["id"] = call["id"] if call["id"] in ("call_a", "b") else "generated"
    return out


@pytest.mark.parametrize("logprobs", [True, False])
@pytest.mark.parametrize("cut", [1, 7, 64, 1 << 20])
@pytest.mark.parametrize("name", list(ANSWERS))
async def test_absorbed_answer_equals_the_chunk_by_chunk_fold(
    name: str, cut: int, logprobs: bool
):
    body = ANSWERS[name]
    absorbed, session = await _fold(body, cut, wrapped=False, logprobs=logprobs)
    folded, wrapper = await _fold(body, cut, wrapped=True, logprobs=logprobs)
    assert _comparable(absorbed) == _comparable(folded)
    # Each path was the one meant: only the bare session kept a whole answer.
    assert isinstance(session, ChatStreamSession)
    assert session.kept is not None
    assert isinstance(wrapper, StreamSessionWrapper)
    assert isinstance(wrapper.inner, ChatStreamSession)
    assert wrapper.inner.kept is None


async def test_absorbed_answer_has_what_the_events_said():
    answer, _ = await _fold(ANSWERS["tool calls among content"], 5, wrapped=False)
    message = answer.message
    assert message.content == "Checking. And"
    assert message.tool_calls is not None
    names = [c.function.name for c in message.tool_calls]
    assert names == ["get_weather", "get_time", "ping"]
    assert message.tool_calls[0].function.arguments == {"city": "Tokyo"}
    assert message.tool_calls[0].id == "call_a"
    assert answer.done and answer.done_reason == "stop"

    answer, _ = await _fold(ANSWERS["logprobs"], 3, wrapped=False)
    assert answer.message.content == "AB"
    assert [p.token for p in answer.logprobs or []] == ["B", ""]

    answer, _ = await _fold(ANSWERS["content"], 2, wrapped=False)
    assert answer.message.content == "Hello, world ✓"
    assert (answer.prompt_eval_count, answer.eval_count) == (7, 4)


async def test_a_streamed_answer_is_never_absorbed():
    ctx = _ctx()
    ctx.stream = True
    session = ChatResponseMapper(NoConfig(), None).open_stream(ctx)
    upstream = MemoryResponse(200, body=ANSWERS["content"], headers=SSE_HEADERS)
    reader = ChunkReader(ctx, upstream, session, Settings.load({}))
    lines: list[str] = []
    while (batch := await reader.read()) is not None:
        lines.extend(c.message.content for c in batch if not c.done)
    assert lines == ["Hel", "lo", ", wor", "ld ✓"]
    assert session.kept is None


async def test_an_error_event_fails_the_absorbed_answer_as_the_fold():
    body = sse(chat_chunk({"content": "x"}), {"error": {"message": "overloaded"}})
    for wrapped in (False, True):
        with pytest.raises(UpstreamError) as caught:
            await _fold(body, 9, wrapped=wrapped)
        assert "overloaded" in str(caught.value)


def test_the_builtin_session_is_a_whole_answer_session():
    session = ChatStreamSession(_ctx())
    whole: WholeAnswerSession = session  # mypy checks the shape
    assert callable(whole.absorb)
    assert not hasattr(StreamSessionWrapper(session), "absorb")


@pytest.mark.parametrize("cut", [1, 64, 1 << 20])
@pytest.mark.parametrize("name", list(BROKEN))
async def test_a_broken_answer_fails_alike_in_both_folds(name: str, cut: int):
    messages = []
    for wrapped in (False, True):
        with pytest.raises(UpstreamError) as caught:
            await _fold(BROKEN[name], cut, wrapped=wrapped)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]


async def test_one_read_of_whole_events_is_decoded_in_one_call(
    monkeypatch: pytest.MonkeyPatch,
):
    """The one-decode path is taken for a read of several events: no event of
    it is decoded on its own (the per-event decoder is not called)."""
    calls: list[bytes] = []
    decode_one = completion._decode_chunk

    def counting(payload: bytes) -> Any:
        calls.append(payload)
        return decode_one(payload)

    monkeypatch.setattr(completion, "_decode_chunk", counting)
    answer, _ = await _fold(ANSWERS["content"], 1 << 20, wrapped=False)
    assert answer.message.content == "Hello, world ✓"
    assert calls == []
    # Cut into single bytes, each event is read (and decoded) on its own.
    answer, _ = await _fold(ANSWERS["content"], 1, wrapped=False)
    assert answer.message.content == "Hello, world ✓"
    assert len(calls) == 7
