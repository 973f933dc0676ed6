"""The agent and OpenAI fronts against backends that misbehave in ways real
ones do, read by the official SDKs: what the SDK makes of the answer must be
what the backend said, or an error of the right class."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import base_url
from tests.fakebackend import FakeBackend, Script, chat_chunk, split_every, sse
from tests.ndjson import NO_RETRY

USER: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def oai(gateway: Any, backend: FakeBackend) -> AsyncIterator[openai.AsyncOpenAI]:
    client = await gateway(backend)
    async with openai.AsyncOpenAI(
        base_url=base_url(client) + "/v1", api_key="unused", max_retries=0
    ) as sdk:
        yield sdk


def whole_answer(message: dict[str, Any], finish: str) -> Script:
    """One JSON `chat.completion`, as a backend that ignores `stream: true`
    answers."""
    answer = {
        "id": "chatcmpl-whole",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "fake",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    }
    body = json.dumps(answer).encode()
    return Script(pieces=[body], content_type="application/json")


async def test_a_whole_answer_to_a_stream_reaches_the_sdk_as_a_stream(oai, backend):
    """The passthrough relays a JSON answer to a streamed request as the one
    chunk it would be: as it was, OpenAI's SDKs read no chunk at all and the
    helper's final completion failed an assertion."""
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
    }
    message = {"role": "assistant", "content": "Checking.", "tool_calls": [call]}
    backend.queue(whole_answer(message, "tool_calls"), whole_answer(message, "stop"))
    async with oai.chat.completions.stream(model="gpt-4o", messages=USER) as stream:
        final = await stream.get_final_completion()
    [choice] = final.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking."
    [made] = choice.message.tool_calls or []
    assert made.type == "function"
    assert (made.id, made.function.name) == ("call_1", "get_weather")
    assert json.loads(made.function.arguments) == {"city": "Oslo"}
    assert final.usage is not None and final.usage.total_tokens == 13
    chunks = await oai.chat.completions.create(
        model="gpt-4o", messages=USER, stream=True
    )
    [chunk] = [c async for c in chunks]
    assert chunk.object == "chat.completion.chunk"
    assert chunk.choices[0].delta.content == "Checking."
    assert len(backend.completions()) == 2


async def test_an_error_object_answered_to_a_stream_raises_in_the_sdk(oai, backend):
    body = json.dumps({"error": {"message": "no capacity", "code": 500}}).encode()
    backend.queue(Script(pieces=[body], content_type="application/json"))
    chunks = await oai.chat.completions.create(
        model="gpt-4o", messages=USER, stream=True
    )
    with pytest.raises(openai.APIError, match="no capacity"):
        async for _ in chunks:
            pass


@pytest.mark.parametrize("indent", [None, 2])
async def test_an_error_object_labelled_as_events_raises_in_the_sdk(
    oai, backend, indent
):
    """A body labelled as events that is one error object, no `data:` line:
    relayed as it came, the SDK found no event and the relay dropped the
    connection as for a cut stream, so the SDK raised "Connection error"."""
    error = {"error": {"message": "no capacity", "code": 500}}
    body = b"\n" + json.dumps(error, indent=indent).encode()
    backend.queue(Script(pieces=split_every(body, 9), delay=0.01))
    chunks = await oai.chat.completions.create(
        model="gpt-4o", messages=USER, stream=True
    )
    with pytest.raises(openai.APIError, match="no capacity"):
        async for _ in chunks:
            pass


async def test_a_body_labelled_as_events_that_is_not_json_is_an_error(oai, backend):
    backend.queue(Script(pieces=[b'{"error": {"message": "cut']))
    chunks = await oai.chat.completions.create(
        model="gpt-4o", messages=USER, stream=True
    )
    with pytest.raises(openai.APIError, match="not JSON"):
        async for _ in chunks:
            pass


LATER = "Wed, 21 Oct 2099 07:28:00 GMT"


