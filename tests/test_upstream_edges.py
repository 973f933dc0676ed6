"""Odd but legal backend behaviour: keep-alive `data:` lines, huge error bodies."""

from __future__ import annotations

import json
from typing import Any

from ollama_gateway_translators.openai_to_ollama import NO_CHOICES
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


_AZURE_PROMPT_FILTER = {
    "id": "",
    "object": "",
    "created": 0,
    "model": "",
    "choices": [],
    "prompt_filter_results": [
        {"prompt_index": 0, "content_filter_results": {"hate": {"filtered": False}}}
    ],
}


async def test_an_answer_without_choices_is_an_error_not_an_empty_success(
    backend, gateway
):
    """A 200 whose answer has no choice at all (`{}`, `{"choices": []}`, only
    Azure's prompt-filter event and a usage trailer, a bare [DONE]) holds no
    completion: a 502 that says so, for chat and generate (both paths), as
    one upstream request."""
    usage = chat_chunk(choices=False, usage={"prompt_tokens": 3})
    answers = [
        Script(pieces=[b"{}"], content_type="application/json"),
        Script(
            pieces=[b'{"id": "x", "choices": [], "usage": {"prompt_tokens": 3}}'],
            content_type="application/json",
        ),
        Script(pieces=[sse(_AZURE_PROMPT_FILTER, usage)]),
        Script(pieces=[sse()]),
    ]
    requests: list[tuple[str, dict[str, Any]]] = [
        ("/api/chat", {"messages": [{"role": "user", "content": "x"}]}),
        ("/api/generate", {"prompt": "x"}),
        ("/api/generate", {"prompt": "x", "raw": True}),
    ]
    client = await gateway(backend)
    sent = 0
    for script in answers:
        for path, request in requests:
            for stream in (True, False):
                backend.queue(script)
                body = {"model": "gpt-4o", **request, "stream": stream}
                response = await client.post(path, json=body)
                sent += 1
                assert response.status == 502, (script, path, request, stream)
                assert await response.json() == {"error": NO_CHOICES}
                assert len(backend.completions()) == sent


async def test_choices_after_a_prompt_filter_event_or_an_empty_one_are_answers(
    backend, gateway
):
    """Azure's first event (no choice, its prompt filter results) and a
    usage trailer with `choices: []` are normal; so is an answer that is
    empty but has its choice (a role, a finish_reason)."""
    usage = chat_chunk(
        choices=False, usage={"prompt_tokens": 3, "completion_tokens": 1}
    )
    answers = {
        "ok": sse(
            _AZURE_PROMPT_FILTER,
            chat_chunk({"role": "assistant", "content": "ok"}),
            chat_chunk({}, finish="stop"),
            usage,
        ),
        "": sse(chat_chunk({"role": "assistant"}), usage),
    }
    client = await gateway(backend)
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    for content, events in answers.items():
        for stream in (True, False):
            backend.queue(Script(pieces=[events]))
            response = await client.post(
                "/api/chat", json={**request, "stream": stream}
            )
            assert response.status == 200
            lines = [json.loads(x) for x in (await response.text()).splitlines()]
            assert "".join(x["message"]["content"] for x in lines) == content
            assert lines[-1]["done"] is True
            assert lines[-1]["prompt_eval_count"] == 3
