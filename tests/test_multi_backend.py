"""Several backends behind one gateway: merged listing, failover before the first
byte, per-model routing and configured models (spec 1.4, 3.14)."""

from __future__ import annotations

import asyncio
import json
import socket
from importlib.metadata import EntryPoint
from typing import Any

import ollama
import pytest

from ollama_gateway.app import create_app
from tests.conftest import base_url
from tests.fakebackend import FakeBackend, Script, chat_chunk, sse

NO_RETRY = "\n[translators.retry]\nattempts = 0\n"


@pytest.fixture
async def b1(aiohttp_server: Any) -> FakeBackend:
    return await start(aiohttp_server, ["gpt-4o", "text-embedding-3-small"])


@pytest.fixture
async def b2(aiohttp_server: Any) -> FakeBackend:
    return await start(aiohttp_server, ["gpt-4o", "llama3.1-8b"])


async def start(aiohttp_server: Any, ids: list[str]) -> FakeBackend:
    fake = FakeBackend()
    fake.models = [{"id": i, "object": "model", "created": 1700000000} for i in ids]
    server = await aiohttp_server(fake.app)
    fake.url = str(server.make_url("/v1"))
    return fake


def two(b1: FakeBackend, b2: FakeBackend, extra: str = "", **b2_fields: str) -> str:
    fields = "".join(f'{k} = "{v}"\n' for k, v in b2_fields.items())
    return (
        f'[[backends]]\nname = "b1"\nbase_url = "{b1.url}"\napi_key = "key-one"\n\n'
        f'[[backends]]\nname = "b2"\nbase_url = "{b2.url}"\napi_key = "key-two"\n'
        f"{fields}{NO_RETRY}{extra}"
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def post(client: Any, path: str, body: Any) -> Any:
    return await client.post(path, data=json.dumps(body))


def chat(model: str = "gpt-4o", **fields: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
        **fields,
    }


async def tag_names(client: Any) -> list[str]:
    resp = await client.get("/api/tags")
    assert resp.status == 200
    return sorted(m["name"] for m in (await resp.json())["models"])


async def test_tags_merge_both_backends(b1, b2, gateway):
    client = await gateway(toml=two(b1, b2))
    assert await tag_names(client) == [
        "gpt-4o:latest",
        "llama3.1-8b:latest",
        "text-embedding-3-small:latest",
    ]
    resp = await client.get("/api/tags")
    hosts = {m["name"]: m["remote_host"] for m in (await resp.json())["models"]}
    assert hosts["llama3.1-8b:latest"] == b2.url
    assert hosts["text-embedding-3-small:latest"] == b1.url


async def test_each_model_goes_to_the_backend_that_serves_it(b1, b2, gateway):
    client = await gateway(toml=two(b1, b2))
    resp = await post(client, "/api/chat", chat("llama3.1-8b"))
    assert resp.status == 200
    assert b1.completions() == []
    [request] = b2.completions()
    assert request.body["model"] == "llama3.1-8b"
    assert request.headers["Authorization"] == "Bearer key-two"
    await post(client, "/api/chat", chat("gpt-4o"))
    [first] = b1.completions()
    assert first.headers["Authorization"] == "Bearer key-one"


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_model_on_both_fails_over_on_a_status_before_the_first_byte(
    b1, b2, gateway, status
):
    b1.queue(Script.error(status, "busy here"))
    b2.queue(Script.text("from the second"))
    client = await gateway(toml=two(b1, b2))
    resp = await post(client, "/api/chat", chat(stream=True))
    assert resp.status == 200
    lines = [json.loads(x) for x in (await resp.read()).decode().splitlines()]
    assert "".join(x["message"]["content"] for x in lines) == "from the second"
    assert len(b1.completions()) == 1 and len(b2.completions()) == 1


async def test_model_on_both_fails_over_on_a_refused_connection(b2, gateway):
    toml = (
        f'[[backends]]\nname = "dead"\nbase_url = "http://127.0.0.1:{closed_port()}/v1"'
        '\nmodels = ["gpt-4o"]\n\n'
        f'[[backends]]\nname = "b2"\nbase_url = "{b2.url}"\n{NO_RETRY}'
    )
    client = await gateway(toml=toml)
    resp = await post(client, "/api/chat", chat())
    assert resp.status == 200
    assert (await resp.json())["message"]["content"] == "Hello from fake"
    assert len(b2.completions()) == 1


async def test_no_failover_on_a_client_error(b1, b2, gateway):
    b1.queue(Script.error(400, "bad request here"))
    client = await gateway(toml=two(b1, b2))
    resp = await post(client, "/api/chat", chat())
    assert resp.status == 400
    assert await resp.json() == {"error": "bad request here"}
    assert b2.completions() == []


async def test_no_failover_after_the_first_byte(b1, b2, gateway):
    events = sse(chat_chunk({"content": "partial"}), done=False)
    b1.queue(Script(pieces=[events, b"data: {}\n\n"], abort_after=1))
    client = await gateway(toml=two(b1, b2))
    resp = await post(client, "/api/chat", chat(stream=True))
    lines = [json.loads(x) for x in (await resp.read()).decode().splitlines()]
    assert lines[0]["message"]["content"] == "partial"
    assert "error" in lines[-1]
    assert b2.completions() == []


async def test_when_every_backend_fails_the_last_error_is_returned(b1, b2, gateway):
    b1.queue(Script.error(503, "first down"))
    b2.queue(Script.error(429, "second rate limited"))
    client = await gateway(toml=two(b1, b2))
    resp = await post(client, "/api/chat", chat(stream=True))
    assert resp.status == 429
    assert resp.headers["Content-Type"].startswith("application/json")
    assert await resp.json() == {"error": "second rate limited"}


async def test_embeddings_fail_over_too(b1, b2, gateway):
    b2.models.append({"id": "text-embedding-3-small", "object": "model"})
    b1.queue(Script.error(503, "down"))
    client = await gateway(toml=two(b1, b2))
    body = {"model": "text-embedding-3-small", "input": "x"}
    resp = await post(client, "/api/embed", body)
    assert resp.status == 200
    assert (await resp.json())["embeddings"] == [pytest.approx([0.6, 0.8])]
    assert len(b1.requests) == 2 and len(b2.requests) == 2  # models + embeddings


async def test_a_backend_that_goes_down_keeps_its_models_listed(b1, b2, gateway):
    client = await gateway(toml=two(b1, b2, "\n[catalogue]\nttl = 0.05\n"))
    before = await tag_names(client)
    b2.models_status = 500
    b1.models.append({"id": "gpt-4.1", "object": "model"})
    await asyncio.sleep(0.1)
    for _ in range(40):
        names = await tag_names(client)
        if "gpt-4.1:latest" in names:
            break
        await asyncio.sleep(0.02)
    assert names == sorted([*before, "gpt-4.1:latest"])
    assert sum(r.path == "/v1/models" for r in b2.requests) >= 2
    # The model only b2 serves still works while b2 answers completions.
    resp = await post(client, "/api/chat", chat("llama3.1-8b"))
    assert resp.status == 200


async def test_a_backend_down_from_the_start_does_not_hide_the_other(b1, gateway):
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    toml = (
        f'[[backends]]\nname = "b1"\nbase_url = "{b1.url}"\n\n'
        f'[[backends]]\nname = "dead"\nbase_url = "{dead}"\n{NO_RETRY}'
    )
    client = await gateway(toml=toml)
    assert await tag_names(client) == ["gpt-4o:latest", "text-embedding-3-small:latest"]
    ok = await post(client, "/api/chat", chat())
    assert ok.status == 200
    # A name no one lists: the dead backend might serve it, so it is not a 404.
    unknown = await post(client, "/api/chat", chat("llama3.1-8b"))
    assert unknown.status == 502
    assert "dead" in (await unknown.json())["error"]


async def test_explicit_backend_mapping(b1, b2, gateway):
    extra = '\n[models."gpt-4o"]\nbackend = "b2"\n'
    client = await gateway(toml=two(b1, b2, extra))
    b2.queue(Script.error(503, "b2 down"))
    resp = await post(client, "/api/chat", chat())
    # Pinned to b2: no failover to b1, even though b1 lists the model.
    assert resp.status == 503
    assert b1.completions() == []
    ok = await post(client, "/api/chat", chat())
    assert ok.status == 200 and len(b2.completions()) == 2


async def test_configured_alias_targets_a_model(b1, b2, gateway):
    extra = '\n[models."llama3"]\ntarget = "llama3.1-8b"\ncontext_length = 8192\n'
    client = await gateway(toml=two(b1, b2, extra))
    assert "llama3:latest" in await tag_names(client)
    resp = await post(client, "/api/chat", chat("Llama3:latest"))
    assert resp.status == 200
    assert (await resp.json())["model"] == "Llama3:latest"
    assert b2.completions()[-1].body["model"] == "llama3.1-8b"
    show = await post(client, "/api/show", {"model": "llama3"})
    info = (await show.json())["model_info"]
    assert info[f"{info['general.architecture']}.context_length"] == 8192


async def test_openai_named_alias_of_an_upstream_model(b1, b2, gateway):
    extra = '\n[models."gpt-3.5-turbo"]\ntarget = "gpt-4o"\n'
    client = await gateway(toml=two(b1, b2, extra))
    b1.queue(Script.error(502, "bad gateway"))
    resp = await post(client, "/api/chat", chat("gpt-3.5-turbo"))
    # The alias keeps the failover list of its target.
    assert resp.status == 200
    assert b2.completions()[-1].body["model"] == "gpt-4o"


async def test_hidden_models(b1, b2, gateway):
    extra = '\n[models."llama3.1-8b"]\nhidden = true\n'
    client = await gateway(toml=two(b1, b2, extra))
    assert "llama3.1-8b:latest" not in await tag_names(client)
    models = await (await client.get("/v1/models")).json()
    assert "llama3.1-8b:latest" not in [m["id"] for m in models["data"]]
    resp = await post(client, "/api/chat", chat("llama3.1-8b"))
    assert resp.status == 200
    show = await post(client, "/api/show", {"model": "llama3.1-8b"})
    assert show.status == 200


async def test_capabilities_and_context_length_from_config(b1, b2, gateway):
    extra = (
        '\n[models."llama3.1-8b"]\ncapabilities = ["completion"]\n'
        "context_length = 131072\n"
    )
    client = await gateway(toml=two(b1, b2, extra))
    show = await (await post(client, "/api/show", {"model": "llama3.1-8b"})).json()
    assert show["capabilities"] == ["completion"]
    assert show["model_info"]["llama.context_length"] == 131072
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    resp = await post(client, "/api/chat", chat("llama3.1-8b", tools=tools))
    assert resp.status == 400
    assert await resp.json() == {
        "error": "registry.ollama.ai/library/llama3.1-8b:latest does not support tools"
    }


@pytest.mark.parametrize(
    "asked", ["llama3.1-8b", "llama3.1-8b:latest", "LLAMA3.1-8B", "Llama3.1-8b:LATEST"]
)
async def test_case_insensitive_and_latest_resolution_echoes_the_client(
    b1, b2, gateway, asked
):
    client = await gateway(toml=two(b1, b2))
    resp = await post(client, "/api/chat", chat(asked))
    assert resp.status == 200
    assert (await resp.json())["model"] == asked
    assert b2.completions()[-1].body["model"] == "llama3.1-8b"
    streamed = await post(client, "/api/generate", {"model": asked, "prompt": "x"})
    lines = [json.loads(x) for x in (await streamed.read()).decode().splitlines()]
    assert {line["model"] for line in lines} == {asked}


async def test_thinking_dialect_is_per_backend(b1, b2, gateway):
    extra = (
        '\n[models."gpt-4o"]\nbackend = "b1"\ncapabilities = ["completion", "thinking"]\n'
        '\n[models."llama3.1-8b"]\ncapabilities = ["completion", "thinking"]\n'
    )
    toml = two(b1, b2, extra, dialect="chat_template_kwargs")
    client = await gateway(toml=toml)
    await post(client, "/api/chat", chat("gpt-4o", think="high"))
    await post(client, "/api/chat", chat("llama3.1-8b", think="high"))
    first, second = b1.completions()[-1].body, b2.completions()[-1].body
    assert first["reasoning_effort"] == "high" and "chat_template_kwargs" not in first
    assert second["chat_template_kwargs"] == {
        "enable_thinking": True,
        "reasoning_effort": "high",
    }
    assert "reasoning_effort" not in second


async def test_python_client_sees_the_merged_list(b1, b2, gateway):
    client = await gateway(toml=two(b1, b2))
    async with ollama.AsyncClient(host=base_url(client)) as api:
        listed = sorted(m.model or "" for m in (await api.list()).models)
        reply = await api.chat(
            model="llama3.1-8b", messages=[{"role": "user", "content": "x"}]
        )
    assert listed == [
        "gpt-4o:latest",
        "llama3.1-8b:latest",
        "text-embedding-3-small:latest",
    ]
    assert reply.model == "llama3.1-8b"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", chat("llama3")),
        ("/api/generate", {"model": "llama3", "prompt": "x", "stream": False}),
        ("/api/embed", {"model": "llama3", "input": "x"}),
        ("/v1/chat/completions", chat("llama3")),
    ],
)
async def test_failover_sends_each_backend_its_own_spelling_of_the_model(
    gateway, aiohttp_server, path, body
):
    # vLLM serves it as `Llama3`, an Ollama behind the other as `llama3:latest`:
    # one model to clients, two ids upstream.
    first = await start(aiohttp_server, ["Llama3"])
    second = await start(aiohttp_server, ["llama3:latest"])
    first.queue(Script.error(503, "busy"))
    client = await gateway(toml=two(first, second))
    assert "Llama3:latest" in await tag_names(client)
    resp = await post(client, path, body)
    assert resp.status == 200
    [asked] = [r.body for r in first.requests if r.path != "/v1/models"]
    [served] = [r.body for r in second.requests if r.path != "/v1/models"]
    assert asked["model"] == "Llama3"
    assert served["model"] == "llama3:latest"
    assert {k: v for k, v in served.items() if k != "model"} == {
        k: v for k, v in asked.items() if k != "model"
    }


