"""The `retry` transport: only before any byte, only connect errors and
429/502/503/504, `Retry-After` honoured with a cap and jitter, and never a
second completion once the backend started answering."""

from __future__ import annotations

import asyncio
import math
import time
from email.utils import formatdate

import pytest
from hypothesis import given, strategies as st

from ollama_gateway.app import create_app
from ollama_gateway.errors import PluginLoadError
from ollama_gateway_translators.retry import (
    RetryConfig,
    retry_after_seconds,
    retry_delay,
)
from tests.fakebackend import Script
from tests.ndjson import CHAT, content_of, ndjson, post
from tests.ops import read_metrics

BOUND = 20.0
FAST = """
[translators.retry]
base_delay = 0.01
max_delay = 0.5
"""


def _low(a: float, b: float) -> float:
    return a


def _high(a: float, b: float) -> float:
    return b


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-4", 0.0),
        ("nan", None),
        ("inf", None),
        ("1e400", None),
        ("soon", None),
        ("", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 -0000", 0.0),
        ("Mon, 99 Foo 2015", None),
    ],
)
def test_retry_after_values(value, seconds):
    assert retry_after_seconds({"Retry-After": value}) == seconds


def test_retry_after_absent():
    assert retry_after_seconds({}) is None


def test_retry_after_http_date_in_the_future():
    header = formatdate(time.time() + 30, usegmt=True)
    seconds = retry_after_seconds({"Retry-After": header})
    assert seconds is not None and 28 <= seconds <= 30


@given(st.text(max_size=60))
def test_retry_after_never_raises(value):
    seconds = retry_after_seconds({"Retry-After": value})
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


def test_backoff_doubles_with_jitter_and_a_cap():
    policy = RetryConfig(base_delay=0.5, max_delay=3.0)
    assert [retry_delay(policy, n, None, _low) for n in range(4)] == [
        0.5,
        1.0,
        2.0,
        3.0,
    ]
    assert retry_delay(policy, 0, None, _high) == 0.625
    assert retry_delay(policy, 5, None, _high) == 3.0


def test_retry_after_is_never_cut_short_and_has_a_cap():
    policy = RetryConfig(max_delay=10.0)
    assert retry_delay(policy, 0, 4.0, _low) == 4.0
    assert retry_delay(policy, 0, 4.0, _high) == 5.0
    assert retry_delay(policy, 0, 9.0, _high) == 10.0
    assert retry_delay(policy, 0, 10.0, _low) == 10.0
    # Asked to wait longer than we may: pass the answer on, no early retry.
    assert retry_delay(policy, 0, 10.5, _low) is None
    assert retry_delay(policy, 0, 0.0, _high) == 0.0


def test_success_statuses_cannot_be_configured_for_retry(settings_for):
    settings = settings_for(
        toml="[translators.retry]\nstatuses = [200, 503]\n",
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
    )
    with pytest.raises(PluginLoadError, match="only 4xx and 5xx"):
        create_app(settings)


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_retryable_statuses_then_success(gateway, backend, status):
    backend.queue(
        Script.error(status, "busy"),
        Script.error(status, "busy"),
        Script.text("finally here"),
    )
    client = await gateway(backend, FAST)
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        objs = ndjson(await resp.read())
        metrics = await read_metrics(client)
    assert resp.status == 200
    assert content_of(objs) == "finally here"
    sent = backend.completions()
    assert len(sent) == 3
    assert all(r.body == sent[0].body for r in sent)
    ids = {r.headers["X-Request-ID"] for r in sent}
    assert ids == {resp.headers["X-Request-ID"]}
    assert metrics.get("ollama_gateway_upstream_retries_total") == 2
    assert metrics.get("ollama_gateway_upstream_errors_total") == 0


async def test_attempts_are_bounded(gateway, backend):
    backend.queue(*[Script.error(503, "still busy") for _ in range(10)])
    client = await gateway(backend, FAST)
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        body = await resp.json()
    assert resp.status == 503
    assert body == {"error": "still busy"}
    assert len(backend.completions()) == 3  # one try and two retries


@pytest.mark.parametrize("status", [400, 401, 404, 422, 500])
async def test_other_statuses_are_not_retried(gateway, backend, status):
    backend.queue(Script.error(status, "no"), Script.text("must not be asked"))
    client = await gateway(backend, FAST)
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        await resp.read()
    assert resp.status >= 400
    assert len(backend.completions()) == 1


async def test_retry_after_longer_than_the_cap_is_passed_on(gateway, backend):
    backend.queue(
        Script.error(429, "come back in an hour", headers={"Retry-After": "3600"}),
        Script.text("must not be asked"),
    )
    client = await gateway(backend, FAST)
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        body = await resp.json()
    assert resp.status == 429
    assert body == {"error": "come back in an hour"}
    assert len(backend.completions()) == 1


async def test_retry_after_seconds_are_waited(gateway, backend):
    backend.queue(
        Script.error(503, "warming up", headers={"Retry-After": "1"}),
        Script.text("warm now"),
    )
    client = await gateway(backend, "[translators.retry]\nmax_delay = 5\n")
    async with asyncio.timeout(BOUND):
        started = time.monotonic()
        resp = await post(client, "/api/chat", CHAT)
        objs = ndjson(await resp.read())
        waited = time.monotonic() - started
    assert content_of(objs) == "warm now"
    assert waited >= 1.0  # never earlier than the backend asked
    assert len(backend.completions()) == 2


async def test_retry_after_http_date_in_the_past_retries_at_once(gateway, backend):
    past = formatdate(time.time() - 60, usegmt=True)
    backend.queue(
        Script.error(429, "later", headers={"Retry-After": past}),
        Script.text("now"),
    )
    client = await gateway(backend, FAST)
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        objs = ndjson(await resp.read())
    assert content_of(objs) == "now"
    assert len(backend.completions()) == 2


async def test_started_answer_is_never_retried(gateway, backend):
    script = Script.text("one two three four", split=40)
    script.abort_after = 3
    backend.queue(script, Script.text("second completion"))
    client = await gateway(backend, FAST)
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        raw = await resp.read()
    assert b"second completion" not in raw
    assert b'"error"' in raw
    assert len(backend.completions()) == 1


async def test_embeddings_are_retried_too(gateway, backend):
    backend.queue(Script.error(503, "busy"))
    client = await gateway(backend, FAST)
    async with asyncio.timeout(BOUND):
        resp = await post(
            client, "/api/embed", {"model": "text-embedding-3-small", "input": "x"}
        )
        body = await resp.json()
    assert resp.status == 200
    assert len(body["embeddings"]) == 1
    assert [r.path for r in backend.requests].count("/v1/embeddings") == 2


async def test_retries_off(gateway, backend):
    backend.queue(Script.error(503, "busy"), Script.text("not asked"))
    client = await gateway(backend, "[translators.retry]\nattempts = 0\n")
    async with asyncio.timeout(BOUND):
        resp = await post(client, "/api/chat", CHAT)
        await resp.read()
    assert resp.status == 503
    assert len(backend.completions()) == 1
