"""Third-party backends' answers, replayed from `fixtures/providers/` (see its
README for each file's source) through the fake backend and the gateway.

Each answer is checked as an Ollama client reads it: content, thinking, tool
calls (whole, arguments an object), done_reason and counts, and an error
where the backend said the answer failed (never a done chunk that passes a
cut answer off as whole).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ollama
import pytest

from tests.conftest import base_url
from tests.fakebackend import Script, chat_chunk, split_every, sse
from tests.ndjson import GENERATE, assert_final, chat, post, read_ndjson

PROVIDERS = Path(__file__).parent / "fixtures" / "providers"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
            },
        },
    }
]


def _script(name: str, *, split: int | None = None) -> Script:
    data = (PROVIDERS / name).read_bytes()
    kind = "application/json" if name.endswith(".json") else "text/event-stream"
    return Script(
        pieces=split_every(data, split) if split else [data], content_type=kind
    )


async def _chat(backend: Any, gateway: Any, name: str, *, stream: bool) -> Any:
    backend.queue(_script(name, split=7 if stream else None))
    client = await gateway(backend)
    return await post(client, "/api/chat", chat(stream=stream, tools=TOOLS))


async def _streamed(backend: Any, gateway: Any, name: str) -> list[dict[str, Any]]:
    return await read_ndjson(await _chat(backend, gateway, name, stream=True))


async def _answer(
    backend: Any, gateway: Any, name: str, *, stream: bool
) -> list[dict[str, Any]]:
    """The answer's chunks: the lines of a stream, or the one object."""
    resp = await _chat(backend, gateway, name, stream=stream)
    if stream:
        return await read_ndjson(resp)
    assert resp.status == 200, await resp.text()
    return [await resp.json()]


def _text(objs: list[dict[str, Any]], key: str) -> str:
    return "".join(o.get("message", {}).get(key) or "" for o in objs)


# Answers that failed: an error, after whatever was streamed.


@pytest.mark.parametrize(
    ("name", "streamed", "status", "message"),
    [
        (
            "openrouter_choice_error.sse",
            "The answer is forty",
            502,
            "Provider returned error (Google): upstream connection reset",
        ),
        (
            "mistral_finish_error.sse",
            "Bonjour !",
            500,
            'the backend ended the answer with finish_reason "error"',
        ),
        (
            "deepseek_insufficient_resource.sse",
            "Paris",
            503,
            "the backend interrupted the answer: insufficient system resources "
            '(finish_reason "insufficient_system_resource")',
        ),
        (
            "sglang_abort.sse",
            "The first step",
            500,
            'the backend aborted the answer (finish_reason "abort")',
        ),
        (
            "vllm_flat_error.sse",
            "Sure",
            400,
            "The decoder prompt (length 8200) is longer than the maximum model "
            "length of 8192.",
        ),
    ],
)
async def test_an_answer_the_backend_says_failed_is_an_error(
    backend, gateway, name, streamed, status, message
):
    objs = await _streamed(backend, gateway, name)
    assert objs[-1] == {"error": message}
    assert not any(o.get("done") for o in objs)
    assert _text(objs[:-1], "content") == streamed

    resp = await _chat(backend, gateway, name, stream=False)
    assert resp.status == status
    assert await resp.json() == {"error": message}

    backend.queue(_script(name))
    client = await gateway(backend)
    resp = await post(client, "/api/generate", {**GENERATE, "stream": False})
    assert resp.status == status
    assert await resp.json() == {"error": message}


@pytest.mark.parametrize("stream", [True, False])
async def test_openrouter_failed_choice_in_a_json_answer(backend, gateway, stream):
    resp = await _chat(backend, gateway, "openrouter_choice_error.json", stream=stream)
    assert resp.status == 502
    assert await resp.json() == {
        "error": "Provider returned error (Google): upstream connection reset"
    }


async def test_deepseek_thinking_before_an_interrupted_answer_is_kept(backend, gateway):
    objs = await _streamed(backend, gateway, "deepseek_insufficient_resource.sse")
    assert _text(objs, "thinking") == "The user asks"


# Answers cut short by the context: done_reason length.


