"""The Anthropic front (`/v1/messages`) driven by the official `anthropic` SDK,
against a real gateway and the fake OpenAI backend on loopback.

The SDK builds typed objects from every event and answer, so a missing field
or a wrong event order raises here; what the backend received is checked too.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import anthropic
import pytest
from anthropic.types import Message

from tests.conftest import base_url
from tests.fakebackend import (
    FakeBackend,
    Script,
    chat_chunk,
    reasoning_sse,
    sse,
    usage_script,
)
from tests.ndjson import NO_RETRY

# Plain dicts, as a client sends them (typed `Any`: the SDK wants its TypedDicts).
USER: Any = [{"role": "user", "content": "hi"}]
THINKER = "qwen3-32b"
WEATHER: Any = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
WEATHER_TOOLS: Any = [WEATHER]
# A 1x1 PNG: the gateway sniffs its type from the magic bytes.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a5f5b3"
        "0d0000000049454e44ae426082"
    )
).decode()


def sdk(client: Any, **kwargs: Any) -> anthropic.AsyncAnthropic:
    # No retries: a test counts what reached the backend.
    return anthropic.AsyncAnthropic(
        base_url=base_url(client), api_key="unused", max_retries=0, **kwargs
    )


async def ask(api: anthropic.AsyncAnthropic, stream: bool, **kwargs: Any) -> Message:
    """One request, streamed (`messages.stream`, the final message) or not."""
    if not stream:
        message: Message = await api.messages.create(**kwargs)
        return message
    async with api.messages.stream(**kwargs) as events:
        return await events.get_final_message()


def reasoning_script() -> Script:
    return Script(pieces=[reasoning_sse()])


def tool_call_script() -> Script:
    """A tool call whose arguments arrive in awkward pieces, cut mid-event."""
    first = {"index": 0, "id": "call_abc", "type": "function"}
    first["function"] = {"name": "get_weather", "arguments": ""}
    events = [chat_chunk({"role": "assistant", "content": "Checking."})]
    events.append(chat_chunk({"tool_calls": [first]}))
    events += [
        chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": f}}]})
        for f in ['{"ci', 'ty": ', '"Tok', 'yo"', "}"]
    ]
    events.append(chat_chunk({}, finish="tool_calls"))
    data = sse(*events)
    return Script(pieces=[data[i : i + 37] for i in range(0, len(data), 37)])


@pytest.fixture
def thinker(backend: FakeBackend) -> FakeBackend:
    backend.models = [{"id": THINKER, "object": "model"}, *backend.models]
    return backend


async def test_text_answer(gateway, backend):
    backend.queue(Script.text("Hello from fake", split=11))
    client = await gateway(backend)
    async with sdk(client) as api:
        message = await api.messages.create(
            model="GPT-4o:latest",
            max_tokens=100,
            messages=USER,
            stop_sequences=["END"],
            metadata={"user_id": "u1"},
            # Dropped from this SDK's signature; older clients still send them.
            extra_body={"temperature": 0.25, "top_p": 0.5, "top_k": 40},
        )
    assert message.id.startswith("msg_")
    assert message.model == "GPT-4o:latest"  # as asked
    assert message.role == "assistant"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello from fake"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 7
    assert message.usage.output_tokens == 3
    [sent] = backend.completions()
    assert sent.body["model"] == "gpt-4o"
    assert sent.body["messages"] == USER
    assert sent.body["max_tokens"] == 100
    assert sent.body["temperature"] == 0.25
    assert sent.body["top_p"] == 0.5
    assert sent.body["stop"] == ["END"]


async def test_stream_text(gateway, backend):
    backend.queue(Script.text("a b c d", split=23))
    client = await gateway(backend)
    async with sdk(client) as api:
        async with api.messages.stream(
            model="gpt-4o", max_tokens=50, messages=USER
        ) as stream:
            texts = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
    assert "".join(texts) == "a b c d"
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].type == "text" and final.content[0].text == "a b c d"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4
    assert final.usage.input_tokens == 7  # the backend's count, at the end
    assert backend.completions()[0].body["stream"] is True


async def test_stream_event_sequence(gateway, backend):
    backend.queue(Script.text("one two"))
    client = await gateway(backend)
    body = {"model": "gpt-4o", "max_tokens": 5, "messages": USER, "stream": True}
    # Claude Code asks `/v1/messages?beta=true`, with its beta headers.
    headers = {"anthropic-version": "2023-06-01", "anthropic-beta": "x-2025-01-01"}
    resp = await client.post(
        "/v1/messages?beta=true", data=json.dumps(body), headers=headers
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    raw = (await resp.read()).decode()
    events = [e for e in raw.split("\n\n") if e]
    names = []
    for event in events:
        name_line, data_line = event.split("\n")
        name = name_line.removeprefix("event: ")
        data = json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        names.append(name)
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


@pytest.mark.parametrize("stream", [False, True])
async def test_thinking(gateway, thinker, stream):
    thinker.queue(reasoning_script())
    client = await gateway(thinker)
    kwargs: dict[str, Any] = {
        "model": THINKER,
        "max_tokens": 2000,
        "messages": USER,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    async with sdk(client) as api:
        if stream:
            async with api.messages.stream(**kwargs) as events:
                thinking = [e.thinking async for e in events if e.type == "thinking"]
                message = await events.get_final_message()
            assert "".join(thinking) == "Let me think."
        else:
            message = await api.messages.create(**kwargs)
    assert [b.type for b in message.content] == ["thinking", "text"]
    block = message.content[0]
    assert block.type == "thinking"
    assert block.thinking == "Let me think."
    assert block.signature == ""
    assert message.content[1].type == "text"
    assert message.content[1].text == "Because physics."
    assert message.usage.input_tokens == 3
    # `enabled` is think=true: the default dialect asks for no lower effort.
    assert "reasoning_effort" not in thinker.completions()[0].body


async def test_thinking_disabled_reaches_the_backend(gateway, thinker):
    client = await gateway(thinker)
    async with sdk(client) as api:
        await api.messages.create(
            model=THINKER,
            max_tokens=10,
            messages=USER,
            thinking={"type": "disabled"},
        )
    assert thinker.completions()[0].body["reasoning_effort"] == "none"


@pytest.mark.parametrize(
    "extra",
    [
        {"thinking": {"type": "enabled", "budget_tokens": 1024}},
        {"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}},
    ],
)
async def test_thinking_on_a_model_without_it_runs_without_thinking(
    gateway, backend, extra
):
    # Claude Code asks for thinking whatever the model: on this front it is a
    # hint, dropped for a model without the capability rather than a 400.
    client = await gateway(backend)
    async with sdk(client) as api:
        message = await api.messages.create(
            model="gpt-4o", max_tokens=10, messages=USER, extra_body=extra
        )
    assert message.content[0].type == "text"
    [sent] = backend.completions()
    assert "reasoning_effort" not in sent.body and "think" not in sent.body


@pytest.mark.parametrize(
    ("extra", "effort"),
    [
        # Claude Code's: adaptive thinking, the user's effort.
        (
            {"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}},
            "high",
        ),
        ({"output_config": {"effort": "low"}}, "low"),
        ({"output_config": {"effort": " XHigh "}}, "high"),
        ({"output_config": {"effort": "max"}}, "high"),
        # `enabled` is think=true whatever the effort, as in Ollama.
        ({"thinking": {"type": "enabled"}, "output_config": {"effort": "low"}}, None),
        (
            {"thinking": {"type": "disabled"}, "output_config": {"effort": "high"}},
            "none",
        ),
        ({"output_config": {"effort": "minimal"}}, None),
    ],
)
async def test_output_config_effort_is_the_think_level(gateway, thinker, extra, effort):
    client = await gateway(thinker)
    async with sdk(client) as api:
        await api.messages.create(
            model=THINKER, max_tokens=10, messages=USER, extra_body=extra
        )
    [sent] = thinker.completions()
    assert sent.body.get("reasoning_effort") == effort


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_use_round_trip(gateway, backend, stream):
    backend.queue(tool_call_script(), Script.text("It is sunny"))
    client = await gateway(backend)
    kwargs: dict[str, Any] = {
        "model": "gpt-4o",
        "max_tokens": 200,
        "tools": [WEATHER],
        "tool_choice": {"type": "auto"},
    }
    question: Any = {"role": "user", "content": "Weather in Tokyo?"}
    async with sdk(client) as api:
        message = await ask(api, stream, messages=[question], **kwargs)
        assert [b.type for b in message.content] == ["text", "tool_use"]
        call = message.content[1]
        assert call.type == "tool_use"
        assert call.id == "call_abc"
        assert call.name == "get_weather"
        assert call.input == {"city": "Tokyo"}
        assert message.stop_reason == "tool_use"
        history: Any = [
            question,
            {"role": "assistant", "content": message.to_param()["content"]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": call.id,
                        "content": [{"type": "text", "text": "Sunny, 25C"}],
                    },
                    {"type": "text", "text": "Thanks!"},
                ],
            },
        ]
        answer = await api.messages.create(messages=history, **kwargs)
    assert answer.content[0].type == "text"
    assert answer.content[0].text == "It is sunny"
    first, second = (r.body for r in backend.completions())
    assert first["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": "Weather in a city",
            },
        }
    ]
    assert second["messages"] == [
        {"role": "user", "content": "Weather in Tokyo?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"city":"Tokyo"}',
                    },
                }
            ],
        },
        {"role": "tool", "content": "Sunny, 25C", "tool_call_id": "call_abc"},
        {"role": "user", "content": "Thanks!"},
    ]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_never_takes_an_id_the_conversation_has(gateway, backend, stream):
    """Kimi's models, as some providers serve them, number their calls from
    0 in every answer: passed on, the next turn's call had the id of one the
    conversation already held, and Claude Code dropped it (its result with
    it), so the agent stopped. The backend's id is kept where it is new."""
    backend.queue(tool_call_script(), tool_call_script())
    client = await gateway(backend)
    kwargs: dict[str, Any] = {"model": "gpt-4o", "max_tokens": 200}
    question: Any = {"role": "user", "content": "Weather in Tokyo?"}
    async with sdk(client) as api:
        first = await ask(api, stream, messages=[question], tools=[WEATHER], **kwargs)
        call = first.content[1]
        assert call.type == "tool_use" and call.id == "call_abc"
        result = {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}
        history: Any = [
            question,
            {"role": "assistant", "content": first.to_param()["content"]},
            {"role": "user", "content": [result]},
        ]
        second = await ask(api, stream, messages=history, tools=[WEATHER], **kwargs)
    again = second.content[1]
    assert again.type == "tool_use"
    assert again.id != "call_abc" and again.id.startswith("toolu_")
    assert (again.name, again.input) == ("get_weather", {"city": "Tokyo"})
    assert len(backend.completions()) == 2


