"""`POST /v1/responses` driven by the official `openai` Python SDK, against a
real gateway in front of the fake OpenAI backend on loopback.

The SDK parses every answer and event with its own models, and its stream
helper checks the events' order (created first, items added before their
deltas, every item done before `response.completed`), so a shape the SDK or
Copilot CLI would reject fails here. What reached the backend is checked too.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.conftest import base_url
from tests.fakebackend import (
    FakeBackend,
    Script,
    chat_chunk,
    reasoning_sse,
    split_every,
    sse,
    usage_script,
)

THINKER = "qwen3-32b"
MODELS = [{"id": "gpt-4o", "object": "model"}, {"id": THINKER, "object": "model"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()


@pytest.fixture
async def api(gateway: Any, backend: FakeBackend) -> AsyncIterator[openai.AsyncOpenAI]:
    backend.models = MODELS
    client = await gateway(backend)
    async with openai.AsyncOpenAI(
        base_url=base_url(client) + "/v1", api_key="anything", max_retries=0
    ) as sdk:
        yield sdk


def sent(backend: FakeBackend) -> dict[str, Any]:
    [request] = backend.completions()
    body: dict[str, Any] = request.body
    return body


def tool_call_script() -> Script:
    """A tool call whose arguments come in three deltas, with the SSE cut
    every 7 bytes (mid-event, mid-JSON)."""
    events = [
        chat_chunk({"role": "assistant", "content": None}),
        chat_chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_w1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
        chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": '}}]}),
        chat_chunk(
            {"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}
        ),
        chat_chunk({}, finish="tool_calls"),
        chat_chunk(choices=False, usage={"prompt_tokens": 20, "completion_tokens": 9}),
    ]
    return Script(pieces=split_every(sse(*events), 7))


def reasoning_script() -> Script:
    return Script(pieces=split_every(reasoning_sse(), 11))


# Text ---------------------------------------------------------------------------


async def test_non_stream_text(api, backend):
    backend.queue(Script.text("Hello from the gateway", split=9))
    response = await api.responses.create(model="gpt-4o", input="hi")
    assert response.output_text == "Hello from the gateway"
    assert response.status == "completed"
    assert response.model == "gpt-4o"
    assert response.id.startswith("resp_")
    [message] = response.output
    assert message.type == "message"
    assert message.id.startswith("msg_")
    assert message.status == "completed"
    assert response.usage is not None
    assert response.usage.input_tokens == 7
    assert response.usage.output_tokens == 4
    assert response.usage.total_tokens == 11
    body = sent(backend)
    assert body["model"] == "gpt-4o"
    assert body["messages"] == [{"role": "user", "content": "hi"}]


async def test_stream_events_and_final_response(api, backend):
    backend.queue(Script.text("one two three four", split=5))
    stream = await api.responses.create(model="gpt-4o", input="count", stream=True)
    events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert kinds.index("response.output_item.added") < kinds.index(
        "response.content_part.added"
    )
    assert kinds.count("response.output_text.delta") >= 2
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "one two three four"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    [done] = [e for e in events if e.type == "response.output_text.done"]
    assert done.text == "one two three four"
    final = events[-1].response
    assert final.output_text == "one two three four"
    assert final.usage.output_tokens == 4
    assert sent(backend)["stream"] is True


async def test_stream_helper_accumulates_the_final_response(api, backend):
    backend.queue(Script.text("a b c", split=3))
    deltas = []
    async with api.responses.stream(model="gpt-4o", input="abc") as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = await stream.get_final_response()
    assert "".join(deltas) == "a b c"
    assert final.output_text == "a b c"
    assert final.status == "completed"


async def test_instructions_and_input_items_reach_the_backend(api, backend):
    backend.queue(Script.text("ok"))
    await api.responses.create(
        model="gpt-4o",
        instructions="Be terse.",
        input=[
            {"role": "developer", "content": "Answer in English."},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is "},
                    {"type": "input_text", "text": "this?"},
                    {
                        "type": "input_image",
                        "image_url": f"data:image/png;base64,{PNG}",
                    },
                ],
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "A PNG."}],
            },
            {"role": "user", "content": "Thanks"},
        ],
        temperature=0.25,
        top_p=0.5,
        max_output_tokens=77,
    )
    body = sent(backend)
    # Instructions and developer messages are one leading system message,
    # which strict chat templates (Mistral's) want (see turns.py).
    assert body["messages"] == [
        {"role": "system", "content": "Be terse.\n\nAnswer in English."},
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
        {"role": "assistant", "content": "A PNG."},
        {"role": "user", "content": "Thanks"},
    ]
    assert body["temperature"] == 0.25
    assert body["top_p"] == 0.5
    assert body["max_tokens"] == 77 or body.get("max_completion_tokens") == 77


# Tools --------------------------------------------------------------------------


async def test_function_call_round_trip(api, backend):
    backend.queue(tool_call_script())
    first = await api.responses.create(
        model="gpt-4o", input="Weather in Oslo?", tools=[WEATHER_TOOL]
    )
    [call] = first.output
    assert call.type == "function_call"
    assert call.name == "get_weather"
    assert call.call_id == "call_w1"
    assert json.loads(call.arguments) == {"city": "Oslo"}
    assert call.status == "completed"
    assert first.output_text == ""
    body = sent(backend)
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": WEATHER_TOOL["parameters"],
            },
        }
    ]

    backend.requests.clear()
    backend.queue(Script.text("It is sunny"))
    second = await api.responses.create(
        model="gpt-4o",
        tools=[WEATHER_TOOL],
        input=[
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {
                "type": "function_call_output",
                "call_id": call.call_id,
                "output": "sunny",
            },
        ],
    )
    assert second.output_text == "It is sunny"
    messages = sent(backend)["messages"]
    assert messages[0] == {"role": "user", "content": "Weather in Oslo?"}
    assert messages[1]["role"] == "assistant"
    [sent_call] = messages[1]["tool_calls"]
    assert sent_call["id"] == "call_w1"
    assert sent_call["function"]["name"] == "get_weather"
    assert json.loads(sent_call["function"]["arguments"]) == {"city": "Oslo"}
    assert messages[2] == {
        "role": "tool",
        "content": "sunny",
        "tool_call_id": "call_w1",
    }


async def test_function_call_stream(api, backend):
    backend.queue(tool_call_script())
    async with api.responses.stream(
        model="gpt-4o", input="Weather in Oslo?", tools=[WEATHER_TOOL]
    ) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    deltas = [e for e in events if e.type == "response.function_call_arguments.delta"]
    # The helper adds the deltas to the arguments of the added item.
    assert deltas and json.loads(deltas[-1].snapshot) == {"city": "Oslo"}
    [done] = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert json.loads(done.arguments) == {"city": "Oslo"}
    [call] = final.output
    assert call.type == "function_call"
    assert json.loads(call.arguments) == {"city": "Oslo"}
    assert call.call_id == "call_w1"


async def test_tool_choice_none_sends_no_tools_and_builtin_tools_are_left_out(
    api, backend
):
    backend.queue(Script.text("a"), Script.text("b"))
    await api.responses.create(
        model="gpt-4o", input="hi", tools=[WEATHER_TOOL], tool_choice="none"
    )
    await api.responses.create(
        model="gpt-4o", input="hi", tools=[WEATHER_TOOL, {"type": "web_search"}]
    )
    first, second = (r.body for r in backend.completions())
    assert "tools" not in first
    assert [t["function"]["name"] for t in second["tools"]] == ["get_weather"]


async def test_tool_choice_required_named_and_allowed_tools(api, backend):
    other: Any = {"type": "function", "name": "g", "parameters": {"type": "object"}}
    tools: Any = [WEATHER_TOOL, other]
    allowed: Any = {
        "type": "allowed_tools",
        "mode": "auto",
        "tools": [{"type": "function", "name": "g"}],
    }
    choices: Any = ["required", {"type": "function", "name": "g"}, allowed, "auto"]
    backend.queue(*(Script.text("x") for _ in choices))
    for choice in choices:
        await api.responses.create(
            model="gpt-4o", input="hi", tools=tools, tool_choice=choice
        )
    required, named, narrowed, free = (r.body for r in backend.completions())
    assert required["tool_choice"] == "required"
    assert [t["function"]["name"] for t in required["tools"]] == ["get_weather", "g"]
    # The named function alone, required (see tool_choice.py).
    assert named["tool_choice"] == "required"
    assert [t["function"]["name"] for t in named["tools"]] == ["g"]
    assert "tool_choice" not in narrowed
    assert [t["function"]["name"] for t in narrowed["tools"]] == ["g"]
    assert "tool_choice" not in free and len(free["tools"]) == 2


async def test_tool_choice_naming_no_offered_function_is_a_400(api, backend):
    with pytest.raises(openai.BadRequestError) as caught:
        await api.responses.create(
            model="gpt-4o",
            input="hi",
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "name": "nope"},
        )
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == "tool_choice"
    assert "no function named 'nope'" in caught.value.message
    assert not backend.completions()


# Reasoning, limits, formats -------------------------------------------------------


async def test_reasoning_on_a_model_without_it_runs_without_thinking(api, backend):
    # Codex sends a reasoning effort whatever the model: a hint here.
    response = await api.responses.create(
        model="gpt-4o", input="why?", reasoning={"effort": "high"}
    )
    assert response.status == "completed" and response.output_text
    assert "reasoning_effort" not in sent(backend)


async def test_reasoning_becomes_a_reasoning_item(api, backend):
    backend.queue(reasoning_script())
    response = await api.responses.create(
        model=THINKER, input="why?", reasoning={"effort": "high"}
    )
    reasoning, message = response.output
    assert reasoning.type == "reasoning"
    assert [s.text for s in reasoning.summary] == ["Let me think."]
    assert response.output_text == "Because physics."
    assert sent(backend)["reasoning_effort"] == "high"


async def test_reasoning_stream_events(api, backend):
    backend.queue(reasoning_script())
    async with api.responses.stream(model=THINKER, input="why?") as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    kinds = [e.type for e in events]
    summary = [
        e.delta for e in events if e.type == "response.reasoning_summary_text.delta"
    ]
    assert "".join(summary) == "Let me think."
    # The reasoning item is done before the message item is added.
    assert kinds.index("response.reasoning_summary_text.done") < kinds.index(
        "response.output_text.delta"
    )
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output_text == "Because physics."


async def test_reasoning_input_item_goes_back_as_the_assistant_turn(gateway, backend):
    backend.queue(Script.text("ok"))
    client = await gateway(
        toml=f'[[backends]]\nname = "b"\nbase_url = "{backend.url}"\n'
        'history_thinking = "reasoning_content"\n',
    )
    async with openai.AsyncOpenAI(
        base_url=base_url(client) + "/v1", api_key="k", max_retries=0
    ) as sdk:
        await sdk.responses.create(
            model="gpt-4o",
            input=[
                {"role": "user", "content": "q"},
                {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [{"type": "summary_text", "text": "mulling"}],
                },
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": "q2"},
            ],
        )
    messages = sent(backend)["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": "a",
        "reasoning_content": "mulling",
    }


async def test_max_output_tokens_cut_is_incomplete(api, backend):
    events = [
        chat_chunk({"role": "assistant", "content": "Once upon"}),
        chat_chunk({}, finish="length"),
    ]
    backend.queue(Script(pieces=[sse(*events)]), Script(pieces=[sse(*events)]))
    response = await api.responses.create(
        model="gpt-4o", input="story", max_output_tokens=2
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "Once upon"
    assert response.max_output_tokens == 2
    stream = await api.responses.create(
        model="gpt-4o", input="story", max_output_tokens=2, stream=True
    )
    kinds = [event.type async for event in stream]
    assert kinds[-1] == "response.incomplete"
    first = backend.completions()[0].body
    assert first.get("max_tokens", first.get("max_completion_tokens")) == 2


async def test_json_schema_format_reaches_the_backend(api, backend):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"],
        "additionalProperties": False,
    }
    backend.queue(Script(pieces=[sse(chat_chunk({"content": '{"name":"x"}'}),
                                     chat_chunk({}, finish="stop"))]))  # fmt: skip
    response = await api.responses.create(
        model="gpt-4o",
        input="name?",
        text={
            "format": {
                "type": "json_schema",
                "name": "person",
                "schema": schema,
                "strict": True,
            }
        },
    )
    assert json.loads(response.output_text) == {"name": "x"}
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"
    assert sent(backend)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "schema", "schema": schema},
    }


# Usage --------------------------------------------------------------------------


def _usage(**extra: Any) -> dict[str, Any]:
    """A backend's usage of 100 prompt and 5 completion tokens, with `extra`."""
    return {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105} | extra


