"""The OpenAI front (`/v1/*`) and the VS Code Copilot discovery sequence
(spec 2.16; clients.md)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web

from ollama_gateway.model_echo import Echo
from tests.fakebackend import FakeBackend, Script, chat_chunk, split_every, sse

MODELS = [
    {"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"},
    {"id": "text-embedding-3-small", "object": "model", "created": 0},
    {
        "id": "Qwen/Qwen2.5-Coder-32B-Instruct",
        "object": "model",
        "created": 1730000000,
        "owned_by": "vllm",
        "root": "Qwen/Qwen2.5-Coder-32B-Instruct",
        "max_model_len": 32768,
    },
]


class GatedBackend(FakeBackend):
    """Writes the first piece of a stream, then waits for `release`."""

    def __init__(self) -> None:
        super().__init__()
        self.models = MODELS
        self.release = asyncio.Event()
        self.finished = asyncio.Event()

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        if not self.scripts:
            return await super()._completion(request)
        script = self.scripts[0]
        if script.status >= 300 or len(script.pieces) < 2:
            return await super()._completion(request)
        self.scripts.pop(0)
        await self._record(request)
        response = web.StreamResponse(headers={"Content-Type": script.content_type})
        await response.prepare(request)
        await response.write(script.pieces[0])
        await self.release.wait()
        for piece in script.pieces[1:]:
            await response.write(piece)
        await response.write_eof()
        self.finished.set()
        return response


@pytest.fixture
async def fake(aiohttp_server: Any) -> GatedBackend:
    backend = GatedBackend()
    server = await aiohttp_server(backend.app)
    backend.url = str(server.make_url("/v1"))
    return backend


def openai_stream(*texts: str) -> list[bytes]:
    """One SSE event per piece, so the gate falls between events."""
    events = [chat_chunk({"role": "assistant", "content": ""})]
    events += [chat_chunk({"content": t}) for t in texts]
    events.append(chat_chunk({}, finish="stop"))
    return [sse(event, done=False) for event in events] + [b"data: [DONE]\n\n"]


async def post(client: Any, path: str, body: Any) -> Any:
    return await client.post(path, data=json.dumps(body))


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions"])
async def test_chat_completions_stream_without_buffering(fake, gateway, path):
    fake.queue(Script(pieces=openai_stream("Hello", " world")))
    client = await gateway(fake)
    body = {
        "model": "GPT-4o:latest",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    resp = await post(client, path, body)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    # The backend holds the rest until the client has the first piece.
    first = await asyncio.wait_for(resp.content.readany(), timeout=5)
    assert first.startswith(b"data: ")
    assert not fake.finished.is_set()
    fake.release.set()
    rest = first + await asyncio.wait_for(resp.content.read(), timeout=5)
    events = [e for e in rest.decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    contents = [
        json.loads(e.removeprefix("data: "))["choices"][0]["delta"].get("content")
        for e in events[:-1]
    ]
    assert "".join(c or "" for c in contents) == "Hello world"
    [request] = fake.completions()
    assert request.path == "/v1/chat/completions"
    assert request.body["model"] == "gpt-4o"
    assert request.body["stream"] is True


async def test_chat_completions_non_stream_passes_the_body_through(fake, gateway):
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi!"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    fake.queue(
        Script(pieces=[json.dumps(answer).encode()], content_type="application/json")
    )
    client = await gateway(fake)
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.2,
        "tool_choice": "auto",
    }
    resp = await post(client, "/v1/chat/completions", body)
    assert resp.status == 200
    assert await resp.json() == answer
    sent = fake.completions()[-1].body
    assert sent == {**body, "model": "gpt-4o"}  # unknown fields pass through


async def test_legacy_completions_are_forwarded(fake, gateway):
    payload = sse(
        {"choices": [{"text": "def f():", "index": 0, "finish_reason": "stop"}]}
    )
    fake.queue(Script(pieces=[payload]))
    client = await gateway(fake)
    body = {"model": "qwen/qwen2.5-coder-32b-instruct", "prompt": "# f", "stream": True}
    resp = await post(client, "/v1/completions", body)
    assert resp.status == 200
    assert await resp.read() == payload
    request = fake.completions()[-1]
    assert request.path == "/v1/completions"
    assert request.body["model"] == "Qwen/Qwen2.5-Coder-32B-Instruct"


async def test_embeddings_are_forwarded(fake, gateway):
    client = await gateway(fake)
    body = {"model": "text-embedding-3-small:latest", "input": ["a", "b"]}
    resp = await post(client, "/v1/embeddings", body)
    assert resp.status == 200
    data = (await resp.json())["data"]
    assert sorted(d["index"] for d in data) == [0, 1]
    assert data[0]["embedding"] == [3.0, 4.0]  # OpenAI's answer, not renormalised
    embeds = [r for r in fake.requests if r.path == "/v1/embeddings"]
    assert embeds[-1].body == {"model": "text-embedding-3-small", "input": ["a", "b"]}


async def test_models_list_includes_aliases_and_skips_hidden(fake, gateway):
    toml = (
        '[models."coder"]\ntarget = "Qwen/Qwen2.5-Coder-32B-Instruct"\n'
        '[models."text-embedding-3-small"]\nhidden = true\n'
    )
    client = await gateway(fake, toml)
    await post(
        client, "/api/copy", {"source": "gpt-4o", "destination": "gpt-3.5-turbo"}
    )
    resp = await client.get("/v1/models")
    assert resp.status == 200
    listing = await resp.json()
    assert listing["object"] == "list"
    ids = {m["id"] for m in listing["data"]}
    assert ids == {
        "gpt-4o:latest",
        "Qwen/Qwen2.5-Coder-32B-Instruct:latest",
        "coder:latest",
        "gpt-3.5-turbo:latest",
    }
    for model in listing["data"]:
        assert model["object"] == "model"
        assert isinstance(model["created"], int)
        assert isinstance(model["owned_by"], str)
    created = {m["id"]: m["created"] for m in listing["data"]}
    assert created["gpt-4o:latest"] == 1715367049
    assert created["coder:latest"] == 1730000000
    one = await client.get("/v1/models/gpt-3.5-turbo")
    assert one.status == 200
    assert (await one.json())["id"] == "gpt-3.5-turbo:latest"
    org = await client.get("/v1/models/Qwen/Qwen2.5-Coder-32B-Instruct")
    assert org.status == 200


async def test_alias_works_on_the_openai_front(fake, gateway):
    client = await gateway(fake)
    await post(
        client, "/api/copy", {"source": "gpt-4o", "destination": "gpt-3.5-turbo"}
    )
    fake.queue(Script(pieces=[b"".join(openai_stream("ok"))]))
    body = {"model": "gpt-3.5-turbo", "messages": [], "stream": True}
    resp = await post(client, "/v1/chat/completions", body)
    assert resp.status == 200
    await resp.read()
    assert fake.completions()[-1].body["model"] == "gpt-4o"


async def test_openai_front_errors_are_openai_shaped(fake, gateway):
    client = await gateway(fake)
    body = {"model": "nope", "messages": []}
    unknown = await post(client, "/v1/chat/completions", body)
    assert unknown.status == 404
    error = (await unknown.json())["error"]
    assert error["code"] == "model_not_found"
    assert isinstance(error["message"], str) and isinstance(error["type"], str)
    missing = await client.get("/v1/models/nope")
    assert missing.status == 404
    invalid = await client.post("/v1/chat/completions", data=b"{")
    assert invalid.status == 400
    assert "message" in (await invalid.json())["error"]
    no_model = await post(client, "/v1/chat/completions", {"messages": []})
    assert no_model.status == 400
    assert fake.completions() == []


async def test_upstream_statuses_on_the_openai_front(fake, gateway):
    toml = "[translators.retry]\nattempts = 0\n"
    fake.queue(Script.error(429, "slow down"), Script.error(401, "bad key"))
    client = await gateway(fake, toml)
    body = {"model": "gpt-4o", "messages": [], "stream": True}
    limited = await post(client, "/v1/chat/completions", body)
    assert limited.status == 429
    assert (await limited.json())["error"]["message"] == "slow down"
    auth = await post(client, "/v1/chat/completions", body)
    assert auth.status == 502  # never 401: clients would start a sign-in flow
    assert "bad key" in (await auth.json())["error"]["message"]


async def test_vscode_copilot_discovery_sequence(fake, gateway):
    """Version >= 0.6.4, tags, show per model (tools, context length), then
    a streamed `/v1/chat/completions` with tools, as Copilot's BYOK provider does."""
    client = await gateway(fake)
    version = (await (await client.get("/api/version")).json())["version"]
    assert tuple(int(p) for p in version.split(".")) >= (0, 6, 4)
    tags = (await (await client.get("/api/tags")).json())["models"]
    shown: dict[str, Any] = {}
    for tag in tags:
        resp = await post(client, "/api/show", {"model": tag["model"]})
        assert resp.status == 200, tag["model"]
        shown[tag["model"]] = await resp.json()
    coder = shown["Qwen/Qwen2.5-Coder-32B-Instruct:latest"]
    assert "tools" in coder["capabilities"]
    info = coder["model_info"]
    assert info[f"{info['general.architecture']}.context_length"] == 32768
    assert "tools" in shown["gpt-4o:latest"]["capabilities"]
    assert "tools" not in shown["text-embedding-3-small:latest"]["capabilities"]

    call = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "read_file", "arguments": '{"path": "a.py"}'},
    }
    events = [
        sse(chat_chunk({"role": "assistant", "content": "Reading"}), done=False),
        sse(chat_chunk({"tool_calls": [call]}), done=False),
        sse(chat_chunk({}, finish="tool_calls"), done=True),
    ]
    fake.queue(Script(pieces=events))
    body = {
        "model": "Qwen/Qwen2.5-Coder-32B-Instruct:latest",
        "messages": [{"role": "user", "content": "open a.py"}],
        "tools": [{"type": "function", "function": {"name": "read_file"}}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    resp = await post(client, "/v1/chat/completions", body)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    first = await asyncio.wait_for(resp.content.readany(), timeout=5)
    assert b"Reading" in first and not fake.finished.is_set()
    fake.release.set()
    raw = first + await resp.content.read()
    # Relayed byte for byte, tool calls untouched, but for the model's name:
    # as asked (Ollama's /v1 echoes it), not the backend's.
    asked = b'"model":"Qwen/Qwen2.5-Coder-32B-Instruct:latest"'
    assert raw == b"".join(events).replace(b'"model": "fake"', asked)
    sent = fake.completions()[-1].body
    assert sent["model"] == "Qwen/Qwen2.5-Coder-32B-Instruct"
    assert sent["tools"] == body["tools"]


async def test_upstream_errors_on_the_openai_front_are_counted(backend, gateway):
    from tests.ndjson import NO_RETRY
    from tests.ops import read_metrics

    backend.queue(Script.error(503, "overloaded"))
    client = await gateway(backend, NO_RETRY)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status == 503
    assert (await response.json())["error"]["message"] == "overloaded"
    metrics = await read_metrics(client)
    assert metrics.get("ollama_gateway_upstream_errors_total", kind="status") == 1


async def test_a_stream_broken_between_events_ends_with_an_error_event(
    backend, gateway
):
    """A backend lost after some events: the client's stream does not end as
    if complete; it gets an OpenAI `error` event (clients raise on it)."""
    from tests.ndjson import NO_RETRY

    backend.queue(Script(pieces=openai_stream("Hello", " world"), abort_after=2))
    client = await gateway(backend, NO_RETRY)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    async with asyncio.timeout(20):
        response = await client.post(
            "/v1/chat/completions", json={**body, "stream": True}
        )
        raw = await response.read()
    assert response.status == 200
    events = [e for e in raw.decode().split("\n\n") if e]
    assert len(events) == 3, raw
    assert b"[DONE]" not in raw
    last = json.loads(events[-1].removeprefix("data: "))
    assert last["error"]["message"].endswith("unexpected EOF")
    assert len(backend.completions()) == 1


@pytest.mark.parametrize(("finish", "cut"), [(None, 0), ("stop", 0), ("stop", 9)])
async def test_a_stream_that_ends_cleanly_without_done(backend, gateway, finish, cut):
    """A body ended by its framing between events, without `[DONE]`: whole if
    a choice finished (some backends leave `[DONE]` out), else cut, and then
    the client gets an `error` event, not an answer that looks complete."""
    from tests.ndjson import NO_RETRY

    events = [chat_chunk({"content": "Hello"}), chat_chunk({}, finish=finish)]
    pieces = [sse(e, done=False) for e in events]
    if cut:
        # The finish split inside `"finish_reason"`, across two reads.
        at = pieces[1].index(b'"finish_reason"') + cut
        pieces[1:] = [pieces[1][:at], pieces[1][at:]]
    backend.queue(Script(pieces=pieces, delay=0.05))  # each piece one read
    client = await gateway(backend, NO_RETRY)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    response = await client.post("/v1/chat/completions", json={**body, "stream": True})
    raw = await response.read()
    assert response.status == 200
    relayed = [e for e in raw.decode().split("\n\n") if e]
    if finish:
        assert len(relayed) == 2
        return
    assert len(relayed) == 3, raw
    last = json.loads(relayed[-1].removeprefix("data: "))
    assert last["error"]["message"].endswith("unexpected EOF")


@pytest.mark.parametrize(
    ("settings", "script"),
    [
        ("", {"abort_after": 2}),  # the backend is lost
        ("[timeouts]\nidle = 0.3", {"stall_after": 2, "stall": 30}),  # it stalls
    ],
    ids=["lost", "stalled"],
)
async def test_a_stream_broken_mid_event_is_not_ended_cleanly(
    backend, gateway, settings, script
):
    """Cut inside an event, nothing can follow: the client's connection is
    dropped, so it sees a broken body instead of a complete-looking one."""
    import aiohttp

    from tests.ndjson import NO_RETRY

    pieces = openai_stream("Hello", " world")
    cut = [pieces[0], pieces[1][:20], pieces[1][20:], *pieces[2:]]
    backend.queue(Script(pieces=cut, **script))
    client = await gateway(backend, f"{NO_RETRY}\n{settings}\n")
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    async with asyncio.timeout(20):
        response = await client.post(
            "/v1/chat/completions", json={**body, "stream": True}
        )
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


@pytest.mark.parametrize(
    ("settings", "script"),
    [
        # A gap longer than `idle` after two events.
        ("idle = 0.3", {"stall_after": 2, "stall": 30}),
        # A stream that keeps coming, but for longer than `total`.
        ("idle = 10\ntotal = 0.5", {"delay": 0.2}),
    ],
    ids=["idle", "total"],
)
async def test_a_stalled_stream_ends_with_a_timeout_event(
    backend, gateway, settings, script
):
    """A `/v1` stream is bounded as the Ollama streams are: a gap over
    `timeouts.idle`, or an exchange over `timeouts.total`, ends it with an
    OpenAI `error` event (not a hang, not a clean end), and the backend's
    connection is closed."""
    from tests.ndjson import NO_RETRY

    words = [f" w{i}" for i in range(8)]
    backend.queue(Script(pieces=openai_stream(*words), **script))
    client = await gateway(backend, f"{NO_RETRY}\n[timeouts]\n{settings}\n")
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    async with asyncio.timeout(20):
        response = await client.post(
            "/v1/chat/completions", json={**body, "stream": True}
        )
        raw = await response.read()
        await backend.disconnected.wait()
    assert response.status == 200
    events = [e for e in raw.decode().split("\n\n") if e]
    assert b"[DONE]" not in raw
    assert 2 <= len(events) < 10, raw
    last = json.loads(events[-1].removeprefix("data: "))
    assert last["error"]["message"] == "upstream timeout"
    assert len(backend.completions()) == 1


async def test_tools_for_a_model_without_the_capability_are_a_400(fake, gateway):
    """As Ollama's /v1 answers (its chat handler's capability check), in
    OpenAI's error shape; an empty list is no tools."""
    toml = '[models."gpt-4o"]\ncapabilities = ["completion"]\n'
    client = await gateway(fake, toml)
    tool = {"type": "function", "function": {"name": "read_file"}}
    body = {"model": "GPT-4o", "messages": [{"role": "user", "content": "hi"}]}
    for stream in (True, False):
        resp = await post(
            client, "/v1/chat/completions", {**body, "tools": [tool], "stream": stream}
        )
        assert resp.status == 400
        assert await resp.json() == {
            "error": {
                "message": "registry.ollama.ai/library/GPT-4o:latest "
                "does not support tools",
                "type": "invalid_request_error",
                "code": None,
                "param": None,
            }
        }
    assert fake.completions() == []
    fake.queue(Script(pieces=[b"".join(openai_stream("ok"))]))
    resp = await post(
        client, "/v1/chat/completions", {**body, "tools": [], "stream": True}
    )
    assert resp.status == 200
    await resp.read()
    assert len(fake.completions()) == 1


@pytest.mark.parametrize(
    ("stream", "kind"), [("yes", "string"), (1, "number"), ([True], "array")]
)
async def test_a_stream_that_is_no_boolean_is_a_400(fake, gateway, stream, kind):
    """As Ollama's /v1 decodes it into its Go struct; passed on, a backend
    took `"yes"` as it pleased and answered 200."""
    client = await gateway(fake)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    for path, struct in (
        ("/v1/chat/completions", "ChatCompletionRequest"),
        ("/v1/completions", "CompletionRequest"),
    ):
        resp = await post(client, path, {**body, "prompt": "hi", "stream": stream})
        assert resp.status == 400
        error = (await resp.json())["error"]
        assert error["message"] == (
            f"json: cannot unmarshal {kind} into Go struct field "
            f"{struct}.stream of type bool"
        )
    assert fake.completions() == []
    fake.queue(Script(pieces=[b"".join(openai_stream("ok"))]))
    resp = await post(client, "/v1/chat/completions", {**body, "stream": None})
    assert resp.status == 200
    await resp.read()
    assert len(fake.completions()) == 1


ASKED = "gpt-4o:latest"  # as /api/tags and /v1/models list it: Copilot sends it


@pytest.mark.parametrize("split", [None, 7, 40])
async def test_a_stream_names_the_model_as_asked(fake, gateway, split):
    """Ollama's /v1 answers with the name the request gave; the backend's
    events name its own id, in pieces cut anywhere (mid-field too)."""
    data = b"".join(openai_stream("Hel", "lo"))
    fake.queue(Script(pieces=split_every(data, split) if split else [data]))
    fake.release.set()  # no gate between the pieces
    client = await gateway(fake)
    body = {"model": ASKED, "messages": [], "stream": True}
    resp = await post(client, "/v1/chat/completions", body)
    assert resp.status == 200
    raw = await resp.read()
    assert raw == data.replace(b'"model": "fake"', b'"model":"gpt-4o:latest"')
    assert fake.completions()[-1].body["model"] == "gpt-4o"


@pytest.mark.parametrize("split", [None, 5, 64])
async def test_a_whole_answer_names_the_model_as_asked(fake, gateway, split):
    """Also after the content, as llama.cpp's server sorts its keys, and in an
    embeddings answer; the rest of the body is relayed as it came."""
    answer = {
        "choices": [{"index": 0, "message": {"role": "assistant",
                     "content": 'say "model": "x"'}, "finish_reason": "stop"}],
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "object": "chat.completion",
    }  # fmt: skip
    data = json.dumps(answer).encode()
    fake.queue(
        Script(
            pieces=split_every(data, split) if split else [data],
            content_type="application/json",
        )
    )
    fake.release.set()
    client = await gateway(fake)
    body = {"model": ASKED, "messages": []}
    resp = await post(client, "/v1/chat/completions", body)
    assert resp.status == 200
    assert await resp.json() == {**answer, "model": ASKED}
    vectors = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5] * 400}],
        "model": "text-embedding-3-small",  # after the vectors, as OpenAI's
    }
    data = json.dumps(vectors).encode()
    pieces = split_every(data, split) if split else [data]
    fake.queue(Script(pieces=pieces, content_type="application/json"))
    asked = "text-embedding-3-small:latest"
    embedded = await post(client, "/v1/embeddings", {"model": asked, "input": "a"})
    assert await embedded.json() == {**vectors, "model": asked}


async def test_a_model_asked_by_the_backends_id_is_relayed_untouched(fake, gateway):
    events = openai_stream("ok")
    fake.queue(Script(pieces=events))
    fake.release.set()
    client = await gateway(fake)
    body = {"model": "gpt-4o", "messages": [], "stream": True}
    resp = await post(client, "/v1/chat/completions", body)
    assert await resp.read() == b"".join(events)  # "fake", as the backend said


def test_the_echo_finds_a_field_cut_at_any_byte():
    stream = b"".join(openai_stream("a")) + b'data: {"model" : "x"}'
    whole = json.dumps({"data": [1.5] * 300, "model": "gpt-4o"}).encode()
    for data, is_stream in ((stream, True), (whole, False)):
        for cut in range(len(data) + 1):
            echo = Echo("m:latest", is_stream)
            out = echo.feed(data[:cut]) + echo.feed(data[cut:]) + echo.flush()
            assert out.count(b'"model":"m:latest"') == data.count(b'"model"'), cut
            assert b'"fake"' not in out and b'"gpt-4o"' not in out
