"""The pytest plugin for translator authors (ollama_gateway.testing), used as they would."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

import ollama

SHOUT = EntryPoint(
    "shout", "tests.plugins.shout:ShoutResponse", "ollama_gateway.translators"
)


def test_the_kit_is_registered_with_pytest():
    assert "ollama_gateway" in {e.name for e in entry_points(group="pytest11")}


async def test_three_lines_run_a_translator_through_a_real_gateway(ollama_gateway):
    gateway = await ollama_gateway(
        '[pipeline]\nresponse = ["shout", "openai-to-ollama"]', entry_points=[SHOUT]
    )
    assert (await gateway.chat("hi"))["message"][
        "content"
    ] == "HELLO FROM THE FAKE BACKEND"


async def test_fake_backend_records_what_the_gateway_sent(ollama_gateway, fake_openai):
    gateway = await ollama_gateway()
    lines = await gateway.stream_chat("hello", options={"temperature": 0.2})
    assert lines[-1]["done"] is True
    assert (
        "".join(line["message"]["content"] for line in lines) == fake_openai.reply_text
    )
    assert fake_openai.requests[-1]["temperature"] == 0.2
    assert fake_openai.requests[-1]["model"] == "fake-model"


async def test_official_client_can_use_the_kit_gateway(ollama_gateway, fake_openai):
    fake_openai.reply_text = "custom reply"
    gateway = await ollama_gateway()
    async with ollama.AsyncClient(host=gateway.url) as api:
        reply = await api.generate(model="fake-model", prompt="x")
    assert reply.response == "custom reply"
