"""`previous_response_id` on `/v1/responses`: a response asked without
`store: false` keeps its conversation, and a follow-up that names it sends
only its new items. Driven by the official `openai` SDK against a real
gateway and the fake backend on loopback; what the backend received is the
proof that the conversation was put back together. With several workers the
follow-up may reach another worker than the response it names."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from ollama_gateway.app import create_app
from tests.conftest import base_url
from tests.fakebackend import FakeBackend, Script, chat_chunk, split_every, sse
from tests.ops import read_metrics

MODELS = [{"id": "gpt-4o", "object": "model"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
SDK = Callable[[str], openai.AsyncOpenAI]


@pytest.fixture
async def sdk(gateway: Any, backend: FakeBackend) -> AsyncIterator[SDK]:
    """An SDK client per API key, all on one gateway (the key is the owner)."""
    backend.models = MODELS
    client = await gateway(backend)
    opened: list[openai.AsyncOpenAI] = []

    def make(key: str = "key-a") -> openai.AsyncOpenAI:
        api = openai.AsyncOpenAI(
            base_url=base_url(client) + "/v1", api_key=key, max_retries=0
        )
        opened.append(api)
        return api

    yield make
    for api in opened:
        await api.close()


def messages(backend: FakeBackend, index: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = backend.completions()[index].body["messages"]
    return found


def weather_call() -> Script:
    call = {"index": 0, "id": "call_w1", "type": "function"}
    call["function"] = {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    events = [chat_chunk({"role": "assistant", "tool_calls": [call]})]
    events.append(chat_chunk({}, finish="tool_calls"))
    return Script(pieces=split_every(sse(*events), 9))


async def sunny(
    api: openai.AsyncOpenAI, previous: str, call_id: str
) -> openai.types.responses.Response:
    """The follow-up that answers the weather call `call_id` with "sun"."""
    return await api.responses.create(
        model="gpt-4o",
        previous_response_id=previous,
        tools=[WEATHER_TOOL],
        input=[{"type": "function_call_output", "call_id": call_id, "output": "sun"}],
    )


async def test_a_follow_up_gets_the_conversation_it_names(sdk, backend):
    backend.queue(Script.text("Hello Ada."), Script.text("Your name is Ada."))
    api = sdk()
    first = await api.responses.create(
        model="gpt-4o", instructions="Be brief.", input="My name is Ada."
    )
    assert first.to_dict()["store"] is True
    second = await api.responses.create(
        model="gpt-4o",
        instructions="Answer in one line.",
        input="What is my name?",
        previous_response_id=first.id,
    )
    assert second.output_text == "Your name is Ada."
    assert second.previous_response_id == first.id
    # The new instructions, not the old: OpenAI does not carry them over.
    assert messages(backend, 1) == [
        {"role": "system", "content": "Answer in one line."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "What is my name?"},
    ]


async def test_a_streamed_tool_call_is_followed_up_with_its_output(sdk, backend):
    backend.queue(weather_call(), Script.text("It is sunny in Oslo."))
    api = sdk()
    async with api.responses.stream(
        model="gpt-4o", input="Weather in Oslo?", tools=[WEATHER_TOOL]
    ) as stream:
        first = await stream.get_final_response()
    [call] = first.output
    assert call.type == "function_call"
    answer = await sunny(api, first.id, call.call_id)
    assert answer.output_text == "It is sunny in Oslo."
    user, assistant, tool = messages(backend, 1)
    assert user == {"role": "user", "content": "Weather in Oslo?"}
    assert [c["function"]["name"] for c in assistant["tool_calls"]] == ["get_weather"]
    assert tool["role"] == "tool" and tool["content"] == "sun"
    assert tool["tool_call_id"] == assistant["tool_calls"][0]["id"]


async def ask(
    api: openai.AsyncOpenAI, stream: bool, **kwargs: Any
) -> openai.types.responses.Response:
    """One request, streamed (the stream helper's final response) or not."""
    response: openai.types.responses.Response
    if not stream:
        response = await api.responses.create(model="gpt-4o", **kwargs)
        return response
    async with api.responses.stream(model="gpt-4o", **kwargs) as events:
        response = await events.get_final_response()
    return response


@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_never_takes_an_id_the_conversation_has(sdk, backend, stream):
    """Kimi's models, as some providers serve them, number their calls from
    0 in every answer: passed on, the next call had the id of one the
    conversation held, kept or sent, and a client pairs each output with its
    call by id. The backend's id is kept where it is new."""
    backend.queue(weather_call(), weather_call(), weather_call())
    api = sdk()
    first = await ask(api, stream, input="Weather in Oslo?", tools=[WEATHER_TOOL])
    [call] = first.output
    assert call.type == "function_call" and call.call_id == "call_w1"
    output: Any = {
        "type": "function_call_output",
        "call_id": "call_w1",
        "output": "sun",
    }
    made = {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    whole: Any = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"type": "function_call", "call_id": "call_w1", **made},
        output,
    ]
    # The conversation kept for `previous_response_id`, and sent whole.
    kept = await ask(
        api, stream, previous_response_id=first.id, input=[output], tools=[WEATHER_TOOL]
    )
    sent = await ask(api, stream, input=whole, store=False, tools=[WEATHER_TOOL])
    for answer in (kept, sent):
        [again] = answer.output
        assert again.type == "function_call" and again.name == "get_weather"
        assert again.call_id != "call_w1" and again.call_id.startswith("call_")
    assert len(backend.completions()) == 3


