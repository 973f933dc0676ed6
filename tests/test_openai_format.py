"""`format` to OpenAI's API and Azure OpenAI, which refuse what Ollama takes:
JSON mode in a chat that never says "json", and a schema whose root is not an
object. The backend here refuses both as OpenAI does (see test_strict_backends);
every request must get its answer, and the client the JSON it asked for.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import ollama
import pytest
from pydantic import BaseModel, TypeAdapter

from tests.conftest import MakeGateway, base_url
from tests.fakebackend import FakeBackend, Script, chat_chunk, sse
from tests.test_strict_backends import StrictBackend, openai_refusal, started_strict
from translators.openai_format import (
    ValueUnwrapper,
    object_root,
    unwrap_value,
    wrap_root,
)

OPENAI = "http://api.openai.com/v1"
AZURE = "http://my-resource.openai.azure.com/v1"
INSTRUCTION = {"role": "system", "content": "Respond in JSON."}
TERSE = {"role": "system", "content": "You are terse."}
ASK = {"role": "user", "content": "Three colours, please."}
COLOURS = '{"colours": ["red", "green", "blue"]}'


class City(BaseModel):
    name: str
    population: int | None = None


class Node(BaseModel):
    """Recursive: Pydantic's schema of it is a `$ref` at the root."""

    label: str
    children: list[Node] = []


class Reading(BaseModel):
    """An object root, with optional fields, defaults and `$defs`, and a
    field named as the wrapper's is."""

    value: float
    unit: str = "C"
    city: City | None = None


