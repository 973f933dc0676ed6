"""Logprobs both ways (spec 3.11): requested upstream, copied back per chunk."""

from __future__ import annotations

import json

from tests.fakebackend import Script, chat_chunk, sse


def logprob(token: str, value: float, tops: int) -> dict[str, object]:
    top = [{"token": token, "logprob": value, "bytes": list(token.encode())}] * tops
    return {"token": token, "logprob": value, "bytes": list(token.encode()),
            "top_logprobs": top}  # fmt: skip


def stream_with_logprobs() -> bytes:
    events = [
        chat_chunk({"content": "Hi"}, logprobs=None),
        chat_chunk({"content": " there"}),
        chat_chunk({}, finish="stop"),
    ]
    events[0]["choices"][0]["logprobs"] = {"content": [logprob("Hi", -0.1, 2)]}
    events[1]["choices"][0]["logprobs"] = {"content": [logprob(" there", -0.3, 2)]}
    return sse(*events)


async def test_logprobs_are_requested_and_copied_per_chunk(backend, gateway):
    backend.queue(Script(pieces=[stream_with_logprobs()]))
    client = await gateway(backend)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}],
            "logprobs": True, "top_logprobs": 2}  # fmt: skip
    response = await client.post("/api/chat", json=body)
    assert response.status == 200
    lines = [json.loads(line) for line in (await response.text()).splitlines()]
    sent = backend.completions()[-1].body
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2
    assert [line["logprobs"][0]["token"] for line in lines[:2]] == ["Hi", " there"]
    assert len(lines[0]["logprobs"][0]["top_logprobs"]) == 2
    assert lines[0]["logprobs"][0]["bytes"] == [72, 105]


async def test_top_logprobs_are_dropped_when_not_asked_and_folded_when_not_streamed(
    backend, gateway
):
    backend.queue(Script(pieces=[stream_with_logprobs()]))
    client = await gateway(backend)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}],
            "logprobs": True, "stream": False}  # fmt: skip
    answer = await (await client.post("/api/chat", json=body)).json()
    assert [item["token"] for item in answer["logprobs"]] == ["Hi", " there"]
    assert all("top_logprobs" not in item for item in answer["logprobs"])
    assert "top_logprobs" not in backend.completions()[-1].body


async def test_logprobs_from_the_backend_are_ignored_when_not_asked(backend, gateway):
    backend.queue(Script(pieces=[stream_with_logprobs()]))
    client = await gateway(backend)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    lines = [
        json.loads(line)
        for line in (
            await (await client.post("/api/chat", json=body)).text()
        ).splitlines()
    ]
    assert "".join(line["message"]["content"] for line in lines) == "Hi there"
    assert all("logprobs" not in line for line in lines)
