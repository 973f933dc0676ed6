"""The official `ollama` Python client against backends that misbehave: what
the client makes of the answer is what the backend said (a whole answer, with
pydantic-valid objects), or a `ResponseError`; never a hang."""

from __future__ import annotations

import asyncio
from typing import Any

import ollama
import pytest

from tests.conftest import base_url
from tests.fakebackend import FakeBackend, Script, chat_chunk, sse

BOUND = 20.0
# A model the gateway knows to think (by its name), as the backend lists it.
MODEL = "qwen3-32b"
MESSAGES = [{"role": "user", "content": "hi"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
AFTER_FINISH = "[timeouts]\nidle = 60\nafter_finish = 0.3\n"
USAGE = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


@pytest.fixture(autouse=True)
def _thinker(backend: FakeBackend) -> None:
    backend.models = [{"id": MODEL, "object": "model"}]


def _stalling(*events: dict[str, Any]) -> Script:
    """The events (up to the finish), then a silence longer than any wait."""
    return Script(pieces=[sse(*events, done=False), sse()], stall_after=1, stall=30)


def _thinking_answer() -> list[dict[str, Any]]:
    return [
        chat_chunk({"role": "assistant", "reasoning_content": "Let me see. "}),
        chat_chunk({"reasoning_content": "Easy."}),
        chat_chunk({"content": "Four."}),
        chat_chunk({}, finish="stop"),
        chat_chunk(choices=False, usage=USAGE),
    ]


def _bare_call(arguments: str) -> dict[str, Any]:
    """A fragment without index or id that repeats the name."""
    call = {"function": {"name": "get_weather", "arguments": arguments}}
    return chat_chunk({"tool_calls": [call]})


def _call_answer() -> list[dict[str, Any]]:
    return [
        chat_chunk({"role": "assistant", "content": None}),
        _bare_call('{"city":'),
        _bare_call(' "Lima"}'),
        _bare_call('{"city": "Quito"}'),
        chat_chunk({}, finish="tool_calls"),
    ]


async def _chat(api: ollama.AsyncClient, stream: bool, **ask: Any) -> Any:
    """The final response (streamed: the chunks folded as a caller does)."""
    async with asyncio.timeout(BOUND):
        if not stream:
            return await api.chat(model=MODEL, messages=MESSAGES, **ask)
        parts = [
            part
            async for part in await api.chat(
                model=MODEL, messages=MESSAGES, stream=True, **ask
            )
        ]
    final = parts[-1]
    assert final.done is True
    assert all(p.done is False for p in parts[:-1])
    final.message.content = "".join(p.message.content or "" for p in parts)
    final.message.thinking = "".join(p.message.thinking or "" for p in parts)
    final.message.tool_calls = [c for p in parts for c in p.message.tool_calls or []]
    return final


@pytest.mark.parametrize("stream", [True, False])
async def test_thinking_then_a_stall_after_the_finish(gateway, backend, stream):
    backend.queue(_stalling(*_thinking_answer()))
    client = await gateway(backend, AFTER_FINISH)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await _chat(api, stream, think=True)
    assert reply.done_reason == "stop"
    assert reply.message.thinking == "Let me see. Easy."
    assert reply.message.content == "Four."
    assert reply.eval_count == 4


@pytest.mark.parametrize("stream", [True, False])
async def test_calls_without_index_then_a_stall(gateway, backend, stream):
    backend.queue(_stalling(*_call_answer()))
    client = await gateway(backend, AFTER_FINISH)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await _chat(api, stream, tools=[WEATHER])
    calls = reply.message.tool_calls
    assert [(c.function.name, c.function.arguments) for c in calls] == [
        ("get_weather", {"city": "Lima"}),
        ("get_weather", {"city": "Quito"}),
    ]
    assert reply.done_reason == "stop"


@pytest.mark.parametrize("stream", [True, False])
async def test_a_stall_before_the_finish_raises(gateway, backend, stream):
    events = _thinking_answer()[:3]
    backend.queue(_stalling(*events))
    client = await gateway(backend, "[timeouts]\nidle = 0.3\n")
    async with ollama.AsyncClient(host=base_url(client)) as api:
        with pytest.raises(ollama.ResponseError) as raised:
            await _chat(api, stream, think=True)
    assert raised.value.error == "upstream timeout"
    assert raised.value.status_code == (-1 if stream else 504)


@pytest.mark.parametrize("stream", [True, False])
async def test_a_cut_after_content_raises(gateway, backend, stream):
    events = _thinking_answer()[:3]
    backend.queue(Script(pieces=[sse(*events, done=False), b"x"], abort_after=1))
    client = await gateway(backend, "[translators.retry]\nattempts = 0\n")
    async with ollama.AsyncClient(host=base_url(client)) as api:
        with pytest.raises(ollama.ResponseError) as raised:
            await _chat(api, stream, think=True)
    assert "unexpected EOF" in raised.value.error
