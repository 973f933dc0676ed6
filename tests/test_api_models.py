"""`/api/tags`, `/api/show` and `/api/ps` against strict client schemas (spec 2.3-2.5)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import ollama
import pytest

from ollama_gateway import upstream as upstream_module
from ollama_gateway.app import create_app
from ollama_gateway.settings import CAPABILITIES
from tests.conftest import base_url
from tests.fakebackend import Script

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")


def parse_time(value: Any) -> datetime:
    assert isinstance(value, str) and RFC3339.fullmatch(value), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_details(details: Any) -> None:
    """Zed's serde struct: every key present with its type; families may be null."""
    assert isinstance(details, dict)
    for key in ("parent_model", "format", "family", "parameter_size"):
        assert isinstance(details[key], str), key
    assert isinstance(details["quantization_level"], str)
    families = details["families"]
    assert families is None or (
        isinstance(families, list) and all(isinstance(f, str) for f in families)
    )


def check_tag_entry(entry: dict[str, Any]) -> None:
    name = entry["name"]
    assert isinstance(name, str) and ":" in name.rsplit("/", 1)[-1]
    assert entry["model"] == name
    parse_time(entry["modified_at"])
    assert is_int(entry["size"]) and entry["size"] >= 0
    assert re.fullmatch(r"[0-9a-f]{64}", entry["digest"])
    check_details(entry["details"])
    caps = entry.get("capabilities")
    assert caps is None or set(caps) <= set(CAPABILITIES)


VLLM_MODELS = [
    {"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"},
    {"id": "text-embedding-3-small", "object": "model", "created": 0},
    {
        "id": "Qwen/Qwen3-8B",
        "object": "model",
        "created": 1720000000,
        "owned_by": "vllm",
        "max_model_len": 40960,
    },
    {"id": "meta-llama/Llama-3.1-8B-Instruct:q4", "object": "model"},
]


async def test_case_18_tags_entries_have_every_field_strict_clients_need(
    backend, gateway
):
    backend.models = VLLM_MODELS
    client = await gateway(backend)
    resp = await client.get("/api/tags")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    body = await resp.json()
    models = body["models"]
    assert {m["name"] for m in models} == {
        "gpt-4o:latest",
        "text-embedding-3-small:latest",
        "Qwen/Qwen3-8B:latest",
        "meta-llama/Llama-3.1-8B-Instruct:q4",
    }
    for entry in models:
        check_tag_entry(entry)
    stamps = [parse_time(m["modified_at"]) for m in models]
    assert stamps == sorted(stamps, reverse=True)  # newest first, as Ollama
    by_name = {m["name"]: m for m in models}
    assert by_name["gpt-4o:latest"]["modified_at"].startswith("2024-05-10T18:50:49")
    assert by_name["text-embedding-3-small:latest"]["capabilities"] == ["embedding"]
    assert "tools" in by_name["gpt-4o:latest"]["capabilities"]
    assert by_name["Qwen/Qwen3-8B:latest"]["details"]["family"] == "qwen3"


async def test_case_18_tags_head_and_python_client_list(backend, gateway):
    client = await gateway(backend)
    head = await client.head("/api/tags")
    assert head.status == 200
    async with ollama.AsyncClient(host=base_url(client)) as api:
        listed = await api.list()
    names = [m.model for m in listed.models]
    assert "gpt-4o:latest" in names
    gpt = next(m for m in listed.models if m.model == "gpt-4o:latest")
    assert isinstance(gpt.size, int) and gpt.modified_at is not None
    assert gpt.details is not None and gpt.details.format == "gguf"


async def test_case_18_tags_is_an_empty_list_when_the_backend_has_no_models(
    backend, gateway
):
    backend.models = []
    client = await gateway(backend)
    resp = await client.get("/api/tags")
    assert resp.status == 200
    assert await resp.json() == {"models": []}
    async with ollama.AsyncClient(host=base_url(client)) as api:
        assert (await api.list()).models == []


