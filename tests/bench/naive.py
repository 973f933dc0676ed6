"""The naive reference: Ollama /api/chat over an OpenAI backend, written plainly.

stdlib json, `async for line in resp.content`, one `write()` per NDJSON line, a
timestamp per line, asyncio's own loop and aiohttp's defaults (backlog 128).
Its only concession: one shared ClientSession without a connection cap, since
aiohttp's default cap of 100 would queue the 1000 paced streams.
Run: `OPENAI_BASE_URL=http://127.0.0.1:B/v1 python -m tests.bench.naive PORT`.
"""

import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

BASE_URL = os.environ["OPENAI_BASE_URL"].rstrip("/")
SESSION = web.AppKey("session", aiohttp.ClientSession)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def answer(model: str, content: str, done: bool, **extra: object) -> dict[str, Any]:
    message = {"role": "assistant", "content": content}
    out = {"model": model, "created_at": now(), "message": message, "done": done}
    return {**out, **extra}


def line(model: str, content: str, done: bool, **extra: object) -> bytes:
    return (json.dumps(answer(model, content, done, **extra)) + "\n").encode()


async def chat(request: web.Request) -> web.StreamResponse:
    body = json.loads(await request.read())
    model, stream = body["model"], body.get("stream", True)
    upstream = {"model": model, "messages": body["messages"], "stream": stream}
    if "num_predict" in (body.get("options") or {}):
        upstream["max_tokens"] = body["options"]["num_predict"]
    session = request.app[SESSION]
    url = BASE_URL + "/chat/completions"
    async with session.post(url, data=json.dumps(upstream)) as resp:
        if not stream:
            reply = json.loads(await resp.read())
            content = reply["choices"][0]["message"]["content"]
            count = reply.get("usage", {}).get("completion_tokens", 0)
            return web.json_response(
                answer(model, content, True, done_reason="stop", eval_count=count)
            )
        out = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await out.prepare(request)
        async for raw in resp.content:
            if not raw.startswith(b"data: ") or raw.strip() == b"data: [DONE]":
                continue
            choice = (json.loads(raw[6:]).get("choices") or [{}])[0]
            content = (choice.get("delta") or {}).get("content")
            if content:
                await out.write(line(model, content, False))
            if choice.get("finish_reason"):
                await out.write(line(model, "", True, done_reason="stop"))
        await out.write_eof()
        return out


async def session_ctx(app: web.Application) -> AsyncIterator[None]:
    app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    yield
    await app[SESSION].close()


if __name__ == "__main__":
    app = web.Application()
    app.router.add_post("/api/chat", chat)
    app.cleanup_ctx.append(session_ctx)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
