"""Third-party OpenAI-compatible APIs that refuse a field OpenAI takes.

Each fake backend here refuses as the provider does, in its own status and
body shape; the official client sends what Ollama's clients send, and every
chat must get its answer, asked once more without the refused field only.
"""

from __future__ import annotations

import json
from typing import Any

import ollama
import pytest

from ollama_gateway.errors import upstream_error_message
from ollama_gateway.refusals import amend, refused_fields
from ollama_gateway.settings import BackendSettings
from tests.conftest import MakeGateway, base_url
from tests.fakebackend import FakeBackend
from tests.test_strict_backends import Refusal, StrictBackend, started_strict

MESSAGES = [{"role": "user", "content": "hi"}]


def mistral(body: dict[str, Any]) -> tuple[int, Any] | None:
    """api.mistral.ai: pydantic forbids fields it does not know (422)."""
    if "stream_options" not in body:
        return None
    detail = {
        "type": "extra_forbidden",
        "loc": ["body", "stream_options", "include_usage"],
        "msg": "Extra inputs are not permitted",
        "input": True,
    }
    return 422, {
        "object": "error",
        "message": {"detail": [detail]},
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def gemini(body: dict[str, Any]) -> tuple[int, Any] | None:
    """Gemini's OpenAI-compatible endpoint: unknown names are a 400, its body
    a list of one error."""
    unknown = [name for name in ("seed", "frequency_penalty") if name in body]
    if not unknown:
        return None
    texts = [
        f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
        for name in unknown
    ]
    error = {
        "code": 400,
        "message": "\n".join(texts),
        "status": "INVALID_ARGUMENT",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"description": text} for text in texts],
            }
        ],
    }
    return 400, [{"error": error}]


def deepseek_reasoner(body: dict[str, Any]) -> tuple[int, Any] | None:
    """DeepSeek's reasoner as it answered in January 2025."""
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        if name in body:
            message = f"deepseek-reasoner does not support the parameter `{name}`"
            error = {"message": message, "type": "invalid_request_error"}
            return 400, {"error": error}
    return None


def lm_studio(body: dict[str, Any]) -> tuple[int, Any] | None:
    """LM Studio's server: JSON mode is refused, a schema taken."""
    if body.get("response_format", {}).get("type") == "json_object":
        message = "'response_format.type' must be 'json_schema' or 'text'"
        return 400, {"error": message}
    return None


def tgi(body: dict[str, Any]) -> tuple[int, Any] | None:
    """Hugging Face's text-generation-inference: a top_p below 1 only."""
    top_p = body.get("top_p")
    if top_p is not None and not 0 < top_p < 1:
        error = "Input validation error: `top_p` must be > 0.0 and < 1.0"
        return 422, {"error": error, "error_type": "validation"}
    return None


def gemini_stops(body: dict[str, Any]) -> tuple[int, Any] | None:
    """Gemini's limit of 5 stop sequences."""
    stop = body.get("stop") or []
    if len(stop) > 5:
        message = "the number of stop_sequences must not exceed 5"
        return 400, [{"error": {"code": 400, "message": message}}]
    return None


def fireworks(body: dict[str, Any]) -> tuple[int, Any] | None:
    """Fireworks: a large output limit in a stream only."""
    if body.get("max_tokens", 0) > 4096 and not body.get("stream"):
        message = "Requests with max_tokens > 4096 must have stream=true"
        error = {"message": message, "param": "max_tokens", "code": "BAD_REQUEST"}
        return 400, {"error": {**error, "type": "error"}}
    return None


def refuses_everything(body: dict[str, Any]) -> tuple[int, Any] | None:
    """A backend whose refusal names a field the gateway must keep."""
    message = 'Unknown name "messages": Cannot find field.'
    return 400, {"error": {"message": message, "type": "invalid_request_error"}}


async def started(aiohttp_server: Any, refusal: Refusal) -> StrictBackend:
    fake = await started_strict(aiohttp_server, refusal)
    fake.models = [{"id": "some-model", "object": "model"}]
    return fake


async def _chat(gateway: MakeGateway, fake: FakeBackend, **kwargs: Any) -> str:
    """The answer's text, streamed or whole."""
    client = await gateway(fake)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await api.chat(model="some-model", messages=MESSAGES, **kwargs)
        if not kwargs.get("stream"):
            return str(reply.message.content)
        return "".join([part.message.content async for part in reply])


@pytest.mark.parametrize("stream", [False, True])
async def test_mistral_refusing_stream_options_answers(
    gateway: MakeGateway, aiohttp_server: Any, stream: bool
) -> None:
    """Every stream asks for usage; Mistral's API refuses the field (and
    sends usage anyway)."""
    fake = await started(aiohttp_server, mistral)
    assert await _chat(gateway, fake, stream=stream) == "Hello from fake"
    assert [sorted(body) for body in fake.refused] == [
        ["messages", "model", "stream", "stream_options"]
    ]
    sent = fake.completions()[-1].body
    assert "stream_options" not in sent
    assert sent == {k: v for k, v in fake.refused[0].items() if k != "stream_options"}
    assert len(fake.completions()) == 1