# A backend's usage, and the cached and reasoning tokens of the response's
# usage (its `input_tokens` include the cached ones: always 100 here).
USAGE_CASES: dict[str, tuple[dict[str, Any], int, int]] = {
    "both": (
        _usage(
            prompt_tokens_details={"cached_tokens": 80, "audio_tokens": 0},
            completion_tokens_details={"reasoning_tokens": 3},
        ),
        80,
        3,
    ),
    "deepseek": (
        _usage(
            prompt_cache_hit_tokens=60,
            prompt_cache_miss_tokens=40,
            completion_tokens_details={"reasoning_tokens": 2},
        ),
        60,
        2,
    ),
    "no cached count": (
        _usage(completion_tokens_details={"reasoning_tokens": 2}),
        0,
        2,
    ),
    "null prompt details": (
        _usage(
            prompt_tokens_details=None,
            completion_tokens_details={"reasoning_tokens": 2},
        ),
        0,
        2,
    ),
    "null completion details": (
        _usage(
            prompt_tokens_details={"cached_tokens": 10}, completion_tokens_details=None
        ),
        10,
        0,
    ),
    "null counts": (
        _usage(
            prompt_tokens_details={"cached_tokens": None},
            completion_tokens_details={"reasoning_tokens": 4},
        ),
        0,
        4,
    ),
    "over the counts": (
        _usage(
            prompt_tokens_details={"cached_tokens": 150},
            completion_tokens_details={"reasoning_tokens": 9},
        ),
        100,
        5,
    ),
}


