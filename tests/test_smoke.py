"""The shortest path through the gateway: one stream from a backend, one from the demo."""

import json

import ollama

from tests.conftest import FAST_DEMO, base_url
from tests.fakebackend import Script


async def test_chat_streams_from_fake_backend(backend, gateway):
    backend.queue(Script.text("Hi there friend", split=7))
    client = await gateway(backend)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    resp = await client.post("/api/chat", data=json.dumps(body))
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    objs = [json.loads(line) for line in (await resp.read()).decode().splitlines()]
    assert "".join(o["message"]["content"] for o in objs) == "Hi there friend"
    assert objs[-1]["done"] is True and objs[-1]["eval_count"] == 3
    assert all(o["done"] is False for o in objs[:-1])


async def test_official_client_against_demo(gateway):
    client = await gateway(toml=FAST_DEMO)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await api.chat(
            model="demo", messages=[{"role": "user", "content": "hey"}]
        )
    assert reply.message.content.endswith("You said: hey")
    assert reply.done_reason == "stop"