async def test_system_prompt_and_image_reach_the_backend(gateway, backend):
    client = await gateway(backend)
    async with sdk(client) as api:
        await api.messages.create(
            model="gpt-4o",
            max_tokens=10,
            system=[
                {"type": "text", "text": "Be terse."},
                {"type": "text", "text": "Answer in French."},
            ],
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": PNG,
                            },
                        },
                        {"type": "text", "text": "What is this?"},
                    ],
                }
            ],
        )
    messages = backend.completions()[0].body["messages"]
    assert messages == [
        {"role": "system", "content": "Be terse.\n\nAnswer in French."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {
                    "type": "image_url",
                    "image_url": {"url": f"data:image/png;base64,{PNG}"},
                },
            ],
        },
    ]


async def test_system_turns_and_output_format_reach_the_backend(gateway, backend):
    schema: Any = {"type": "object", "properties": {"n": {"type": "integer"}}}
    turns: Any = [
        {"role": "user", "content": "hi"},
        {"role": "system", "content": [{"type": "text", "text": "Later."}]},
        {"role": "user", "content": "count"},
    ]
    client = await gateway(backend)
    async with sdk(client) as api:
        await api.messages.create(
            model="gpt-4o",
            max_tokens=10,
            system="First.",
            messages=turns,
            output_config={"format": {"type": "json_schema", "schema": schema}},
        )
    sent = backend.completions()[0].body
    # A system turn is a reminder where it stands, and the user turns around
    # it are one (as Anthropic combines them): templates that take a system
    # message only first, or want the roles to alternate, accept it.
    assert sent["messages"] == [
        {"role": "system", "content": "First."},
        {
            "role": "user",
            "content": "hi\n\n<system-reminder>\nLater.\n</system-reminder>\n\ncount",
        },
    ]
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "schema", "schema": schema},
    }


