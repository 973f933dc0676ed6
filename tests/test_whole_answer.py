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

from ollama_gateway import MemoryResponse, StreamSessionWrapper, WholeAnswerSession
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
    "no content at all": sse(chat_chunk(finish="stop")),
    "keep-alives and comments": (
        b": ping\n\ndata: \n\n"
        + sse(chat_chunk({"content": "x"}), chat_chunk(finish="stop"))
    ),
}


def _ctx() -> RequestContext:
    ctx = RequestContext(
        request_id="t", endpoint="chat", model="m", stream=False, started_ns=1
    )
    ctx.upstream_sent_ns = time.perf_counter_ns()
    ctx.logprobs = True
    ctx.top_logprobs = 0
    return ctx


async def _fold(
    body: bytes, cut: int, *, wrapped: bool
) -> tuple[ollama.ChatResponse, StreamSession]:
    ctx = _ctx()
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
        call["id"] = call["id"] if call["id"].startswith("call_a") else "generated"
    return out


@pytest.mark.parametrize("cut", [1, 7, 64, 1 << 20])
@pytest.mark.parametrize("name", list(ANSWERS))
async def test_absorbed_answer_equals_the_chunk_by_chunk_fold(name: str, cut: int):
    body = ANSWERS[name]
    absorbed, session = await _fold(body, cut, wrapped=False)
    folded, wrapper = await _fold(body, cut, wrapped=True)
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
    assert message.content == "Checking."
    assert message.tool_calls is not None
    assert [c.function.name for c in message.tool_calls] == ["get_weather", "get_time"]
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
