"""What clients send, on a real socket: bodies read as Go's decoder reads them
(spec 1.1), and HTTP/1.0 connections."""

from __future__ import annotations

import asyncio
import sys

import ollama
import pytest

from ollama_gateway.go_text import go_strings
from tests.conftest import base_url

# A JavaScript string cut in the middle of an emoji, as `JSON.stringify`
# writes it: a lone high surrogate escape. Go reads it as U+FFFD.
CUT_EMOJI = b'"thumbs \\ud83d"'


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", b'{"model":"gpt-4o","stream":false,"messages":'
         b'[{"role":"user","content":%s}]}'),
        ("/api/generate", b'{"model":"gpt-4o","stream":false,"prompt":%s}'),
        ("/v1/chat/completions", b'{"model":"gpt-4o","messages":'
         b'[{"role":"user","content":%s}]}'),
        ("/v1/messages", b'{"model":"gpt-4o","max_tokens":9,"messages":'
         b'[{"role":"user","content":%s}]}'),
    ],
)  # fmt: skip
async def test_a_lone_surrogate_escape_is_read_as_u_fffd(gateway, backend, path, body):
    client = await gateway(backend)
    resp = await client.post(path, data=body % CUT_EMOJI)
    assert resp.status == 200, await resp.text()
    sent = backend.completions()[-1].body
    assert "thumbs \ufffd" in str(sent["messages"])


async def test_bytes_that_are_not_utf8_are_each_read_as_u_fffd(gateway, backend):
    client = await gateway(backend)
    # A two-byte start of a three-byte character, then a stray continuation
    # byte: Go writes one U+FFFD per byte.
    prompt = b'"caf\xe2\x82 \xff"'
    body = b'{"model":"gpt-4o","stream":false,"prompt":%s}' % prompt
    resp = await client.post("/api/generate", data=body)
    assert resp.status == 200, await resp.text()
    messages = backend.completions()[-1].body["messages"]
    assert messages[-1]["content"] == "caf\ufffd\ufffd \ufffd"


async def test_a_body_still_malformed_after_the_repair_is_a_400(gateway, backend):
    client = await gateway(backend)
    resp = await client.post("/api/chat", data=b'{"model":"\\ud800" x}')
    assert resp.status == 400
    assert (await resp.json())["error"].startswith("JSON is malformed")
    resp = await client.post("/v1/chat/completions", data=b'{"model":"\\ud800" x}')
    assert resp.status == 400
    assert not backend.completions()


@pytest.mark.parametrize(
    ("text", "read"),
    [
        (b'"\\ud83d\\ude00"', None),  # a whole pair is no repair
        (b'"\\\\ud800"', None),  # an escaped backslash, then letters
        (b'"\\\\\\ud800"', b'"\\\\\\ufffd"'),  # a backslash, then a lone escape
        (b'"\\udc00x\\ud800\\u0041"', b'"\\ufffdx\\ufffd\\u0041"'),
        (b'"\\uD83D\\uDE00\\uDBFF"', b'"\\uD83D\\uDE00\\ufffd"'),
        (b'"\\ud800\\ud800\\udc00"', b'"\\ufffd\\ud800\\udc00"'),
        (b'"\xff \\ud800"', b'"\xef\xbf\xbd \\ufffd"'),  # both at once
        (b'"caf\xc3\xa9"', None),  # UTF-8 as it should be
    ],
)
def test_go_strings_replaces_only_what_go_replaces(text, read):
    assert go_strings(text) == read


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'),
        ("/v1/chat/completions", b'{"model":"gpt-4o","stream":true,"messages":'
         b'[{"role":"user","content":"hi"}]}'),
    ],
)  # fmt: skip
async def test_an_http10_keep_alive_stream_ends_with_its_connection(
    gateway, backend, path, body
):
    # An HTTP/1.0 answer of no length ends where its connection ends; a
    # second request sent on the same connection must not be answered on it
    # (the client would read that answer as more of the stream). The short
    # keep-alive timer only ends the connection sooner when this is wrong.
    client = await gateway(backend, "[timeouts]\nrequest_head = 0.5\n")
    reader, writer = await asyncio.open_connection(client.host, client.port)
    head = b"POST %s HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: %d\r\n\r\n"
    writer.write(head % (path.encode(), len(body)) + body)
    writer.write(b"GET /api/version HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    answer = await reader.read(-1)
    writer.close()
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.0 200 OK"
    headers, _, stream = rest.partition(b"\r\n\r\n")
    assert b"keep-alive" not in headers.lower()
    assert b"Hello" in stream
    assert b"HTTP/1.0" not in stream and b"version" not in stream
    assert len(backend.completions()) == 1


@pytest.mark.parametrize(
    "num_predict",
    [sys.maxsize, 2**53 - 1, 2**31, 10**30, 1e300],
)
async def test_a_num_predict_past_any_limit_means_no_limit(
    gateway, backend, num_predict
):
    # `sys.maxsize` or JavaScript's MAX_SAFE_INTEGER as "no limit": Ollama
    # generates until its own cap; a backend refuses such a max_tokens.
    client = await gateway(backend)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        answer = await api.chat(
            "gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            options={"num_predict": num_predict, "seed": num_predict},
        )
    assert answer.message.content == "Hello from fake"
    sent = backend.completions()[-1].body
    assert "max_tokens" not in sent
    # Past the int64 range Ollama's seed is negative, so random; within
    # it, a seed stays a seed.
    assert sent.get("seed") == (num_predict if num_predict < 2**53 else None)


async def test_the_largest_int32_num_predict_is_still_a_limit(gateway, backend):
    client = await gateway(backend)
    options = {"num_predict": 2**31 - 1, "seed": 2**63}
    body = {"model": "gpt-4o", "prompt": "hi", "stream": False, "options": options}
    resp = await client.post("/api/generate", json=body)
    assert resp.status == 200, await resp.text()
    sent = backend.completions()[-1].body
    assert sent["max_tokens"] == 2**31 - 1
    assert "seed" not in sent