async def test_a_note_among_the_turns_leaves_the_head_of_the_prompt_as_it_was(
    gateway, backend
):
    """Claude Code sends its notes as `system` turns among the others (a file
    changed under it, after a Bash call). Joined to the system prompt, each
    new one changed the head of the prompt, and a backend's prefix cache
    (vLLM, llama.cpp, SGLang) had the whole conversation read again; the
    note also came before the turns it is about."""
    call = {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}
    turns: Any = [
        {"role": "user", "content": "Format a.txt"},
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [result]},
    ]
    note = "Note: a.txt was modified by the user or a linter."
    client = await gateway(backend)
    async with sdk(client) as api:
        for history in (turns, [*turns, {"role": "system", "content": note}]):
            await api.messages.create(
                model="gpt-4o", max_tokens=9, system="Be brief.", messages=history
            )
    first, second = (r.body["messages"] for r in backend.completions())
    assert second[: len(first)] == first
    assert second[len(first) :] == [
        {"role": "user", "content": f"<system-reminder>\n{note}\n</system-reminder>"}
    ]


async def test_a_note_between_calls_and_results_comes_after_the_results(
    gateway, backend
):
    """A turn between an answer's calls and their results would leave the
    calls unanswered (the backend would be sent neither)."""
    call = {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}
    turns: Any = [
        {"role": "user", "content": "Format a.txt"},
        {"role": "assistant", "content": [call]},
        {"role": "system", "content": "Note."},
        {"role": "user", "content": [result, {"type": "text", "text": "Go on."}]},
    ]
    client = await gateway(backend)
    async with sdk(client) as api:
        await api.messages.create(model="gpt-4o", max_tokens=9, messages=turns)
    [sent] = backend.completions()
    assert [(m["role"], m.get("content")) for m in sent.body["messages"]] == [
        ("user", "Format a.txt"),
        ("assistant", ""),
        ("tool", "ok"),
        ("user", "<system-reminder>\nNote.\n</system-reminder>\n\nGo on."),
    ]
    assert sent.body["messages"][1]["tool_calls"][0]["id"] == "toolu_1"


