"""Odd but legal backend behaviour: keep-alive `data:` lines, huge error bodies."""

from __future__ import annotations

import json

from tests.fakebackend import Script, chat_chunk, sse


async def test_empty_data_lines_are_keep_alives(backend, gateway):
    body = b"data:\n\ndata: \n\n" + sse(
        chat_chunk({"content": "ok"}), chat_chunk({}, finish="stop")
    )
    backend.queue(Script(pieces=[body]))
    client = await gateway(backend)
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    lines = [
        json.loads(x)
        for x in (
            await (await client.post("/api/chat", json=request)).text()
        ).splitlines()
    ]
    assert lines[0]["message"]["content"] == "ok"
    assert lines[-1]["done"] is True


async def test_a_huge_error_body_is_read_only_in_part(backend, gateway):
    message = "x" * (4 * 1024 * 1024)
    backend.queue(Script.error(400, message))
    client = await gateway(backend)
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    response = await client.post("/api/chat", json=request)
    assert response.status == 400
    error = (await response.json())["error"]
    assert 0 < len(error) <= 64 * 1024