async def test_gemini_refusing_seed_and_penalty_answers(
    gateway: MakeGateway, aiohttp_server: Any
) -> None:
    fake = await started(aiohttp_server, gemini)
    options = {"seed": 42, "frequency_penalty": 0.5, "temperature": 0.2}
    assert await _chat(gateway, fake, options=options) == "Hello from fake"
    assert len(fake.refused) == 1
    sent = fake.completions()[-1].body
    assert "seed" not in sent and "frequency_penalty" not in sent
    assert sent["temperature"] == 0.2


async def test_deepseek_reasoner_refusing_one_option_at_a_time_is_asked_once(
    gateway: MakeGateway, aiohttp_server: Any
) -> None:
    """One resend only: a backend that refuses the next field then has its
    refusal passed on, as the client would see it without the gateway."""
    fake = await started(aiohttp_server, deepseek_reasoner)
    with pytest.raises(ollama.ResponseError) as refused:
        await _chat(gateway, fake, options={"temperature": 0.6, "top_p": 0.9})
    assert refused.value.status_code == 400
    assert "does not support the parameter `top_p`" in refused.value.error
    assert [("temperature" in b, "top_p" in b) for b in fake.refused] == [
        (True, True),
        (False, True),
    ]


async def test_deepseek_reasoner_refusing_its_one_option_answers(
    gateway: MakeGateway, aiohttp_server: Any
) -> None:
    fake = await started(aiohttp_server, deepseek_reasoner)
    answer = await _chat(gateway, fake, options={"temperature": 0.6})
    assert answer == "Hello from fake"
    assert "temperature" not in fake.completions()[-1].body


