"""Golden files: recorded-style upstream SSE (`fixtures/*.sse`) in, the expected
Ollama NDJSON (`fixtures/*.ndjson`) out, with the SSE cut in awkward places.

`created_at` and the durations change every run: they are checked for shape and
type, then left out of the comparison. A tool-call id written `<generated>` in a
golden file is one the gateway makes up (`call_` + 8 of `[a-z0-9]`).

`litellm_*.sse` are not recorded-style but recorded: the bytes a LiteLLM proxy
(1.108.7) streamed on loopback, in front of an OpenAI-style server. LiteLLM
repeats `type` in every tool-call delta and sends usage in a last chunk whose
one choice has an empty delta and no finish reason.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from ollama_gateway.completion import ChunkReader, collect
from ollama_gateway.context import RequestContext
from ollama_gateway.schemas import ollama
from ollama_gateway.settings import Settings
from tests.fakebackend import Script, split_every
from tests.ndjson import (
    DURATIONS,
    PiecesResponse,
    chat,
    ndjson,
    post,
    read_ndjson,
)
from translators.openai_to_ollama import ChatStreamSession

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.sse"))
GENERATED = "<generated>"
CALL_ID = re.compile(r"call_[a-z0-9]{8}")
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def _sse(name: str) -> bytes:
    return (FIXTURES / f"{name}.sse").read_bytes()


def _golden(name: str) -> list[dict[str, Any]]:
    return ndjson((FIXTURES / f"{name}.ndjson").read_bytes())


def _tool_calls(obj: dict[str, Any]) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = (obj.get("message") or obj).get("tool_calls") or []
    return calls


def _normalise(
    actual: list[dict[str, Any]], expected: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Check and drop the volatile fields of `actual`, lining ids up with `expected`."""
    out = []
    for position, obj in enumerate(actual):
        obj = json.loads(json.dumps(obj))
        assert RFC3339_UTC.fullmatch(obj.pop("created_at")), obj
        final = obj.get("done") is True
        for name in DURATIONS:
            if name in obj:
                assert final, f"{name} on a non-final chunk"
                value = obj.pop(name)
                assert type(value) is int and value > 0, (name, value)
        if final:
            assert "total_duration" in actual[position]
            if actual[position].get("eval_count"):
                assert "eval_duration" in actual[position]
        wanted = expected[position] if position < len(expected) else {}
        for call, golden in zip(_tool_calls(obj), _tool_calls(wanted), strict=False):
            if golden.get("id") == GENERATED:
                assert CALL_ID.fullmatch(call["id"]), call
                call["id"] = GENERATED
        out.append(obj)
    return out


def _aggregate(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-stream answer that a golden stream folds into (spec 3.8)."""
    final = dict(lines[-1])
    content = "".join(line["message"]["content"] for line in lines)
    thinking = "".join(line["message"].get("thinking", "") for line in lines)
    calls = [call for line in lines for call in _tool_calls(line)]
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if calls:
        message["tool_calls"] = calls
    final["message"] = message
    return final


def _as_generate(line: dict[str, Any]) -> dict[str, Any]:
    """A chat line as `/api/generate` writes it."""
    out = {k: v for k, v in line.items() if k != "message"}
    message = line["message"]
    out["response"] = message["content"]
    for key in ("thinking", "tool_calls"):
        if key in message:
            out[key] = message[key]
    return out


@pytest.mark.parametrize("name", NAMES)
async def test_chat_stream_through_the_gateway(gateway, backend, name):
    expected = _golden(name)
    backend.queue(Script(pieces=split_every(_sse(name), 7)))
    client = await gateway(backend)
    actual = await read_ndjson(await post(client, "/api/chat", chat()))
    assert _normalise(actual, expected) == expected


@pytest.mark.parametrize("name", NAMES)
async def test_chat_non_stream_through_the_gateway(gateway, backend, name):
    expected = _aggregate(_golden(name))
    backend.queue(Script(pieces=split_every(_sse(name), 11)))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 200
    [actual] = _normalise([await resp.json()], [expected])
    assert actual == expected


@pytest.mark.parametrize("name", NAMES)
async def test_generate_stream_through_the_gateway(gateway, backend, name):
    expected = [_as_generate(line) for line in _golden(name)]
    backend.queue(Script(pieces=split_every(_sse(name), 7)))
    client = await gateway(backend)
    body = {"model": "gpt-4o", "prompt": "hi"}
    actual = await read_ndjson(await post(client, "/api/generate", body))
    assert _normalise(actual, expected) == expected


# The same files through the reader in-process, where every cut is a separate read.


def _reader(pieces: list[bytes]) -> ChunkReader:
    ctx = RequestContext(request_id="golden", endpoint="chat", model="gpt-4o")
    ctx.upstream_sent_ns = time.perf_counter_ns()
    session = ChatStreamSession(ctx)
    return ChunkReader(ctx, PiecesResponse(pieces), session, Settings.load({}))


async def _read_all(reader: ChunkReader) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while (batch := await reader.read()) is not None:
        out.extend(json.loads(ollama.encode(chunk)) for chunk in batch)
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1 << 20])
@pytest.mark.parametrize("name", NAMES)
async def test_reader_in_process(name, size):
    expected = _golden(name)
    actual = await _read_all(_reader(split_every(_sse(name), size)))
    assert _normalise(actual, expected) == expected


@pytest.mark.parametrize("eol", [b"\r\n", b"\r"])
@pytest.mark.parametrize("name", NAMES)
async def test_reader_with_other_line_endings(name, eol):
    expected = _golden(name)
    data = _sse(name).replace(b"\n", eol)
    actual = await _read_all(_reader(split_every(data, 5)))
    assert _normalise(actual, expected) == expected


@pytest.mark.parametrize("name", NAMES)
async def test_reader_collect(name):
    expected = _aggregate(_golden(name))
    final = await collect(_reader(split_every(_sse(name), 3)))
    [actual] = _normalise([json.loads(ollama.encode(final))], [expected])
    assert actual == expected