async def test_mistral_model_length_is_done_reason_length(backend, gateway):
    objs = await _streamed(backend, gateway, "mistral_model_length.sse")
    final = assert_final(objs)
    assert _text(objs, "content") == "Once upon a time"
    assert final["done_reason"] == "length"
    assert (final["prompt_eval_count"], final["eval_count"]) == (32760, 8)

    resp = await _chat(backend, gateway, "mistral_model_length.sse", stream=False)
    answer = await resp.json()
    assert answer["done_reason"] == "length"
    assert answer["message"]["content"] == "Once upon a time"

    backend.queue(_script("mistral_model_length.sse"))
    client = await gateway(backend)
    resp = await post(client, "/api/generate", {**GENERATE, "stream": False})
    assert (await resp.json())["done_reason"] == "length"


# Tool calls in each backend's shape: whole, arguments an object.


def _calls(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for o in objs for c in o.get("message", {}).get("tool_calls") or ()]


@pytest.mark.parametrize("stream", [True, False])
async def test_tgi_tool_call_as_one_object_is_read(backend, gateway, stream):
    objs = await _answer(backend, gateway, "tgi_tool_call_object.sse", stream=stream)
    final = assert_final(objs)
    assert final["done_reason"] == "stop"
    (call,) = _calls(objs)
    assert call["function"] == {
        "index": 0,
        "name": "get_weather",
        "arguments": {"location": "Paris, France"},
    }
    assert call["id"].startswith("call_")  # TGI's id is ""


@pytest.mark.parametrize("stream", [True, False])
async def test_tgi_object_arguments_in_a_json_answer(backend, gateway, stream):
    objs = await _answer(backend, gateway, "tgi_object_arguments.json", stream=stream)
    final = assert_final(objs)
    assert _calls(objs) == [
        {
            "id": "0",
            "function": {
                "index": 0,
                "name": "get_weather",
                "arguments": {"location": "Paris, France"},
            },
        }
    ]
    assert (final["prompt_eval_count"], final["eval_count"]) == (310, 22)


@pytest.mark.parametrize("stream", [True, False])
async def test_gemini_parallel_calls_without_index(backend, gateway, stream):
    objs = await _answer(
        backend, gateway, "gemini_parallel_tool_calls.sse", stream=stream
    )
    final = assert_final(objs)
    assert _calls(objs) == [
        {
            "id": "function-call-13552458281476219841",
            "function": {
                "index": 0,
                "name": "get_weather",
                "arguments": {"city": "Paris"},
            },
        },
        {
            "id": "function-call-13552458281476219842",
            "function": {
                "index": 1,
                "name": "get_weather",
                "arguments": {"city": "Rome"},
            },
        },
    ]
    assert final["done_reason"] == "stop"
    assert (final["prompt_eval_count"], final["eval_count"]) == (52, 18)


# Reasoning in each backend's field.


@pytest.mark.parametrize("stream", [True, False])
async def test_openrouter_reasoning_beside_reasoning_details(backend, gateway, stream):
    objs = await _answer(
        backend, gateway, "openrouter_reasoning_details.sse", stream=stream
    )
    final = assert_final(objs)
    assert _text(objs, "thinking") == "Two plus two is four."
    assert _text(objs, "content") == "4"
    assert (final["prompt_eval_count"], final["eval_count"]) == (12, 9)


@pytest.mark.parametrize("stream", [True, False])
async def test_deepseek_answer_after_blank_lines(backend, gateway, stream):
    objs = await _answer(backend, gateway, "deepseek_blank_lines.json", stream=stream)
    final = assert_final(objs)
    assert _text(objs, "content") == "Paris"
    assert _text(objs, "thinking") == "The capital of France."
    assert (final["prompt_eval_count"], final["eval_count"]) == (11, 9)


@pytest.mark.parametrize("stream", [True, False])
async def test_a_failed_finish_in_a_chunk_with_content_is_an_error(
    backend, gateway, stream
):
    # Content and the finish in one chunk (as Gemini's endpoint ends answers):
    # a folded non-stream answer reads such a chunk on its quick path.
    body = sse(
        chat_chunk({"content": "Hel"}),
        chat_chunk({"content": "lo"}, finish="error"),
    )
    backend.queue(Script(pieces=[body]))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=stream))
    message = 'the backend ended the answer with finish_reason "error"'
    if stream:
        objs = await read_ndjson(resp)
        assert objs[-1] == {"error": message}
    else:
        assert resp.status == 500
        assert await resp.json() == {"error": message}