def models_sent(fake: FakeBackend) -> list[str]:
    return [r.body["model"] for r in fake.completions()]


async def test_an_alias_keeps_each_backends_spelling_of_its_target(
    gateway, aiohttp_server
):
    first = await start(aiohttp_server, ["Llama3"])
    second = await start(aiohttp_server, ["llama3:latest"])
    extra = '\n[models."fast"]\ntarget = "llama3"\n'
    client = await gateway(toml=two(first, second, extra))
    first.queue(Script.error(502, "down"))
    resp = await post(client, "/api/chat", chat("fast"))
    assert resp.status == 200
    assert models_sent(first) == ["Llama3"]
    assert models_sent(second) == ["llama3:latest"]
    # Pinned to the second backend, the alias is sent as that one spells it.
    pinned = '\n[models."fast"]\ntarget = "llama3"\nbackend = "b2"\n'
    client = await gateway(toml=two(first, second, pinned))
    resp = await post(client, "/api/chat", chat("fast"))
    assert resp.status == 200
    assert models_sent(second)[-1] == "llama3:latest"


def unlike(b1: FakeBackend, b2: FakeBackend, extra: str = "") -> str:
    """b1 a vLLM (extensions, `chat_template_kwargs`), b2 a strict OpenAI."""
    return (
        f'[[backends]]\nname = "b1"\nbase_url = "{b1.url}"\nextensions = true\n'
        'dialect = "chat_template_kwargs"\n\n'
        f'[[backends]]\nname = "b2"\nbase_url = "{b2.url}"\n'
        'max_tokens_field = "max_completion_tokens"\n'
        f"{NO_RETRY}{extra}"
    )


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
async def test_failover_maps_the_request_again_for_the_next_backends_settings(
    b1, b2, gateway, path
):
    extra = '\n[models."gpt-4o"]\ncapabilities = ["completion", "thinking"]\n'
    b1.queue(Script.error(503, "busy"))
    client = await gateway(toml=unlike(b1, b2, extra))
    body = chat(think=False, options={"top_k": 3, "num_predict": 9})
    if path == "/api/generate":
        body["prompt"] = body.pop("messages")[0]["content"]
    resp = await post(client, path, body)
    assert resp.status == 200
    [asked] = [r.body for r in b1.completions()]
    [served] = [r.body for r in b2.completions()]
    assert asked["top_k"] == 3 and asked["max_tokens"] == 9
    assert asked["chat_template_kwargs"] == {"enable_thinking": False}
    # Sent as the strict backend takes it: no extensions, its own field names.
    assert "top_k" not in served and "chat_template_kwargs" not in served
    assert served["reasoning_effort"] == "none"
    assert served["max_completion_tokens"] == 9 and "max_tokens" not in served
    assert served["messages"] == asked["messages"]