@pytest.mark.parametrize("stream", [False, True])
async def test_length_is_max_tokens(gateway, backend, stream):
    events = [
        chat_chunk({"role": "assistant", "content": "cut sho"}),
        chat_chunk({}, finish="length"),
    ]
    backend.queue(Script(pieces=[sse(*events)]))
    client = await gateway(backend)
    async with sdk(client) as api:
        message = await ask(api, stream, model="gpt-4o", max_tokens=2, messages=USER)
    assert message.stop_reason == "max_tokens"
    assert message.content[0].type == "text"
    assert message.content[0].text == "cut sho"


@pytest.mark.parametrize("stream", [False, True])
async def test_unknown_model_is_not_found(gateway, backend, stream):
    client = await gateway(backend)
    async with sdk(client) as api:
        with pytest.raises(anthropic.NotFoundError) as caught:
            await ask(api, stream, model="nope", max_tokens=5, messages=USER)
    assert caught.value.status_code == 404
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model 'nope' not found"},
    }
    assert backend.completions() == []


@pytest.mark.parametrize(
    ("body", "wanted"),
    [
        (b"{not json", "malformed"),
        (b"[1, 2]", "request body must be a JSON object"),
        (b'{"max_tokens": 5, "messages": []}', "missing required field model"),
        (b'{"model": "gpt-4o", "messages": []}', "max_tokens"),
        (b'{"model": "gpt-4o", "max_tokens": 5}', "messages"),
        (
            b'{"model": "gpt-4o", "max_tokens": "5", "messages": []}',
            "invalid value for max_tokens",
        ),
        (b'{"model": "gpt-4o", "max_tokens": 0, "messages": []}', ">= 1"),
        (b'{"model": "gpt-4o", "max_tokens": 5, "messages": []}', "at least one"),
        (
            b'{"model": "gpt-4o", "max_tokens": 5, '
            b'"messages": [{"role": "tool", "content": "x"}]}',
            "messages[0].role",
        ),
        (
            b'{"model": "", "max_tokens": 5, "messages": [{"role": "user", '
            b'"content": "x"}]}',
            "model is required",
        ),
    ],
)
async def test_bad_bodies_are_invalid_requests(gateway, backend, body, wanted):
    client = await gateway(backend)
    resp = await client.post("/v1/messages", data=body)
    assert resp.status == 400
    answer = await resp.json()
    assert answer["type"] == "error"
    assert answer["error"]["type"] == "invalid_request_error"
    assert wanted in answer["error"]["message"], answer
    assert backend.completions() == []


