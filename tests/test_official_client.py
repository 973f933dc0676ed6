"""The official `ollama` Python client (sync and async) against gateway + fake backend.

The client validates every object with its pydantic models, so a wrong type or a
missing key anywhere in a stream raises here.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ollama
import pytest

from tests.conftest import base_url
from tests.fakebackend import Script, chat_chunk, sse
from tests.ndjson import NO_RETRY

MESSAGES = [{"role": "user", "content": "hi"}]
METRICS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)


def _check_final(final: Any) -> None:
    assert final.done is True
    assert final.done_reason == "stop"
    for name in METRICS:
        value = getattr(final, name)
        assert type(value) is int and value > 0, (name, value)
    assert isinstance(final.created_at, str)


def _check_stream(chunks: list[Any]) -> None:
    assert len(chunks) >= 2
    assert all(c.done is False and c.done_reason is None for c in chunks[:-1])
    assert all(c.total_duration is None for c in chunks[:-1])
    _check_final(chunks[-1])


# Async client ---------------------------------------------------------------------


async def test_async_chat(gateway, backend):
    backend.queue(Script.text("Hi there friend", split=9))
    client = await gateway(backend)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await api.chat(model="gpt-4o", messages=MESSAGES)
    assert isinstance(reply, ollama.ChatResponse)
    assert reply.message.role == "assistant"
    assert reply.message.content == "Hi there friend"
    assert reply.model == "gpt-4o"
    _check_final(reply)
    # The client always sends `tools: []` and `stream: false`.
    sent = backend.completions()[0].body
    assert "tools" not in sent and sent["stream"] is True


async def test_async_chat_stream(gateway, backend):
    backend.queue(Script.text("a b c d", split=60, delay=0.005))
    client = await gateway(backend)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        stream = await api.chat(model="gpt-4o", messages=MESSAGES, stream=True)
        chunks = [chunk async for chunk in stream]
    assert all(isinstance(c, ollama.ChatResponse) for c in chunks)
    assert "".join(c.message.content or "" for c in chunks) == "a b c d"
    _check_stream(chunks)


async def test_async_generate(gateway, backend):
    backend.queue(Script.text("gen text"))
    client = await gateway(backend)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await api.generate(model="gpt-4o", prompt="hi", system="terse")
    assert isinstance(reply, ollama.GenerateResponse)
    assert reply.response == "gen text"
    _check_final(reply)
    assert backend.completions()[0].body["messages"][0] == {
        "role": "system",
        "content": "terse",
    }


async def test_async_generate_stream(gateway, backend):
    backend.queue(Script.text("x y z", split=7))
    client = await gateway(backend)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        stream = await api.generate(model="gpt-4o", prompt="hi", stream=True)
        chunks = [chunk async for chunk in stream]
    assert "".join(c.response for c in chunks) == "x y z"
    _check_stream(chunks)


async def test_async_load_answer_validates(gateway, backend):
    client = await gateway(backend)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        loaded = await api.generate(model="gpt-4o")
        chat_loaded = await api.chat(model="gpt-4o")
        unloaded = await api.chat(model="gpt-4o", keep_alive=0)
    assert loaded.done_reason == "load" and loaded.response == ""
    assert chat_loaded.done_reason == "load"
    assert chat_loaded.message.content == ""
    assert unloaded.done_reason == "unload"
    assert backend.completions() == []


async def test_async_tool_call_stream(gateway, backend):
    fragments = ['{"ci', 'ty": ', '"Tok', 'yo"', "}"]
    first = {"index": 0, "id": "call_abc", "type": "function"}
    first["function"] = {"name": "get_weather", "arguments": ""}
    events = [chat_chunk({"role": "assistant", "tool_calls": [first]})]
    events += [
        chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": f}}]})
        for f in fragments
    ]
    events.append(chat_chunk({}, finish="tool_calls"))
    backend.queue(Script(pieces=[sse(*events)]))
    client = await gateway(backend)
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    async with ollama.AsyncClient(host=base_url(client)) as api:
        stream = await api.chat(
            model="gpt-4o", messages=MESSAGES, tools=[tool], stream=True
        )
        chunks = [chunk async for chunk in stream]
    calls = [c for chunk in chunks for c in chunk.message.tool_calls or []]
    assert len(calls) == 1
    assert calls[0].function.name == "get_weather"
    assert calls[0].function.arguments == {"city": "Tokyo"}
    assert chunks[-1].done_reason == "stop"
    assert backend.completions()[0].body["tools"] == [tool]


@pytest.mark.parametrize("stream", [False, True])
async def test_async_429_is_a_response_error(gateway, backend, stream):
    backend.queue(Script.error(429, "Rate limit reached"))
    client = await gateway(backend, NO_RETRY)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        with pytest.raises(ollama.ResponseError) as info:
            if stream:
                response = await api.chat(
                    model="gpt-4o", messages=MESSAGES, stream=True
                )
                [chunk async for chunk in response]
            else:
                await api.chat(model="gpt-4o", messages=MESSAGES)
    assert info.value.status_code == 429
    assert info.value.error == "Rate limit reached"
    assert len(backend.completions()) == 1


async def test_async_mid_stream_break_raises(gateway, backend):
    pieces = [sse(chat_chunk({"content": c}), done=False) for c in "abcd"]
    backend.queue(Script(pieces=pieces, abort_after=2, delay=0.02))
    client = await gateway(backend)
    seen: list[str] = []
    async with ollama.AsyncClient(host=base_url(client)) as api:
        stream = await api.chat(model="gpt-4o", messages=MESSAGES, stream=True)
        with pytest.raises(ollama.ResponseError) as info:
            async for chunk in stream:
                seen.append(chunk.message.content or "")
    assert "".join(seen) == "ab"
    assert "unexpected EOF" in info.value.error
    assert info.value.status_code == -1
    assert len(backend.completions()) == 1


async def test_async_unknown_model(gateway, backend):
    client = await gateway(backend)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        with pytest.raises(ollama.ResponseError) as info:
            await api.generate(model="nope", prompt="hi")
    assert info.value.status_code == 404
    assert info.value.error == "model 'nope' not found"


# Sync client (run in a thread: the gateway serves in this test's loop) -------------


def _sync(host: str, call: str, **kwargs: Any) -> Any:
    with ollama.Client(host=host) as api:
        result = getattr(api, call)(**kwargs)
        return list(result) if kwargs.get("stream") else result


async def test_sync_chat_and_generate(gateway, backend):
    backend.queue(Script.text("sync chat"), Script.text("sync gen"))
    client = await gateway(backend)
    host = base_url(client)
    reply = await asyncio.to_thread(
        _sync, host, "chat", model="gpt-4o", messages=MESSAGES
    )
    assert reply.message.content == "sync chat"
    _check_final(reply)
    generated = await asyncio.to_thread(
        _sync, host, "generate", model="gpt-4o", prompt="hi"
    )
    assert generated.response == "sync gen"
    _check_final(generated)


async def test_sync_streams(gateway, backend):
    backend.queue(Script.text("s t r", split=5), Script.text("g e n", split=5))
    client = await gateway(backend)
    host = base_url(client)
    chunks = await asyncio.to_thread(
        _sync, host, "chat", model="gpt-4o", messages=MESSAGES, stream=True
    )
    assert "".join(c.message.content or "" for c in chunks) == "s t r"
    _check_stream(chunks)
    chunks = await asyncio.to_thread(
        _sync, host, "generate", model="gpt-4o", prompt="x", stream=True
    )
    assert "".join(c.response for c in chunks) == "g e n"
    _check_stream(chunks)


@pytest.mark.parametrize("stream", [False, True])
async def test_sync_429_is_a_response_error(gateway, backend, stream):
    backend.queue(Script.error(429, "slow down"))
    client = await gateway(backend, NO_RETRY)
    with pytest.raises(ollama.ResponseError) as info:
        await asyncio.to_thread(
            _sync,
            base_url(client),
            "generate",
            model="gpt-4o",
            prompt="hi",
            stream=stream,
        )
    assert info.value.status_code == 429
    assert info.value.error == "slow down"


async def test_sync_mid_stream_break_raises(gateway, backend):
    pieces = [sse(chat_chunk({"content": c}), done=False) for c in "abc"]
    backend.queue(Script(pieces=pieces, abort_after=1, delay=0.02))
    client = await gateway(backend)
    with pytest.raises(ollama.ResponseError) as info:
        await asyncio.to_thread(
            _sync,
            base_url(client),
            "chat",
            model="gpt-4o",
            messages=MESSAGES,
            stream=True,
        )
    assert "unexpected EOF" in info.value.error
