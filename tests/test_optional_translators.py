"""The optional built-in translators: think-tags, system-prompt, azure-openai."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from ollama_gateway_translators.think_tags import ThinkTagsConfig, ThinkTagSplitter
from tests.fakebackend import Script, chat_chunk, split_every, sse

THINK_TAGS = '[pipeline]\nresponse = ["think-tags", "openai-to-ollama"]\n'
TEXT = "<think>Let me see: 2+2.</think>The answer is 4."


def run_splitter(pieces: list[str], **config: object) -> tuple[str, str]:
    splitter = ThinkTagSplitter(ThinkTagsConfig(**config))
    content, thinking = [], []
    for piece in pieces:
        c, t = splitter.feed(piece)
        content.append(c)
        thinking.append(t)
    c, t = splitter.flush()
    return "".join(content) + c, "".join(thinking) + t


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 100])
def test_splitter_moves_reasoning_out_whatever_the_piece_size(size):
    pieces = [TEXT[i : i + size] for i in range(0, len(TEXT), size)]
    assert run_splitter(pieces) == ("The answer is 4.", "Let me see: 2+2.")


def test_splitter_with_template_opened_block():
    assert run_splitter(["thinking hard</th", "ink>done"], assume_open=True) == (
        "done",
        "thinking hard",
    )


def test_splitter_keeps_text_that_only_looks_like_a_tag_start():
    assert run_splitter(["a <thin", "g> b"]) == ("a <thing> b", "")


def test_splitter_flushes_an_unclosed_block_as_thinking():
    assert run_splitter(["<think>never closed <"]) == ("", "never closed <")


@pytest.mark.parametrize("size", [1, 3, 100])
def test_splitter_keeps_a_tag_later_in_the_answer_as_content(size):
    # As Ollama's parser: only the block that opens the answer is thinking,
    # so an answer that writes about its tags keeps them, and all of its text.
    text = "<think>plan</think>Wrap it in <think> and </think>; then <think>x"
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    assert run_splitter(pieces) == (
        "Wrap it in <think> and </think>; then <think>x",
        "plan",
    )


def test_splitter_sees_no_block_after_other_text():
    assert run_splitter(["Use <think>", "x</think> tags"]) == (
        "Use <think>x</think> tags",
        "",
    )


def test_splitter_drops_the_whitespace_around_the_block():
    # Qwen3 and DeepSeek-R1 write "<think>\n…\n</think>\n\n" around it.
    pieces = ["\n<thi", "nk>\n", "\nplan\n", "</think>", "\n\n", "Answer\n"]
    assert run_splitter(pieces) == ("Answer\n", "plan\n")


def test_splitter_keeps_an_answer_without_a_block_as_it_is():
    assert run_splitter(["  <", "b>bold</b>"]) == ("  <b>bold</b>", "")


async def streamed_chat(client) -> list[dict[str, Any]]:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "2+2?"}]}
    response = await client.post("/api/chat", json=body)
    return [json.loads(line) for line in (await response.text()).splitlines()]


def joined(lines: list[dict[str, Any]]) -> tuple[str, str]:
    content = "".join(line["message"]["content"] for line in lines)
    thinking = "".join(line["message"].get("thinking", "") for line in lines)
    return content, thinking


async def test_think_tags_through_the_gateway_across_chunks(backend, gateway):
    words = [TEXT[i : i + 4] for i in range(0, len(TEXT), 4)]
    events = [chat_chunk({"content": w}) for w in words]
    events.append(chat_chunk({}, finish="stop"))
    backend.queue(Script(pieces=split_every(sse(*events), 9)))
    lines = await streamed_chat(await gateway(backend, THINK_TAGS))
    assert joined(lines) == ("The answer is 4.", "Let me see: 2+2.")
    assert lines[-1]["done"] is True
    assert all(line["message"]["content"] or line["message"].get("thinking") or
               line["done"] for line in lines)  # fmt: skip


async def test_think_tags_leave_a_later_tag_in_the_answer(backend, gateway):
    answer = "Reply with <think> first. Done."
    text = f"<think>\nThey ask about tags.\n</think>\n\n{answer}"
    events = [chat_chunk({"content": text[i : i + 5]}) for i in range(0, len(text), 5)]
    backend.queue(Script(pieces=[sse(*events, chat_chunk({}, finish="stop"))]))
    lines = await streamed_chat(await gateway(backend, THINK_TAGS))
    assert joined(lines) == (answer, "They ask about tags.\n")


async def test_think_tags_held_text_is_not_left_in_the_final_chunk(backend, gateway):
    # "<" could have begun "</think>" until the answer ended (cut short): it
    # comes in a chunk of its own, not in the final one, which has no text.
    events = [chat_chunk({"content": "<think>plan <"}), chat_chunk({}, finish="length")]
    backend.queue(Script(pieces=[sse(*events)]))
    lines = await streamed_chat(await gateway(backend, THINK_TAGS))
    assert joined(lines) == ("", "plan <")
    assert lines[-1]["done"] is True
    assert lines[-1]["message"] == {"role": "assistant", "content": ""}
    assert lines[-2]["message"]["thinking"] == "<"


async def test_think_tags_non_stream(backend, gateway):
    backend.queue(Script.text(TEXT))
    client = await gateway(backend, THINK_TAGS)
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "x"}],
        "stream": False,
    }
    message = (await (await client.post("/api/chat", json=body)).json())["message"]
    assert message["thinking"] == "Let me see: 2+2."
    assert message["content"].replace(" ", "") == "Theansweris4."


SYSTEM_PROMPT = """
[pipeline]
request = ["system-prompt", "ollama-to-openai"]