@pytest.mark.parametrize(
    ("status", "sent", "passed_on"),
    [(429, "60", "60"), (503, LATER, LATER), (429, "soon", None), (500, "", None)],
)
async def test_a_backends_retry_after_reaches_each_front(
    gateway, backend, status, sent, passed_on
):
    """The backend's `Retry-After` goes on with its refusal, on every front, so
    the SDKs' own retries wait as long as it asked (they read the header;
    without it they come back within a second or two). Only a number of
    seconds or an HTTP date is passed on."""
    client = await gateway(backend, NO_RETRY)
    headers = {"Retry-After": sent} if sent else {}
    for _ in range(4):
        backend.queue(Script.error(status, "busy", headers=headers))
    url = base_url(client)
    caught: list[anthropic.APIStatusError | openai.APIStatusError] = []
    async with anthropic.AsyncAnthropic(
        base_url=url, api_key="unused", max_retries=0
    ) as claude:
        with pytest.raises(anthropic.APIStatusError) as refused:
            await claude.messages.create(model="gpt-4o", max_tokens=5, messages=USER)
        caught.append(refused.value)
    async with openai.AsyncOpenAI(
        base_url=url + "/v1", api_key="unused", max_retries=0
    ) as oai:
        with pytest.raises(openai.APIStatusError) as failed:
            await oai.responses.create(model="gpt-4o", input="hi")
        caught.append(failed.value)
        with pytest.raises(openai.APIStatusError) as failed:
            await oai.chat.completions.create(model="gpt-4o", messages=USER)
        caught.append(failed.value)
    ollama = await client.post("/api/chat", json={"model": "gpt-4o", "messages": USER})
    assert ollama.status == status
    assert [e.status_code for e in caught] == [status] * 3
    answers = [e.response.headers.get("Retry-After") for e in caught]
    assert answers == [passed_on] * 3
    assert ollama.headers.get("Retry-After") == passed_on
    assert len(backend.completions()) == 4


def filtered_script() -> Script:
    """An answer the backend's content filter cut (Azure OpenAI's way)."""
    return Script(
        pieces=[
            sse(
                chat_chunk({"role": "assistant", "content": "Here is how to"}),
                chat_chunk({}, finish="content_filter"),
                chat_chunk(
                    choices=False, usage={"prompt_tokens": 6, "completion_tokens": 4}
                ),
            )
        ]
    )


@pytest.mark.parametrize("stream", [False, True])
async def test_a_content_filter_stop_is_a_refusal_for_anthropics_sdk(
    gateway, backend, stream
):
    """Not `end_turn`: Claude Code would take the cut answer for a whole one."""
    backend.queue(filtered_script())
    client = await gateway(backend)
    async with anthropic.AsyncAnthropic(
        base_url=base_url(client), api_key="unused", max_retries=0
    ) as claude:
        ask: Any = dict(model="gpt-4o", max_tokens=50, messages=USER)
        if stream:
            async with claude.messages.stream(**ask) as events:
                message = await events.get_final_message()
        else:
            message = await claude.messages.create(**ask)
    assert message.stop_reason == "refusal"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].type == "text"
    assert message.content[0].text == "Here is how to"
    assert message.usage.output_tokens == 4


async def test_a_content_filter_stop_is_an_incomplete_response(oai, backend):
    """As OpenAI's API says it, not `completed`."""
    backend.queue(filtered_script(), filtered_script())
    whole = await oai.responses.create(model="gpt-4o", input="hi")
    events = await oai.responses.create(model="gpt-4o", input="hi", stream=True)
    last = [event async for event in events][-1]
    assert last.type == "response.incomplete"
    for response in (whole, last.response):
        assert response.status == "incomplete"
        assert response.incomplete_details is not None
        assert response.incomplete_details.reason == "content_filter"
        assert response.output_text == "Here is how to"
        assert response.output[0].status == "incomplete"