async def test_embeddings_failover_maps_the_request_again(b1, b2, gateway):
    b2.models.append({"id": "text-embedding-3-small", "object": "model"})
    extra = '\n[models."text-embedding-3-small"]\ncontext_length = 512\n'
    b1.queue(Script.error(503, "busy"))
    client = await gateway(toml=unlike(b1, b2, extra))
    body = {"model": "text-embedding-3-small", "input": ["a", "b"]}
    resp = await post(client, "/api/embed", body)
    assert resp.status == 200
    [asked] = [r.body for r in b1.requests if r.path == "/v1/embeddings"]
    [served] = [r.body for r in b2.requests if r.path == "/v1/embeddings"]
    assert asked["truncate_prompt_tokens"] == 512
    assert served == {
        "model": "text-embedding-3-small",
        "input": ["a", "b"],
        "encoding_format": "float",
    }


LLAMA3 = '\n[models."llama3"]\ntarget = ["meta-llama/Llama-3-8B", "llama3:8b"]\n'


async def test_a_model_named_otherwise_on_each_backend_fails_over_by_its_names(
    gateway, aiohttp_server
):
    first = await start(aiohttp_server, ["meta-llama/Llama-3-8B"])
    second = await start(aiohttp_server, ["llama3:8b"])
    first.queue(Script.error(503, "busy"))
    client = await gateway(toml=two(first, second, LLAMA3))
    assert "llama3:latest" in await tag_names(client)
    resp = await post(client, "/api/chat", chat("llama3"))
    assert resp.status == 200
    assert (await resp.json())["model"] == "llama3"
    assert models_sent(first) == ["meta-llama/Llama-3-8B"]
    assert models_sent(second) == ["llama3:8b"]
    # Without a failure, the first target's backend serves it.
    await post(client, "/api/generate", {"model": "llama3", "prompt": "x"})
    assert models_sent(first)[-1] == "meta-llama/Llama-3-8B"
    assert len(second.completions()) == 1