# The next turn after Gemini's calls: Gemini 3 refuses one without the calls'
# thought signatures (discuss.ai.google.dev "OpenAI API compatibility broken
# due to thought_signature on gemini-3-pro-preview"; openai/openai-agents-python
# #2137), which no Ollama client keeps.

SKIP_SIGNATURE = {"google": {"thought_signature": "skip_thought_signature_validator"}}


async def _second_turn(gateway: Any, backend: Any, base: str) -> list[dict[str, Any]]:
    toml = f'[[backends]]\nname = "g"\nbase_url = "{base}"\napi_key = "sk-test"\n'
    backend.queue(_script("gemini_parallel_tool_calls.sse"), Script.text("Sunny."))
    client = await gateway(toml=toml)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        messages: list[Any] = [{"role": "user", "content": "Paris and Rome?"}]
        first = await api.chat(model="gpt-4o", messages=messages, tools=TOOLS)
        assert first.message.tool_calls is not None
        messages.append(first.message)
        for call in first.message.tool_calls:
            messages.append(
                {"role": "tool", "content": "sunny", "tool_name": call.function.name}
            )
        second = await api.chat(model="gpt-4o", messages=messages, tools=TOOLS)
    assert second.message.content == "Sunny."
    calls: list[dict[str, Any]] = backend.completions()[-1].body["messages"][1][
        "tool_calls"
    ]
    return calls


async def test_calls_sent_back_to_gemini_carry_a_thought_signature(
    gateway, backend, monkeypatch
):
    # The backend is named by Google's host; the environment's proxy is the fake.
    monkeypatch.setenv("HTTP_PROXY", backend.url.removesuffix("/v1"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    calls = await _second_turn(
        gateway, backend, "http://generativelanguage.googleapis.com/v1"
    )
    assert [c["function"]["arguments"] for c in calls] == [
        '{"city":"Paris"}',
        '{"city":"Rome"}',
    ]
    assert [c.get("extra_content") for c in calls] == [SKIP_SIGNATURE] * 2


async def test_calls_sent_back_to_another_backend_carry_no_google_field(
    gateway, backend
):
    calls = await _second_turn(gateway, backend, backend.url)
    assert len(calls) == 2
    assert not any("extra_content" in c for c in calls)


def _relayed_history(signature: dict[str, Any] | None) -> dict[str, Any]:
    first: dict[str, Any] = {
        "id": "function-call-1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    if signature is not None:
        first["extra_content"] = signature
    second = {
        "id": "function-call-2",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
    }
    return {
        "model": "gpt-4o",
        "messages": [
            {"role": "user", "content": "Paris and Rome?"},
            {"role": "assistant", "content": None, "tool_calls": [first, second]},
            {"role": "tool", "tool_call_id": "function-call-1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "function-call-2", "content": "rain"},
        ],
    }


@pytest.mark.parametrize("google", [True, False])
async def test_the_relay_gives_gemini_calls_a_signature_and_keeps_a_clients(
    gateway, backend, monkeypatch, google
):
    # Copilot's chat leg: an OpenAI client, through /v1/chat/completions.
    base = backend.url
    if google:
        monkeypatch.setenv("HTTP_PROXY", backend.url.removesuffix("/v1"))
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        base = "http://generativelanguage.googleapis.com/v1"
    toml = f'[[backends]]\nname = "g"\nbase_url = "{base}"\napi_key = "sk-test"\n'
    client = await gateway(toml=toml)
    kept = {"google": {"thought_signature": "CpwBAdHtim9+q4rstRdW"}}
    for signature in (None, kept):
        backend.queue(Script.text("Sunny."))
        resp = await post(client, "/v1/chat/completions", _relayed_history(signature))
        assert resp.status == 200, await resp.text()
        sent = backend.completions()[-1].body["messages"][1]["tool_calls"]
        if not google:
            assert [c.get("extra_content") for c in sent] == [signature, None]
        else:
            assert [c["extra_content"] for c in sent] == [
                signature or SKIP_SIGNATURE,
                SKIP_SIGNATURE,
            ]
