"""What Ollama clients send, against a backend that validates as OpenAI's does.

The backend here refuses a chat body with a 400 wherever api.openai.com
refuses it, in OpenAI's words; the official client sends what real clients
send (Continue a temperature and its template's stop list, Open WebUI its
presets), and every chat must get its answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import ollama
import pytest
from aiohttp import web

from tests.conftest import MakeGateway, base_url
from tests.fakebackend import FakeBackend

MESSAGES = [{"role": "user", "content": "hi"}]
# OpenAI's reasoning models, as OpenAI and Azure name them; gpt-5-chat is not one.
REASONING = re.compile(r"^(o[134]([-:.]|$)|gpt-5(?!-chat))", re.I)
# Those that take temperature, top_p and logprobs with reasoning off.
UNREASONED = re.compile(r"^gpt-5\.[1-9]", re.I)
# What Ollama's clients send, unasked by the user.
CLIENT_OPTIONS = {
    "temperature": 0.7,
    "top_p": 0.9,
    "presence_penalty": 0.5,
    "frequency_penalty": 0.5,
    "stop": ["<|im_end|>", "<|endoftext|>"],
}
SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


def openai_refusal(body: dict[str, Any]) -> str | None:
    """What api.openai.com answers a body with a 400; None if it takes it."""
    inputs = body.get("input")
    if isinstance(inputs, list) and len(inputs) > 2048:
        return (
            "Invalid 'input': array too long. Expected an array with maximum "
            f"length 2048, but got an array with length {len(inputs)} instead."
        )
    stop = body.get("stop")
    if isinstance(stop, list) and len(stop) > 4:
        return (
            "Invalid 'stop': array too long. Expected an array with maximum "
            f"length 4, but got an array with length {len(stop)} instead."
        )
    temperature = body.get("temperature")
    if temperature is not None and temperature > 2:
        return (
            "Invalid 'temperature': decimal above maximum value. Expected a "
            f"value <= 2, but got {temperature} instead."
        )
    for tool in body.get("tools", []):
        name, parameters = tool["function"]["name"], tool["function"]["parameters"]
        if parameters.get("type") != "object":
            got = parameters.get("type")
            return (
                f"Invalid schema for function '{name}': schema must be a JSON "
                f"Schema of 'type: \"object\"', got 'type: \"{got}\"'."
            )
        if "properties" not in parameters:
            return (
                f"Invalid schema for function '{name}': In context=(), object "
                "schema missing properties."
            )
    format_refused = _format_refusal(body)
    if format_refused is not None:
        return format_refused
    model = body["model"]
    limit = body.get("max_tokens", 0)
    if limit > 16384 and model == "gpt-4o":
        return (
            f"max_tokens is too large: {limit}. This model supports at most "
            f"16384 completion tokens, whereas you provided {limit}."
        )
    if not REASONING.match(model):
        return None
    refused = ["presence_penalty", "frequency_penalty", "stop"]
    if not (UNREASONED.match(model) and body.get("reasoning_effort") == "none"):
        if temperature is not None and temperature != 1:
            return (
                f"Unsupported value: 'temperature' does not support {temperature} "
                "with this model. Only the default (1) value is supported."
            )
        refused += ["top_p", "logprobs", "top_logprobs"]
    for name in refused:
        if name in body:
            return f"Unsupported parameter: '{name}' is not supported with this model."
    return None


def _format_refusal(body: dict[str, Any]) -> str | None:
    """OpenAI's 400s for a `response_format`: JSON mode wants the word
    "json" in a message, structured outputs (strict or not) an object root."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        texts = [json.dumps(m.get("content")) for m in body.get("messages", [])]
        if not any("json" in text.lower() for text in texts):
            return (
                "'messages' must contain the word 'json' in some form, to use "
                "'response_format' of type 'json_object'."
            )
    if fmt.get("type") == "json_schema":
        schema = fmt["json_schema"]["schema"]
        if schema.get("type") != "object" or "anyOf" in schema:
            return (
                "Invalid schema for response_format 'schema': schema must be a "
                "JSON Schema of 'type: \"object\"', got "
                f"'type: \"{schema.get('type')}\"'."
            )
    return None


