"""`GET /metrics`: one registry per app, bounded labels, one record per request,
and an exposition that parses whatever model name a client sends."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from ollama_gateway.metrics import Metrics
from tests.conftest import FAST_DEMO
from tests.fakebackend import Script, chat_chunk, sse, usage_script
from tests.ndjson import CHAT, GENERATE, chat, ndjson, post
from tests.ops import Samples, read_metrics

BOUND = 20.0

HOSTILE = [
    'evil"model',
    "back\\slash\\",
    "new\nline",
    "tab\tand\rcr",
    "ünïcødé-模型-🦙",
    '"}\nollama_gateway_requests_total{endpoint="x"} 1e9\n',
    '\\n\\"',
    "x" * 5000,
    "",
    " ",
]

EXPECTED_METRICS = {
    "ollama_gateway_requests_total": "counter",
    "ollama_gateway_request_duration_seconds": "histogram",
    "ollama_gateway_time_to_first_token_seconds": "histogram",
    "ollama_gateway_tokens_total": "counter",
    "ollama_gateway_streams_in_flight": "gauge",
    "ollama_gateway_upstream_errors_total": "counter",
    "ollama_gateway_client_disconnects_total": "counter",
    "ollama_gateway_upstream_retries_total": "counter",
}


async def test_every_metric_is_exposed_with_help_and_type(gateway):
    client = await gateway(toml=FAST_DEMO)
    async with asyncio.timeout(BOUND):
        text = await (await client.get("/metrics")).text()
    types = {
        line.split()[2]: line.split()[3]
        for line in text.splitlines()
        if line.startswith("# TYPE ")
    }
    for name, kind in EXPECTED_METRICS.items():
        family = name.removesuffix("_total")
        assert types.get(name, types.get(family)) == kind, name
        assert f"# HELP {name}" in text or f"# HELP {family}" in text


async def test_format_is_negotiated_from_accept(gateway):
    client = await gateway(toml=FAST_DEMO)
    async with asyncio.timeout(BOUND):
        await post(client, "/api/chat", chat(model="demo", stream=False))
        plain = await client.get("/metrics", headers={"Accept": "text/plain"})
        plain_text = await plain.text()
        om = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text"}
        )
        om_text = await om.text()
    assert plain.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert om.headers["Content-Type"].startswith("application/openmetrics-text")
    assert om_text.endswith("# EOF\n")
    assert "# EOF" not in plain_text
    names = {f.name for f in openmetrics_families(om_text)}  # type: ignore[no-untyped-call]
    assert "ollama_gateway_requests" in names
    assert Samples(plain_text).get("ollama_gateway_requests_total") >= 1


async def test_no_created_series(gateway):
    client = await gateway(toml=FAST_DEMO)
    async with asyncio.timeout(BOUND):
        await post(client, "/api/chat", chat(model="demo"))
        metrics = await read_metrics(client)
    assert not [n for n in metrics.names() if n.endswith("_created")]


async def test_each_app_has_its_own_registry(gateway):
    one = await gateway(toml=FAST_DEMO)
    two = await gateway(toml=FAST_DEMO)
    async with asyncio.timeout(BOUND):
        for _ in range(3):
            await post(one, "/api/chat", chat(model="demo", stream=False))
        first = await read_metrics(one)
        second = await read_metrics(two)
    chat_requests = {"endpoint": "/api/chat"}
    assert first.get("ollama_gateway_requests_total", **chat_requests) == 3
    assert second.get("ollama_gateway_requests_total", **chat_requests) == 0
    assert Metrics().registry is not Metrics().registry


async def test_a_stream_is_recorded_once_with_tokens_and_ttft(gateway, backend):
    backend.queue(Script.text("one two three", split=30))
    client = await gateway(backend)
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        objs = ndjson(await resp.read())
        metrics = await read_metrics(client)
    assert objs[-1]["done"] is True
    labels = {"endpoint": "/api/chat", "model": "gpt-4o:latest"}
    assert metrics.get("ollama_gateway_requests_total", **labels) == 1
    assert (
        metrics.get("ollama_gateway_requests_total", status_class="2xx", **labels) == 1
    )
    assert (
        metrics.get(
            "ollama_gateway_request_duration_seconds_count", endpoint="/api/chat"
        )
        == 1
    )
    assert metrics.get("ollama_gateway_time_to_first_token_seconds_count", **labels)
    assert metrics.get("ollama_gateway_time_to_first_token_seconds_count") == 1
    tokens = "ollama_gateway_tokens_total"
    assert metrics.get(tokens, model="gpt-4o:latest", kind="prompt") == 7
    assert metrics.get(tokens, model="gpt-4o:latest", kind="completion") == 3
    assert metrics.get("ollama_gateway_streams_in_flight") == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/embed", {"model": "text-embedding-3-small", "input": ["a", "b"]}),
        ("/api/embeddings", {"model": "text-embedding-3-small", "prompt": "a"}),
    ],
)
async def test_embedding_tokens_are_counted(gateway, backend, path, body):
    # The backend's usage reached the answer's prompt_eval_count, but the
    # request line and the tokens metric said 0 for every embedding.
    client = await gateway(backend)
    async with asyncio.timeout(BOUND):
        resp = await post(client, path, body)
        assert resp.status == 200, await resp.text()
        metrics = await read_metrics(client)
    inputs = len(body["input"]) if "input" in body else 1
    model = "text-embedding-3-small:latest"
    tokens = "ollama_gateway_tokens_total"
    assert metrics.get(tokens, model=model, kind="prompt") == 2 * inputs
    assert metrics.get(tokens, model=model, kind="completion") == 0


@pytest.mark.parametrize("stream", [True, False])
async def test_openai_route_tokens_are_counted(gateway, backend, caplog, stream):
    # The relay passes the answer on unread, and the tokens metric and the
    # request line said 0 for every `/v1/chat/completions` (VS Code
    # Copilot's chats), whose answer ends with the backend's usage. The
    # whole answer's content quotes a usage, which is no count.
    caplog.set_level(logging.INFO)
    if stream:
        backend.queue(Script.text("one two three", split=7))
    else:
        quoted = 'say {"prompt_tokens": 99, "completion_tokens": 98}'
        script = usage_script({"prompt_tokens": 7, "completion_tokens": 3}, whole=True)
        script.pieces = [
            script.pieces[0].replace(b"Hi there", json.dumps(quoted)[1:-1].encode())
        ]
        backend.queue(script)
    client = await gateway(backend)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/v1/chat/completions", {**body, "stream": stream})
        assert resp.status == 200, await resp.text()
        await resp.read()
        metrics = await read_metrics(client)
    tokens = "ollama_gateway_tokens_total"
    assert metrics.get(tokens, model="gpt-4o:latest", kind="prompt") == 7
    assert metrics.get(tokens, model="gpt-4o:latest", kind="completion") == 3
    (line,) = [
        r
        for r in caplog.records
        if r.name == "ollama_gateway.access" and "/v1/" in r.getMessage()
    ]
    assert (line.prompt_tokens, line.completion_tokens) == (7, 3)


async def test_openai_embeddings_generate_no_first_token(gateway, backend, caplog):
    # `/v1/embeddings` took the relay's first piece for a first token, as
    # `/api/embed` does not: the TTFT histogram held embedding latencies.
    caplog.set_level(logging.INFO)
    client = await gateway(backend)
    body = {"model": "text-embedding-3-small", "input": ["a", "b"]}
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/v1/embeddings", body)
        assert resp.status == 200, await resp.text()
        await resp.read()
        metrics = await read_metrics(client)
    model = "text-embedding-3-small:latest"
    assert metrics.get("ollama_gateway_time_to_first_token_seconds_count") == 0
    assert metrics.get("ollama_gateway_tokens_total", model=model, kind="prompt") == 4
    (line,) = [
        r
        for r in caplog.records
        if r.name == "ollama_gateway.access" and "/v1/" in r.getMessage()
    ]
    assert line.ttft_ms is None


async def test_requests_are_counted_once_each(gateway):
    client = await gateway(toml=FAST_DEMO)
    bodies = [
        ("/api/chat", chat(model="demo")),
        ("/api/chat", chat(model="demo", stream=False)),
        ("/api/generate", {**GENERATE, "model": "demo"}),
        ("/api/chat", chat(model="nope")),
        ("/api/chat", b"{not json"),
        ("/api/embed", {"model": "demo-embed", "input": ["a", "b"]}),
    ]
    async with asyncio.timeout(BOUND):
        for path, body in bodies:
            await (await post(client, path, body)).read()
        await client.get("/api/tags")
        await client.get("/no/such/path")
        metrics = await read_metrics(client)
    requests = "ollama_gateway_requests_total"
    assert metrics.get(requests, endpoint="/api/chat") == 4
    assert metrics.get(requests, endpoint="/api/chat", status_class="2xx") == 2
    assert metrics.get(requests, endpoint="/api/chat", status_class="4xx") == 2
    assert metrics.get(requests, endpoint="/api/generate") == 1
    assert metrics.get(requests, endpoint="/api/embed", model="demo-embed:latest") == 1
    assert metrics.get(requests, endpoint="/api/tags") == 1
    assert metrics.get(requests, endpoint="unmatched", status_class="4xx") == 1
    durations = "ollama_gateway_request_duration_seconds_count"
    total = sum(
        metrics.get(requests, endpoint=e)
        for e in metrics.label_values(requests, "endpoint")
    )
    assert metrics.get(durations) == total
    # Only the two answered chat/generate streams and the one non-stream chat
    # produced tokens; the failures did not.
    assert metrics.get("ollama_gateway_time_to_first_token_seconds_count") == 3


async def test_unknown_models_are_counted_as_other(gateway):
    client = await gateway(toml=FAST_DEMO)
    async with asyncio.timeout(BOUND):
        for name in ("nope", "NOPE:latest", "also-nope"):
            await (await post(client, "/api/chat", chat(model=name))).read()
        await (await post(client, "/api/chat", chat(model="DEMO:latest"))).read()
        metrics = await read_metrics(client)
    requests = "ollama_gateway_requests_total"
    assert metrics.get(requests, endpoint="/api/chat", model="other") == 3
    assert metrics.get(requests, endpoint="/api/chat", model="demo:latest") == 1


async def test_show_is_counted_under_the_model_it_shows(gateway):
    client = await gateway(toml=FAST_DEMO)
    async with asyncio.timeout(BOUND):
        resp = await post(
            client, "/api/copy", {"source": "demo", "destination": "mine"}
        )
        assert resp.status == 200
        for name, status in [("demo", 200), ("mine", 200), ("absent", 404)]:
            resp = await post(client, "/api/show", {"model": name})
            assert resp.status == status
            await resp.read()
        metrics = await read_metrics(client)
    requests = "ollama_gateway_requests_total"
    assert metrics.get(requests, endpoint="/api/show", model="demo:latest") == 2
    assert metrics.get(requests, endpoint="/api/show", model="other") == 1


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
async def test_hostile_model_names_keep_the_exposition_valid(gateway, name):
    client = await gateway(toml=FAST_DEMO)
    paths = ["/api/chat", "/api/generate", "/api/embed", "/api/show", "/api/pull"]
    async with asyncio.timeout(BOUND):
        for path in paths:
            body = {"model": name, "prompt": "x", "input": "x", "stream": False}
            await (await post(client, path, body)).read()
        await (await post(client, "/v1/chat/completions", {"model": name})).read()
        resp = await client.get("/metrics")
        text = await resp.text()
    samples = Samples(text)  # parses, or raises
    for metric in ("ollama_gateway_requests_total", "ollama_gateway_tokens_total"):
        assert samples.label_values(metric, "model") <= {
            "other",
            "demo:latest",
            "demo-embed:latest",
        }
    assert samples.get("ollama_gateway_requests_total", model="other") == len(paths) + 1
    assert "1e9" not in text


async def test_aliases_are_counted_under_their_target(gateway):
    client = await gateway(toml=FAST_DEMO)
    async with asyncio.timeout(BOUND):
        copies = [f"alias-{i}" for i in range(5)] + ['we"ird\\name']
        for destination in copies:
            resp = await post(
                client, "/api/copy", {"source": "demo", "destination": destination}
            )
            assert resp.status == 200
            resp = await post(client, "/api/chat", chat(model=destination))
            assert resp.status == 200
            await resp.read()
        metrics = await read_metrics(client)
    requests = "ollama_gateway_requests_total"
    assert metrics.label_values(requests, "model") == {"demo:latest", "other"}
    assert metrics.get(requests, endpoint="/api/chat", model="demo:latest") == 6


async def test_streams_in_flight_while_streaming(gateway, backend):
    events = [sse(chat_chunk({"content": f"w{i} "}), done=False) for i in range(3)] + [
        sse(chat_chunk({}, finish="stop"))
    ]
    backend.queue(Script(pieces=events, delay=0.3), Script(pieces=events, delay=0.3))
    client = await gateway(backend)
    gauge = "ollama_gateway_streams_in_flight"
    async with asyncio.timeout(BOUND):
        first = await post(client, "/api/chat", CHAT)
        await first.content.readline()
        second = await post(client, "/api/chat", CHAT)
        await second.content.readline()
        during = await read_metrics(client)
        await first.read()
        await second.read()
        plain = await post(client, "/api/chat", chat(stream=False))
        await plain.read()
        after = await read_metrics(client)
    assert during.get(gauge) == 2
    assert after.get(gauge) == 0


async def test_status_classes_and_upstream_error_kinds(gateway, backend):
    backend.queue(
        Script.error(500, "boom"),
        Script.error(400, "bad"),
        Script(pieces=[b"data: {broken\n\n"]),
    )
    client = await gateway(backend, "[translators.retry]\nattempts = 0\n")
    async with asyncio.timeout(BOUND):
        statuses = []
        for _ in range(3):
            resp = await post(client, "/api/chat", CHAT)
            await resp.read()
            statuses.append(resp.status)
        metrics = await read_metrics(client)
    assert statuses == [500, 400, 502]
    requests = "ollama_gateway_requests_total"
    assert metrics.get(requests, endpoint="/api/chat", status_class="5xx") == 2
    assert metrics.get(requests, endpoint="/api/chat", status_class="4xx") == 1
    errors = "ollama_gateway_upstream_errors_total"
    assert metrics.get(errors, kind="status") == 2
    assert metrics.get(errors, kind="protocol") == 1
    assert metrics.label_values(errors, "kind") == {
        "connect",
        "timeout",
        "status",
        "protocol",
    }


async def test_label_sets_stay_bounded(gateway):
    client = await gateway(toml=FAST_DEMO)
    async with asyncio.timeout(BOUND):
        for i in range(30):
            await (await client.get(f"/random/{i}")).read()
            await (await post(client, "/api/chat", chat(model=f"m{i}"))).read()
            await (
                await client.post(
                    "/api/chat",
                    data=json.dumps(chat(model="demo", stream=False)),
                    headers={"X-Request-ID": f"id-{i}"},
                )
            ).read()
        metrics = await read_metrics(client)
    requests = "ollama_gateway_requests_total"
    assert metrics.label_values(requests, "endpoint") == {
        "unmatched",
        "/api/chat",
        "/metrics",
    } - ({"/metrics"} if not metrics.get(requests, endpoint="/metrics") else set())
    assert metrics.label_values(requests, "model") == {"other", "demo:latest"}
    assert "id-1" not in metrics.text


async def test_preflights_and_405s_are_labelled_by_their_route(gateway):
    # A CORS preflight or a wrong method on a served path was `unmatched`,
    # with scanners' unknown paths: a browser app's preflights did not show
    # on the route they were for. Unknown paths stay `unmatched`.
    client = await gateway(toml=FAST_DEMO)
    preflight = {
        "Origin": "http://localhost",
        "Access-Control-Request-Method": "POST",
    }
    async with asyncio.timeout(BOUND):
        for path in ("/api/chat", "/v1/models/a/b", "/no/such/path"):
            resp = await client.options(path, headers=preflight)
            assert resp.status in (204, 404), (path, resp.status)
        for path in ("/api/chat", "/api/tags", "/v1/models/x", "/random/1"):
            resp = await client.put(path)
            assert resp.status in (405, 404), (path, resp.status)
        metrics = await read_metrics(client)
    requests = "ollama_gateway_requests_total"
    assert metrics.get(requests, endpoint="/api/chat", status_class="2xx") == 1
    assert metrics.get(requests, endpoint="/api/chat", status_class="4xx") == 1
    assert metrics.get(requests, endpoint="/v1/models/{model}") == 2
    assert metrics.get(requests, endpoint="/api/tags", status_class="4xx") == 1
    assert metrics.get(requests, endpoint="unmatched") == 2