@pytest.mark.parametrize("stream", [False, True])
async def test_item_references_are_the_items_kept(sdk, backend, stream):
    """The AI SDK's OpenAI provider leaves `store` out (true) and sends the
    message and reasoning items of the responses it got as references: they
    were refused, so its second turn failed, and so did a tool loop whose
    model said something before its call."""
    think = [chat_chunk({"role": "assistant", "reasoning_content": "Hmm."})]
    think += [chat_chunk({"content": "Hello Ada."}), chat_chunk({}, finish="stop")]
    backend.queue(Script(pieces=[sse(*think)]), Script.text("Your name is Ada."))
    api = sdk()
    first = await ask(api, stream, input="My name is Ada.")
    reasoning, message = first.output
    assert (reasoning.type, message.type) == ("reasoning", "message")
    second = await ask(
        api,
        stream,
        input=[
            {"role": "user", "content": "My name is Ada."},
            {"type": "item_reference", "id": reasoning.id},
            {"type": "item_reference", "id": message.id},
            {"role": "user", "content": "What is my name?"},
        ],
    )
    assert second.output_text == "Your name is Ada."
    assert messages(backend, 1) == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "What is my name?"},
    ]


async def test_an_item_reference_not_kept_is_openais_400(sdk, backend):
    backend.queue(Script.text("Hello."), Script.text("Hello."))
    first = await sdk("key-a").responses.create(model="gpt-4o", input="hi")
    unkept = await sdk("key-a").responses.create(
        model="gpt-4o", input="hi", store=False
    )
    for api, ident in [
        (sdk("key-b"), first.output[0].id),  # another client's
        (sdk("key-a"), unkept.output[0].id),  # asked with `store: false`
        (sdk("key-a"), "msg_unknown"),
    ]:
        with pytest.raises(openai.BadRequestError) as refused:
            await api.responses.create(
                model="gpt-4o",
                input=[
                    {"role": "user", "content": "hi"},
                    {"type": "item_reference", "id": ident},
                ],
            )
        assert f"Item with id '{ident}' not found" in refused.value.message
        assert isinstance(refused.value.body, dict)
        assert refused.value.body["param"] == "input[1]"
    assert len(backend.completions()) == 2


async def test_a_chain_of_follow_ups_keeps_every_turn(sdk, backend):
    backend.queue(Script.text("one"), Script.text("two"), Script.text("three"))
    api = sdk()
    previous = None
    for word in ("a", "b", "c"):
        reply = await api.responses.create(
            model="gpt-4o", input=word, previous_response_id=previous or openai.omit
        )
        previous = reply.id
    assert [m["content"] for m in messages(backend, 2)] == [
        "a",
        "one",
        "b",
        "two",
        "c",
    ]


