"""The LiteLLM proxy's real answers, replayed through the fake backend.

Every body here is the bytes LiteLLM 1.108.7 (`litellm[proxy]`, run on
loopback with mocked models and in front of a small OpenAI-style server)
answered, as captured with curl; CI cannot run LiteLLM itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fakebackend import Script
from tests.ndjson import NO_RETRY, chat, post

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
_JSON = {"Content-Type": "application/json"}
# `GET /v1/models`: an entry carries LiteLLM's `mode` (and its token limits)
# when the config or LiteLLM's own model table knows them.
_MODELS = Path(__file__).parent / "fixtures" / "litellm_models.json"


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
    ],
    ids=["chat", "chat-stream", "generate-raw", "embed"],
)
async def test_an_unknown_model_400_is_ollamas_404(
    backend, gateway, path, body, answer, message
):
    backend.queue(Script(status=400, error_body=answer, headers=_JSON))
    client = await gateway(backend, _PINNED + NO_RETRY)
    resp = await post(client, path, body)
    assert resp.status == 404
    assert await resp.json() == {"error": message}


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