@pytest.mark.parametrize("body", [{"object": "list", "data": None}, {"data": []}])
async def test_tags_is_an_empty_list_when_data_is_null(backend, gateway, body):
    backend.models_body = body
    client = await gateway(backend)
    resp = await client.get("/api/tags")
    assert resp.status == 200
    assert await resp.json() == {"models": []}


async def test_odd_entries_of_a_model_list_cost_only_themselves(backend, gateway):
    # Each odd entry alone used to make the whole list unreadable: /api/tags
    # answered 502 and no model of the backend resolved.
    backend.models_body = {
        "object": "list",
        "data": [
            "bare-name",
            None,
            {"id": None},
            {"id": 7},
            {"id": ""},
            {"name": "no-id"},
            {"id": "float-len", "max_model_len": 4096.0, "owned_by": 7},
            {"id": "string-len", "context_length": "8192", "max_model_len": -1},
            {"id": "vllm", "max_model_len": 40960},
        ],
    }
    client = await gateway(backend)
    resp = await client.get("/api/tags")
    assert resp.status == 200
    entries = (await resp.json())["models"]
    for entry in entries:
        check_tag_entry(entry)
    names = [e["name"] for e in entries]
    assert sorted(names) == [
        "bare-name:latest",
        "float-len:latest",
        "string-len:latest",
        "vllm:latest",
    ]
    async with ollama.AsyncClient(host=base_url(client)) as api:
        shown = {n: await api.show(n) for n in names}
    # Only a positive int is a context length; the others leave it unknown.
    assert shown["vllm:latest"].modelinfo is not None
    assert shown["vllm:latest"].modelinfo["vllm.context_length"] == 40960
    for name in ("float-len:latest", "string-len:latest", "bare-name:latest"):
        assert shown[name].modelinfo is not None
        assert not any(k.endswith("context_length") for k in shown[name].modelinfo)
        assert "num_ctx" not in (shown[name].parameters or "")


async def test_tags_is_502_when_no_backend_can_list(backend, gateway):
    backend.models_status = 503
    client = await gateway(backend, "[translators.retry]\nattempts = 0\n")
    resp = await client.get("/api/tags")
    # An empty list would claim there are no models, when the backend is down.
    assert resp.status == 502
    assert resp.headers["Content-Type"].startswith("application/json")
    body = await resp.json()
    assert "openai" in body["error"] and "down" in body["error"]


async def test_tags_names_a_hanging_list_as_an_upstream_timeout(
    backend, gateway, monkeypatch
):
    monkeypatch.setattr(upstream_module, "_LIST_TIMEOUT", 0.3)
    backend.models_delay = 30.0
    client = await gateway(backend, "[timeouts]\nconnect = 0.2\n")
    resp = await client.get("/api/tags")
    assert resp.status == 502
    error = (await resp.json())["error"]
    # Not the exception's bare class name ("openai: TimeoutError").
    assert "upstream timeout" in error and "/models" in error, error
    assert "TimeoutError" not in error


async def test_case_19_show_has_model_info_capabilities_and_details(backend, gateway):
    backend.models = VLLM_MODELS
    client = await gateway(backend)
    resp = await client.post("/api/show", data=json.dumps({"model": "Qwen/Qwen3-8B"}))
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    show = await resp.json()
    check_details(show["details"])
    parse_time(show["modified_at"])
    info = show["model_info"]
    assert isinstance(info, dict)
    arch = info["general.architecture"]
    assert arch == "qwen3"
    assert info[f"{arch}.context_length"] == 40960
    assert set(show["capabilities"]) <= set(CAPABILITIES)
    assert {"completion", "tools", "thinking"} <= set(show["capabilities"])
    assert show["modelfile"].startswith('# Modelfile generated by "ollama show"')
    assert re.fullmatch(r"num_ctx {23} 40960", show["parameters"])


