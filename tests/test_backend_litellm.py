"""The LiteLLM proxy's real answers, replayed through the fake backend.

Every body here and under `fixtures/litellm/` is the bytes LiteLLM 1.108.7
(`litellm[proxy]`, run on loopback with mocked models and in front of a small
OpenAI-style server) answered, as captured with curl; CI cannot run LiteLLM
itself.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from ollama_gateway_translators.retry import retry_after_seconds
from tests.fakebackend import Script, split_every
from tests.ndjson import NO_RETRY, assert_final, chat, ndjson, post, read_ndjson

# A model the gateway was told of (pinned) that LiteLLM does not serve: taken
# out of LiteLLM's config, or not allowed for the gateway's key.
_PINNED = """
[[backends]]
name = "openai"
models = ["nope"]
"""

_UNKNOWN_CHAT = (
    b'{"error":{"message":"/chat/completions: Invalid model name passed in model=nope.'
    b' Call `/v1/models` to view available models for your key.","type":"invalid_re'
    b'quest_error","param":null,"code":"400","provider_specific_fields":{"error":"/c'
    b"hat/completions: Invalid model name passed in model=nope. Call `/v1/models` to"
    b' view available models for your key."}}}'
)
_UNKNOWN_EMBED = (
    b'{"error":{"message":"/embeddings: Invalid model name passed in model=nope. Call'
    b' `/v1/models` to view available models for your key.","type":"invalid_request'
    b'_error","param":null,"code":"400","provider_specific_fields":{"error":"/embedd'
    b"ings: Invalid model name passed in model=nope. Call `/v1/models` to view avail"
    b'able models for your key."}}}'
)
# `/v1/completions` (raw and fill-in-the-middle generate) words it as the
# repr of a Python dict, with the type and param as the string "None".
_UNKNOWN_COMPLETIONS = (
    b'{"error":{"message":"400: {\'error\': \'/completions: Invalid model name pass'
    b"ed in model=nope. Call `/v1/models` to view available models for your key.'}"
    b'","type":"None","param":"None","code":"400"}}'
)
# Behind a wildcard route (`model_name: "anthropic/*"`) any name reaches
# LiteLLM's router, which words it otherwise, on every path alike.
_UNKNOWN_WILDCARD = (
    b'{"error":{"message":"litellm.BadRequestError: You passed in model=nope. There'
    b" are no healthy deployments for this model\\n\\nLiteLLM: model group 'nope' f"
    b'ailed with the error above. No fallback was attempted.","type":"invalid_reques'
    b't_error","param":null,"code":"400"}}'
)
_JSON = {"Content-Type": "application/json"}
_FIXTURES = Path(__file__).parent / "fixtures" / "litellm"
# `GET /v1/models`: an entry carries LiteLLM's `mode` (and its token limits)
# when the config or LiteLLM's own model table knows them.
_MODELS = _FIXTURES / "models.json"


@pytest.mark.parametrize(
    ("path", "body", "answer", "message"),
    [
        (
            "/api/chat",
            chat(model="nope", stream=False),
            _UNKNOWN_CHAT,
            "model 'nope' not found",
        ),
        ("/api/chat", chat(model="nope"), _UNKNOWN_CHAT, "model 'nope' not found"),
        (
            "/api/generate",
            {"model": "nope", "prompt": "def f(", "raw": True},
            _UNKNOWN_COMPLETIONS,
            "model 'nope' not found",
        ),
        (
            "/api/embed",
            {"model": "nope", "input": ["a", "b"]},
            _UNKNOWN_EMBED,
            'model "nope" not found, try pulling it first',
        ),
        ("/api/chat", chat(model="nope"), _UNKNOWN_WILDCARD, "model 'nope' not found"),
        (
            "/api/embed",
            {"model": "nope", "input": "a"},
            _UNKNOWN_WILDCARD,
            'model "nope" not found, try pulling it first',
        ),
    ],
    ids=[
        "chat",
        "chat-stream",
        "generate-raw",
        "embed",
        "wildcard-chat",
        "wildcard-embed",
    ],
)
async def test_an_unknown_model_400_is_ollamas_404(
    backend, gateway, path, body, answer, message
):
    backend.queue(Script(status=400, error_body=answer, headers=_JSON))
    client = await gateway(backend, _PINNED + NO_RETRY)
    resp = await post(client, path, body)
    assert resp.status == 404
    assert await resp.json() == {"error": message}


async def test_its_words_with_another_status_are_no_unknown_model(backend, gateway):
    backend.queue(Script(status=503, error_body=_UNKNOWN_WILDCARD, headers=_JSON))
    client = await gateway(backend, _PINNED + NO_RETRY)
    resp = await post(client, "/api/chat", chat(model="nope", stream=False))
    assert resp.status == 503
    assert "no healthy deployments" in (await resp.json())["error"]


async def test_an_unknown_model_400_is_a_model_not_found_on_v1(backend, gateway):
    backend.queue(Script(status=400, error_body=_UNKNOWN_CHAT, headers=_JSON))
    client = await gateway(backend, _PINNED + NO_RETRY)
    resp = await post(client, "/v1/chat/completions", chat(model="nope"))
    assert resp.status == 404
    error: dict[str, Any] = (await resp.json())["error"]
    assert error["message"] == "The model 'nope' does not exist"
    assert error["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("name", "capabilities"),
    [
        # `mode: embedding` set in LiteLLM's config, on a name with no "embed".
        ("vectors", ["embedding"]),
        ("up-embed", ["embedding"]),
        # `mode: audio_transcription`: no chat, generate or embed to offer.
        ("transcriber", []),
        # `mode: chat` from LiteLLM's table, and no mode at all: as guessed.
        ("gpt-4o", ["completion", "tools", "vision"]),
        ("up-text", ["completion", "tools"]),
    ],
)
async def test_the_mode_of_a_listed_model_decides_its_capabilities(
    backend, gateway, name, capabilities
):
    backend.models_body = json.loads(_MODELS.read_bytes())
    client = await gateway(backend)
    resp = await post(client, "/api/show", {"model": name})
    assert resp.status == 200
    assert (await resp.json())["capabilities"] == capabilities
    tags = (await (await client.get("/api/tags")).json())["models"]
    [entry] = [m for m in tags if m["name"] == f"{name}:latest"]
    assert entry["capabilities"] == capabilities


async def test_a_model_of_another_mode_refuses_a_chat(backend, gateway):
    backend.models_body = json.loads(_MODELS.read_bytes())
    client = await gateway(backend)
    for name in ("vectors", "transcriber"):
        resp = await post(client, "/api/chat", chat(model=name))
        assert resp.status == 400
        assert await resp.json() == {"error": f'"{name}" does not support chat'}
    assert backend.completions() == []


# `/v1/embeddings` for ["hello", "world!"], in front of a backend, then from a
# model mocked in LiteLLM's config (`mock_response: [0.1, 0.2, 0.3]`), which
# answers one vector whatever the number of inputs.
_EMBEDDINGS = (
    b'{"model":"up-embed","data":[{"embedding":[0.6,0.8,5.0],"index":0,"object":"e'
    b'mbedding"},{"embedding":[0.6,0.8,6.0],"index":1,"object":"embedding"}],"obje'
    b'ct":"list","usage":{"completion_tokens":0,"prompt_tokens":4,"total_tokens":4'
    b',"completion_tokens_details":null,"prompt_tokens_details":null}}'
)
_MOCK_EMBEDDINGS = (
    b'{"model":"mock-embed","data":[{"embedding":[0.1,0.2,0.3],"index":0,"object":'
    b'"embedding"}],"object":"list","usage":{"completion_tokens":0,"prompt_tokens"'
    b':10,"total_tokens":0,"completion_tokens_details":null,"prompt_tokens_detail'
    b's":null}}'
)
_EMBED = {"model": "text-embedding-3-small", "input": ["hello", "world!"]}


async def test_embeddings_with_litellms_usage_details(backend, gateway):
    backend.queue(Script(pieces=[_EMBEDDINGS], content_type="application/json"))
    client = await gateway(backend)
    resp = await post(client, "/api/embed", _EMBED)
    assert resp.status == 200
    answer = await resp.json()
    assert answer["prompt_eval_count"] == 4
    # In input order, each of unit length (Ollama's /api/embed contract).
    for vector, last in zip(answer["embeddings"], (5.0, 6.0), strict=True):
        size = math.sqrt(0.6**2 + 0.8**2 + last**2)
        assert vector == pytest.approx([0.6 / size, 0.8 / size, last / size])


async def test_fewer_embeddings_than_inputs_is_an_upstream_error(backend, gateway):
    backend.queue(Script(pieces=[_MOCK_EMBEDDINGS], content_type="application/json"))
    client = await gateway(backend)
    resp = await post(client, "/api/embed", _EMBED)
    assert resp.status == 502
    assert await resp.json() == {"error": "upstream sent 1 embeddings for 2 inputs"}


# A provider's 429 with `Retry-After: 1`, as LiteLLM answers it: the header
# comes only under LiteLLM's `llm_provider-` prefix (its own 429s, such as
# "all deployments in cooldown", carry a plain `retry-after`).
_RATE_LIMITED = (
    b'{"error":{"message":"litellm.RateLimitError: RateLimitError: OpenAIException -'
    b" Rate limit reached for requests\\n\\nLiteLLM: model group 'up-429' failed wit"
    b'h the error above. No fallback was attempted.","type":"throttling_error","par'
    b'am":null,"code":"429"}}'
)
_RATE_LIMITED_HEADERS = {
    "content-type": "application/json",
    "llm_provider-retry-after": "1",
    "x-litellm-version": "1.108.7",
}


def test_the_providers_retry_after_is_read():
    assert retry_after_seconds(_RATE_LIMITED_HEADERS) == 1.0
    assert retry_after_seconds({**_RATE_LIMITED_HEADERS, "Retry-After": "5"}) == 5.0


# LiteLLM's own limit (`rpm: 1` on a deployment), the second request in a
# minute: it too names its wait under the prefix, 60 s.
_RPM_LIMITED = (
    b'{"error":{"message":"litellm.RateLimitError: No deployments available for sele'
    b"cted model. Passed model=up-rpm. Deployments={'0b708fee071b52f48c29982114b87ae6"
    b"2ae25b288459731c6cadb27776b1c23c': {'current_tpm': 16, 'tpm_limit': inf, 'curr"
    b"ent_rpm': 1, 'rpm_limit': 1}}\\n\\nLiteLLM: model group 'up-rpm' failed with "
    b'the error above. No fallback was attempted.","type":"throttling_error","param"'
    b':null,"code":"429"}}'
)


@pytest.mark.parametrize(
    ("body", "wait", "toml", "start"),
    [
        # The provider asks for 1 s, more than this gateway may wait.
        (_RATE_LIMITED, "1", "[translators.retry]\nmax_delay = 0.5\n", "litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit"),
        # LiteLLM asks for a minute, more than the default cap of 10 s.
        (_RPM_LIMITED, "60", "", "litellm.RateLimitError: No deployments available"),
    ],
    ids=["provider", "litellm-rpm"],
)  # fmt: skip
async def test_a_retry_after_beyond_the_cap_passes_the_429_on_at_once(
    backend, gateway, body, wait, toml, start
):
    headers = {**_RATE_LIMITED_HEADERS, "llm_provider-retry-after": wait}
    backend.queue(
        Script(status=429, error_body=body, headers=headers),
        Script.text("must not be asked"),
    )
    client = await gateway(backend, toml)
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 429
    assert (await resp.json())["error"].startswith(start)
    assert len(backend.completions()) == 1


async def test_a_raw_generate_stream_of_chunks_without_text(backend, gateway):
    # `/v1/completions` streamed: LiteLLM's finish chunk and its usage chunk
    # have a choice with no `text` at all.
    data = (_FIXTURES / "completions_stream.sse").read_bytes()
    backend.queue(Script(pieces=split_every(data, 9)))
    client = await gateway(backend)
    body = {"model": "gpt-4o", "prompt": "def add(a, b):", "raw": True}
    objs = await read_ndjson(await post(client, "/api/generate", body))
    final = assert_final(objs)
    assert "".join(o["response"] for o in objs) == "def add(a, b):\n    return a + b"
    assert final["done_reason"] == "stop"
    assert (final["prompt_eval_count"], final["eval_count"]) == (11, 5)
    assert backend.completions()[0].path == "/v1/completions"


async def test_a_backend_lost_mid_stream_is_an_error_line(backend, gateway):
    # LiteLLM's backend closed the connection after two words: LiteLLM sends an
    # error event with the status as a string, and no `[DONE]`.
    data = (_FIXTURES / "cut_stream.sse").read_bytes()
    backend.queue(Script(pieces=split_every(data, 13)))
    client = await gateway(backend)
    objs = ndjson(await (await post(client, "/api/chat", chat())).read())
    assert [o["message"]["content"] for o in objs[:-1]] == ["Hello ", "there, "]
    assert objs[-1] == {
        "error": "litellm.APIConnectionError: APIConnectionError: "
        "OpenAIException - Connection error."
    }
    backend.queue(Script(pieces=[data]))
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 500
    assert (await resp.json())["error"].startswith("litellm.APIConnectionError")


async def test_a_json_answer_with_provider_specific_fields(backend, gateway):
    # With `stream_upstream = "as-client"` a non-streamed chat is one JSON
    # answer: LiteLLM adds `provider_specific_fields` to the choice and the
    # message, and carries the backend's `reasoning` there as well.
    data = (_FIXTURES / "reasoning_answer.json").read_bytes()
    backend.queue(Script(pieces=[data], content_type="application/json"))
    toml = '[[backends]]\nname = "openai"\nstream_upstream = "as-client"\n'
    client = await gateway(backend, toml)
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 200
    answer = await resp.json()
    assert answer["message"] == {
        "role": "assistant",
        "content": "The answer is 42.",
        "thinking": "Let me think about it.",
    }
    assert (answer["prompt_eval_count"], answer["eval_count"]) == (11, 5)
    assert backend.completions()[0].body["stream"] is False
