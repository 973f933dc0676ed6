"""Helpers for the gateway tests: request bodies and strict NDJSON reading."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

__all__ = [
    "CHAT",
    "GENERATE",
    "NO_RETRY",
    "PiecesResponse",
    "assert_final",
    "chat",
    "ndjson",
    "post",
    "split_at",
]

Client = TestClient[web.Request, web.Application]

CHAT: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "hi"}],
}
GENERATE: dict[str, Any] = {"model": "gpt-4o", "prompt": "hi"}

# The default pipeline retries 429/502/503/504 and refused connections before
# any byte; fault tests that count upstream calls switch that off.
NO_RETRY = """
[translators.retry]
attempts = 0
"""

DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


def chat(**fields: Any) -> dict[str, Any]:
    return {**CHAT, **fields}


async def post(client: Client, path: str, body: Any) -> ClientResponse:
    """POST a body; dicts and lists are JSON-encoded, bytes and str go as is."""
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return await client.post(path, data=data)


def ndjson(raw: bytes) -> list[dict[str, Any]]:
    """Parse an NDJSON body strictly: one compact object per `\\n`-ended line."""
    text = raw.decode("utf-8")  # raises on any invalid UTF-8
    assert text.endswith("\n"), text[-200:]
    lines = text[:-1].split("\n")
    assert all(line.strip() for line in lines), "blank line in the stream"
    objs = [json.loads(line) for line in lines]
    assert all(isinstance(o, dict) for o in objs)
    return objs


async def read_ndjson(resp: ClientResponse) -> list[dict[str, Any]]:
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    return ndjson(await resp.read())


def assert_final(objs: list[dict[str, Any]]) -> dict[str, Any]:
    """The stream ends with exactly one done:true object, and no error."""
    assert objs, "empty stream"
    final = objs[-1]
    assert final["done"] is True, final
    assert all(o.get("done") is False for o in objs[:-1])
    assert not any("error" in o for o in objs)
    for name in DURATIONS:
        if name in final:
            assert isinstance(final[name], int) and final[name] > 0, (name, final)
    return final


def content_of(objs: list[dict[str, Any]]) -> str:
    """The text of a chat or generate stream."""
    return "".join(
        o["message"]["content"] if "message" in o else o.get("response", "")
        for o in objs
        if "error" not in o
    )


def split_at(data: bytes, *positions: int) -> list[bytes]:
    """Cut `data` at the given byte offsets (negative ones count from the end)."""
    cuts = sorted(p if p >= 0 else len(data) + p for p in positions)
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


class PiecesResponse:
    """An upstream response that yields exactly the given pieces.

    With `buffered`, pieces come without a pass through the event loop, as
    aiohttp's `readany()` returns data it already holds.
    """

    def __init__(self, pieces: list[bytes], *, buffered: bool = False) -> None:
        self.status = 200
        self.headers: Mapping[str, str] = {"Content-Type": "text/event-stream"}
        self._pieces = pieces
        self._buffered = buffered

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            if not self._buffered:
                await asyncio.sleep(0)
            yield piece

    async def aread(self) -> bytes:
        return b"".join(self._pieces)

    async def aclose(self) -> None:
        return None