async def test_targets_pinned_to_a_backend_or_unlisted(gateway, aiohttp_server):
    first = await start(aiohttp_server, ["meta-llama/Llama-3-8B"])
    second = await start(aiohttp_server, ["llama3:8b"])
    pinned = LLAMA3 + 'backend = "b2"\n'
    client = await gateway(toml=two(first, second, pinned))
    second.queue(Script.error(503, "busy"))
    resp = await post(client, "/api/chat", chat("llama3"))
    assert resp.status == 503  # pinned: no failover to the first
    assert first.completions() == []
    assert models_sent(second) == ["llama3:8b"]
    # A target no backend lists is left out of the failover list.
    unlisted = '\n[models."llama3"]\ntarget = ["llama3:70b", "llama3:8b"]\n'
    client = await gateway(toml=two(first, second, unlisted))
    resp = await post(client, "/api/chat", chat("llama3"))
    assert resp.status == 200
    assert models_sent(second)[-1] == "llama3:8b"
    assert first.completions() == []


async def test_a_header_a_transport_set_for_one_backend_stays_with_it(
    b1, b2, aiohttp_client, settings_for
):
    # Each backend tried gets its own headers: a wrapper's key for the first
    # backend went to the second on failover, in place of the second's own.
    b1.queue(Script.error(503, "first down"))
    toml = two(
        b1,
        b2,
        '[pipeline]\ntransport = ["key-per-backend", "openai-http"]\n'
        '[translators.key-per-backend]\nkeys = { b1 = "plugin-key" }\n',
    )
    plugin = EntryPoint(
        "key-per-backend",
        "tests.plugins.broken:KeyPerBackend",
        "ollama_gateway.translators",
    )
    app = create_app(settings_for(None, toml), entry_points=[plugin])
    client = await aiohttp_client(app)
    resp = await post(client, "/api/chat", chat())
    assert resp.status == 200
    [first] = b1.completions()
    assert first.headers["Authorization"] == "Bearer plugin-key"
    [second] = b2.completions()
    assert second.headers["Authorization"] == "Bearer key-two"


