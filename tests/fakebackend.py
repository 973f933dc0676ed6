"""A fake OpenAI backend served by aiohttp on a loopback socket, scriptable per test.

A test queues `Script`s; each request to a completion path takes the next one
(or the default reply when the queue is empty). Scripts write SSE in pieces
split wherever the test says, with delays, aborts and error statuses, so the
gateway's real aiohttp client stack sees what real backends send.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = [
    "FakeBackend",
    "Recorded",
    "Script",
    "chat_chunk",
    "split_every",
    "sse",
    "usage_script",
]


def chat_chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish: str | None = None,
    usage: dict[str, Any] | None = None,
    choices: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """One OpenAI chat.completion.chunk object."""
    chunk: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake",
        "system_fingerprint": "fp_fake",
    }
    chunk["choices"] = (
        [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}]
        if choices
        else []
    )
    chunk["usage"] = usage
    chunk.update(extra)
    return chunk


def sse(*events: dict[str, Any] | str, done: bool = True, eol: str = "\n") -> bytes:
    """SSE bytes for the given events (dicts become JSON), ending in [DONE]."""
    out = []
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        out.append(f"data: {data}{eol}{eol}")
    if done:
        out.append(f"data: [DONE]{eol}{eol}")
    return "".join(out).encode()


def split_every(data: bytes, size: int) -> list[bytes]:
    """Cut bytes into pieces of `size` (mid-line, mid-UTF-8: that is the point)."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def reply_sse(text: str, *, prompt_tokens: int = 7) -> bytes:
    words = text.split(" ")
    pieces = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
    events = [chat_chunk({"role": "assistant", "content": ""})]
    events += [chat_chunk({"content": p}) for p in pieces]
    events.append(chat_chunk({}, finish="stop"))
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(pieces),
        "total_tokens": prompt_tokens + len(pieces),
    }
    events.append(chat_chunk(choices=False, usage=usage))
    return sse(*events)


def reasoning_sse() -> bytes:
    """A reasoning model's answer: "Let me think." as `reasoning_content`,
    then "Because physics." with usage (3 prompt, 4 completion tokens)."""
    return sse(
        chat_chunk({"role": "assistant", "content": ""}),
        chat_chunk({"reasoning_content": "Let me "}),
        chat_chunk({"reasoning_content": "think."}),
        chat_chunk({"content": "Because"}),
        chat_chunk({"content": " physics."}),
        chat_chunk({}, finish="stop"),
        chat_chunk(choices=False, usage={"prompt_tokens": 3, "completion_tokens": 4}),
    )


def usage_script(usage: dict[str, Any], *, whole: bool = False) -> Script:
    """ "Hi there" with `usage` as given: in a stream's usage chunk after the
    finish, or (`whole`) in one JSON `chat.completion`, as a backend answers
    that ignores `stream: true`."""
    if not whole:
        return Script(
            pieces=[
                sse(
                    chat_chunk({"role": "assistant", "content": "Hi there"}),
                    chat_chunk({}, finish="stop"),
                    chat_chunk(choices=False, usage=usage),
                )
            ]
        )
    message = {"role": "assistant", "content": "Hi there"}
    answer = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "fake",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": usage,
    }
    return Script(pieces=[json.dumps(answer).encode()], content_type="application/json")


@dataclass
class Script:
    """What the backend does for one request.

    `pieces` are written one `write()` each, `delay` seconds apart (after
    `first_delay`). `abort_after` closes the connection after that many pieces;
    `stall_after` waits `stall` seconds after that many.
    A `status` >= 300 answers `error_body` as JSON instead of streaming (bytes
    go as they are).
    """

    pieces: list[bytes] = field(default_factory=list)
    status: int = 200
    error_body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    first_delay: float = 0.0
    abort_after: int | None = None
    stall_after: int | None = None
    stall: float = 0.0
    content_type: str = "text/event-stream"

    @classmethod
    def text(cls, text: str, *, split: int | None = None, **kwargs: Any) -> Script:
        data = reply_sse(text)
        return cls(pieces=split_every(data, split) if split else [data], **kwargs)

    @classmethod
    def error(cls, status: int, message: str, **kwargs: Any) -> Script:
        body = {"error": {"message": message, "type": "error", "code": status}}
        return cls(status=status, error_body=body, **kwargs)