@pytest.fixture
async def mistral_api(
    aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> StrictBackend:
    """The Mistral-like backend, reached for any host through the
    environment's proxy (as tests/test_openai_format.py reaches OpenAI's)."""
    fake = await started(aiohttp_server, mistral)
    monkeypatch.setenv("HTTP_PROXY", fake.url.removesuffix("/v1"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the client's way to the gateway
    return fake


@pytest.mark.parametrize(("setting", "refused"), [("", 0), ("stream_usage = true", 1)])
async def test_mistrals_api_is_not_asked_for_stream_usage(
    gateway: MakeGateway, mistral_api: StrictBackend, setting: str, refused: int
) -> None:
    """Unset, `stream_usage` is off for api.mistral.ai, so no stream costs a
    refused request first; set, it is asked (and answered once more)."""
    toml = (
        '[[backends]]\nname = "mistral"\nbase_url = "http://api.mistral.ai/v1"\n'
        f'api_key = "k"\nmodels = ["some-model"]\n{setting}\n'
    )
    client = await gateway(toml=toml)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await api.chat(model="some-model", messages=MESSAGES)
    assert reply.message.content == "Hello from fake"
    assert len(mistral_api.refused) == refused
    assert "stream_options" not in mistral_api.completions()[-1].body


@pytest.mark.parametrize(
    ("base", "asks"),
    [
        ("https://api.mistral.ai/v1", False),
        ("https://API.Mistral.AI:443/v1", False),
        ("https://api.mistral.ai.example.com/v1", True),
        ("http://vllm:8000/v1", True),
        ("", True),
    ],
)
def test_stream_usage_unset_is_told_by_the_host(base: str, asks: bool) -> None:
    assert BackendSettings(name="b", base_url=base).stream_usage is asks
    assert BackendSettings(name="b", base_url=base, stream_usage=True).stream_usage


@pytest.mark.parametrize("fmt", ["json", {}])
async def test_lm_studio_refusing_json_mode_gets_a_schema_of_any_object(
    gateway: MakeGateway, aiohttp_server: Any, fmt: Any
) -> None:
    """Home Assistant, n8n and LangChain's ChatOllama send `format: "json"`."""
    fake = await started(aiohttp_server, lm_studio)
    assert await _chat(gateway, fake, format=fmt) == "Hello from fake"
    assert len(fake.refused) == 1
    assert fake.completions()[-1].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "schema", "schema": {"type": "object"}},
    }


async def test_tgi_refusing_a_top_p_of_1_answers_without_it(
    gateway: MakeGateway, aiohttp_server: Any
) -> None:
    fake = await started(aiohttp_server, tgi)
    options = {"top_p": 1.0, "temperature": 0.7}
    assert await _chat(gateway, fake, options=options) == "Hello from fake"
    sent = fake.completions()[-1].body
    assert "top_p" not in sent and sent["temperature"] == 0.7


@pytest.mark.parametrize(
    ("message", "kept"),
    [
        (
            "Invalid 'stop': array too long. Expected an array with maximum "
            "length 4, but got an array with length 6 instead.",
            4,
        ),
        ("the number of stop_sequences must not exceed 5", 5),
        (
            "Unable to submit request because it has a stopSequences value of 6 "
            "but the supported range is from 1 (inclusive) to 6 (exclusive). "
            "Update the value and try again.",
            5,
        ),
    ],
)
def test_too_many_stop_sequences_are_cut_to_the_refusals_limit(
    message: str, kept: int
) -> None:
    stops = [f"<|stop{i}|>" for i in range(6)]
    body: dict[str, object] = {"stop": list(stops)}
    assert amend(body, message)
    assert body == {"stop": stops[:kept]}


def test_a_top_p_below_1_refused_is_kept() -> None:
    """Only a top_p of 1 is no cut at all: without another, the answer
    would be sampled otherwise, so that refusal stands."""
    body: dict[str, object] = {"top_p": 0.5}
    assert not amend(body, "Input validation error: `top_p` must be > 0.0 and < 1.0")
    assert body == {"top_p": 0.5}


async def test_gemini_refusing_continues_stop_list_gets_its_first_five(
    gateway: MakeGateway, aiohttp_server: Any
) -> None:
    fake = await started(aiohttp_server, gemini_stops)
    stops = ["<|im_end|>", "<|endoftext|>", "<|im_start|>", "```", "\n\n\n", "[/INST]"]
    assert await _chat(gateway, fake, options={"stop": stops}) == "Hello from fake"
    assert fake.completions()[-1].body["stop"] == stops[:5]
    assert [body["stop"] for body in fake.refused] == [stops]


async def test_fireworks_refusing_a_whole_answer_is_asked_for_a_stream(
    gateway: MakeGateway, aiohttp_server: Any
) -> None:
    """With `stream_upstream = "as-client"` a `stream: false` chat asks for a
    whole answer; Fireworks gives one up to 4096 tokens only."""
    fake = await started(aiohttp_server, fireworks)
    toml = (
        f'[[backends]]\nname = "fireworks"\nbase_url = "{fake.url}"\n'
        'stream_upstream = "as-client"\n'
    )
    client = await gateway(toml=toml)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await api.chat(
            model="some-model", messages=MESSAGES, options={"num_predict": 8192}
        )
    assert reply.message.content == "Hello from fake"
    assert [body["stream"] for body in fake.refused] == [False]
    sent = fake.completions()[-1].body
    assert sent["stream"] is True and sent["max_tokens"] == 8192


async def test_a_refusal_naming_a_needed_field_stands(
    gateway: MakeGateway, aiohttp_server: Any
) -> None:
    fake = await started(aiohttp_server, refuses_everything)
    with pytest.raises(ollama.ResponseError) as refused:
        await _chat(gateway, fake)
    assert refused.value.status_code == 400
    assert 'Unknown name "messages"' in refused.value.error
    assert len(fake.refused) == 1


def test_mistrals_validation_error_reads_as_words() -> None:
    answer = mistral({"stream_options": {"include_usage": True}})
    assert answer is not None
    message = upstream_error_message(json.dumps(answer[1]).encode())
    assert message == (
        "body.stream_options.include_usage: Extra inputs are not permitted"
    )


@pytest.mark.parametrize(
    ("message", "fields"),
    [
        # Mistral in 2024: the validation error as JSON text in `message`.
        (
            '{"detail":[{"type":"extra_forbidden","loc":["body",'
            '"frequency_penalty"],"msg":"Extra inputs are not permitted"}]}',
            {"frequency_penalty"},
        ),
        # vLLM: a Python repr.
        (
            "[{'type': 'extra_forbidden', 'loc': ('body', 'top_k'), 'msg': "
            "'Extra inputs are not permitted', 'input': 40}]",
            {"top_k"},
        ),
        (
            'Invalid JSON payload received. Unknown name "seed": Cannot find '
            'field.\nInvalid JSON payload received. Unknown name "top_k": '
            "Cannot find field.",
            {"seed", "top_k"},
        ),
        (
            "Unsupported parameter: 'frequency_penalty' is not supported with "
            "this model.",
            {"frequency_penalty"},
        ),
        # A nested key of a tool's schema is no field of the body.
        (
            'Invalid JSON payload received. Unknown name "additionalProperties" '
            "at 'tools[0].function_declarations[0].parameters': Cannot find field.",
            set(),
        ),
        # Groq in 2024, and its refusal of a message's own key.
        (
            "property 'stream_options' is unsupported, did you mean 'stream'?",
            {"stream_options"},
        ),
        (
            "'messages.0' : for 'role:user' the following must be satisfied"
            "[('messages.0' : property 'seed' is unsupported)]",
            set(),
        ),
        # xAI's, in camelCase.
        ("Argument not supported on this model: presencePenalty", {"presence_penalty"}),
        ("Argument not supported: stream_options", {"stream_options"}),
        (
            "Model grok-4.6 does not support parameter frequencyPenalty.",
            {"frequency_penalty"},
        ),
        ("Unknown parameter: 'stream_options'.", {"stream_options"}),
        ("Unsupported parameter: 'stop' is not supported with this model.", set()),
        ("body.messages.0.name: Extra inputs are not permitted", set()),
    ],
)
def test_refused_fields_are_read_from_each_wording(
    message: str, fields: set[str]
) -> None:
    assert refused_fields(message) == fields