@pytest.fixture
async def openai_api(
    aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> StrictBackend:
    """The strict backend, reached for any host through the environment's
    proxy: a backend at api.openai.com or an Azure host is served by it."""
    fake = await started_strict(aiohttp_server, openai_refusal)
    monkeypatch.setenv("HTTP_PROXY", fake.url.removesuffix("/v1"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the client's way to the gateway
    return fake


def hosted(base: str = OPENAI, extra: str = "") -> str:
    return f'[[backends]]\nname = "b"\nbase_url = "{base}"\napi_key = "sk-t"\n{extra}'


def answer(text: str, *, size: int = 3, finish: str = "stop") -> Script:
    """`text` streamed in pieces of `size` characters, as tokens come."""
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    events = [chat_chunk({"role": "assistant", "content": ""})]
    events += [chat_chunk({"content": piece}) for piece in pieces]
    events.append(chat_chunk({}, finish=finish))
    return Script(pieces=[sse(*events)])


def sent(fake: FakeBackend) -> dict[str, Any]:
    body: dict[str, Any] = fake.completions()[-1].body
    return body


# -- JSON mode: the word "json" ------------------------------------------------


@pytest.mark.parametrize("base", [OPENAI, AZURE])
@pytest.mark.parametrize("fmt", ["json", {}])
async def test_json_mode_chat_that_never_says_json_is_answered(
    gateway: MakeGateway, openai_api: StrictBackend, base: str, fmt: Any
) -> None:
    """LangChain's ChatOllama(format="json"), Home Assistant and n8n send
    such chats; OpenAI refuses them. The client's messages go as they came,
    and one short instruction after them."""
    openai_api.queue(answer(COLOURS))
    client = await gateway(toml=hosted(base))
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await api.chat(model="gpt-4o", messages=[TERSE, ASK], format=fmt)
    assert reply.message.content == COLOURS
    assert sent(openai_api)["messages"] == [TERSE, ASK, INSTRUCTION]
    assert sent(openai_api)["response_format"] == {"type": "json_object"}
    assert openai_api.refused == []


@pytest.mark.parametrize("stream", [False, True])
async def test_json_mode_generate_that_never_says_json_is_answered(
    gateway: MakeGateway, openai_api: StrictBackend, stream: bool
) -> None:
    openai_api.queue(answer(COLOURS))
    client = await gateway(toml=hosted())
    async with ollama.AsyncClient(host=base_url(client)) as api:
        got = await api.generate(
            model="gpt-4o",
            system="You are terse.",
            prompt="Three colours, please.",
            format="json",
            stream=stream,
        )
        text = "".join([c.response async for c in got]) if stream else got.response
    assert text == COLOURS
    assert sent(openai_api)["messages"] == [
        TERSE,
        {"role": "user", "content": "Three colours, please."},
        INSTRUCTION,
    ]


async def test_json_mode_to_azure_behind_a_name_of_its_own_is_answered(
    gateway: MakeGateway, openai_api: StrictBackend
) -> None:
    """No host test sees Azure behind an API Management gateway: the
    backend's `openai_hosted = true` says it, for this rule as for the
    others."""
    openai_api.queue(answer(COLOURS))
    base = "http://llm-gateway.example.com/v1"
    client = await gateway(toml=hosted(base, "openai_hosted = true\n"))
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await api.chat(model="gpt-4o", messages=[ASK], format="json")
    assert reply.message.content == COLOURS
    assert sent(openai_api)["messages"] == [ASK, INSTRUCTION]


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.mark.parametrize(
    "message",
    [
        {"role": "user", "content": "Three colours as JSON, please."},
        {"role": "system", "content": "Answer in Json."},
        {"role": "user", "content": "What json is this?", "images": [PNG]},
    ],
)
async def test_json_mode_chat_that_says_json_is_sent_as_it_is(
    gateway: MakeGateway, openai_api: StrictBackend, message: dict[str, Any]
) -> None:
    openai_api.queue(answer(COLOURS))
    client = await gateway(toml=hosted())
    async with ollama.AsyncClient(host=base_url(client)) as api:
        await api.chat(model="gpt-4o", messages=[message, ASK], format="json")
    messages = sent(openai_api)["messages"]
    assert len(messages) == 2
    assert messages[1] == ASK
    assert openai_api.refused == []


async def test_json_instruction_takes_the_backends_system_role(
    gateway: MakeGateway, openai_api: StrictBackend
) -> None:
    client = await gateway(toml=hosted(extra='system_role = "developer"\n'))
    async with ollama.AsyncClient(host=base_url(client)) as api:
        await api.chat(model="gpt-4o", messages=[ASK], format="json")
    assert sent(openai_api)["messages"] == [
        ASK,
        {"role": "developer", "content": "Respond in JSON."},
    ]


async def test_other_backends_get_json_mode_chats_unchanged(
    gateway: MakeGateway, backend: FakeBackend
) -> None:
    """vLLM, llama.cpp's server and the like constrain the output as Ollama
    does, whatever the messages say."""
    client = await gateway(backend)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        await api.chat(model="gpt-4o", messages=[TERSE, ASK], format="json")
    assert sent(backend)["messages"] == [TERSE, ASK]


async def test_the_openai_relay_sends_json_mode_as_the_client_wrote_it(
    gateway: MakeGateway, openai_api: StrictBackend
) -> None:
    """On /v1/chat/completions the client speaks OpenAI itself: its body is
    relayed, and OpenAI's answer to it is the client's."""
    client = await gateway(toml=hosted())
    body = {
        "model": "gpt-4o",
        "messages": [ASK],
        "response_format": {"type": "json_object"},
    }
    resp = await client.post("/v1/chat/completions", json=body)
    assert resp.status == 400
    assert "must contain the word 'json'" in (await resp.text())
    assert [refused["messages"] for refused in openai_api.refused] == [[ASK]]


# -- schemas whose root is not an object ---------------------------------------

CITIES = TypeAdapter(list[City])
TREE = Node(label="root", children=[Node(label="leaf")])
ROOTS = [
    pytest.param(
        CITIES.json_schema(),
        '[{"name": "Tokyo", "population": 37000000}, {"name": "Oslo"}]',
        id="list-of-models",
    ),
    pytest.param(Node.model_json_schema(), TREE.model_dump_json(), id="root-ref"),
    pytest.param(
        {"anyOf": [{"type": "string"}, {"type": "integer"}]}, "42", id="anyOf"
    ),
    pytest.param({"type": "string", "enum": ["yes", "no"]}, '"no"', id="enum"),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("schema", "value"), ROOTS)
async def test_a_schema_without_an_object_root_answers_its_bare_json(
    gateway: MakeGateway,
    openai_api: StrictBackend,
    schema: dict[str, Any],
    value: str,
    stream: bool,
) -> None:
    """OpenAI takes an object at the root only: the schema goes as the
    `value` of one, and the client gets the value, as Ollama answers it."""
    openai_api.queue(answer(f'{{"value": {value}}}', size=1))
    client = await gateway(toml=hosted())
    async with ollama.AsyncClient(host=base_url(client)) as api:
        got = await api.chat(
            model="gpt-4o", messages=[ASK], format=schema, stream=stream
        )
        if stream:
            parts = [c.message.content async for c in got]
            assert len([p for p in parts if p]) > 1  # streamed as it came
            content = "".join(parts)
        else:
            content = got.message.content
    assert content == value
    jsonschema.validate(json.loads(content), schema)
    wrapper = sent(openai_api)["response_format"]["json_schema"]["schema"]
    assert wrapper["type"] == "object"
    assert wrapper["required"] == ["value"]
    # The references still resolve: the upstream answer meets the wrapper.
    jsonschema.validate({"value": json.loads(value)}, wrapper)
    assert openai_api.refused == []


async def test_a_list_schema_on_generate_answers_its_bare_json(
    gateway: MakeGateway, openai_api: StrictBackend
) -> None:
    openai_api.queue(answer('{"value":[{"name":"Lima"}]}'))
    client = await gateway(toml=hosted())
    async with ollama.AsyncClient(host=base_url(client)) as api:
        got = await api.generate(
            model="gpt-4o", prompt="A city.", format=CITIES.json_schema()
        )
    assert CITIES.validate_json(got.response) == [City(name="Lima")]


@pytest.mark.parametrize("stream", [False, True])
async def test_the_responses_front_answers_a_list_schema_bare(
    gateway: MakeGateway, openai_api: StrictBackend, stream: bool
) -> None:
    """`/v1/responses` maps `text.format` to Ollama's `format`: the same."""
    openai_api.queue(answer('{"value": ["Oslo", "Lima"]}', size=2))
    client = await gateway(toml=hosted())
    schema = {"type": "array", "items": {"type": "string"}}
    text = {"format": {"type": "json_schema", "name": "cities", "schema": schema}}
    body = {"model": "gpt-4o", "input": "Two cities.", "text": text}
    resp = await client.post("/v1/responses", json={**body, "stream": stream})
    assert resp.status == 200, await resp.text()
    if stream:
        events = [
            json.loads(line.removeprefix("data: "))
            for line in (await resp.text()).splitlines()
            if line.startswith("data: ")
        ]
        done = [e for e in events if e["type"] == "response.output_text.done"]
        output = done[0]["text"]
    else:
        output = (await resp.json())["output"][0]["content"][0]["text"]
    assert output == '["Oslo", "Lima"]'


@pytest.mark.parametrize("stream", [False, True])
async def test_a_refusal_to_a_wrapped_schema_comes_as_it_is(
    gateway: MakeGateway, openai_api: StrictBackend, stream: bool
) -> None:
    refusal = "I'm sorry, I cannot help with that."
    events = [
        chat_chunk({"role": "assistant", "content": None, "refusal": refusal}),
        chat_chunk({}, finish="stop"),
    ]
    openai_api.queue(Script(pieces=[sse(*events)]))
    client = await gateway(toml=hosted())
    async with ollama.AsyncClient(host=base_url(client)) as api:
        got = await api.chat(
            model="gpt-4o", messages=[ASK], format=CITIES.json_schema(), stream=stream
        )
        if stream:
            content = "".join([c.message.content async for c in got])
        else:
            content = got.message.content
    assert content == refusal


async def test_an_answer_cut_short_keeps_its_last_braces(
    gateway: MakeGateway, openai_api: StrictBackend
) -> None:
    """At the token limit the last brace is the value's, not the wrapper's."""
    openai_api.queue(answer('{"value": [{"name": "Oslo"}', finish="length"))
    client = await gateway(toml=hosted())
    async with ollama.AsyncClient(host=base_url(client)) as api:
        got = await api.chat(
            model="gpt-4o", messages=[ASK], format=CITIES.json_schema(), stream=True
        )
        chunks = [c async for c in got]
    assert "".join(c.message.content or "" for c in chunks) == '[{"name": "Oslo"}'
    assert chunks[-1].done_reason == "length"


async def test_a_pydantic_models_schema_goes_as_it_is(
    gateway: MakeGateway, openai_api: StrictBackend
) -> None:
    """The usual `format=Model.model_json_schema()`: an object root, with
    optional fields, defaults, titles and `$defs`, which OpenAI takes without
    `strict` (none is sent). Its answer is the client's, even with a field
    named `value`."""
    reading = '{"value": 21.5, "unit": "C"}'
    openai_api.queue(answer(reading))
    client = await gateway(toml=hosted())
    schema = Reading.model_json_schema()
    async with ollama.AsyncClient(host=base_url(client)) as api:
        got = await api.chat(model="gpt-4o", messages=[ASK], format=schema)
    assert got.message.content == reading
    assert sent(openai_api)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "schema", "schema": schema},
    }


async def test_other_backends_get_a_list_schema_as_it_is(
    gateway: MakeGateway, backend: FakeBackend
) -> None:
    """vLLM and llama.cpp's server take any root, as Ollama does."""
    backend.queue(answer('[{"name": "Oslo"}]'))
    client = await gateway(backend)
    schema = CITIES.json_schema()
    async with ollama.AsyncClient(host=base_url(client)) as api:
        got = await api.chat(model="gpt-4o", messages=[ASK], format=schema)
    assert got.message.content == '[{"name": "Oslo"}]'
    assert sent(backend)["response_format"]["json_schema"]["schema"] == schema


async def test_a_schema_failed_over_to_another_backend_goes_bare(
    gateway: MakeGateway, openai_api: StrictBackend, backend: FakeBackend
) -> None:
    """The request is mapped again for the backend failed over to: that one
    gets the schema as the client sent it, and its answer is the client's
    (here an object that has a `value`, which the schema allows)."""
    schema = {"anyOf": [{"type": "array"}, {"type": "object"}]}
    openai_api.queue(Script.error(503, "busy"))
    backend.queue(answer('{"value": [1]}'))
    pinned = hosted(extra='models = ["gpt-4o"]\n')
    toml = (
        f"{pinned}\n"
        f'[[backends]]\nname = "other"\nbase_url = "{backend.url}"\n'
        "[translators.retry]\nattempts = 0\n"
    )
    client = await gateway(toml=toml)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        got = await api.chat(model="gpt-4o", messages=[ASK], format=schema)
    assert got.message.content == '{"value": [1]}'
    wrapped = sent(openai_api)["response_format"]["json_schema"]["schema"]
    assert wrapped["properties"]["value"] == schema
    assert sent(backend)["response_format"]["json_schema"]["schema"] == schema


# -- the pieces ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "object", "properties": {}}, True),
        ({"type": "array"}, False),
        ({"type": ["object", "null"]}, False),
        ({"type": "object", "anyOf": [{"required": ["a"]}]}, False),
        ({"$ref": "#/$defs/Node", "$defs": {}}, False),
    ],
)
def test_object_root(schema: dict[str, Any], expected: bool) -> None:
    assert object_root(schema) is expected


