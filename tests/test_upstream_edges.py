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


async def test_a_web_page_instead_of_an_answer_names_the_likely_cause(backend, gateway):
    """A 200 HTML page (a base URL that reaches a web UI's catch-all page) is a
    502 that says so, before any byte, streamed or not; not 'unexpected EOF'."""
    page = b"<!doctype html>\n<html><body>\n\nWelcome</body></html>\n"
    client = await gateway(backend)
    for stream in (True, False):
        backend.queue(Script(pieces=[page], content_type="text/html; charset=utf-8"))
        request = {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "x"}],
            "stream": stream,
        }
        response = await client.post("/api/chat", json=request)
        assert response.status == 502
        assert await response.json() == {
            "error": "upstream answered with a web page (text/html), not a "
            "completion: check the backend's base_url (it usually ends in /v1)"
        }


async def test_text_strict_json_refuses_is_mended_not_fatal(backend, gateway):
    """An emoji cut between two events as escapes of half a surrogate pair (a
    JavaScript server), bytes that are not UTF-8, a `-Infinity` logprob: the
    answer goes on, each bad character as U+FFFD, as on a decoder with
    errors="replace"; one character must not cost the whole answer."""
    events: list[str | bytes] = [
        '{"choices":[{"index":0,"delta":{"content":"party \\ud83c"}}]}',
        '{"choices":[{"index":0,"delta":{"content":"\\udf89 time"}}]}',
        b'{"choices":[{"index":0,"delta":{"content":" caf\xe9"}}]}',
        '{"choices":[{"index":0,"delta":{"content":"!"},"logprobs":{"content":'
        '[{"token":"!","logprob":-Infinity}]}}]}',
    ]
    body = b"".join(
        b"data: " + (e if isinstance(e, bytes) else e.encode()) + b"\n\n"
        for e in events
    ) + sse(chat_chunk({}, finish="stop"))
    client = await gateway(backend)
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    for stream in (True, False):
        backend.queue(Script(pieces=[body]))
        response = await client.post("/api/chat", json={**request, "stream": stream})
        assert response.status == 200
        lines = [json.loads(x) for x in (await response.text()).splitlines()]
        content = "".join(line["message"]["content"] for line in lines)
        assert content == "party \ufffd\ufffd time caf\ufffd!"
        assert lines[-1]["done"] is True


async def test_an_empty_json_answer_is_an_error_not_an_empty_success(backend, gateway):
    client = await gateway(backend)
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    for stream in (True, False):
        backend.queue(Script(pieces=[b" \n"], content_type="application/json"))
        response = await client.post("/api/chat", json={**request, "stream": stream})
        assert response.status == 502
        assert await response.json() == {
            "error": "an error was encountered while running the model: "
            "unexpected EOF (an empty JSON answer)"
        }
