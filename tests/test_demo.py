"""The demo backend, model by model, through the official Python client.

Every test runs a gateway with no backend configured, so the demo answers; its
answers go through the same translators as a real backend's. Pure parts (the
schema instances, image headers, the SSE events) are also checked directly.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import time
from typing import Any, Literal

import aiohttp
import jsonschema
import msgspec
import ollama
import pydantic
import pytest

from ollama_gateway.context import RequestContext
from ollama_gateway.protocols import UpstreamRequest
from ollama_gateway.settings import BackendSettings
from ollama_gateway_translators import demo_models
from ollama_gateway_translators.demo import DemoConfig, DemoTransport
from ollama_gateway_translators.demo_catalogue import ERROR_TAGS, MODELS
from ollama_gateway_translators.demo_media import image_size
from ollama_gateway_translators.demo_schema import instance
from tests.conftest import FAST_DEMO, base_url
from tests.media import png as make_png

USER = [{"role": "user", "content": "hello there"}]
STALL_TOML = FAST_DEMO + "\n[timeouts]\nidle = 0.3\n"

EXPECTED_CAPABILITIES = {
    "demo:latest": ["completion"],
    "demo-long:latest": ["completion"],
    "demo-tools:latest": ["completion", "tools"],
    "demo-think:latest": ["completion", "thinking"],
    "demo-json:latest": ["completion"],
    "demo-vision:latest": ["completion", "vision"],
    "demo-code:latest": ["completion", "insert"],
    "demo-embed:latest": ["embedding"],
    "demo-error:latest": ["completion", "tools"],
    **{f"demo-error:{tag}": ["completion", "tools"] for tag in ERROR_TAGS},
}


async def _chat(gateway: Any, toml: str = FAST_DEMO, **kwargs: Any) -> Any:
    client = await gateway(toml=toml)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        return await api.chat(**kwargs)


async def _stream(api: ollama.AsyncClient, **kwargs: Any) -> list[Any]:
    return [part async for part in await api.chat(stream=True, **kwargs)]


# --- the catalogue ---------------------------------------------------------


async def test_tags_list_every_demo_model_with_truthful_capabilities(gateway):
    client = await gateway(toml=FAST_DEMO)
    resp = await client.get("/api/tags")
    assert resp.status == 200
    models = {m["name"]: m["capabilities"] for m in (await resp.json())["models"]}
    assert models == EXPECTED_CAPABILITIES


@pytest.mark.parametrize(
    ("model", "capability"),
    [
        ("demo-tools", "tools"),
        ("demo-think", "thinking"),
        ("demo-vision", "vision"),
        ("demo-embed", "embedding"),
    ],
)
async def test_show_reports_the_capability(gateway, model, capability):
    client = await gateway(toml=FAST_DEMO)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        show = await api.show(model)
        plain = await api.show("demo")
    assert capability in (show.capabilities or [])
    assert capability not in (plain.capabilities or [])
    assert show.modelinfo is not None


async def test_error_variants_resolve_case_insensitively(gateway):
    client = await gateway(toml=FAST_DEMO)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        show = await api.show("DEMO-ERROR:Drop")
        untagged = await api.show("demo-error:latest")
    assert show.capabilities == ["completion", "tools"]
    assert untagged.capabilities == ["completion", "tools"]


@pytest.mark.parametrize(
    ("path", "body", "key"),
    [
        ("/v1/chat/completions", {"messages": 1}, "messages"),
        ("/v1/chat/completions", {"messages": USER, "tools": "x"}, "tools"),
        ("/v1/completions", {"prompt": 7}, "prompt"),
    ],
)
async def test_a_field_of_the_wrong_type_is_refused_as_openai_refuses_it(
    gateway, path, body, key
):
    """The `/v1` relay hands bodies to the demo backend as sent: a wrong type
    is the 400 a real backend gives, not an internal error."""
    client = await gateway(toml=FAST_DEMO)
    resp = await client.post(path, json={"model": "demo", **body})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["message"].startswith(f"Invalid type for '{key}': expected an array")
    assert error["type"] == "invalid_request_error"


async def test_capabilities_are_enforced_like_ollama(gateway):
    client = await gateway(toml=FAST_DEMO)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        with pytest.raises(ollama.ResponseError) as no_think:
            await api.chat(model="demo", messages=USER, think=True)
        with pytest.raises(ollama.ResponseError) as no_tools:
            await api.chat(model="demo-think", messages=USER, tools=[_get_weather])
    assert no_think.value.status_code == 400
    assert "does not support thinking" in no_think.value.error
    assert no_tools.value.status_code == 400


# --- demo and demo-long ------------------------------------------------------


async def test_demo_echoes_word_by_word(gateway):
    client = await gateway(toml=FAST_DEMO)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        parts = await _stream(api, model="demo", messages=USER)
    text = "".join(p.message.content for p in parts)
    assert (
        text == "Hello! This is the ollama-gateway demo backend. You said: hello there"
    )
    assert len([p for p in parts if p.message.content]) == len(text.split())
    assert parts[-1].done and parts[-1].eval_count == len(text.split())


async def test_demo_long_is_long_markdown_and_stops_at_num_predict(gateway):
    client = await gateway(toml=FAST_DEMO)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        whole = await api.chat(model="demo-long", messages=USER)
        cut = await api.chat(
            model="demo-long", messages=USER, options={"num_predict": 5}
        )
    text = whole.message.content
    assert 550 <= len(text.split()) <= 800
    assert text.startswith("# ") and "\n## " in text and "```python" in text
    assert "\n- " in text
    assert whole.done_reason == "stop"
    assert cut.done_reason == "length"
    assert cut.eval_count == 5
    assert text.startswith(cut.message.content)


async def test_stop_option_cuts_the_answer(gateway):
    reply = await _chat(
        gateway, model="demo", messages=USER, options={"stop": ["demo backend"]}
    )
    assert reply.message.content == "Hello! This is the ollama-gateway "
    assert reply.done_reason == "stop"


async def test_raw_generate_uses_legacy_completions(gateway):
    client = await gateway(toml=FAST_DEMO)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await api.generate(model="demo", prompt="raw words", raw=True)
    assert reply.response.endswith("You said: raw words")


def test_logprobs_come_per_token():
    # Checked on the demo's own events: the gateway's chunk schema cannot read
    # a `logprobs` object yet (msgspec.Raw | None only decodes null).
    body = {"model": "demo", "messages": USER, "stream": True, "logprobs": True,
            "top_logprobs": 2}  # fmt: skip
    tokens = []
    for event in demo_models.reply(body, legacy=False).events():
        payload = event.data.removeprefix(b"data: ").strip()
        if payload == b"[DONE]":
            continue
        choice = json.loads(payload)["choices"][0]
        if choice["delta"].get("content"):
            (logprob,) = choice["logprobs"]["content"]
            assert logprob["logprob"] <= 0 and len(logprob["top_logprobs"]) == 2
            assert logprob["top_logprobs"][0]["token"] == logprob["token"]
            tokens.append(logprob["token"])
    assert (
        " ".join(tokens)
        == "Hello! This is the ollama-gateway demo backend. You said: hello there"
    )
    legacy = {"model": "demo", "prompt": "hi", "stream": True, "logprobs": 1}
    first = demo_models.reply(legacy, legacy=True).events()[0].data
    assert json.loads(first[6:])["choices"][0]["logprobs"]["tokens"] == ["Hello!"]


# --- determinism and seeds ---------------------------------------------------


@pytest.mark.parametrize("model", ["demo", "demo-long", "demo-think"])
async def test_same_request_same_answer_and_the_seed_changes_it(gateway, model):
    client = await gateway(toml=FAST_DEMO)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        first = await api.chat(model=model, messages=USER, options={"seed": 1})
        again = await api.chat(model=model, messages=USER, options={"seed": 1})
        other = await api.chat(model=model, messages=USER, options={"seed": 2})
        unseeded = await api.chat(model=model, messages=USER)
        unseeded_again = await api.chat(model=model, messages=USER)
    assert first.message.content == again.message.content
    assert first.message.thinking == again.message.thinking
    assert (first.message.content, first.message.thinking) != (
        other.message.content,
        other.message.thinking,
    )
    assert unseeded.message.content == unseeded_again.message.content


# --- demo-tools --------------------------------------------------------------


def _get_weather(city: str, unit: str = "celsius") -> str:
    """Get the current weather for a city.

    Args:
        city: The name of the city
        unit: celsius or fahrenheit
    """
    return f"Sunny, 21 degrees {unit} in {city}"


async def test_tool_round_trip_with_a_python_function(gateway):
    client = await gateway(toml=FAST_DEMO)
    available = {"_get_weather": _get_weather}
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    async with ollama.AsyncClient(host=base_url(client)) as api:
        parts = await _stream(
            api, model="demo-tools", messages=messages, tools=[_get_weather]
        )
        calls = [c for p in parts for c in p.message.tool_calls or []]
        assert len(calls) == 1
        call = calls[0]
        assert call.function.name == "_get_weather"
        assert call.function.arguments["city"] == "Paris"
        result = available[call.function.name](**call.function.arguments)
        messages.append({"role": "assistant", "content": "", "tool_calls": calls})
        messages.append(
            {"role": "tool", "content": result, "tool_name": call.function.name}
        )
        final = await api.chat(
            model="demo-tools", messages=messages, tools=[_get_weather]
        )
    assert not final.message.tool_calls
    assert result in final.message.content
    assert final.done_reason == "stop"


WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string"},
                "unit": {"type": "string", "enum": ["fahrenheit", "celsius"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 3},
            },
            "required": ["location", "unit"],
        },
    },
}
BOOKING_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "book_table",
        "description": "Book a table",
        "parameters": {
            "type": "object",
            "properties": {
                "restaurant": {"type": "string", "minLength": 3},
                "party_size": {"type": "integer", "minimum": 1, "maximum": 12},
                "vegetarian": {"type": "boolean"},
                "guests": {
                    "type": "array",
                    "minItems": 2,
                    "uniqueItems": True,
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "age": {"type": "integer", "exclusiveMinimum": 17},
                        },
                        "required": ["name", "age"],
                    },
                },
            },
            "required": ["restaurant", "party_size", "vegetarian", "guests"],
            "additionalProperties": False,
        },
    },
}


def _book_table(restaurant: str, party_size: int, vegetarian: bool) -> str:
    """Book a table.

    Args:
        restaurant: Where to eat
        party_size: How many people
        vegetarian: Whether everyone is vegetarian
    """
    return f"Booked {restaurant} for {party_size}"


async def test_two_tools_give_two_parallel_calls(gateway):
    client = await gateway(toml=FAST_DEMO)
    tools = {f.__name__: f for f in (_get_weather, _book_table)}
    async with ollama.AsyncClient(host=base_url(client)) as api:
        parts = await _stream(
            api, model="demo-tools", messages=USER, tools=list(tools.values())
        )
    calls = [c for p in parts for c in p.message.tool_calls or []]
    assert [c.function.name for c in calls] == ["_get_weather", "_book_table"]
    results = [tools[c.function.name](**c.function.arguments) for c in calls]
    assert results == ["Sunny, 21 degrees celsius in Paris", "Booked example for 3"]
    assert calls[1].function.arguments["vegetarian"] is True


async def _raw_chat(gateway: Any, body: dict[str, Any]) -> dict[str, Any]:
    # The official client strips schema keywords like `minimum` from tools; the
    # gateway passes them through, so send the tools as they are.
    client = await gateway(toml=FAST_DEMO)
    resp = await client.post("/api/chat", data=json.dumps({"stream": False, **body}))
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def test_tool_arguments_fit_rich_schemas(gateway):
    body = {"model": "demo-tools", "messages": USER,
            "tools": [WEATHER_TOOL, BOOKING_TOOL]}  # fmt: skip
    seeded = {**body, "options": {"seed": 3}}
    answers = [await _raw_chat(gateway, b) for b in (body, body, seeded)]
    arguments = [
        [c["function"]["arguments"] for c in a["message"]["tool_calls"]]
        for a in answers
    ]
    for args in arguments:
        assert len(args) == 2
        for value, tool in zip(args, (WEATHER_TOOL, BOOKING_TOOL), strict=True):
            jsonschema.validate(value, tool["function"]["parameters"])
    assert arguments[0] == arguments[1] != arguments[2]
    weather, booking = arguments[0]
    assert weather == {"location": "Paris", "unit": "fahrenheit", "days": 3}
    assert len(booking["guests"]) == 2


async def test_tool_results_for_two_calls_give_one_answer(gateway):
    messages = [
        {"role": "user", "content": "both"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"location": "Oslo"}}},
            {"function": {"name": "book_table", "arguments": {"restaurant": "X"}}},
        ]},
        {"role": "tool", "content": "Snow", "tool_name": "get_weather"},
        {"role": "tool", "content": "Booked", "tool_name": "book_table"},
    ]  # fmt: skip
    reply = await _chat(
        gateway,
        model="demo-tools",
        messages=messages,
        tools=[WEATHER_TOOL, BOOKING_TOOL],
    )
    text = reply.message.content
    assert "get_weather returned Snow" in text and "book_table returned Booked" in text
    assert not reply.message.tool_calls


async def test_demo_tools_without_tools_says_so(gateway):
    reply = await _chat(gateway, model="demo-tools", messages=USER)
    assert "no tools" in reply.message.content
    assert not reply.message.tool_calls


def test_tool_arguments_are_streamed_in_fragments():
    body = {"model": "demo-tools", "messages": USER, "stream": True,
            "tools": [WEATHER_TOOL, BOOKING_TOOL]}  # fmt: skip
    events = demo_models.reply(body, legacy=False).events()
    fragments: dict[int, list[str]] = {}
    for event in events:
        payload = event.data.removeprefix(b"data: ").strip()
        if payload == b"[DONE]":
            continue
        delta = json.loads(payload)["choices"][0]["delta"]
        for call in delta.get("tool_calls", []):
            fragments.setdefault(call["index"], []).append(
                call["function"]["arguments"]
            )
    assert sorted(fragments) == [0, 1]
    for pieces in fragments.values():
        assert len(pieces) >= 3
        assert isinstance(json.loads("".join(pieces)), dict)
    assert events[-1].data == b"data: [DONE]\n\n"


def _v1_tool(name: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    return {"type": "function", "function": {"name": name, "parameters": schema}}


@pytest.mark.parametrize(
    ("extra", "called"),
    [
        ({}, ["get_weather", "get_time"]),
        ({"tool_choice": "none"}, []),
        ({"tool_choice": "required"}, ["get_weather", "get_time"]),
        (
            {"tool_choice": {"type": "function", "function": {"name": "get_time"}}},
            ["get_time"],
        ),
        ({"parallel_tool_calls": False}, ["get_weather"]),
    ],
)
async def test_demo_tools_honours_tool_choice_on_the_openai_routes(
    gateway, extra, called
):
    # `/v1` hands the body to the demo as the client sent it, and an OpenAI
    # backend honours these: the demo called every tool whatever they said.
    client = await gateway(toml=FAST_DEMO)
    tools = [_v1_tool("get_weather"), _v1_tool("get_time")]
    body = {"model": "demo-tools", "messages": USER, "tools": tools, **extra}
    resp = await client.post("/v1/chat/completions", json=body)
    assert resp.status == 200
    message = (await resp.json())["choices"][0]["message"]
    calls = message.get("tool_calls") or []
    assert [c["function"]["name"] for c in calls] == called
    if not called:
        assert 'tool_choice "none"' in message["content"]


# --- demo-think --------------------------------------------------------------


async def test_thinking_by_default_on_and_off(gateway):
    client = await gateway(toml=FAST_DEMO)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        default = await api.chat(model="demo-think", messages=USER)
        on = await api.chat(model="demo-think", messages=USER, think=True)
        off = await api.chat(model="demo-think", messages=USER, think=False)
        low = await api.chat(model="demo-think", messages=USER, think="low")
        high = await api.chat(model="demo-think", messages=USER, think="high")
        streamed = await _stream(api, model="demo-think", messages=USER)
    assert default.message.thinking and "hello there" in default.message.thinking
    assert on.message.thinking == default.message.thinking
    assert off.message.thinking is None
    assert off.message.content.startswith("Without thinking first")
    assert "hello there" in on.message.content
    assert len(low.message.thinking or "") < len(high.message.thinking or "")
    thinking_parts = [i for i, p in enumerate(streamed) if p.message.thinking]
    content_parts = [i for i, p in enumerate(streamed) if p.message.content]
    assert thinking_parts and content_parts
    assert max(thinking_parts) < min(content_parts)


async def test_generate_with_thinking(gateway):
    client = await gateway(toml=FAST_DEMO)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await api.generate(model="demo-think", prompt="why?")
        quiet = await api.generate(model="demo-think", prompt="why?", think=False)
    assert reply.thinking and "why?" in reply.thinking
    assert "why?" in reply.response
    assert quiet.thinking is None


def test_think_off_in_the_chat_template_kwargs_dialect():
    body = {"model": "demo-think", "messages": USER,
            "chat_template_kwargs": {"enable_thinking": False}}  # fmt: skip
    assert demo_models.reply(body, legacy=False).reasoning == []
    body["chat_template_kwargs"] = {"enable_thinking": True}
    assert demo_models.reply(body, legacy=False).reasoning


# --- demo-json ---------------------------------------------------------------

WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "temperature": {"type": "number", "minimum": -50, "maximum": 60},
        "conditions": {"type": "string", "enum": ["sunny", "cloudy", "rain"]},
        "forecast": {"type": "array", "minItems": 3, "items": {"$ref": "#/$defs/day"}},
        "station": {
            "type": "object",
            "properties": {
                "id": {"type": "integer", "exclusiveMinimum": 100},
                "elevation": {"type": ["number", "null"]},
            },
            "required": ["id"],
        },
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2,
                 "uniqueItems": True},
        "updated": {"type": "string", "format": "date-time"},
        "wind": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/wind"}]},
    },
    "required": ["city", "temperature", "conditions", "forecast", "station"],
    "additionalProperties": False,
    "$defs": {
        "day": {
            "type": "object",
            "properties": {
                "date": {"type": "string", "format": "date"},
                "high": {"type": "integer", "multipleOf": 5},
                "low": {"type": "integer", "maximum": 0},
            },
            "required": ["date", "high", "low"],
        },
        "wind": {
            "type": "object",
            "properties": {"speed": {"type": "number", "multipleOf": 0.1,
                                     "minimum": 0.25}},
            "required": ["speed"],
        },
    },
}  # fmt: skip


async def test_json_schema_format_gives_valid_json(gateway):
    client = await gateway(toml=FAST_DEMO)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        answers = [
            await api.chat(
                model="demo-json", messages=USER, format=WEATHER_SCHEMA, options=o
            )
            for o in ({}, {"seed": 5}, {})
        ]
    values = [json.loads(a.message.content) for a in answers]
    for value in values:
        jsonschema.validate(value, WEATHER_SCHEMA)
        assert len(value["forecast"]) == 3 and len(set(value["tags"])) == 2
    assert values[0] == values[2] != values[1]
    assert values[0]["city"] == "Paris" and values[0]["conditions"] == "sunny"


class _Station(pydantic.BaseModel):
    name: str
    altitude_m: int = pydantic.Field(ge=0, le=9000)
    kind: Literal["urban", "rural"]


class _Report(pydantic.BaseModel):
    city: str
    stations: list[_Station] = pydantic.Field(min_length=2)
    backup: _Station | None = None
    score: float = pydantic.Field(gt=0, lt=1)


async def test_pydantic_schema_round_trips(gateway):
    reply = await _chat(
        gateway,
        model="demo-json",
        messages=USER,
        format=_Report.model_json_schema(),
        stream=False,
    )
    report = _Report.model_validate_json(reply.message.content)
    assert len(report.stations) == 2 and report.stations[0].kind == "urban"


async def test_json_mode_gives_an_object_and_no_format_explains(gateway):
    client = await gateway(toml=FAST_DEMO)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        parts = await _stream(api, model="demo-json", messages=USER, format="json")
        plain = await api.chat(model="demo-json", messages=USER)
    value = json.loads("".join(p.message.content for p in parts))
    assert isinstance(value, dict) and value["you_said"] == "hello there"
    assert len([p for p in parts if p.message.content]) > 3
    assert 'format: "json"' in plain.message.content
    with pytest.raises(json.JSONDecodeError):
        json.loads(plain.message.content)


async def test_thinking_model_formats_only_the_answer(gateway):
    reply = await _chat(
        gateway, model="demo-think", messages=USER, format=WEATHER_SCHEMA
    )
    assert reply.message.thinking
    jsonschema.validate(json.loads(reply.message.content), WEATHER_SCHEMA)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 3,
         "uniqueItems": True},
        {"type": "number", "multipleOf": 0.1, "minimum": 0.15, "maximum": 0.25},
        {"type": "number", "multipleOf": 0.25, "exclusiveMinimum": 0.5},
        {"type": "integer", "exclusiveMaximum": 10, "exclusiveMinimum": 8},
        {"type": "string", "minLength": 20, "maxLength": 25},
        {"type": "string", "maxLength": 2},
        {"const": {"fixed": [1, 2]}},
        {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}},
                    "required": ["a"]},
                   {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}]},
        {"oneOf": [{"type": "null"}, {"type": "string", "format": "email"}]},
        {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}],
         "minItems": 2},
        {"type": "object", "minProperties": 3,
         "additionalProperties": {"type": "integer"}},
        {"type": "array", "contains": {"const": 7}, "items": {"type": "integer"}},
        {"$ref": "#/$defs/node", "$defs": {"node": {
            "type": "object",
            "properties": {"value": {"type": "integer"},
                           "children": {"type": "array",
                                        "items": {"$ref": "#/$defs/node"}}},
            "required": ["value"]}}},
        {"type": "object", "properties": {"name": {"type": "string"}},
         "required": ["name", "undeclared"]},
    ],
)  # fmt: skip
def test_schema_instances_validate(schema):
    for seed in (None, 0, 7, 12345):
        jsonschema.validate(instance(schema, seed=seed), schema)


def test_schema_instance_reads_the_python_clients_type_strings():
    schema = {"type": "object", "properties": {"count": {"type": "integer, string"}},
              "required": ["count"]}  # fmt: skip
    assert instance(schema) == {"count": 3}


# --- demo-vision ---------------------------------------------------------------


def _gif(width: int, height: int) -> bytes:
    return (
        b"GIF89a"
        + struct.pack("<HHBBB", width, height, 0, 0, 0)
        + b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    )


async def test_vision_reports_image_types_and_sizes(gateway):
    png, gif = make_png(3, 2), _gif(5, 4)
    client = await gateway(toml=FAST_DEMO)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await api.chat(
            model="demo-vision",
            messages=[{"role": "user", "content": "what is this?", "images": [png]}],
        )
        two = await api.chat(
            model="demo-vision",
            messages=[{"role": "user", "content": "and these?", "images": [png, gif]}],
        )
        none = await api.chat(model="demo-vision", messages=USER)
    text = reply.message.content
    assert "I received 1 image." in text
    assert f"image/png, {len(png)} bytes, PNG 3×2 pixels" in text
    assert "I received 2 images." in two.message.content
    assert f"image/gif, {len(gif)} bytes, GIF 5×4 pixels" in two.message.content
    assert "no image" in none.message.content


def test_image_headers_of_every_supported_format():
    jpeg = (
        b"\xff\xd8\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9)
        + b"\xff\xc2" + struct.pack(">HBHHB", 11, 8, 480, 640, 1) + bytes(3)
    )  # fmt: skip
    vp8x = (
        b"RIFF" + struct.pack("<I", 22) + b"WEBPVP8X" + struct.pack("<I", 10)
        + bytes(4) + (799).to_bytes(3, "little") + (599).to_bytes(3, "little")
    )  # fmt: skip
    vp8l = b"RIFF\x00\x00\x00\x00WEBPVP8L\x00\x00\x00\x00\x2f" + struct.pack(
        "<I", (16 - 1) | ((9 - 1) << 14)
    )
    assert image_size(make_png(7, 9)) == ("PNG", 7, 9)
    assert image_size(_gif(300, 200)) == ("GIF", 300, 200)
    assert image_size(jpeg) == ("JPEG", 640, 480)
    assert image_size(vp8x) == ("WEBP", 800, 600)
    assert image_size(vp8l) == ("WEBP", 16, 9)
    assert image_size(b"not an image") is None


# --- demo-embed ----------------------------------------------------------------


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_embeddings_are_deterministic_and_similar_for_similar_texts(gateway):
    texts = [
        "The cat sat on the mat.",
        "The cat sat on a mat!",
        "Quarterly revenue exceeded every forecast.",
    ]
    client = await gateway(toml=FAST_DEMO)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        first = await api.embed(model="demo-embed", input=texts)
        again = await api.embed(model="demo-embed", input=texts)
        short = await api.embed(model="demo-embed", input=texts[0], dimensions=64)
        legacy = await api.embeddings(model="demo-embed", prompt=texts[0])
    vectors = [list(v) for v in first.embeddings]
    assert vectors == [list(v) for v in again.embeddings]
    assert all(len(v) == 256 for v in vectors)
    assert all(math.isclose(_cosine(v, v), 1.0) for v in vectors)
    assert _cosine(vectors[0], vectors[1]) > 0.5 > _cosine(vectors[0], vectors[2])
    assert len(short.embeddings[0]) == 64
    assert list(legacy.embedding) == pytest.approx(vectors[0])
    assert first.prompt_eval_count == sum(len(t.split()) for t in texts)


async def test_v1_embeddings_honour_encoding_format(gateway):
    # OpenAI's SDKs send `encoding_format: "base64"` by default; the Node one
    # then decodes each `embedding` as base64 little-endian float32, so a float
    # list came out as garbage numbers.
    client = await gateway(toml=FAST_DEMO)
    body = {"model": "demo-embed", "input": ["a cat", "a dog"]}
    floats = await client.post("/v1/embeddings", json=body)
    as_b64 = {**body, "encoding_format": "base64"}
    packed = await client.post("/v1/embeddings", json=as_b64)
    bad = await client.post("/v1/embeddings", json={**body, "encoding_format": "int8"})
    assert floats.status == packed.status == 200
    expected = [d["embedding"] for d in (await floats.json())["data"]]
    for want, got in zip(expected, (await packed.json())["data"], strict=True):
        raw = base64.b64decode(got["embedding"])
        floats_back = struct.unpack(f"<{len(raw) // 4}f", raw)
        assert list(floats_back) == pytest.approx(want, abs=1e-6)
    assert bad.status == 400
    message = (await bad.json())["error"]["message"]
    assert "Supported values: ['float', 'base64']" in message


async def test_embed_model_cannot_chat(gateway):
    client = await gateway(toml=FAST_DEMO)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        with pytest.raises(ollama.ResponseError) as err:
            await api.chat(model="demo-embed", messages=USER)
    assert err.value.status_code == 400


# --- demo-error ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "status", "words"),
    [
        ("429", 429, "Rate limit reached"),
        ("500", 500, "error while processing"),
        ("503", 503, "overloaded"),
        ("401", 502, "upstream authentication failed"),
    ],
)
async def test_status_errors_come_before_the_stream(gateway, tag, status, words):
    client = await gateway(toml=FAST_DEMO)
    model = f"demo-error:{tag}"
    async with ollama.AsyncClient(host=base_url(client)) as api:
        with pytest.raises(ollama.ResponseError) as whole:
            await api.chat(model=model, messages=USER)
        received = []
        with pytest.raises(ollama.ResponseError) as streamed:
            async for part in await api.chat(model=model, messages=USER, stream=True):
                received.append(part)
    assert received == []
    for err in (whole.value, streamed.value):
        assert err.status_code == status
        assert words in err.error


async def test_demo_transport_sends_retry_after_with_429():
    transport = DemoTransport(DemoConfig(tokens_per_second=0), None)
    body = msgspec.json.encode({"model": "demo-error:429", "messages": USER})
    request = UpstreamRequest(
        method="POST",
        path="/chat/completions",
        body=body,
        backend=BackendSettings(name="demo", demo=True),
    )
    ctx = RequestContext(request_id="t", endpoint="chat", model="demo-error:429")
    response = await transport.send(request, ctx)
    assert response.status == 429
    assert response.headers["Retry-After"] == "1"
    error = json.loads(await response.aread())["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"


@pytest.mark.parametrize(
    ("tag", "words", "received"),
    [
        ("drop", "unexpected EOF", 3),
        ("midstream", "simulated mid-stream error", 3),
        ("stall", "timeout", 1),
        ("invalid", "invalid event", 3),
    ],
)
async def test_stream_failures_end_with_an_error_line(gateway, tag, words, received):
    client = await gateway(toml=STALL_TOML)
    parts = []
    async with ollama.AsyncClient(host=base_url(client)) as api:
        with pytest.raises(ollama.ResponseError) as err:
            async for part in await api.chat(
                model=f"demo-error:{tag}", messages=USER, stream=True
            ):
                parts.append(part)
    assert err.value.status_code == -1  # an error line after a 200
    assert words in err.value.error
    assert len([p for p in parts if p.message.content]) == received
    assert not any(p.done for p in parts)


@pytest.mark.parametrize("tag", ["drop", "midstream", "invalid"])
async def test_stream_failures_without_streaming_are_errors(gateway, tag):
    client = await gateway(toml=FAST_DEMO)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        with pytest.raises(ollama.ResponseError) as err:
            await api.chat(model=f"demo-error:{tag}", messages=USER)
    assert err.value.status_code >= 500


async def test_drop_breaks_a_whole_answer_on_the_openai_routes(gateway):
    # A real backend's cut body reaches the client as a broken connection. The
    # demo ended its half answer cleanly, so `/v1` sent it with status 200 as
    # a whole one, and OpenAI's SDKs raised a JSON decoding error.
    client = await gateway(toml=FAST_DEMO)
    body = {"model": "demo-error:drop", "messages": USER}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
    native = await client.post("/api/chat", json={**body, "stream": False})
    assert native.status == 502
    assert "unexpected EOF" in (await native.json())["error"]


async def test_untagged_demo_error_lists_the_tags(gateway):
    reply = await _chat(gateway, model="demo-error", messages=USER)
    for tag in ERROR_TAGS:
        assert f"demo-error:{tag}" in reply.message.content
    assert {m.id for m in MODELS} >= {f"demo-error:{t}" for t in ERROR_TAGS}


# --- pacing --------------------------------------------------------------------


async def test_configured_token_rate_paces_the_stream(gateway):
    toml = "[translators.demo]\ntokens_per_second = 20\n"
    client = await gateway(toml=toml)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        started = time.monotonic()
        parts = await _stream(api, model="demo", messages=[
            {"role": "user", "content": "hi"}])  # fmt: skip
        elapsed = time.monotonic() - started
    assert parts[-1].eval_count == 10
    assert elapsed >= 0.4


async def test_system_prompt_markers_pace_one_request(gateway):
    client = await gateway(toml=FAST_DEMO)
    system = "demo:tokens_per_second=20 demo:first_token_delay=0.3"
    messages = [{"role": "system", "content": system},
                {"role": "user", "content": "hi"}]  # fmt: skip
    async with ollama.AsyncClient(host=base_url(client)) as api:
        started = time.monotonic()
        parts = await _stream(api, model="demo", messages=messages)
        first = next(i for i, p in enumerate(parts) if p.message.content)
        elapsed = time.monotonic() - started
    assert first == 0 and parts[-1].eval_count == 10
    assert elapsed >= 0.3 + 0.4
    assert parts[-1].prompt_eval_duration >= 0.3e9


async def test_demo_code_fills_in_the_middle(gateway):
    client = await gateway(toml=FAST_DEMO)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        show = await api.show("demo-code")
        reply = await api.generate(
            model="demo-code", prompt="def add(a, b):\n", suffix="\nprint(add(1, 2))"
        )
        raw = await api.generate(model="demo-code", prompt="x = ", raw=True)
        with pytest.raises(ollama.ResponseError) as info:
            await api.generate(model="demo", prompt="x", suffix="y")
    assert "insert" in (show.capabilities or [])
    assert (
        reply.response == "# demo-code: between 'def add(a, b):' and 'print(add(1, 2))'"
    )
    assert reply.done and reply.done_reason == "stop"
    assert raw.response == "# demo-code: between 'x =' and ''"
    assert info.value.status_code == 400
    assert (
        info.value.error
        == "registry.ollama.ai/library/demo:latest does not support insert"
    )