[[translators.system-prompt.rules]]
models = "gpt-4o*"
prompt = "Be terse."
mode = "{mode}"
"""


@pytest.mark.parametrize(
    ("mode", "given", "expected"),
    [
        ("add", None, "Be terse."),
        ("add", "Be kind.", "Be kind."),
        ("replace", "Be kind.", "Be terse."),
        ("prepend", "Be kind.", "Be terse.\n\nBe kind."),
    ],
)
async def test_system_prompt_rules(backend, gateway, mode, given, expected):
    client = await gateway(backend, SYSTEM_PROMPT.format(mode=mode))
    messages = [{"role": "user", "content": "hi"}]
    if given:
        messages.insert(0, {"role": "system", "content": given})
    body = {"model": "gpt-4o", "messages": messages, "stream": False}
    assert (await client.post("/api/chat", json=body)).status == 200
    sent = backend.completions()[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": expected}
    assert sent[-1] == {"role": "user", "content": "hi"}


async def test_system_prompt_leaves_other_models_and_raw_prompts_alone(
    backend, gateway
):
    toml = SYSTEM_PROMPT.format(mode="add").replace('"gpt-4o*"', '"llama*"')
    client = await gateway(backend, toml)
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
    }
    assert (await client.post("/api/chat", json=body)).status == 200
    assert backend.completions()[-1].body["messages"] == [
        {"role": "user", "content": "hi"}
    ]


async def test_azure_transport_uses_deployment_urls_and_api_key(
    aiohttp_server, gateway
):
    seen: list[tuple[str, str, str | None, str | None]] = []

    async def deployment(request: web.Request) -> web.StreamResponse:
        seen.append((request.path, request.query_string,
                     request.headers.get("api-key"), request.headers.get("Authorization")))  # fmt: skip
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(
            sse(chat_chunk({"content": "from azure"}), chat_chunk({}, finish="stop"))
        )
        return response

    app = web.Application()
    app.router.add_post("/openai/deployments/{name}/chat/completions", deployment)
    server = await aiohttp_server(app)
    toml = f"""
[[backends]]
name = "azure"
base_url = "{str(server.make_url("")).rstrip("/")}"
api_key = "azure-secret"
models = ["gpt-4o"]
transport = ["azure-openai", "openai-http"]

[translators.azure-openai]
api_version = "2024-10-21"
deployments = {{ "gpt-4o" = "my-deployment" }}
"""
    client = await gateway(toml=toml)
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "x"}],
        "stream": False,
    }
    response = await client.post("/api/chat", json=body)
    assert response.status == 200, await response.text()
    assert (await response.json())["message"]["content"] == "from azure"
    assert seen == [
        ("/openai/deployments/my-deployment/chat/completions", "api-version=2024-10-21",
         "azure-secret", None)
    ]  # fmt: skip