def test_wrap_root_moves_references_with_the_schema() -> None:
    """Definitions stay at the root; a reference to the schema's own root
    (or anything else in it) now points inside `value`."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": {"Leaf": {"type": "string"}},
        "type": "array",
        "items": {"anyOf": [{"$ref": "#/$defs/Leaf"}, {"$ref": "#"}]},
    }
    original = json.dumps(schema)
    wrapper = wrap_root(schema)
    assert json.dumps(schema) == original  # the request's own is untouched
    assert wrapper["$defs"] == {"Leaf": {"type": "string"}}
    assert wrapper["$schema"] == schema["$schema"]
    items = wrapper["properties"]["value"]["items"]["anyOf"]
    assert items == [{"$ref": "#/$defs/Leaf"}, {"$ref": "#/properties/value"}]
    jsonschema.validate({"value": ["a", ["b", []]]}, wrapper)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"value": ["a", [1]]}, wrapper)


@pytest.mark.parametrize(
    "text",
    [
        '{"value":[1,{"a":"}"},{}]}',
        '{\n  "value" : {"x": {"y": 1}}\n}\n',
        '{"value":"a } b"}',
        '{ "value":  \n  null }',
    ],
)
@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_value_unwrapper_in_any_pieces(text: str, size: int) -> None:
    unwrapper = ValueUnwrapper()
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    out = "".join(unwrapper.feed(piece) for piece in pieces) + unwrapper.flush(True)
    assert out == unwrap_value(text)
    assert json.loads(out) == json.loads(text)["value"]


@pytest.mark.parametrize("text", ["I cannot help.", '{"other": 1}', "[1, 2]"])
def test_an_answer_without_the_wrapper_is_passed_on(text: str) -> None:
    unwrapper = ValueUnwrapper()
    out = "".join(unwrapper.feed(c) for c in text) + unwrapper.flush(True)
    assert out == text == unwrap_value(text)