@pytest.mark.parametrize(
    ("blocks", "tools", "wanted"),
    [
        (
            [{"type": "image", "source": {"type": "url", "url": "http://x/y.png"}}],
            None,
            "image source type 'url' is not supported",
        ),
        (
            [{"type": "document", "source": {"type": "text", "data": "doc"}}],
            None,
            "'document' are not supported",
        ),
        (
            [{"type": "text", "text": "hi"}],
            [{"type": "web_search_20250305", "name": "web_search"}],
            "tool type 'web_search_20250305' is not supported",
        ),
    ],
)
async def test_what_the_gateway_cannot_serve_is_refused(
    gateway, backend, blocks, tools, wanted
):
    client = await gateway(backend)
    async with sdk(client) as api:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await api.messages.create(
                model="gpt-4o",
                max_tokens=5,
                messages=[{"role": "user", "content": blocks}],
                **({"tools": tools} if tools else {}),
            )
    assert wanted in caught.value.message
    assert backend.completions() == []


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("status", "raised", "kind", "said"),
    [
        (429, anthropic.RateLimitError, "rate_limit_error", "slow down"),
        # Not a prompt over the context (see below): the backend's words.
        (400, anthropic.BadRequestError, "invalid_request_error", "bad role"),
    ],
)
async def test_backend_refusals_are_anthropic_errors(
    gateway, backend, stream, status, raised, kind, said
):
    backend.queue(Script.error(status, said))
    client = await gateway(backend, NO_RETRY)
    async with sdk(client) as api:
        with pytest.raises(raised) as caught:
            await ask(api, stream, model="gpt-4o", max_tokens=5, messages=USER)
    assert caught.value.body == {
        "type": "error",
        "error": {"type": kind, "message": said},
    }


# vLLM's refusals of a prompt over the model's context (32768 tokens): one
# that leaves no room for `max_tokens`, one that does not fit at all; and
# llama.cpp's server's, whose counts are not in its message.
VLLM_NO_ROOM = (
    "'max_tokens' or 'max_completion_tokens' is too large: 32000. This model's "
    "maximum context length is 32768 tokens and your request has 10694 input "
    "tokens (32000 > 32768 - 10694)."
)
VLLM_TOO_LONG = (
    "This model's maximum context length is 32768 tokens. However, your request "
    "has 40000 input tokens. Please reduce the length of the input messages."
)
LLAMA_CPP_TOO_LONG = {
    "error": {
        "code": 400,
        "message": "the request exceeds the available context size, try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 40000,
        "n_ctx": 32768,
    }
}
# What Claude Code (2.1.197) matches in a 400 to lower `max_tokens` and ask
# again, and to compact the conversation.
NO_ROOM = re.compile(
    r"input length and `max_tokens` exceed context limit: (\d+) \+ (\d+) > (\d+)"
)
TOO_LONG = re.compile(r"prompt is too long[^0-9]*(\d+)\s*tokens?\s*>\s*(\d+)", re.I)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_prompt_over_the_context_is_refused_in_anthropics_words(
    gateway, backend, stream
):
    """Claude Code acts on a prompt over the context only when it is told in
    Anthropic's words: in the backend's, it showed `API Error: 400` and
    stopped, and with vLLM and a 32k model that was every request (Claude
    Code asks for 32000 tokens). A `max_tokens` past the room left is asked
    once more without it (as Ollama takes it, a cap it may not reach): what
    that second request is refused with is what the client is told."""
    backend.queue(
        # No room for `max_tokens`: asked once more without it (Ollama takes
        # it as a cap), here refused again.
        Script.error(400, VLLM_NO_ROOM),
        Script.error(400, VLLM_NO_ROOM),
        Script.error(400, VLLM_TOO_LONG),
        Script(status=400, error_body=LLAMA_CPP_TOO_LONG),
    )
    client = await gateway(backend, NO_RETRY)
    said = []
    async with sdk(client) as api:
        for _ in range(3):
            with pytest.raises(anthropic.BadRequestError) as caught:
                await ask(api, stream, model="gpt-4o", max_tokens=5, messages=USER)
            body = caught.value.body
            assert isinstance(body, dict)
            assert body["error"]["type"] == "invalid_request_error"
            said.append(body["error"]["message"])
    no_room, too_long, llama = said
    # The counts to ask again with (32768 - 10694 tokens at most), and the
    # backend's own words after them.
    found = NO_ROOM.search(no_room)
    assert found is not None and found.groups() == ("10694", "32000", "32768")
    assert VLLM_NO_ROOM in no_room
    found = TOO_LONG.search(too_long)
    assert found is not None and found.groups() == ("40000", "32768")
    assert VLLM_TOO_LONG in too_long
    assert llama == (
        "prompt is too long: the request exceeds the available context size, "
        "try increasing it"
    )
    sent = [r.body for r in backend.completions()]
    assert len(sent) == 4
    assert sent[0]["max_tokens"] == 5 and "max_tokens" not in sent[1]
    assert sent[1]["messages"] == sent[0]["messages"]