TOO_LONG = "This model's maximum context length is 4096 tokens"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ({"message": TOO_LONG, "type": "invalid_request_error", "code": None}, 400),
        ({"message": TOO_LONG, "type": "x", "code": "context_length_exceeded"}, 400),
        ({"message": TOO_LONG, "type": "server_error", "code": "overloaded"}, 500),
        ({"message": TOO_LONG, "type": {"odd": 1}, "code": ["odd"]}, 500),
    ],
)
async def test_an_in_band_error_that_blames_the_request_is_a_400(
    gateway, backend, error, status
):
    """An error event before any output, that names no status but says in
    OpenAI's words that the request is at fault: a 400, which the SDKs do
    not retry. As a 500 they sent the whole prompt twice more (and agents
    more), to the same refusal."""
    for _ in range(3):
        backend.queue(Script(pieces=[sse({"error": error}, done=False)]))
    client = await gateway(backend, NO_RETRY)
    url = base_url(client)
    async with anthropic.AsyncAnthropic(
        base_url=url, api_key="unused", max_retries=0
    ) as claude:
        with pytest.raises(anthropic.APIStatusError) as refused:
            async with claude.messages.stream(
                model="gpt-4o", max_tokens=5, messages=USER
            ) as events:
                await events.get_final_message()
    async with openai.AsyncOpenAI(
        base_url=url + "/v1", api_key="unused", max_retries=0
    ) as oai:
        with pytest.raises(openai.APIStatusError) as failed:
            await oai.responses.create(model="gpt-4o", input="hi")
    ollama = await client.post("/api/chat", json={"model": "gpt-4o", "messages": USER})
    assert [refused.value.status_code, failed.value.status_code] == [status] * 2
    assert ollama.status == status
    assert isinstance(refused.value.body, dict)
    # A 400 of a prompt over the context is worded as Anthropic words it
    # (see test_anthropic_front.py).
    worded = f"prompt is too long: {TOO_LONG}" if status == 400 else TOO_LONG
    assert refused.value.body["error"]["message"] == worded
    assert failed.value.message.endswith(TOO_LONG)


def json_body(value: Any) -> Script:
    return Script(pieces=[json.dumps(value).encode()], content_type="application/json")


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        ({"message": "bad things", "code": 400}, openai.BadRequestError),
        ({"message": "bad things", "code": "429"}, openai.RateLimitError),
        (
            {"message": "bad things", "type": "invalid_request_error"},
            openai.BadRequestError,
        ),
        ("bad things", openai.InternalServerError),
    ],
)
async def test_an_error_answered_with_a_200_raises_in_the_sdk(
    oai, backend, error, raised
):
    """A whole answer that is an error object (the LiteLLM proxy answers some
    failures so) reaches the SDK with the status the Ollama routes give it:
    relayed as it came, the SDK made a completion with no choices of it."""
    backend.queue(json_body({"error": error}))
    with pytest.raises(raised, match="bad things"):
        await oai.chat.completions.create(model="gpt-4o", messages=USER)
    assert len(backend.completions()) == 1


async def test_a_completion_with_a_null_error_field_is_relayed(oai, backend):
    message = {"role": "assistant", "content": "fine"}
    answer = {
        "error": None,
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "fake",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    }
    backend.queue(json_body(answer))
    completion = await oai.chat.completions.create(model="gpt-4o", messages=USER)
    assert completion.choices[0].message.content == "fine"


def call(index: int, ident: str | None, name: str, arguments: str) -> Any:
    fragment: dict[str, Any] = {"index": index, "type": "function"}
    fragment["function"] = {"name": name, "arguments": arguments}
    if ident is not None:
        fragment["id"] = ident
    return chat_chunk({"tool_calls": [fragment]})