# Go writes a struct's keys in field order; a strict comparison with Ollama
# (or a client reading the text) sees that order.
GO_TAGS_ORDER = [
    "name", "model", "remote_model", "remote_host", "modified_at", "size",
    "digest", "details", "capabilities",
]  # fmt: skip
GO_SHOW_ORDER = [
    "license", "modelfile", "parameters", "template", "system", "renderer",
    "parser", "details", "messages", "remote_model", "remote_host", "model_info",
    "projector_info", "tensors", "capabilities", "modified_at", "requires",
]  # fmt: skip
GO_DETAILS_ORDER = [
    "parent_model", "format", "family", "families", "parameter_size",
    "quantization_level",
]  # fmt: skip


def in_go_order(keys: list[str], order: list[str]) -> bool:
    return keys == [key for key in order if key in keys]


async def test_case_18_and_19_keys_come_in_gos_field_order(backend, gateway):
    backend.models = VLLM_MODELS
    client = await gateway(backend)
    for entry in (await (await client.get("/api/tags")).json())["models"]:
        assert list(entry) == GO_TAGS_ORDER, list(entry)
        assert list(entry["details"]) == GO_DETAILS_ORDER
    body = {"model": "Qwen/Qwen3-8B", "system": "be brief"}
    show = await (await client.post("/api/show", json=body)).json()
    assert {"parameters", "system", "template", "capabilities"} <= set(show)
    assert in_go_order(list(show), GO_SHOW_ORDER), list(show)
    assert set(show) <= set(GO_SHOW_ORDER)
    assert list(show["details"]) == GO_DETAILS_ORDER


async def test_show_without_known_context_length_has_no_context_key(backend, gateway):
    client = await gateway(backend)
    resp = await client.post("/api/show", data=json.dumps({"model": "gpt-4o"}))
    info = (await resp.json())["model_info"]
    assert info["general.architecture"] == "gpt"
    assert not any(k.endswith(".context_length") for k in info)


@pytest.mark.parametrize(
    ("model", "vision"),
    [
        ("o3", True), ("o4-mini", True), ("openai/o1", True), ("x-ai/grok-4", True),
        ("zai-org/GLM-4.5V", True), ("o3-mini", False), ("o1-mini", False),
        ("grok-3-mini", False), ("grok-code-fast-1", False), ("glm-4.6", False),
        ("Qwen/Qwen2.5-VL-7B-Instruct", True), ("deepseek-vl2", True),
        ("my-vlm", True), ("qwen3-vllm", False), ("llama3-vllm-awq", False),
    ],
)  # fmt: skip
async def test_show_says_vision_for_the_reasoning_models_that_see(
    backend, gateway, model, vision
):
    """Copilot offers image input, and Open WebUI sends images, only to a
    model whose capabilities say `vision`."""
    backend.models = [{"id": model, "object": "model"}]
    client = await gateway(backend)
    show = await (await client.post("/api/show", json={"model": model})).json()
    assert ("vision" in show["capabilities"]) is vision


async def test_show_context_length_and_capabilities_from_config(backend, gateway):
    toml = (
        '[models."gpt-4o"]\ncontext_length = 128000\nembedding_length = 3072\n'
        'capabilities = ["completion", "tools", "vision"]\nfamily = "gpt4o"\n'
    )
    client = await gateway(backend, toml)
    resp = await client.post("/api/show", data=json.dumps({"model": "gpt-4o"}))
    show = await resp.json()
    assert show["capabilities"] == ["completion", "tools", "vision"]
    assert show["model_info"]["general.architecture"] == "gpt4o"
    assert show["model_info"]["gpt4o.context_length"] == 128000
    assert show["model_info"]["gpt4o.embedding_length"] == 3072
    assert show["details"]["family"] == "gpt4o"
    assert show["details"]["families"] == ["gpt4o"]