async def test_backend_failing_mid_stream_ends_with_an_error_event(gateway, backend):
    events = [
        chat_chunk({"role": "assistant", "content": "Hel"}),
        chat_chunk({"content": "lo"}),
    ]
    # The connection is dropped after the first pieces: no finish, no [DONE].
    backend.queue(Script(pieces=[sse(*events, done=False), b"data: {"], abort_after=1))
    client = await gateway(backend, NO_RETRY)
    seen: list[str] = []
    async with sdk(client) as api:
        with pytest.raises(anthropic.APIStatusError) as caught:
            async with api.messages.stream(
                model="gpt-4o", max_tokens=5, messages=USER
            ) as stream:
                async for text in stream.text_stream:
                    seen.append(text)
    assert "".join(seen) == "Hello"
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "api_error"
    assert body["error"]["message"]


async def test_count_tokens(gateway, backend):
    client = await gateway(backend)
    system = "You are terse."
    text = "Count these words, please."
    async with sdk(client) as api:
        counted = await api.messages.count_tokens(
            model="gpt-4o",
            system=system,
            messages=[{"role": "user", "content": text}],
            tools=WEATHER_TOOLS,
        )
        with pytest.raises(anthropic.NotFoundError):
            await api.messages.count_tokens(model="nope", messages=USER)
    schema = json.dumps(WEATHER["input_schema"], separators=(",", ":"))
    size = len(system) + len("user") + len(text)
    size += len("get_weather") + len("Weather in a city") + len(schema)
    assert counted.input_tokens == -(-size // 4)
    assert backend.completions() == []  # nothing is run to count


async def test_images_of_tool_results_are_not_counted(gateway, backend):
    """Images are not counted, in a tool result as in a message: their data
    counted as text, a 400 kB screenshot that Claude Code's Read tool
    returned was 133366 tokens (and as much in a stream's `message_start`)."""
    image = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(400_000)).decode()
    source = {"type": "base64", "media_type": "image/png", "data": image}
    call = {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}

    def turns(*parts: Any) -> Any:
        result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": parts}
        return [
            {"role": "user", "content": "Look at shot.png"},
            {"role": "assistant", "content": [call]},
            {"role": "user", "content": [result]},
        ]

    client = await gateway(backend)
    text = {"type": "text", "text": "shot.png"}
    async with sdk(client) as api:
        counts = [
            (await api.messages.count_tokens(model="gpt-4o", messages=m)).input_tokens
            for m in (turns(text, {"type": "image", "source": source}), turns(text))
        ]
    assert counts[0] == counts[1] < 50


async def test_estimate_stands_in_for_a_missing_usage(gateway, backend):
    events = [chat_chunk({"role": "assistant", "content": "ok"})]
    events.append(chat_chunk({}, finish="stop"))
    backend.queue(Script(pieces=[sse(*events)]))
    client = await gateway(backend)
    async with sdk(client) as api:
        message = await api.messages.create(
            model="gpt-4o",
            max_tokens=5,
            messages=[{"role": "user", "content": "x" * 40}],
        )
    assert message.usage.input_tokens == (len("user") + 40 + 3) // 4
    assert message.usage.output_tokens == 1


def _usage(**extra: Any) -> dict[str, Any]:
    """A backend's usage of 100 prompt and 5 completion tokens, with `extra`."""
    return {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105} | extra