def vllm_refusal(body: dict[str, Any]) -> str | None:
    """What vLLM (and SGLang) answer a chat body with a 400, for a model
    served with a context of 4096 tokens."""
    top_p = body.get("top_p")
    if top_p is not None and not 0 < top_p <= 1:
        return f"top_p must be in (0, 1], got {top_p}."
    prompt = sum(len(str(m.get("content")).split()) for m in body["messages"])
    if prompt > 4096:
        return (
            "This model's maximum context length is 4096 tokens. However, your "
            f"request has {prompt} input tokens. Please reduce the length of "
            "the input messages."
        )
    limit = body.get("max_tokens", 0)
    if prompt + limit > 4096:
        return (
            "This model's maximum context length is 4096 tokens. However, you "
            f"requested {prompt + limit} tokens ({prompt} in the messages, "
            f"{limit} in the completion). Please reduce the length of the "
            "messages or completion."
        )
    return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StrictBackend(FakeBackend):
    """The fake backend, keeping the bodies it refused too."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[dict[str, Any]] = []


# A refusal's message (a 400 in OpenAI's shape), or its status and JSON body
# in a provider's own shape; None takes the body.
Refusal = Callable[[dict[str, Any]], str | tuple[int, Any] | None]


async def started_strict(aiohttp_server: Any, refusal: Refusal) -> StrictBackend:
    """The fake backend, refusing what `refusal` names."""

    @web.middleware
    async def validate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "POST":
            body = await request.json()
            refused = refusal(body)
            if isinstance(refused, tuple):
                fake.refused.append(body)
                return web.json_response(refused[1], status=refused[0])
            if refused is not None:
                fake.refused.append(body)
                error = {"message": refused, "type": "invalid_request_error"}
                return web.json_response({"error": error}, status=400)
        return await handler(request)

    fake = StrictBackend()
    fake.app.middlewares.append(validate)
    server = await aiohttp_server(fake.app)
    fake.url = str(server.make_url("/v1"))
    return fake


@pytest.fixture
async def strict(aiohttp_server: Any) -> StrictBackend:
    return await started_strict(aiohttp_server, openai_refusal)


@pytest.fixture
async def vllm(aiohttp_server: Any) -> StrictBackend:
    return await started_strict(aiohttp_server, vllm_refusal)


async def _chat(gateway: MakeGateway, fake: FakeBackend, **kwargs: Any) -> Any:
    model = kwargs.setdefault("model", "gpt-4o")
    fake.models = [{"id": model, "object": "model"}]
    client = await gateway(fake)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await api.chat(messages=MESSAGES, **kwargs)
    assert reply.message.content == "Hello from fake"
    body: dict[str, Any] = fake.completions()[-1].body
    return body


@pytest.mark.parametrize(
    "model",
    [
        "o3-mini",
        "o1",
        "o4-mini-2025-04-16",
        "gpt-5",
        "gpt-5-mini",
        "GPT-5.1",
        "gpt-5.1-chat-latest",
    ],
)
async def test_openais_reasoning_models_answer_clients_sampling_options(
    gateway: MakeGateway, strict: FakeBackend, model: str
) -> None:
    body = await _chat(
        gateway, strict, model=model, options=CLIENT_OPTIONS, logprobs=True
    )
    for name in (*SAMPLING, "stop", "logprobs", "top_logprobs"):
        assert name not in body, name


async def test_gpt_5_1_with_reasoning_off_keeps_its_sampling(
    gateway: MakeGateway, strict: FakeBackend
) -> None:
    body = await _chat(
        gateway, strict, model="gpt-5.1", think=False, options=CLIENT_OPTIONS
    )
    assert body["reasoning_effort"] == "none"
    assert (body["temperature"], body["top_p"]) == (0.7, 0.9)
    for name in ("presence_penalty", "frequency_penalty", "stop"):
        assert name not in body, name


@pytest.mark.parametrize(
    "model", ["gpt-5-chat-latest", "gpt-4o", "openai/o3", "deepseek-r1"]
)
async def test_other_models_keep_every_sampling_option(
    gateway: MakeGateway, strict: FakeBackend, model: str
) -> None:
    body = await _chat(gateway, strict, model=model, options=CLIENT_OPTIONS)
    assert {name: body[name] for name in CLIENT_OPTIONS} == CLIENT_OPTIONS


async def _chat_at(
    gateway: MakeGateway,
    fake: FakeBackend,
    base: str,
    options: dict[str, Any],
    more: str = "",
) -> dict[str, Any]:
    """A chat through a backend named by `base` (its table ends with `more`),
    which the environment's proxy (the fake) serves whatever its host."""
    toml = f'[[backends]]\nname = "b"\nbase_url = "{base}"\napi_key = "sk-test"\n'
    toml += more
    client = await gateway(toml=toml)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await api.chat(model="gpt-4o", messages=MESSAGES, options=options)
    assert reply.message.content == "Hello from fake"
    body: dict[str, Any] = fake.completions()[-1].body
    return body