async def test_an_unknown_id_is_openais_404(sdk, backend):
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk().responses.create(
            model="gpt-4o", input="hi", previous_response_id="resp_nope"
        )
    assert caught.value.body == {
        "message": "Previous response with id 'resp_nope' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }
    assert backend.completions() == []


async def test_another_clients_response_is_not_found(sdk, backend):
    backend.queue(Script.text("secret"))
    first = await sdk("key-a").responses.create(model="gpt-4o", input="hi")
    with pytest.raises(openai.NotFoundError):
        await sdk("key-b").responses.create(
            model="gpt-4o", input="and?", previous_response_id=first.id
        )
    assert len(backend.completions()) == 1


async def test_store_false_keeps_nothing(sdk, backend):
    backend.queue(Script.text("not kept"))
    api = sdk()
    first = await api.responses.create(model="gpt-4o", input="hi", store=False)
    assert first.to_dict()["store"] is False
    with pytest.raises(openai.NotFoundError):
        await api.responses.create(
            model="gpt-4o", input="and?", previous_response_id=first.id
        )


async def test_a_failed_response_is_not_kept(sdk, backend):
    events = sse(chat_chunk({"role": "assistant", "content": "half"}), done=False)
    backend.queue(Script(pieces=[events, b"data: {broken"], abort_after=1))
    api = sdk()
    stream = await api.responses.create(model="gpt-4o", input="hi", stream=True)
    seen = [event async for event in stream]
    assert seen[-1].type == "response.failed"
    with pytest.raises(openai.NotFoundError):
        await api.responses.create(
            model="gpt-4o", input="and?", previous_response_id=seen[-1].response.id
        )
    assert len(backend.completions()) == 1


async def test_a_store_of_zero_bytes_keeps_nothing(gateway, backend):
    backend.models = MODELS
    client = await gateway(backend, "[limits]\nresponse_store_bytes = 0\n")
    backend.queue(Script.text("x"))
    async with openai.AsyncOpenAI(
        base_url=base_url(client) + "/v1", api_key="k", max_retries=0
    ) as api:
        first = await api.responses.create(model="gpt-4o", input="hi")
        assert first.to_dict()["store"] is False
        with pytest.raises(openai.NotFoundError):
            await api.responses.create(
                model="gpt-4o", input="and?", previous_response_id=first.id
            )


async def test_the_kept_bytes_are_a_metric(gateway, backend):
    backend.models = MODELS
    client = await gateway(backend)
    backend.queue(Script.text("kept"), Script.text("not kept"))
    async with openai.AsyncOpenAI(
        base_url=base_url(client) + "/v1", api_key="k", max_retries=0
    ) as api:
        await api.responses.create(model="gpt-4o", input="hi")
        after_one = (await read_metrics(client)).get(
            "ollama_gateway_kept_conversation_bytes"
        )
        await api.responses.create(model="gpt-4o", input="hi", store=False)
    samples = await read_metrics(client)
    assert after_one > 0
    assert samples.get("ollama_gateway_kept_conversation_bytes") == after_one


async def test_the_kept_bytes_go_back_to_0_once_they_expire(
    gateway, backend, monkeypatch
):
    # A ttl of 10 ms instead of 30 minutes: expired conversations were let go
    # only when another was kept, so the gauge (and the memory) stayed up.
    monkeypatch.setattr("ollama_gateway.app.RESPONSE_TTL", 0.01)
    backend.models = MODELS
    client = await gateway(backend)
    backend.queue(Script.text("kept"))
    async with openai.AsyncOpenAI(
        base_url=base_url(client) + "/v1", api_key="k", max_retries=0
    ) as api:
        first = await api.responses.create(model="gpt-4o", input="hi")
    assert first.to_dict()["store"] is True and len(backend.completions()) == 1
    for _ in range(1000):
        kept = (await read_metrics(client)).get(
            "ollama_gateway_kept_conversation_bytes"
        )
        if kept == 0:
            break
        await asyncio.sleep(0.01)
    assert kept == 0


# `--workers N`: workers share kept conversations through a directory. Two
# apps in this process on one directory stand for two workers.


@pytest.fixture
async def workers(
    aiohttp_client: Any, settings_for: Any, backend: FakeBackend, tmp_path: Path
) -> AsyncIterator[Workers]:
    backend.models = MODELS
    settings = settings_for(backend)
    workers = Workers(tmp_path / "kept")
    workers.shared.mkdir()
    for _ in range(2):
        app = create_app(settings, response_dir=str(workers.shared))
        workers.clients.append(await aiohttp_client(app))
    yield workers
    for api in workers.opened:
        await api.close()


class Workers:
    def __init__(self, shared: Path) -> None:
        self.shared = shared
        self.clients: list[Any] = []
        self.opened: list[openai.AsyncOpenAI] = []

    def sdk(self, worker: int, key: str = "key-a") -> openai.AsyncOpenAI:
        api = openai.AsyncOpenAI(
            base_url=base_url(self.clients[worker]) + "/v1",
            api_key=key,
            max_retries=0,
        )
        self.opened.append(api)
        return api

    def files(self) -> list[str]:
        return sorted(p.name for p in self.shared.iterdir())


async def test_a_follow_up_to_another_worker_gets_the_conversation(workers, backend):
    backend.queue(Script.text("Hello Ada."), weather_call(), Script.text("Sunny."))
    first = await workers.sdk(0).responses.create(
        model="gpt-4o", input="My name is Ada."
    )
    assert workers.files() == [first.id]
    # Streamed on the other worker: its end comes once its file is written.
    async with workers.sdk(1).responses.stream(
        model="gpt-4o",
        input="Weather in Oslo?",
        tools=[WEATHER_TOOL],
        previous_response_id=first.id,
    ) as stream:
        events = [event async for event in stream]
    second = events[-1].response
    assert events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    [call] = second.output
    third = await sunny(workers.sdk(0), second.id, call.call_id)
    assert third.output_text == "Sunny."
    user, assistant, user2, calls, tool = messages(backend, 2)
    assert [user["content"], assistant["content"], user2["content"]] == [
        "My name is Ada.",
        "Hello Ada.",
        "Weather in Oslo?",
    ]
    assert calls["tool_calls"][0]["function"]["name"] == "get_weather"
    assert tool["content"] == "sun"
    assert workers.files() == sorted([first.id, second.id, third.id])
    # Each worker's gauge counts what it keeps itself.
    kept = [
        (await read_metrics(c)).get("ollama_gateway_kept_conversation_bytes")
        for c in workers.clients
    ]
    assert kept[0] > kept[1] > 0


async def test_another_clients_response_is_found_on_no_worker(workers, backend):
    backend.queue(Script.text("secret"))
    first = await workers.sdk(0, "key-a").responses.create(model="gpt-4o", input="hi")
    with pytest.raises(openai.NotFoundError):
        await workers.sdk(1, "key-b").responses.create(
            model="gpt-4o", input="and?", previous_response_id=first.id
        )
    assert len(backend.completions()) == 1


async def test_store_false_keeps_nothing_on_any_worker(workers, backend):
    backend.queue(Script.text("not kept"))
    first = await workers.sdk(0).responses.create(
        model="gpt-4o", input="hi", store=False
    )
    assert workers.files() == []
    for worker in (0, 1):
        with pytest.raises(openai.NotFoundError):
            await workers.sdk(worker).responses.create(
                model="gpt-4o", input="and?", previous_response_id=first.id
            )


async def test_a_failed_stream_leaves_no_file(workers, backend):
    events = sse(chat_chunk({"role": "assistant", "content": "half"}), done=False)
    backend.queue(Script(pieces=[events, b"data: {broken"], abort_after=1))
    stream = await workers.sdk(0).responses.create(
        model="gpt-4o", input="hi", stream=True
    )
    seen = [event async for event in stream]
    assert seen[-1].type == "response.failed"
    assert workers.files() == []
