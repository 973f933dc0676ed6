"""A LiteLLM proxy's `GET /model/info`, read for capabilities (`litellm_model_info`).

`fixtures/litellm/model_info.json` and `models_known.json` are the bytes
LiteLLM 1.108.7 answered (`LITELLM_LOCAL_MODEL_COST_MAP=True`) on
`/v1/model/info` and `/v1/models` for a config of models its cost map knows:
gpt-4o, o3-mini, claude-haiku (anthropic/claude-haiku-4-5), deepseek-reasoner,
gpt-35 (gpt-3.5-turbo), team-chat (two deployments: gpt-4o-mini and
gpt-3.5-turbo), up-text (a name it does not know), my-vlm (its own
`model_info` in LiteLLM's config: vision true, function calling false, 32768
tokens) and vectors (text-embedding-3-small).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import msgspec
import ollama
import pytest

from ollama_gateway import upstream as upstream_module
from ollama_gateway.modelinfo import LiteLLMInfo, litellm_infos
from ollama_gateway.schemas import openai
from ollama_gateway.settings import SettingsError
from tests.conftest import base_url
from tests.ndjson import post

_FIXTURES = Path(__file__).parent / "fixtures" / "litellm"
_MODEL_INFO = (_FIXTURES / "model_info.json").read_bytes()
_MODELS = (_FIXTURES / "models_known.json").read_bytes()
_ON = """
[[backends]]
name = "openai"
litellm_model_info = true
"""
_FAST_RETRY = "\n[catalogue]\nttl = 0.01\n"


def _litellm(backend: Any, *, info: Any = _MODEL_INFO, models: Any = _MODELS) -> None:
    backend.models_body = models
    backend.model_info_body = info


async def _capabilities(client: Any, name: str) -> list[str]:
    resp = await post(client, "/api/show", {"model": name})
    assert resp.status == 200, await resp.text()
    caps: list[str] = (await resp.json())["capabilities"]
    return caps


async def _tags(client: Any) -> dict[str, list[str]]:
    models = (await (await client.get("/api/tags")).json())["models"]
    return {m["name"].removesuffix(":latest"): m["capabilities"] for m in models}


# What LiteLLM says, where it differs from the guess from the name alone:
_GUESSED = {
    "claude-haiku": ["completion", "tools", "vision"],
    "deepseek-reasoner": ["completion", "tools", "thinking"],
    "team-chat": ["completion", "tools"],
    "my-vlm": ["completion", "tools", "vision"],  # "-vl" reads as vision
}
_SAID = {
    # supports_reasoning true: thinking, which no name rule gives a claude.
    "claude-haiku": ["completion", "tools", "vision", "thinking"],
    # supports_function_calling false: no tools (VS Code's agent mode skips it).
    "deepseek-reasoner": ["completion", "thinking"],
    # Vision on one of its two deployments (the other's is null): counted.
    "team-chat": ["completion", "tools", "vision"],
    "my-vlm": ["completion", "vision"],
    # supports_vision false and supports_reasoning true, as guessed.
    "o3-mini": ["completion", "tools", "thinking"],
    # supports_reasoning null: not thinking, as guessed.
    "gpt-4o": ["completion", "tools", "vision"],
    # Every supports_* null: the guess.
    "up-text": ["completion", "tools"],
    "vectors": ["embedding"],
}


@pytest.mark.parametrize(("name", "capabilities"), sorted(_SAID.items()))
async def test_model_info_decides_the_capabilities(
    backend, gateway, name, capabilities
):
    _litellm(backend)
    client = await gateway(backend, _ON)
    assert await _capabilities(client, name) == capabilities
    assert (await _tags(client))[name] == capabilities


async def test_it_is_read_with_the_lists_path_and_key(backend, gateway):
    _litellm(backend)
    client = await gateway(backend, _ON)
    await _tags(client)
    [request] = backend.model_info_requests()
    # Relative to the base URL (`.../v1`), with the backend's own key.
    assert (request.method, request.path) == ("GET", "/v1/model/info")
    assert request.headers["Authorization"] == "Bearer sk-test"


async def test_off_by_default_no_request_and_the_guesses(backend, gateway):
    _litellm(backend)
    client = await gateway(backend)
    tags = await _tags(client)
    for name, guessed in _GUESSED.items():
        assert tags[name] == guessed
    assert backend.model_info_requests() == []
    assert [r.path for r in backend.requests] == ["/v1/models"]


async def test_null_keeps_the_guess_and_false_overrides_it(backend, gateway):
    _litellm(
        backend,
        models={"data": [{"id": "qwen3-vl-thinking"}, {"id": "gpt-4o-audio"}]},
        info={
            "data": [
                {"model_name": "qwen3-vl-thinking", "model_info": {"mode": None}},
                {
                    "model_name": "gpt-4o-audio",
                    "model_info": {"supports_vision": False},
                },
            ]
        },
    )
    client = await gateway(backend, _ON)
    tags = await _tags(client)
    assert tags["qwen3-vl-thinking"] == ["completion", "tools", "vision", "thinking"]
    assert tags["gpt-4o-audio"] == ["completion", "tools"]


async def test_configured_capabilities_win(backend, gateway):
    toml = (
        _ON
        + """