CONTINUE_STOPS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "\n\n\n", "```"]


async def test_openais_api_gets_its_own_limits(
    gateway: MakeGateway, strict: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenAI refuses more than 4 stop sequences and a temperature above 2;
    Ollama takes both. Only the first 4 stops go, and a temperature of 2."""
    monkeypatch.setenv("HTTP_PROXY", strict.url.removesuffix("/v1"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the client's way to the gateway
    options = {"stop": CONTINUE_STOPS, "temperature": 3}
    body = await _chat_at(gateway, strict, "http://api.openai.com/v1", options)
    assert body["stop"] == CONTINUE_STOPS[:4]
    assert body["temperature"] == 2


async def test_a_backend_said_to_be_openai_hosted_gets_its_limits(
    gateway: MakeGateway, strict: FakeBackend
) -> None:
    """Azure OpenAI behind a name of its own (an API Management gateway, a
    private endpoint) has Azure's limits, which its host does not show."""
    options = {"stop": CONTINUE_STOPS, "temperature": 3}
    more = "openai_hosted = true\n"
    body = await _chat_at(gateway, strict, strict.url, options, more)
    assert body["stop"] == CONTINUE_STOPS[:4]
    assert body["temperature"] == 2


async def test_a_backend_said_not_to_be_openai_hosted_gets_every_stop(
    gateway: MakeGateway, backend: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server of open models behind a look-alike host (a proxy named so)."""
    monkeypatch.setenv("HTTP_PROXY", backend.url.removesuffix("/v1"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    options = {"stop": CONTINUE_STOPS, "temperature": 3}
    more = "openai_hosted = false\n"
    body = await _chat_at(gateway, backend, "http://api.openai.com/v1", options, more)
    assert body["stop"] == CONTINUE_STOPS
    assert body["temperature"] == 3


async def test_other_backends_get_every_stop_and_temperature(
    gateway: MakeGateway, backend: FakeBackend
) -> None:
    """vLLM and llama.cpp's server take more: nothing is cut for them."""
    options = {"stop": CONTINUE_STOPS, "temperature": 3}
    body = await _chat_at(gateway, backend, backend.url, options)
    assert body["stop"] == CONTINUE_STOPS
    assert body["temperature"] == 3


@pytest.mark.parametrize("top_p", [0, -1])
async def test_greedy_top_p_is_taken_by_vllm(
    gateway: MakeGateway, vllm: FakeBackend, top_p: float
) -> None:
    """Ollama's top_p 0 keeps the likeliest token only; vLLM refuses a 0."""
    body = await _chat(gateway, vllm, options={"top_p": top_p})
    assert 0 < body["top_p"] <= 1e-9


# -- what Ollama refuses goes to no backend ------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        (
            "/api/embed",
            {"model": "text-embedding-3-small", "input": "x", "dimensions": 2**64},
            "invalid value for dimensions: expected int <= 9223372036854775807",
        ),
        (
            "/api/generate",
            {"model": "gpt-4o", "prompt": "x", "context": [1, -(2**63) - 1]},
            "invalid value for context[1]: expected int >= -9223372036854775808",
        ),
        (
            "/api/chat",
            {"model": "gpt-4o", "messages": MESSAGES, "tools": [1]},
            "invalid value for tools[0]: expected object, got int",
        ),
        (
            "/api/chat",
            {"model": "gpt-4o", "messages": MESSAGES, "tools": [{}, "f"]},
            "invalid value for tools[1]: expected object, got str",
        ),
    ],
)
async def test_what_ollama_cannot_decode_is_its_400(
    gateway: MakeGateway, strict: FakeBackend, path: str, body: Any, error: str
) -> None:
    """Ollama decodes these into Go ints and tool structs and refuses the
    request when they do not fit; a backend would take them or refuse them
    in its own words."""
    client = await gateway(strict)
    resp = await client.post(path, json={**body, "stream": False})
    assert resp.status == 400
    assert await resp.json() == {"error": error}
    assert strict.completions() == []
    assert not [r for r in strict.requests if r.path.endswith("/embeddings")]


async def test_a_null_tool_offers_nothing(
    gateway: MakeGateway, strict: FakeBackend
) -> None:
    """Ollama takes a null tool as an empty one; OpenAI refuses a null."""
    parameters = {"type": "object", "properties": {}}
    function = {"name": "f", "description": "", "parameters": parameters}
    tool = {"type": "function", "function": function}
    client = await gateway(strict)
    for tools, sent in (([None, tool, None], [tool]), ([None], None)):
        body = {"model": "gpt-4o", "messages": MESSAGES, "tools": tools}
        resp = await client.post("/api/chat", json={**body, "stream": False})
        assert resp.status == 200, await resp.text()
        assert strict.completions()[-1].body.get("tools") == sent