# What backends send for two calls (or one), and the calls' names and inputs.
CALLS: dict[str, tuple[list[Any], list[tuple[str, dict[str, Any]]]]] = {
    # DeepSeek, GLM: parallel calls numbered apart, under one id.
    "one id, two indexes": (
        [call(0, "call_0", "f", '{"a": 1}'), call(1, "call_0", "g", '{"b": 2}')],
        [("f", {"a": 1}), ("g", {"b": 2})],
    ),
    # OpenRouter: every call numbered 0, under one id, one whole call a chunk.
    "one id, one index": (
        [call(0, "call_0", "f", '{"a": 1}'), call(0, "call_0", "f", '{"a": 2}')],
        [("f", {"a": 1}), ("f", {"a": 2})],
    ),
    # llama.cpp: the name and id again in every fragment of one call.
    "one call, name repeated": (
        [
            call(0, "call_0", "f", '{"a"'),
            call(0, "call_0", "f", ": [1]"),
            call(0, "call_0", "f", "}"),
        ],
        [("f", {"a": [1]})],
    ),
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("case", CALLS)
async def test_parallel_calls_under_one_id_get_ids_of_their_own(
    gateway, backend, case, stream
):
    """Claude Code and Codex pair each result with its call by id, and
    Anthropic's API (DeepSeek's too) refuses a turn with two calls of one id:
    a call whose id an earlier one has gets a new one."""
    fragments, wanted = CALLS[case]
    events = [chat_chunk({"role": "assistant", "content": None}), *fragments]
    events.append(chat_chunk({}, finish="tool_calls"))
    for _ in range(2):
        backend.queue(Script(pieces=[sse(*events)]))
    client = await gateway(backend)
    url = base_url(client)
    async with anthropic.AsyncAnthropic(
        base_url=url, api_key="unused", max_retries=0
    ) as claude:
        ask: Any = dict(model="gpt-4o", max_tokens=50, messages=USER)
        if stream:
            async with claude.messages.stream(**ask) as answer:
                message = await answer.get_final_message()
        else:
            message = await claude.messages.create(**ask)
    uses = [b for b in message.content if b.type == "tool_use"]
    assert [(u.name, u.input) for u in uses] == wanted
    assert uses[0].id == "call_0"
    assert len({u.id for u in uses}) == len(uses)
    async with openai.AsyncOpenAI(
        base_url=url + "/v1", api_key="unused", max_retries=0
    ) as oai:
        output: list[Any]
        if stream:
            async with oai.responses.stream(model="gpt-4o", input="hi") as answers:
                output = list((await answers.get_final_response()).output)
        else:
            output = (await oai.responses.create(model="gpt-4o", input="hi")).output
    made: list[Any] = [item for item in output if item.type == "function_call"]
    assert [(m.name, json.loads(m.arguments)) for m in made] == wanted
    assert made[0].call_id == "call_0"
    assert len({m.call_id for m in made}) == len(made)


LLAMA_CPP_ERROR = (
    b'error: {"code":500,"message":"the request exceeds the available context'
    b' size","type":"exceed_context_size_error"}'
)


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
@pytest.mark.parametrize("after_text", [False, True])
async def test_an_error_field_reaches_openais_sdk_as_an_error(
    oai, backend, eol, after_text
):
    """llama.cpp's server sent a stream's error as an `error:` field until
    2025-09, then `[DONE]`: relayed as it came, OpenAI's SDK ignored the field
    and took the stream for a whole (empty or cut) answer."""
    text = sse(chat_chunk({"role": "assistant", "content": "Hi"}), done=False, eol=eol)
    end = eol.encode()
    failure = LLAMA_CPP_ERROR + end + end + b"data: [DONE]" + end + end
    backend.queue(Script(pieces=[text, failure] if after_text else [failure]))
    chunks = await oai.chat.completions.create(
        model="gpt-4o", messages=USER, stream=True
    )
    seen: list[str | None] = []
    with pytest.raises(openai.APIError, match="exceeds the available context size"):
        async for chunk in chunks:
            seen.append(chunk.choices[0].delta.content)
    assert seen == (["Hi"] if after_text else [])


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
@pytest.mark.parametrize(
    "cut", [0, 1, 3, 6, 7, 40, len(LLAMA_CPP_ERROR), len(LLAMA_CPP_ERROR) + 1]
)
async def test_an_error_field_cut_between_reads_is_an_error(oai, backend, eol, cut):
    """Only a line read whole was rewritten: one a read ended inside went on
    as the field OpenAI's SDK ignores."""
    text = sse(chat_chunk({"role": "assistant", "content": "Hi"}), done=False, eol=eol)
    end = eol.encode()
    failure = LLAMA_CPP_ERROR + end + end + b"data: [DONE]" + end + end
    pieces = [text + failure[:cut], failure[cut:]]
    backend.queue(Script(pieces=pieces, delay=0.05))
    chunks = await oai.chat.completions.create(
        model="gpt-4o", messages=USER, stream=True
    )
    seen: list[str | None] = []
    with pytest.raises(openai.APIError, match="exceeds the available context size"):
        async for chunk in chunks:
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["Hi"]


async def test_a_line_held_for_its_start_goes_on_whole(oai, backend):
    """A line whose start could be an `error:` line's is held until its end,
    then goes on as it came."""
    data = sse(
        chat_chunk({"role": "assistant", "content": "x"}),
        chat_chunk({}, finish="stop"),
    )
    named = data.replace(b"data: {", b"event: chunk\ndata: {")
    cut = named.index(b"event:") + 2
    backend.queue(Script(pieces=[named[:cut], named[cut:]], delay=0.05))
    chunks = await oai.chat.completions.create(
        model="gpt-4o", messages=USER, stream=True
    )
    texts = [c.choices[0].delta.content async for c in chunks if c.choices]
    assert texts == ["x", None]


async def test_text_that_reads_error_colon_is_relayed_as_it_is(oai, backend):
    # A piece that begins inside a `data:` line is no line of its own.
    data = sse(
        chat_chunk({"role": "assistant", "content": "x\\nerror: none\\n"}),
        chat_chunk({}, finish="stop"),
    )
    cut = data.index(b"error: none")
    backend.queue(Script(pieces=[data[:cut], data[cut:]], delay=0.05))
    chunks = await oai.chat.completions.create(
        model="gpt-4o", messages=USER, stream=True
    )
    texts = [c.choices[0].delta.content async for c in chunks if c.choices]
    assert texts == ["x\\nerror: none\\n", None]


async def test_events_labelled_as_json_are_relayed_as_a_stream(oai, backend):
    """An event stream sent as `application/json` (a proxy's slip) is no
    whole answer: it goes on as the stream it is, its type set right."""
    events = sse(
        chat_chunk({"role": "assistant", "content": "Hel"}),
        chat_chunk({"content": "lo"}),
        chat_chunk({}, finish="stop"),
    )
    backend.queue(Script(pieces=[events], content_type="application/json"))
    async with oai.chat.completions.stream(model="gpt-4o", messages=USER) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.content == "Hello"
    assert final.choices[0].finish_reason == "stop"


async def test_blanks_before_a_whole_answer_to_a_stream_are_skipped(oai, backend):
    message = {"role": "assistant", "content": "Late"}
    script = whole_answer(message, "stop")
    script.pieces = [b"\n", b"  \n", *script.pieces]
    script.delay = 0.05
    backend.queue(script)
    async with oai.chat.completions.stream(model="gpt-4o", messages=USER) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.content == "Late"


def _call(index: int, ident: str, arguments: str) -> dict[str, Any]:
    function = {"name": "get_weather", "arguments": arguments}
    return {"index": index, "id": ident, "type": "function", "function": function}


# Answers a token limit cut: what each front's final object must say of them
# (Anthropic's blocks and stop reason; the Responses items and statuses).
LENGTH_CUTS: dict[str, tuple[list[dict[str, Any]], list[str], str, list[str]]] = {
    "reasoning only": (
        [chat_chunk({"role": "assistant", "reasoning_content": "Let me think"})],
        ["thinking"],
        "max_tokens",
        ["reasoning:incomplete"],
    ),
    # llama.cpp streams a call's name before its arguments: half a call is
    # dropped, and nothing is left.
    "a call cut": (
        [chat_chunk({"role": "assistant", "tool_calls": [_call(0, "c1", '{"ci')]})],
        [],
        "max_tokens",
        ["message:incomplete"],
    ),
    # The whole call before the cut one stays, and is made.
    "a whole call, then one cut": (
        [
            chat_chunk({"role": "assistant", "reasoning_content": "hm"}),
            chat_chunk({"tool_calls": [_call(0, "c1", '{"city": "Oslo"}')]}),
            chat_chunk({"tool_calls": [_call(1, "c2", '{"ci')]}),
        ],
        ["thinking", "tool_use"],
        "tool_use",
        ["reasoning:completed", "function_call:completed"],
    ),
}
WEATHER: Any = {"type": "object", "properties": {"city": {"type": "string"}}}


@pytest.mark.parametrize("case", LENGTH_CUTS)
async def test_answers_cut_by_the_token_limit_are_valid_for_the_sdks(
    gateway, backend, case
):
    chunks, blocks, stop, items = LENGTH_CUTS[case]
    events = sse(*chunks, chat_chunk({}, finish="length"))
    backend.models = [{"id": "qwen3-32b", "object": "model"}]
    backend.queue(Script(pieces=[events]), Script(pieces=[events]))
    client = await gateway(backend)
    async with anthropic.AsyncAnthropic(
        base_url=base_url(client), api_key="unused", max_retries=0
    ) as claude:
        async with claude.messages.stream(
            model="qwen3-32b",
            max_tokens=5,
            messages=USER,
            tools=[{"name": "get_weather", "input_schema": WEATHER}],
        ) as stream:
            message = await stream.get_final_message()
    assert [block.type for block in message.content] == blocks
    assert message.stop_reason == stop
    async with openai.AsyncOpenAI(
        base_url=base_url(client) + "/v1", api_key="unused", max_retries=0
    ) as oai:
        tool: Any = {"type": "function", "name": "get_weather", "parameters": WEATHER}
        async with oai.responses.stream(
            model="qwen3-32b", input="hi", tools=[tool], max_output_tokens=5
        ) as helper:
            # The helper gives a final response for `response.completed`
            # only: the last event carries this one.
            seen: list[Any] = [event async for event in helper]
    last = seen[-1]
    assert last.type == "response.incomplete"
    response = last.response
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert [f"{item.type}:{item.status}" for item in response.output] == items
    done = [e.item for e in seen if e.type == "response.output_item.done"]
    assert [f"{item.type}:{item.status}" for item in done] == items


async def test_a_model_list_no_backend_could_give_is_an_error(
    gateway: Any, backend: FakeBackend
):
    """`/v1/models` answered an empty list when every backend was down, as
    `/api/tags` no longer does: the SDK's caller saw "no models" with
    nothing to say why."""
    backend.models_status = 503
    client = await gateway(backend, "[translators.retry]\nattempts = 0\n")
    async with openai.AsyncOpenAI(
        base_url=base_url(client) + "/v1", api_key="unused", max_retries=0
    ) as sdk:
        with pytest.raises(openai.APIStatusError) as info:
            await sdk.models.list()
    assert info.value.status_code == 502
    assert "cannot list models: openai: " in info.value.message
    async with anthropic.AsyncAnthropic(
        base_url=base_url(client), api_key="unused", max_retries=0
    ) as claude:
        with pytest.raises(anthropic.APIStatusError) as failed:
            await claude.models.list()
    assert failed.value.status_code == 502