[models.deepseek-reasoner]
capabilities = ["completion", "tools"]

[models.haiku]
target = "claude-haiku"
"""
    )
    _litellm(backend)
    client = await gateway(backend, toml)
    assert await _capabilities(client, "deepseek-reasoner") == ["completion", "tools"]
    # An alias without capabilities of its own takes its target's info.
    assert await _capabilities(client, "haiku") == _SAID["claude-haiku"]


async def test_context_length_from_model_info_when_the_list_has_none(backend, gateway):
    bare = {"data": [{"id": m["id"]} for m in json.loads(_MODELS)["data"]]}
    _litellm(backend, models=bare)
    client = await gateway(backend, _ON)
    expected = {"claude-haiku": 200000, "my-vlm": 32768, "team-chat": 16385}
    for name, length in expected.items():
        resp = await post(client, "/api/show", {"model": name})
        info = (await resp.json())["model_info"]
        # team-chat: the smaller of its deployments' (128000 and 16385).
        assert [v for k, v in info.items() if k.endswith(".context_length")] == [
            length
        ], name
    resp = await post(client, "/api/show", {"model": "up-text"})
    info = (await resp.json())["model_info"]
    assert not any(k.endswith(".context_length") for k in info)


async def test_the_lists_own_context_length_comes_first(backend, gateway):
    _litellm(backend)
    client = await gateway(backend, _ON)
    resp = await post(client, "/api/show", {"model": "team-chat"})
    info = (await resp.json())["model_info"]
    assert [v for k, v in info.items() if k.endswith(".context_length")] == [128000]


_HUGE = "\n[limits]\nmax_answer_bytes = 50000\n"


@pytest.mark.parametrize(
    ("status", "body", "toml"),
    [
        (404, None, ""),  # no /model/info at all: not a LiteLLM proxy
        (500, _MODEL_INFO, ""),
        (200, _MODEL_INFO[:1000], ""),  # cut: bad JSON
        (200, b"not json", ""),
        (200, {"data": {"gpt-4o": {}}}, ""),
        (200, {"detail": "no data"}, ""),
        (200, [{"model_name": "deepseek-reasoner"}], ""),
        (200, {"data": [{"model_name": "x", "model_info": "chat"}]}, ""),
        (200, _MODEL_INFO, _HUGE),  # 80 kB, over the answer limit
    ],
    ids=[
        "404",
        "500",
        "cut",
        "not-json",
        "data-object",
        "no-data",
        "bare-list",
        "info-string",
        "too-large",
    ],
)
async def test_a_failed_reading_keeps_the_catalogue(
    backend, gateway, caplog, status, body, toml
):
    _litellm(backend, info=body)
    backend.model_info_status = status
    client = await gateway(backend, _ON + toml)
    tags = await _tags(client)
    assert len(tags) == 9
    for name, guessed in _GUESSED.items():
        assert tags[name] == guessed
    assert len(backend.model_info_requests()) == 1
    [warning] = [r for r in caplog.records if "/model/info" in r.getMessage()]
    assert warning.levelno == logging.WARNING


async def test_a_hanging_reading_is_bounded_as_the_list_is(
    backend, gateway, monkeypatch
):
    monkeypatch.setattr(upstream_module, "_LIST_TIMEOUT", 0.3)
    _litellm(backend)
    backend.model_info_delay = 30.0
    started = time.monotonic()
    client = await gateway(backend, _ON + "\n[timeouts]\nconnect = 0.2\n")
    tags = await _tags(client)
    assert time.monotonic() - started < 3.0
    assert tags["deepseek-reasoner"] == _GUESSED["deepseek-reasoner"]


async def _refreshes(client: Any, backend: Any, count: int) -> dict[str, list[str]]:
    """Lists until `/model/info` was asked `count` more times (ttl 0.01)."""
    target = len(backend.model_info_requests()) + count
    deadline = time.monotonic() + 5
    while len(backend.model_info_requests()) < target:
        assert time.monotonic() < deadline
        await _tags(client)
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)  # the last refresh's rebuild
    return await _tags(client)


async def test_a_failure_streak_is_logged_once_and_the_last_info_kept(
    backend, gateway, caplog
):
    caplog.set_level(logging.INFO, logger="ollama_gateway.catalogue")
    _litellm(backend)
    client = await gateway(backend, _ON + _FAST_RETRY)

    def said() -> list[str]:
        return [
            r.getMessage() for r in caplog.records if "/model/info" in r.getMessage()
        ]

    assert (await _tags(client))["deepseek-reasoner"] == _SAID["deepseek-reasoner"]
    backend.model_info_status = 500
    tags = await _refreshes(client, backend, 4)
    # A proxy restarting does not flip the capabilities back to the guesses.
    assert tags["deepseek-reasoner"] == _SAID["deepseek-reasoner"]
    assert len(said()) == 1
    assert said()[0].startswith("cannot read /model/info of backend openai")

    backend.model_info_status = 200
    await _refreshes(client, backend, 1)
    assert said()[1:] == ["read /model/info of backend openai again"]
    backend.model_info_status = 500
    await _refreshes(client, backend, 3)
    assert len(said()) == 3  # a new streak, one more warning


async def test_a_new_info_replaces_the_old(backend, gateway):
    _litellm(backend)
    client = await gateway(backend, _ON + _FAST_RETRY)
    assert (await _tags(client))["my-vlm"] == _SAID["my-vlm"]
    backend.model_info_body = {
        "data": [{"model_name": "my-vlm", "model_info": {"supports_vision": False}}]
    }
    tags = await _refreshes(client, backend, 2)
    assert tags["my-vlm"] == ["completion", "tools"]


async def test_the_official_client_shows_them(backend, gateway):
    _litellm(backend)
    client = await gateway(backend, _ON)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        haiku = await api.show("claude-haiku")
        reasoner = await api.show("deepseek-reasoner")
        listed = await api.list()
    assert haiku.capabilities == _SAID["claude-haiku"]
    assert reasoner.capabilities == _SAID["deepseek-reasoner"]
    assert haiku.modelinfo is not None
    assert 200000 in haiku.modelinfo.values()
    by_name = {m.model: m for m in listed.models}
    assert set(by_name) >= {"claude-haiku:latest", "deepseek-reasoner:latest"}


def _deployment(name: Any, **info: Any) -> openai.LiteLLMDeployment:
    return msgspec.convert(
        {"model_name": name, "model_info": info}, openai.LiteLLMDeployment
    )


def test_deployments_of_one_name_are_taken_together():
    infos = litellm_infos(
        [
            _deployment("m", supports_vision=False, max_input_tokens=128000),
            _deployment("m", supports_vision=True, supports_reasoning=False),
            _deployment("m", mode="embedding", max_input_tokens=8000),
            _deployment("m", mode="chat", supports_function_calling=None),
            _deployment("odd", supports_vision="yes", max_input_tokens=True),
            _deployment(7, supports_vision=True),
        ]
    )
    assert infos == {
        "m": LiteLLMInfo(
            mode="chat", context_length=8000, tools=None, vision=True, thinking=False
        ),
        # A value of another type is no answer: the guess stays.
        "odd": LiteLLMInfo(),
    }


def test_a_pinned_backend_cannot_read_it(settings_for):
    toml = '[[backends]]\nname = "b"\nbase_url = "http://127.0.0.1:9/v1"\n'
    with pytest.raises(SettingsError, match=r"backends\.b\.litellm_model_info"):
        settings_for(toml=toml + 'models = ["m"]\nlitellm_model_info = true\n')
    assert settings_for(toml=toml).backends[0].litellm_model_info is False