# A backend's usage, and Anthropic's `input_tokens` and
# `cache_read_input_tokens` it makes (they add up to the prompt).
CACHE_CASES: dict[str, tuple[dict[str, Any], int, int]] = {
    "cached": (_usage(prompt_tokens_details={"cached_tokens": 80}), 20, 80),
    "deepseek": (
        _usage(prompt_cache_hit_tokens=60, prompt_cache_miss_tokens=40),
        40,
        60,
    ),
    "absent": (_usage(), 100, 0),
    "null details": (
        _usage(prompt_tokens_details=None, completion_tokens_details=None),
        100,
        0,
    ),
    "null count": (_usage(prompt_tokens_details={"cached_tokens": None}), 100, 0),
    "over the prompt": (_usage(prompt_tokens_details={"cached_tokens": 150}), 0, 100),
}


@pytest.mark.parametrize("upstream_json", [False, True], ids=["sse", "json"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("case", CACHE_CASES)
async def test_cached_prompt_tokens_are_cache_reads(
    gateway, backend, case, stream, upstream_json
):
    usage, uncached, read = CACHE_CASES[case]
    backend.queue(usage_script(usage, whole=upstream_json))
    client = await gateway(backend)
    async with sdk(client) as api:
        message = await ask(api, stream, model="gpt-4o", max_tokens=9, messages=USER)
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hi there"
    assert message.usage.input_tokens == uncached
    assert message.usage.cache_read_input_tokens == read
    # OpenAI-compatible backends report no cache writes.
    assert message.usage.cache_creation_input_tokens == 0
    assert message.usage.output_tokens == 5


async def test_stream_has_cache_reads_only_in_message_delta(gateway, backend):
    """`message_start` comes before the backend's counts: the estimate, no
    cache read; `message_delta` then has the counts, which the SDKs keep."""
    cached = _usage(prompt_tokens_details={"cached_tokens": 80})
    backend.queue(usage_script(cached))
    client = await gateway(backend)
    body = {"model": "gpt-4o", "max_tokens": 5, "messages": USER, "stream": True}
    resp = await client.post("/v1/messages", data=json.dumps(body))
    assert resp.status == 200
    usages = {}
    for event in (await resp.read()).decode().split("\n\n"):
        if event:
            data = json.loads(event.split("\n")[1].removeprefix("data: "))
            if data["type"] == "message_start":
                usages["start"] = data["message"]["usage"]
            elif data["type"] == "message_delta":
                usages["delta"] = data["usage"]
    assert usages["start"]["cache_read_input_tokens"] == 0
    assert usages["start"]["cache_creation_input_tokens"] == 0
    assert usages["delta"] == {
        "output_tokens": 5,
        "input_tokens": 20,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 80,
    }


async def test_auth_errors_use_the_anthropic_envelope(gateway, backend):
    client = await gateway(backend, OLLAMA_GATEWAY_API_KEYS="sk-right")
    async with sdk(client) as api:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await api.messages.create(model="gpt-4o", max_tokens=5, messages=USER)
    assert caught.value.body == {
        "type": "error",
        "error": {
            "type": "authentication_error",
            "message": "unauthorized: a valid API key is required",
        },
    }
    # Claude Code sends the key as `x-api-key` (ANTHROPIC_API_KEY) or as a
    # Bearer token (ANTHROPIC_AUTH_TOKEN), with beta headers.
    async with anthropic.AsyncAnthropic(
        base_url=base_url(client),
        api_key="sk-right",
        max_retries=0,
        default_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    ) as api:
        message = await api.messages.create(model="gpt-4o", max_tokens=5, messages=USER)
    assert message.content[0].type == "text"
    async with anthropic.AsyncAnthropic(
        base_url=base_url(client), auth_token="sk-right", max_retries=0
    ) as api:
        message = await api.messages.create(model="gpt-4o", max_tokens=5, messages=USER)
    assert message.content[0].type == "text"
    assert len(backend.completions()) == 2


async def test_body_limit_uses_the_anthropic_envelope(gateway, backend):
    client = await gateway(backend, "[limits]\nmax_body_bytes = 64\n")
    body: Any = {"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user"}]}
    body["messages"][0]["content"] = "x" * 200
    resp = await client.post("/v1/messages", data=json.dumps(body))
    assert resp.status == 413
    assert await resp.json() == {
        "type": "error",
        "error": {"type": "request_too_large", "message": "request body too large"},
    }
    # The Ollama API keeps its own shape.
    resp = await client.post("/api/chat", data=json.dumps(body))
    assert resp.status == 413
    assert await resp.json() == {"error": "request body too large"}


