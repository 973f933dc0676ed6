"""Generate's `context`, emulated with `server.generate_context` (spec 3.12's
option; off, spec case 42 holds: tests/test_spec_edge_cases.py).

The official Python client sends the `context` of one answer with the next
prompt, as programs written before `/api/chat` did to hold a conversation.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import ollama
import pytest

from ollama_gateway.app import create_app
from tests.conftest import base_url
from tests.fakebackend import Script, chat_chunk, reasoning_sse, sse
from tests.ndjson import post, read_ndjson

ON = """
[server]
generate_context = true
"""


def sent_messages(backend: Any) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = backend.completions()[-1].body["messages"]
    return messages


@pytest.mark.parametrize("stream", [False, True])
async def test_a_conversation_goes_on_through_context(gateway, backend, stream):
    backend.queue(Script.text("Hello Ann."), Script.text("Ann."), Script.text("Bye."))
    client = await gateway(backend, ON)
    async with ollama.AsyncClient(host=base_url(client)) as api:

        async def ask(prompt: str, **kwargs: Any) -> ollama.GenerateResponse:
            if not stream:
                whole: ollama.GenerateResponse = await api.generate(
                    "gpt-4o", prompt, **kwargs
                )
                return whole
            parts: list[ollama.GenerateResponse] = [
                p
                async for p in await api.generate(
                    "gpt-4o", prompt, stream=True, **kwargs
                )
            ]
            assert all(p.context is None for p in parts[:-1])
            return parts[-1]

        first = await ask("I am Ann.", system="Be brief.")
        assert first.context and len(first.context) == 1
        second = await ask("Who am I?", context=first.context)
        assert sent_messages(backend) == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "I am Ann."},
            {"role": "assistant", "content": "Hello Ann."},
            {"role": "user", "content": "Who am I?"},
        ]
        assert second.context and second.context != first.context
        await ask("Goodbye.", context=second.context)
    assert [m["content"] for m in sent_messages(backend)] == [
        "Be brief.",
        "I am Ann.",
        "Hello Ann.",
        "Who am I?",
        "Ann.",
        "Goodbye.",
    ]


async def test_a_new_system_prompt_takes_the_kept_ones_place(gateway, backend):
    backend.queue(Script.text("a"), Script.text("b"))
    client = await gateway(backend, ON)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        first = await api.generate("gpt-4o", "one", system="old")
        await api.generate("gpt-4o", "two", system="new", context=first.context)
    assert sent_messages(backend) == [
        {"role": "system", "content": "new"},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "two"},
    ]


async def test_another_clients_or_an_unknown_context_is_ignored(
    gateway, backend, caplog
):
    backend.queue(*(Script.text("x") for _ in range(3)))
    client = await gateway(backend, ON)
    url = base_url(client)
    async with ollama.AsyncClient(host=url, headers={"X-API-Key": "a"}) as ann:
        first = await ann.generate("gpt-4o", "secret")
    assert first.context
    caplog.set_level(logging.WARNING, logger="ollama_gateway")
    async with ollama.AsyncClient(host=url, headers={"X-API-Key": "b"}) as bob:
        answer = await bob.generate("gpt-4o", "tell me", context=first.context)
        assert sent_messages(backend) == [{"role": "user", "content": "tell me"}]
        assert answer.context and answer.context != first.context
        await bob.generate("gpt-4o", "again", context=[1, 2, 3])
        assert sent_messages(backend) == [{"role": "user", "content": "again"}]
    warnings = [r.getMessage() for r in caplog.records if "context" in r.getMessage()]
    assert len(warnings) == 2


async def test_ids_are_numbers_javascript_reads_exactly(gateway, backend):
    backend.queue(*(Script.text("x") for _ in range(20)))
    client = await gateway(backend, ON)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        ids = [(await api.generate("gpt-4o", "hi")).context for _ in range(20)]
    numbers = [i[0] for i in ids if i]
    assert len(set(numbers)) == 20
    assert all(0 < n < 2**53 for n in numbers)


async def test_raw_answers_and_a_store_of_nothing_carry_no_context(gateway, backend):
    backend.queue(Script.text("x"), Script.text("y"))
    client = await gateway(backend, ON)
    resp = await post(
        client, "/api/generate", {"model": "gpt-4o", "prompt": "p", "raw": True}
    )
    assert all("context" not in line for line in await read_ndjson(resp))
    client = await gateway(backend, ON + "[limits]\nresponse_store_bytes = 0\n")
    resp = await post(
        client, "/api/generate", {"model": "gpt-4o", "prompt": "p", "stream": False}
    )
    assert resp.status == 200 and "context" not in await resp.json()


async def test_a_context_goes_on_at_another_worker(
    aiohttp_client, settings_for, backend, tmp_path
):
    """With `--workers N` the workers share the kept turns; two apps on one
    directory stand for two workers, as in test_responses_history.py."""
    shared = tmp_path / "kept"
    shared.mkdir()
    settings = settings_for(backend, ON)
    workers = [
        await aiohttp_client(create_app(settings, response_dir=str(shared)))
        for _ in range(2)
    ]
    backend.queue(Script.text("Hello Ann."), Script.text("Ann."), Script.text("Bye."))
    async with (
        ollama.AsyncClient(host=base_url(workers[0])) as one,
        ollama.AsyncClient(host=base_url(workers[1])) as two,
    ):
        first = await one.generate("gpt-4o", "I am Ann.")
        assert first.context is not None
        assert sorted(p.name for p in shared.iterdir()) == [f"ctx_{first.context[0]}"]
        # Streamed on the other worker: its last line comes once its turns
        # are written, so the first worker finds them at once.
        parts = [
            p
            async for p in await two.generate(
                "gpt-4o", "Who am I?", context=first.context, stream=True
            )
        ]
        second = parts[-1]
        assert second.done and second.context is not None
        await one.generate("gpt-4o", "Goodbye.", context=second.context)
    assert [m["content"] for m in sent_messages(backend)] == [
        "I am Ann.",
        "Hello Ann.",
        "Who am I?",
        "Ann.",
        "Goodbye.",
    ]


async def test_a_last_line_alone_in_its_read_ends_the_stream(gateway, backend):
    """The last line is held back until the turns are kept: when the backend's
    [DONE] comes in a read of its own, that read makes no bytes, and must not
    end the chunked body before the held line is sent."""
    events = [
        sse(chat_chunk({"role": "assistant", "content": "Hi"}), done=False),
        sse(chat_chunk({"content": " Ann."}), done=False),
        sse(chat_chunk(finish="stop"), done=False),
        b"data: [DONE]\n\n",
    ]
    script = Script(pieces=events, delay=0.05)
    backend.queue(script, Script(pieces=events, delay=0.05))
    client = await gateway(backend, ON)
    # One client, one keep-alive connection: a line sent after the body's end
    # would also spoil the second answer's status line.
    async with ollama.AsyncClient(host=base_url(client)) as api:
        for _ in range(2):
            parts = [p async for p in await api.generate("gpt-4o", "hi", stream=True)]
            assert "".join(p.response for p in parts) == "Hi Ann."
            assert parts[-1].done and parts[-1].context is not None


async def test_generate_keys_come_in_gos_field_order(gateway, backend):
    """Go's `GenerateResponse` writes `thinking` before `done` and `context`
    before the metrics: a reasoning answer with the emulated context shows
    both."""
    backend.queue(Script(pieces=[reasoning_sse()]), Script(pieces=[reasoning_sse()]))
    client = await gateway(backend, ON)
    body = {"model": "gpt-4o", "prompt": "why?", "stream": False}
    whole = json.loads(await (await post(client, "/api/generate", body)).read())
    assert list(whole) == [
        "model", "created_at", "response", "thinking", "done", "done_reason",
        "context", "total_duration", "load_duration", "prompt_eval_count",
        "prompt_eval_duration", "eval_count", "eval_duration",
    ]  # fmt: skip
    lines = await read_ndjson(
        await post(client, "/api/generate", body | {"stream": True})
    )
    assert list(lines[0]) == ["model", "created_at", "response", "thinking", "done"]
    assert list(lines[-1])[3:7] == ["done", "done_reason", "context", "total_duration"]
