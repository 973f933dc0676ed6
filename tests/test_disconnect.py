"""A client that goes away makes the gateway drop its upstream request at once
(spec 3.8 rule 10), without logging it as a server error."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from ollama_gateway.keys import upstream_key
from tests.fakebackend import Script, chat_chunk, sse
from tests.ndjson import CHAT, chat, post


def _slow_script(**kwargs: Any) -> Script:
    pieces = [sse(chat_chunk({"content": f"{i} "}), done=False) for i in range(20)]
    return Script(pieces=[*pieces, sse(chat_chunk({}, finish="stop"))], **kwargs)


def _assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert record.levelno < logging.ERROR, record.getMessage()
        assert "unhandled" not in record.getMessage().lower()
        assert record.exc_info is None, record.getMessage()


async def _wait_idle(client) -> None:
    upstream = client.app[upstream_key]
    for _ in range(50):
        if upstream.in_flight == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{upstream.in_flight} upstream slots still held")


async def test_disconnect_mid_stream_closes_upstream(gateway, backend, caplog):
    caplog.set_level(logging.DEBUG)
    backend.queue(_slow_script(delay=0.2))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", CHAT)
    assert resp.status == 200
    first = json.loads(await resp.content.readline())
    assert first["message"]["content"] == "0 "
    resp.close()  # drop the connection mid-stream
    await asyncio.wait_for(backend.disconnected.wait(), 1.0)
    await _wait_idle(client)
    assert len(backend.completions()) == 1
    _assert_quiet(caplog)
    # Counted as a client disconnect (499), not as a failure.
    access = [r for r in caplog.records if r.name == "ollama_gateway.access"]
    assert [getattr(r, "status", None) for r in access] == [499]
    assert getattr(access[0], "outcome", None) == "client_disconnect"


async def test_disconnect_before_first_upstream_byte(gateway, backend, caplog):
    caplog.set_level(logging.DEBUG)
    backend.queue(_slow_script(first_delay=5.0))
    client = await gateway(backend)
    request = asyncio.create_task(post(client, "/api/chat", CHAT))
    for _ in range(100):  # until the gateway has sent the completion upstream
        if backend.completions():
            break
        await asyncio.sleep(0.01)
    assert backend.completions()
    request.cancel()  # the client gives up while the gateway still waits
    with pytest.raises(asyncio.CancelledError):
        await request
    await asyncio.wait_for(backend.disconnected.wait(), 1.0)
    await _wait_idle(client)
    _assert_quiet(caplog)


async def test_disconnect_while_collecting_non_stream(gateway, backend, caplog):
    caplog.set_level(logging.DEBUG)
    backend.queue(_slow_script(delay=0.2))
    client = await gateway(backend)
    request = asyncio.create_task(post(client, "/api/chat", chat(stream=False)))
    await asyncio.sleep(0.3)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    await asyncio.wait_for(backend.disconnected.wait(), 1.0)
    await _wait_idle(client)
    _assert_quiet(caplog)


async def test_gateway_serves_on_after_a_disconnect(gateway, backend, caplog):
    backend.queue(_slow_script(delay=0.2))
    client = await gateway(backend)
    resp = await post(client, "/api/generate", {"model": "gpt-4o", "prompt": "x"})
    await resp.content.readline()
    resp.close()
    await asyncio.wait_for(backend.disconnected.wait(), 1.0)
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 200
    assert (await resp.json())["message"]["content"] == "Hello from fake"
    _assert_quiet(caplog)
