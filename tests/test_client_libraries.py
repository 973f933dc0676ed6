"""What third-party Ollama client libraries send and need, replayed without them.

Each test sends the request bytes a library sends (LiteLLM, LangChain, LlamaIndex,
the Vercel AI SDK providers, ...) and checks the fields that library reads, so the
suite needs none of those packages installed.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakebackend import Script, chat_chunk, sse
from tests.ndjson import chat, ndjson, post


async def show(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    resp = await post(client, "/api/show", body)
    assert resp.status == 200, await resp.text()
    answer: dict[str, Any] = await resp.json()
    return answer


# LiteLLM (`litellm.supports_function_calling`, `litellm.get_model_info`) ----------
#
# LiteLLM posts `{"name": <model>}` to /api/show and decides whether an Ollama
# model calls tools by looking for "tools" in its `template`, the same test Ollama
# itself uses to give a model the `tools` capability (its template uses .Tools).
# Agents built on LiteLLM (OpenHands, smolagents, ...) fall back to prompting
# for tool calls in text when it says no.


def litellm_supports_function_calling(answer: dict[str, Any]) -> bool:
    return "tools" in str(answer.get("template", "") or "").lower()


def litellm_max_tokens(answer: dict[str, Any]) -> Any:
    for key, value in (answer.get("model_info") or {}).items():
        if "context_length" in key:
            return value
    return None


async def test_litellm_sees_tools_in_the_template_of_a_tools_model(gateway, backend):
    client = await gateway(backend)
    answer = await show(client, {"name": "gpt-4o"})
    assert "tools" in answer["capabilities"]
    assert litellm_supports_function_calling(answer)


async def test_litellm_sees_no_tools_in_the_template_of_other_models(gateway, backend):
    toml = """
[models."plain"]
target = "gpt-4o"
capabilities = ["completion"]
context_length = 4096
"""
    client = await gateway(backend, toml)
    answer = await show(client, {"name": "plain"})
    assert answer["capabilities"] == ["completion"]
    assert not litellm_supports_function_calling(answer)
    assert litellm_max_tokens(answer) == 4096


async def test_the_template_uses_tools_and_suffix_as_the_capabilities_say(
    gateway, backend
):
    toml = """
[models."coder"]
target = "gpt-4o"
capabilities = ["completion", "tools", "insert"]
"""
    client = await gateway(backend, toml)
    template = (await show(client, {"model": "coder"}))["template"]
    assert ".Tools" in template and ".Suffix" in template and ".Prompt" in template


# The Vercel AI SDK's Ollama providers (`ollama-ai-provider-v2` and the older
# `ollama-ai-provider`) ------------------------------------------------------------
#
# Both check `/api/embed` answers with zod: v2 requires `total_duration`,
# `load_duration` and `prompt_eval_count` as numbers, v1 requires the
# `prompt_eval_count` key. Ollama always counts the input, but some backends
# send no usage with their embeddings (OVH's AI endpoints) or only
# `total_tokens` (Jina's), so the gateway must count without them.

AI_SDK_EMBED = {"model": "text-embedding-3-small", "input": ["hello world, again", "b"]}


@pytest.mark.parametrize(
    ("usage", "count"),
    [
        (None, 4),  # the fake backend's own: two tokens an input
        ({"total_tokens": 9}, 9),
        # None at all: about four characters a token, "hello world, again" 5, "b" 1.
        ({}, 6),
    ],
)
async def test_ai_sdk_embed_has_every_count(gateway, backend, usage, count):
    backend.embedding_usage = usage
    client = await gateway(backend)
    resp = await post(client, "/api/embed", AI_SDK_EMBED)
    answer = await resp.json()
    assert len(answer["embeddings"]) == 2
    for key in ("total_duration", "load_duration", "prompt_eval_count"):
        value = answer.get(key)
        assert isinstance(value, int) and value > 0, (key, answer)
    assert answer["prompt_eval_count"] == count


# `ollama-ai-provider` (for AI SDK 4) checks the last chat object with zod:
# `eval_count`, `eval_duration` and `total_duration` are required numbers, in
# the `done: true` stream object and in a `stream: false` answer. Ollama counts
# the tokens of a tool call as of any answer; a backend that sends no usage
# (many do not honour `stream_options`) must not leave a tool call uncounted.

TOOL = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def tool_call_without_usage() -> Script:
    first = {"index": 0, "id": "call_1", "type": "function"}
    first["function"] = {"name": "weather", "arguments": ""}
    events = [chat_chunk({"role": "assistant", "tool_calls": [first]})]
    events += [
        chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
        for part in ('{"city": ', '"Paris"}')
    ]
    events.append(chat_chunk({}, finish="tool_calls"))
    return Script(pieces=[sse(*events)])


@pytest.mark.parametrize("stream", [False, True])
async def test_ai_sdk_v1_counts_a_tool_call_without_usage(gateway, backend, stream):
    backend.queue(tool_call_without_usage())
    client = await gateway(backend)
    body = chat(tools=[TOOL], stream=stream)
    resp = await post(client, "/api/chat", body)
    final = ndjson(await resp.read())[-1] if stream else await resp.json()
    assert final["done"] is True
    assert stream or final["message"]["tool_calls"]
    for key in ("eval_count", "eval_duration", "total_duration"):
        value = final.get(key)
        assert isinstance(value, int) and value > 0, (key, final)


# `llm-ollama` (the Ollama plugin of Simon Willison's `llm`) groups the names of
# /api/tags by `digest`: names sharing one are one model, registered under one
# primary name with the others as aliases, and its capabilities (from
# /api/show) are cached on disk by digest. In Ollama two names share a digest
# only when they are the same model (`ollama cp`); a configured model with its
# own capabilities or context length is another model, like `ollama create`.

PLAIN = """
[models."plain"]
target = "gpt-4o"
capabilities = ["completion"]
context_length = 4096
"""


async def tags_by_name(client: Any) -> dict[str, dict[str, Any]]:
    resp = await client.get("/api/tags")
    return {m["model"]: m for m in (await resp.json())["models"]}


async def test_llm_ollama_tells_a_configured_model_from_its_target(gateway, backend):
    client = await gateway(backend, PLAIN)
    tags = await tags_by_name(client)
    assert tags["plain:latest"]["digest"] != tags["gpt-4o:latest"]["digest"]
    # and an unchanged configuration keeps its digest (llm-ollama's cache key)
    again = await tags_by_name(await gateway(backend, PLAIN))
    assert again["plain:latest"]["digest"] == tags["plain:latest"]["digest"]


async def test_llm_ollama_sees_a_copy_as_the_same_model(gateway, backend):
    client = await gateway(backend)
    resp = await post(client, "/api/copy", {"source": "gpt-4o", "destination": "x"})
    assert resp.status == 200
    tags = await tags_by_name(client)
    assert tags["x:latest"]["digest"] == tags["gpt-4o:latest"]["digest"]