EFFORT_400 = (
    "Unsupported value: 'reasoning_effort' does not support 'none' with this "
    "model. Supported values are: 'low', 'medium', and 'high'."
)
LIMIT_400 = (
    "'max_tokens' or 'max_completion_tokens' is too large: 9. This model's "
    "maximum context length is 8 tokens and your request has 4 input tokens."
)


@pytest.mark.parametrize("refusal", [EFFORT_400, LIMIT_400])
async def test_a_resend_after_a_refusal_goes_to_the_refusing_backend_only(
    b1, b2, gateway, refusal
):
    # b1 is busy, b2 refuses what `think: false` or `num_predict` became: the
    # one resend goes to b2, as it was sent there (its own dialect and
    # fields), not down the failover list again from b1.
    extra = '\n[models."gpt-4o"]\ncapabilities = ["completion", "thinking"]\n'
    b1.queue(Script.error(503, "busy"), Script.text("from b1"))
    b2.queue(Script.error(400, refusal), Script.text("from b2"))
    client = await gateway(toml=unlike(b1, b2, extra))
    resp = await post(
        client, "/api/chat", chat(think=False, options={"num_predict": 9})
    )
    assert resp.status == 200
    assert (await resp.json())["message"]["content"] == "from b2"
    assert len(b1.completions()) == 1
    refused, answered = (r.body for r in b2.completions())
    assert refused["reasoning_effort"] == "none"
    assert refused["max_completion_tokens"] == 9
    assert "top_k" not in answered and "chat_template_kwargs" not in answered
    if refusal == EFFORT_400:
        assert "reasoning_effort" not in answered
        assert answered["max_completion_tokens"] == 9
    else:
        assert answered["reasoning_effort"] == "none"
        assert "max_completion_tokens" not in answered and "max_tokens" not in answered