@dataclass
class Recorded:
    """A request the backend received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    # The client's address and port: which connection the request came on.
    peer: Any = None


class FakeBackend:
    """The scriptable backend; `url` is its `/v1` base URL once started."""

    def __init__(self) -> None:
        self.scripts: list[Script] = []
        self.requests: list[Recorded] = []
        self.models: list[dict[str, Any]] = [
            {
                "id": "gpt-4o",
                "object": "model",
                "created": 1715367049,
                "owned_by": "system",
            },
            {"id": "text-embedding-3-small", "object": "model", "created": 0},
        ]
        self.models_status = 200
        self.models_delay = 0.0
        # When set, `GET /v1/models` answers this body as it is (bytes are
        # sent unchanged, anything else as JSON).
        self.models_body: Any = None
        # `GET /v1/model/info`, a LiteLLM proxy's: 404 (as any other backend
        # answers) until a body is set; bytes are sent unchanged.
        self.model_info_body: Any = None
        self.model_info_status = 200
        self.model_info_delay = 0.0
        self.embedding: list[float] = [3.0, 4.0]
        # When set, the `usage` of every embeddings answer as it is; `{}` drops
        # the key (backends such as OVH's send none, Jina's only total_tokens).
        self.embedding_usage: dict[str, int] | None = None
        self.disconnected = asyncio.Event()
        self.url = ""
        self.app = web.Application()
        self.app.router.add_get("/v1/models", self._models)
        self.app.router.add_get("/v1/model/info", self._model_info)
        self.app.router.add_post("/v1/chat/completions", self._completion)
        self.app.router.add_post("/v1/completions", self._completion)
        self.app.router.add_post("/v1/embeddings", self._embeddings)
        self.app.middlewares.append(self._watch_disconnect)

    def queue(self, *scripts: Script) -> None:
        self.scripts.extend(scripts)

    def completions(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("completions")]

    async def _record(self, request: web.Request) -> Recorded:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport else None
        recorded = Recorded(
            request.method, request.path, dict(request.headers), body, peer
        )
        self.requests.append(recorded)
        return recorded

    async def _models(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self.models_delay:
            await asyncio.sleep(self.models_delay)
        if self.models_status != 200:
            return web.json_response({"error": "down"}, status=self.models_status)
        if isinstance(self.models_body, bytes):  # a captured answer, as it came
            return web.Response(body=self.models_body, content_type="application/json")
        if self.models_body is not None:
            return web.json_response(self.models_body)
        return web.json_response({"object": "list", "data": self.models})

    def model_info_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/model/info")]

    async def _model_info(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self.model_info_delay:
            await asyncio.sleep(self.model_info_delay)
        if self.model_info_body is None:
            return web.json_response({"detail": "Not Found"}, status=404)
        if self.model_info_status != 200:
            return web.json_response({"error": "down"}, status=self.model_info_status)
        if isinstance(self.model_info_body, bytes):
            return web.Response(
                body=self.model_info_body, content_type="application/json"
            )
        return web.json_response(self.model_info_body)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        if self.scripts:
            return await self._play(request, self.scripts.pop(0))
        inputs = recorded.body["input"]
        inputs = [inputs] if isinstance(inputs, str) else inputs
        data = [
            {"object": "embedding", "index": i, "embedding": self.embedding}
            for i in range(len(inputs))
        ]
        data.reverse()  # out of index order on purpose: the gateway must sort
        usage = {"prompt_tokens": len(inputs) * 2, "total_tokens": len(inputs) * 2}
        if self.embedding_usage is not None:
            usage = self.embedding_usage
        answer: dict[str, Any] = {"object": "list", "data": data}
        if usage:
            answer["usage"] = usage
        return web.json_response(answer)

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        script = self.scripts.pop(0) if self.scripts else Script.text("Hello from fake")
        return await self._play(request, script)

    async def _play(self, request: web.Request, script: Script) -> web.StreamResponse:
        """Answer as `script` says: its error status, or its pieces."""
        if script.first_delay:
            await asyncio.sleep(script.first_delay)
        if script.status >= 300:
            return _error_answer(script)
        response = web.StreamResponse(
            headers={"Content-Type": script.content_type, **script.headers}
        )
        await response.prepare(request)
        try:
            for count, piece in enumerate(script.pieces):
                if script.abort_after is not None and count >= script.abort_after:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                await response.write(piece)
                if script.delay:
                    await asyncio.sleep(script.delay)
                if count + 1 == script.stall_after:
                    await asyncio.sleep(script.stall)
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnected.set()
            raise
        await response.write_eof()
        return response

    @web.middleware
    async def _watch_disconnect(
        self, request: web.Request, handler: Any
    ) -> web.StreamResponse:
        """Set `disconnected` whenever the client leaves mid-request, including
        while a script still sleeps in `first_delay` (before any byte is sent)."""
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnected.set()
            raise


def _error_answer(script: Script) -> web.Response:
    """A script's error status with its body: bytes as they are (HTML, text,
    a captured answer), anything else as JSON."""
    if isinstance(script.error_body, bytes):
        return web.Response(
            body=script.error_body, status=script.status, headers=script.headers
        )
    return web.json_response(
        script.error_body, status=script.status, headers=script.headers
    )