@pytest.mark.parametrize("parameters", [{"type": "object"}, {}])
async def test_a_tool_without_arguments_is_offered(
    gateway: MakeGateway, strict: FakeBackend, parameters: dict[str, Any]
) -> None:
    """MCP servers describe a tool without arguments as `{"type": "object"}`,
    and the official client sends no `properties` when there are none; Ollama
    takes both, OpenAI neither."""
    function = {"name": "now", "description": "The time", "parameters": parameters}
    # The second without a description (the official client then sends
    # none): its parameters are completed too.
    bare = {"function": {"name": "then", "parameters": dict(parameters)}}
    tools = [{"type": "function", "function": function}, bare]
    body = await _chat(gateway, strict, tools=tools)
    sent = [tool["function"]["parameters"] for tool in body["tools"]]
    assert sent == [{"type": "object", "properties": {}}] * 2


async def test_openais_api_embeds_a_large_document_set_in_parts(
    gateway: MakeGateway, strict: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LangChain's OllamaEmbeddings sends every chunk of a document set in one
    request; OpenAI embeds at most 2048 inputs in one."""
    monkeypatch.setenv("HTTP_PROXY", strict.url.removesuffix("/v1"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    toml = '[[backends]]\nname = "b"\nbase_url = "http://api.openai.com/v1"\n'
    client = await gateway(toml=toml)
    texts = [f"chunk {i}" for i in range(2048 * 2 + 5)]
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await api.embed(model="text-embedding-3-small", input=texts)
    assert len(reply.embeddings) == len(texts)
    assert reply.prompt_eval_count == 2 * len(texts)
    sent = [r.body["input"] for r in strict.requests if r.path.endswith("embeddings")]
    assert sent == [texts[:2048], texts[2048:4096], texts[4096:]]


async def test_a_backend_said_to_be_openai_hosted_embeds_in_parts(
    gateway: MakeGateway, strict: FakeBackend
) -> None:
    toml = (
        f'[[backends]]\nname = "b"\nbase_url = "{strict.url}"\nopenai_hosted = true\n'
    )
    client = await gateway(toml=toml)
    texts = [f"chunk {i}" for i in range(2049)]
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await api.embed(model="text-embedding-3-small", input=texts)
    assert len(reply.embeddings) == len(texts)
    sent = [r.body["input"] for r in strict.requests if r.path.endswith("embeddings")]
    assert sent == [texts[:2048], texts[2048:]]


async def test_other_backends_embed_a_large_document_set_at_once(
    gateway: MakeGateway, backend: FakeBackend
) -> None:
    client = await gateway(backend)
    texts = [f"chunk {i}" for i in range(2049)]
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await api.embed(model="text-embedding-3-small", input=texts)
    assert len(reply.embeddings) == len(texts)
    sent = [r.body["input"] for r in backend.requests if r.path.endswith("embeddings")]
    assert sent == [texts]


@pytest.mark.parametrize(("kind", "limit"), [("vllm", 4096), ("openai", 32768)])
async def test_an_output_limit_past_the_models_is_a_cap_it_need_not_reach(
    gateway: MakeGateway,
    vllm: StrictBackend,
    strict: StrictBackend,
    kind: str,
    limit: int,
) -> None:
    """Continue sends its num_predict (4096) to any model; Ollama stops at
    the context's end, vLLM refuses a limit past it, OpenAI one past the
    model's most. The chat is asked once more without it."""
    fake = vllm if kind == "vllm" else strict
    body = await _chat(gateway, fake, options={"num_predict": limit})
    assert "max_tokens" not in body
    assert [refused["max_tokens"] for refused in fake.refused] == [limit]
    assert len(fake.completions()) == 1


async def test_a_prompt_past_the_context_is_not_asked_again(
    gateway: MakeGateway, vllm: StrictBackend
) -> None:
    client = await gateway(vllm)
    messages = [{"role": "user", "content": "word " * 5000}]
    async with ollama.AsyncClient(host=base_url(client)) as api:
        with pytest.raises(ollama.ResponseError) as refused:
            await api.chat(
                model="gpt-4o", messages=messages, options={"num_predict": 100}
            )
    assert refused.value.status_code == 400
    assert "maximum context length" in refused.value.error
    assert len(vllm.refused) == 1
