"""The Vercel AI SDK (`ai` 6 with `@ai-sdk/openai` and `@ai-sdk/anthropic` on
npm) against the gateway on its real socket, through all three of its ways
in: the OpenAI provider's default model speaks the Responses API
(`/v1/responses`), its `.chat()` model chat completions, and the Anthropic
provider the Messages API (`/v1/messages`). Each parses answers and stream
events with its own zod schemas. The demo backend answers, so every figure
below is the demo's script. Needs Node.js and `make js-deps`."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import FAST_DEMO, base_url
from tests.test_js_client import run_node

HI = "Hello! This is the ollama-gateway demo backend. You said: Say hi"


@pytest.fixture
async def answers(gateway: Any) -> dict[str, Any]:
    client = await gateway(toml=FAST_DEMO)
    url = base_url(client)
    return await run_node("ai_sdk.mjs", url, "demo", "demo-tools", "demo-think")


@pytest.mark.parametrize("api", ["responses", "chat", "anthropic"])
async def test_text_stream_and_a_tool_loop(answers, api):
    out = answers[api]
    assert out["text"] == HI and out["streamed"] == HI
    assert out["finishReason"] == "stop" and out["streamFinishReason"] == "stop"
    assert out["outputTokens"] > 0
    # The SDK ran the tool and sent its result back; the model then answered.
    assert out["toolSteps"] == ["tool-calls", "stop"]
    assert out["toolCalls"] == [{"name": "weather", "input": {"city": "Paris"}}]
    assert "sunny in Paris" in out["toolText"]


@pytest.mark.parametrize("api", ["responses", "anthropic"])
async def test_reasoning_is_the_sdks_reasoning_text(answers, api):
    out = answers[api]
    assert out["reasoning"].startswith("The user wrote:")
    assert out["reasonedText"].startswith("After thinking it over")
    assert out["reasoning"] not in out["reasonedText"]