@pytest.mark.parametrize("stream", [False, True])
async def test_estimate_stands_in_for_a_missing_usage(api, backend, stream):
    """As `/v1/messages` reports it: `input_tokens` was 0, a prompt of none."""
    events = sse(
        chat_chunk({"role": "assistant", "content": "ok"}),
        chat_chunk({}, finish="stop"),
    )
    backend.queue(Script(pieces=[events]))
    asked: Any = {"model": "gpt-4o", "input": "x" * 40, "instructions": "Be brief."}
    if stream:
        async with api.responses.stream(**asked) as helper:
            response = await helper.get_final_response()
    else:
        response = await api.responses.create(**asked)
    # About four characters a token: the roles and texts of the messages.
    estimate = -(-(len("system") + len("Be brief.") + len("user") + 40) // 4)
    assert response.usage is not None
    assert response.usage.input_tokens == estimate
    assert response.usage.output_tokens == 1
    assert response.usage.total_tokens == estimate + 1


@pytest.mark.parametrize("upstream_json", [False, True], ids=["sse", "json"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("case", USAGE_CASES)
async def test_usage_details_are_the_backends(
    api, backend, case, stream, upstream_json
):
    usage, cached, reasoning = USAGE_CASES[case]
    backend.queue(usage_script(usage, whole=upstream_json))
    if stream:
        events = await api.responses.create(model="gpt-4o", input="hi", stream=True)
        [completed] = [e async for e in events if e.type == "response.completed"]
        response = completed.response
    else:
        response = await api.responses.create(model="gpt-4o", input="hi")
    assert response.output_text == "Hi there"
    assert response.usage is not None
    assert response.usage.input_tokens == 100
    assert response.usage.input_tokens_details.cached_tokens == cached
    assert response.usage.output_tokens == 5
    assert response.usage.output_tokens_details.reasoning_tokens == reasoning
    assert response.usage.total_tokens == 105


# Errors -------------------------------------------------------------------------


async def test_unknown_model_is_404(api, backend):
    with pytest.raises(openai.NotFoundError) as caught:
        await api.responses.create(model="no-such-model", input="hi")
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "model_not_found"
    assert "no-such-model" in error["message"]
    assert backend.completions() == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "json"),
        (b'{"model": 5, "input": "hi"}', "model"),
        (b'{"model": "gpt-4o"}', "input is required"),
        (b'{"input": "hi"}', "model is required"),
        (b'{"model": "gpt-4o", "input": [{"type": "wat"}]}', "unsupported input item"),
        (
            b'{"model": "gpt-4o", "input": [{"role": "user", "content": '
            b'[{"type": "input_image", "image_url": "https://x.test/a.png"}]}]}',
            "data url",
        ),
        (
            b'{"model": "gpt-4o", "input": "hi", "reasoning": {"effort": "huge"}}',
            "reasoning",
        ),
    ],
)
async def test_bad_body_is_400_in_openai_shape(gateway, backend, body, words):
    client = await gateway(backend)
    resp = await client.post("/v1/responses", data=body)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "code", "param"}
    assert words in error["message"].lower()
    assert backend.completions() == []