async def test_models_are_listed_in_anthropics_shape_for_its_sdk(gateway, backend):
    # `client.models.list()` / `.retrieve()`: the same route OpenAI's SDK
    # reads, told apart by the `anthropic-version` header every call carries.
    client = await gateway(backend)
    async with sdk(client) as api:
        listed = [model async for model in api.models.list()]
        one = await api.models.retrieve("gpt-4o")
        with pytest.raises(anthropic.NotFoundError) as caught:
            await api.models.retrieve("nope")
    assert "gpt-4o:latest" in [m.id for m in listed]
    assert all(m.created_at for m in listed)
    assert one.id == "gpt-4o:latest" and one.display_name == "gpt-4o:latest"
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model 'nope' not found"},
    }
    # OpenAI's clients still get OpenAI's list.
    resp = await client.get("/v1/models")
    assert (await resp.json())["object"] == "list"


async def test_consecutive_turns_of_one_role_are_one(gateway, backend):
    # As Anthropic's API combines them; Mistral-style templates refuse two
    # assistant (or user) messages in a row.
    call: Any = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": 1}}
    result: Any = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}
    turns: Any = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [result]},
    ]
    client = await gateway(backend)
    async with sdk(client) as api:
        await api.messages.create(model="gpt-4o", max_tokens=10, messages=turns)
    user, assistant, tool = backend.completions()[0].body["messages"]
    assert user == {"role": "user", "content": "a"}
    assert assistant["content"] == "b"
    assert [c["id"] for c in assistant["tool_calls"]] == ["toolu_1"]
    assert tool == {"role": "tool", "content": "ok", "tool_call_id": "toolu_1"}


async def test_tool_choice_none_offers_no_tools(gateway, backend):
    tool: Any = {"name": "f", "input_schema": {"type": "object"}}
    client = await gateway(backend)
    async with sdk(client) as api:
        await api.messages.create(
            model="gpt-4o",
            max_tokens=10,
            messages=USER,
            tools=[tool],
            tool_choice={"type": "none"},
        )
        await api.messages.create(
            model="gpt-4o", max_tokens=10, messages=USER, tools=[tool]
        )
    without, with_tools = (r.body for r in backend.completions())
    assert "tools" not in without
    assert [t["function"]["name"] for t in with_tools["tools"]] == ["f"]


async def test_tool_choice_any_and_tool_require_a_call_upstream(gateway, backend):
    # LangChain's and the AI SDK's structured output through Anthropic's API
    # is a forced tool call: left free, a model may answer in prose instead.
    other: Any = {"name": "g", "input_schema": {"type": "object"}}
    client = await gateway(backend)
    async with sdk(client) as api:
        for choice in ({"type": "any"}, {"type": "tool", "name": "g"}, None):
            extra: Any = {"tool_choice": choice} if choice else {}
            await api.messages.create(
                model="gpt-4o",
                max_tokens=10,
                messages=USER,
                tools=[WEATHER, other],
                **extra,
            )
    any_tool, named, free = (r.body for r in backend.completions())
    assert any_tool["tool_choice"] == "required"
    assert [t["function"]["name"] for t in any_tool["tools"]] == ["get_weather", "g"]
    # The named tool alone, required: what every backend that takes
    # "required" honours, where not all take OpenAI's named form.
    assert named["tool_choice"] == "required"
    assert [t["function"]["name"] for t in named["tools"]] == ["g"]
    assert "tool_choice" not in free


async def test_tool_choice_naming_no_offered_tool_is_a_400(gateway, backend):
    client = await gateway(backend)
    async with sdk(client) as api:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await api.messages.create(
                model="gpt-4o",
                max_tokens=10,
                messages=USER,
                tools=WEATHER_TOOLS,
                tool_choice={"type": "tool", "name": "nope"},
            )
    assert "no tool named 'nope'" in caught.value.message
    assert not backend.completions()


async def test_tool_choice_any_without_tools_sends_no_tool_choice(gateway, backend):
    client = await gateway(backend)
    async with sdk(client) as api:
        await api.messages.create(
            model="gpt-4o", max_tokens=10, messages=USER, tool_choice={"type": "any"}
        )
    [sent_body] = (r.body for r in backend.completions())
    assert "tool_choice" not in sent_body and "tools" not in sent_body