@pytest.mark.parametrize("key", ["model", "name"])
async def test_case_20_show_accepts_model_or_deprecated_name(backend, gateway, key):
    client = await gateway(backend)
    resp = await client.post("/api/show", data=json.dumps({key: "GPT-4o:latest"}))
    assert resp.status == 200
    show = await resp.json()
    assert show["remote_model"] == "gpt-4o"
    assert "model_info" in show


async def test_show_name_is_used_when_model_is_empty(backend, gateway):
    client = await gateway(backend)
    body = {"model": "", "name": "gpt-4o"}
    resp = await client.post("/api/show", data=json.dumps(body))
    assert resp.status == 200


async def test_one_odd_llamacpp_meta_value_keeps_the_others(backend, gateway):
    # An odd n_params used to drop the whole `meta`, and the context length
    # (n_ctx_train) with it.
    backend.models = [
        {
            "id": "model.gguf",
            "object": "model",
            "meta": {"n_ctx_train": 8192, "n_embd": 4096, "n_params": 8e9},
        }
    ]
    client = await gateway(backend)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        shown = await api.show("model.gguf")
    assert shown.modelinfo is not None
    arch = shown.modelinfo["general.architecture"]
    assert shown.modelinfo[f"{arch}.context_length"] == 8192
    assert shown.modelinfo[f"{arch}.embedding_length"] == 4096
    assert shown.details is not None and shown.details.parameter_size == ""


@pytest.mark.parametrize(
    "name",
    [
        "registry.ollama.ai/library/gpt-4o:latest",
        "Registry.Ollama.AI/library/GPT-4o",
        "library/gpt-4o",
    ],
)
async def test_show_accepts_the_fully_qualified_default_name(backend, gateway, name):
    # Ollama's defaults spelled out name the same model (spec 1.4); it was 404.
    client = await gateway(backend)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        shown = await api.show(name)
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.basename"] == "gpt-4o"


async def test_show_finds_a_model_added_upstream_once_the_ttl_is_over(backend, gateway):
    # With a ttl under the few seconds after which an unknown name lists
    # again, the request that found the list stale got the old list: 404.
    client = await gateway(backend, "[catalogue]\nttl = 0.2\n")
    assert (await client.get("/api/tags")).status == 200
    backend.models = [*backend.models, {"id": "brand-new", "object": "model"}]
    await asyncio.sleep(0.3)
    resp = await client.post("/api/show", data=json.dumps({"model": "brand-new"}))
    assert resp.status == 200, await resp.text()


async def test_a_litellm_wildcard_is_not_listed_and_serves_what_it_matches(
    backend, gateway
):
    # LiteLLM lists a wildcard route as it is: it was listed as the model
    # `openai/*:latest`, and the models it routes were 404.
    backend.models = [
        {"id": "openai/*", "object": "model"},
        {"id": "gpt-4o", "object": "model"},
    ]
    backend.queue(Script.text("routed"))
    client = await gateway(backend)
    tags = await (await client.get("/api/tags")).json()
    assert [m["name"] for m in tags["models"]] == ["gpt-4o:latest"]
    models = await (await client.get("/v1/models")).json()
    assert [m["id"] for m in models["data"]] == ["gpt-4o:latest"]
    hi = [{"role": "user", "content": "hi"}]
    body = {"model": "openai/GPT-4.1:latest", "messages": hi, "stream": False}
    resp = await client.post("/api/chat", data=json.dumps(body))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["model"] == "openai/GPT-4.1:latest"
    assert backend.completions()[0].body["model"] == "openai/GPT-4.1"
    async with ollama.AsyncClient(host=base_url(client)) as api:
        shown = await api.show("openai/gpt-4.1")
        assert shown.modelinfo is not None
        assert shown.modelinfo["general.basename"] == "openai/gpt-4.1"
        with pytest.raises(ollama.ResponseError) as missing:
            await api.show("anthropic/claude")
    assert missing.value.status_code == 404