async def test_bad_body_raises_bad_request_in_the_sdk(api, backend):
    with pytest.raises(openai.BadRequestError) as caught:
        await api.responses.create(model="gpt-4o", input="hi", background=True)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "background"


async def test_backend_429_is_rate_limit(api, backend):
    # A Retry-After beyond the retry cap: the gateway passes the 429 on.
    backend.queue(Script.error(429, "slow down", headers={"Retry-After": "3600"}))
    with pytest.raises(openai.RateLimitError) as caught:
        await api.responses.create(model="gpt-4o", input="hi")
    assert "slow down" in caught.value.message
    assert len(backend.completions()) == 1


async def test_a_prompt_over_the_context_has_openais_code(api, backend):
    """OpenAI's code for it, which Codex and OpenAI's clients act on; the
    backend's words as they were."""
    too_long = (
        "This model's maximum context length is 32768 tokens. However, your "
        "request has 40000 input tokens. Please reduce the length of the input "
        "messages."
    )
    backend.queue(Script.error(400, too_long), Script.error(400, "bad role"))
    with pytest.raises(openai.BadRequestError) as caught:
        await api.responses.create(model="gpt-4o", input="hi")
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.message == f"Error code: 400 - {too_long}"
    with pytest.raises(openai.BadRequestError) as caught:
        await api.responses.create(model="gpt-4o", input="hi")
    assert caught.value.code is None
    assert len(backend.completions()) == 2