async def test_show_errors(backend, gateway):
    client = await gateway(backend)
    missing = await client.post("/api/show", data=json.dumps({"model": "nope"}))
    assert missing.status == 404
    assert missing.headers["Content-Type"].startswith("application/json")
    assert await missing.json() == {"error": "model 'nope' not found"}
    empty = await client.post("/api/show", data=json.dumps({"model": ""}))
    assert empty.status == 400
    assert await empty.json() == {"error": "model is required"}
    nothing = await client.post("/api/show", data=b"{}")
    assert nothing.status == 400


async def test_case_19_python_client_show(backend, gateway):
    backend.models = VLLM_MODELS
    client = await gateway(backend)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        shown = await api.show("qwen/qwen3-8b")
        with pytest.raises(ollama.ResponseError) as missing:
            await api.show("nope")
    assert shown.modelinfo is not None
    assert shown.modelinfo["qwen3.context_length"] == 40960
    assert shown.capabilities is not None and "tools" in shown.capabilities
    assert missing.value.status_code == 404


async def load(client: Any, model: str, keep_alive: Any = None) -> None:
    body: dict[str, Any] = {"model": model, "messages": []}
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    resp = await client.post("/api/chat", data=json.dumps(body))
    assert resp.status == 200, await resp.text()
    await resp.read()


async def ps(client: Any) -> list[dict[str, Any]]:
    resp = await client.get("/api/ps")
    assert resp.status == 200
    models: list[dict[str, Any]] = (await resp.json())["models"]
    return models


async def test_case_21_ps_is_empty_before_use_and_lists_used_models(backend, gateway):
    backend.models = VLLM_MODELS
    client = await gateway(backend)
    assert await ps(client) == []
    before = datetime.now(UTC)
    await load(client, "qwen/qwen3-8b")
    [entry] = await ps(client)
    assert entry["name"] == entry["model"] == "Qwen/Qwen3-8B:latest"
    assert re.fullmatch(r"[0-9a-f]{64}", entry["digest"])
    check_details(entry["details"])
    for key in ("size", "size_vram", "context_length"):
        assert is_int(entry[key]), key
    assert entry["context_length"] == 40960
    expires = parse_time(entry["expires_at"])
    # The default keep-alive is 5m.
    assert before + timedelta(minutes=4) < expires < before + timedelta(minutes=6)


async def test_case_21_ps_after_a_real_chat_and_the_python_client(backend, gateway):
    client = await gateway(backend)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    resp = await client.post("/api/chat", data=json.dumps(body))
    await resp.read()
    async with ollama.AsyncClient(host=base_url(client)) as api:
        running = await api.ps()
    assert [m.model for m in running.models] == ["gpt-4o:latest"]
    assert running.models[0].expires_at is not None
    assert running.models[0].expires_at > datetime.now(UTC)


async def test_case_21_ps_keep_alive_zero_removes_the_model(backend, gateway):
    client = await gateway(backend)
    await load(client, "gpt-4o")
    assert [m["name"] for m in await ps(client)] == ["gpt-4o:latest"]
    resp = await client.post(
        "/api/generate", data=json.dumps({"model": "gpt-4o", "keep_alive": 0})
    )
    assert (await resp.json())["done_reason"] == "unload"
    assert await ps(client) == []


async def test_ps_entries_expire_and_are_ordered_by_expiry(backend, gateway):
    client = await gateway(backend)
    await load(client, "gpt-4o", "150ms")
    body = {"model": "text-embedding-3-small", "input": [], "keep_alive": "1h"}
    resp = await client.post("/api/embed", data=json.dumps(body))
    assert resp.status == 200
    names = [m["name"] for m in await ps(client)]
    assert names == ["text-embedding-3-small:latest", "gpt-4o:latest"]
    await asyncio.sleep(0.2)
    assert [m["name"] for m in await ps(client)] == ["text-embedding-3-small:latest"]