async def test_backend_failing_mid_stream_ends_with_failed(api, backend):
    events = sse(
        chat_chunk({"role": "assistant", "content": "partial "}),
        chat_chunk({"content": "answer"}),
        done=False,
    )
    backend.queue(Script(pieces=[events, b"data: {broken"], abort_after=1))
    stream = await api.responses.create(model="gpt-4o", input="hi", stream=True)
    events_seen = [event async for event in stream]
    kinds = [e.type for e in events_seen]
    assert "response.output_text.delta" in kinds
    assert kinds[-2:] == ["error", "response.failed"]
    failed = events_seen[-1].response
    assert failed.status == "failed"
    assert failed.error is not None and failed.error.message
    # The stream helper refuses to hand out a final response.
    backend.queue(Script(pieces=[events, b"data: {broken"], abort_after=1))
    with pytest.raises(RuntimeError, match="response.completed"):
        async with api.responses.stream(model="gpt-4o", input="hi") as helper:
            await helper.get_final_response()


@pytest.mark.parametrize(
    ("deltas", "kinds", "texts"),
    [
        # Text cut: the message ends incomplete with its text so far.
        (
            [{"content": "partial "}, {"content": "answer"}],
            ["message"],
            ["partial answer"],
        ),
        # Reasoning done, then the answer cut: only the open item is cut.
        (
            [{"reasoning_content": "hmm"}, {"content": "par"}],
            ["reasoning", "message"],
            ["hmm", "par"],
        ),
        ([{"reasoning_content": "hm"}], ["reasoning"], ["hm"]),
    ],
)
async def test_an_item_cut_by_a_failure_ends_incomplete(
    api, backend, deltas, kinds, texts
):
    """The failed response's output held the open item `in_progress`, with
    no content, and no `output_item.done` came for it."""
    chunks = [chat_chunk({"role": "assistant", **deltas[0]})]
    chunks += [chat_chunk(delta) for delta in deltas[1:]]
    events = sse(*chunks, done=False)
    backend.queue(Script(pieces=[events, b"data: {broken"], abort_after=1))
    seen: list[Any] = []
    async with api.responses.stream(model=THINKER, input="hi") as stream:
        seen = [event async for event in stream]  # the SDK's helper folds each
    failed = seen[-1].response
    assert seen[-1].type == "response.failed"
    assert [item.type for item in failed.output] == kinds
    statuses = [item.status for item in failed.output]
    assert statuses == ["completed"] * (len(kinds) - 1) + ["incomplete"]
    assert [_item_text(item) for item in failed.output] == texts
    done = [e.item for e in seen if e.type == "response.output_item.done"]
    assert [item.id for item in done] == [item.id for item in failed.output]
    assert done[-1].status == "incomplete"


def _item_text(item: Any) -> str:
    if item.type == "reasoning":
        return "".join(part.text for part in item.summary)
    return "".join(part.text for part in item.content)


async def test_errors_before_the_handler_are_in_openai_shape(gateway, backend):
    client = await gateway(
        backend, "[limits]\nmax_body_bytes = 64\n", OLLAMA_GATEWAY_API_KEYS="k1"
    )
    async with openai.AsyncOpenAI(
        base_url=base_url(client) + "/v1", api_key="wrong", max_retries=0
    ) as sdk:
        with pytest.raises(openai.AuthenticationError) as caught:
            await sdk.responses.create(model="gpt-4o", input="hi")
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["message"].startswith("unauthorized")
    headers = {"Authorization": "Bearer k1"}
    resp = await client.post(
        "/v1/responses", data=b"{" + b" " * 100 + b"}", headers=headers
    )
    assert resp.status == 413
    assert (await resp.json())["error"]["message"] == "request body too large"
    assert backend.completions() == []