async def test_ps_negative_keep_alive_is_far_future(backend, gateway):
    client = await gateway(backend)
    await load(client, "gpt-4o", -1)
    [entry] = await ps(client)
    assert parse_time(entry["expires_at"]).year >= 9999


async def test_ps_keep_alive_numbers_are_seconds(backend, gateway):
    client = await gateway(backend)
    await load(client, "gpt-4o", 42.5)
    [entry] = await ps(client)
    left = parse_time(entry["expires_at"]) - datetime.now(UTC)
    assert timedelta(seconds=40) < left <= timedelta(seconds=42.5)


async def test_ps_default_keep_alive_from_ollama_keep_alive(backend, gateway):
    client = await gateway(backend, OLLAMA_KEEP_ALIVE="2h")
    await load(client, "gpt-4o")
    [entry] = await ps(client)
    left = parse_time(entry["expires_at"]) - datetime.now(UTC)
    assert timedelta(minutes=119) < left <= timedelta(hours=2)


@pytest.mark.parametrize(
    ("value", "at_least", "at_most"),
    [
        ("-1", timedelta(days=365), None),
        ("3600", timedelta(minutes=59), timedelta(hours=1)),
    ],
)
async def test_ps_default_keep_alive_in_whole_seconds(
    backend, gateway, value, at_least, at_most
):
    # Ollama's envconfig reads OLLAMA_KEEP_ALIVE as whole seconds when it is
    # no duration, and -1 (its FAQ's way to keep models loaded) as forever:
    # both stopped the start with "time: missing unit in duration".
    client = await gateway(backend, OLLAMA_KEEP_ALIVE=value)
    await load(client, "gpt-4o")
    [entry] = await ps(client)
    left = parse_time(entry["expires_at"]) - datetime.now(UTC)
    assert left > at_least
    assert at_most is None or left <= at_most


async def test_ps_lists_what_any_worker_served(
    aiohttp_client, settings_for, backend, tmp_path
):
    """With `--workers N` a request reaches either worker: `/api/ps` listed
    the models of the worker it reached only (the soak saw it list one model,
    then two, then one). Two apps on one directory stand for two workers."""
    shared = tmp_path / "running"
    shared.mkdir()
    settings = settings_for(backend)
    one, two = [
        await aiohttp_client(create_app(settings, running_dir=str(shared)))
        for _ in range(2)
    ]
    before = datetime.now(UTC)
    await load(one, "gpt-4o")
    body = {"model": "text-embedding-3-small", "input": [], "keep_alive": -1}
    resp = await two.post("/api/embed", data=json.dumps(body))
    assert resp.status == 200
    listed = await ps(one)
    assert await ps(two) == listed
    embed, chat = listed
    assert embed["name"] == "text-embedding-3-small:latest"
    assert parse_time(embed["expires_at"]).year >= 9999
    assert chat["name"] == chat["model"] == "gpt-4o:latest"
    assert re.fullmatch(r"[0-9a-f]{64}", chat["digest"])
    check_details(chat["details"])
    for key in ("size", "size_vram", "context_length"):
        assert is_int(chat[key]), key
    expires = parse_time(chat["expires_at"])
    assert before + timedelta(minutes=4) < expires < before + timedelta(minutes=6)
    # The latest use sets the expiry, whichever worker served it...
    await load(two, "gpt-4o", "150ms")
    await asyncio.sleep(0.2)
    assert [m["name"] for m in await ps(one)] == ["text-embedding-3-small:latest"]
    # ... and an unload on one worker is one for all.
    await load(one, "gpt-4o")
    body = {"model": "text-embedding-3-small", "input": [], "keep_alive": 0}
    resp = await one.post("/api/embed", data=json.dumps(body))
    assert resp.status == 200
    assert [m["name"] for m in await ps(two)] == ["gpt-4o:latest"]
