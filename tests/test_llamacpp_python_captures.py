"""What a real llama-cpp-python server sent, replayed through the gateway.

The bytes were captured from `python -m llama_cpp.server` of llama-cpp-python
0.3.16 (FastAPI, sse-starlette), over the llama.cpp it vendors, serving a tiny
random Qwen-vocabulary model with the model's own chat template (or
`--chat_format chatml-function-calling`). Short bodies are here, streams and
whole answers in `fixtures/llamacpp_python/` (the body as it came, headers
left out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fakebackend import FakeBackend, Script
from tests.ndjson import NO_RETRY, chat, ndjson, post

CAPTURES = Path(__file__).parent / "fixtures" / "llamacpp_python"


def capture(name: str) -> bytes:
    return (CAPTURES / name).read_bytes()


JSON = {"Content-Type": "application/json"}
SSE = "text/event-stream; charset=utf-8"

# What the server sends for a streamed request whose prompt it then finds too
# long, or cannot render: the 200 and the stream's headers, then the chunked
# body's end (`0\r\n\r\n`) with no event. The same request not streamed:
TOO_LONG = (
    b'{"error":{"message":"This model\'s maximum context length is 2048 tokens. Ho'
    b"wever, you requested 3017 tokens (3009 in the messages, 8 in the completion)"
    b'. Please reduce the length of the messages or completion.","type":"invalid_r'
    b'equest_error","param":"messages","code":"context_length_exceeded"}}'
)
# ... and for image parts, which the model's jinja template cannot take.
TEMPLATE_FAILED = (
    b'{"error":{"message":"\'list object\' has no attribute \'startswith\'","type"'
    b':"internal_server_error","param":null,"code":null}}'
)
EMPTY_STREAM = Script(pieces=[], content_type=SSE, headers={"X-Accel-Buffering": "no"})


async def _ask(client: Any, stream: bool) -> tuple[int, Any]:
    resp = await post(client, "/api/chat", chat(stream=stream))
    return resp.status, await resp.json()


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize(
    ("status", "body", "expected", "message"),
    [
        (400, TOO_LONG, 400, "This model's maximum context length is 2048 tokens."),
        (500, TEMPLATE_FAILED, 500, "'list object' has no attribute 'startswith'"),
    ],
    ids=["too-long", "template"],
)
async def test_an_empty_event_stream_is_asked_again_for_its_error(
    backend: FakeBackend, gateway, stream, status, body, expected, message
):
    backend.queue(EMPTY_STREAM, Script(status=status, error_body=body, headers=JSON))
    client = await gateway(backend, NO_RETRY)
    got, answer = await _ask(client, stream)
    # Without the second ask: 502 "... unexpected EOF", whatever went wrong.
    assert got == expected
    assert answer["error"].startswith(message)
    first, again = backend.completions()
    assert first.body["stream"] is True and "stream_options" in first.body
    assert again.body["stream"] is False and "stream_options" not in again.body
    assert {k: v for k, v in again.body.items() if not k.startswith("stream")} == {
        k: v for k, v in first.body.items() if not k.startswith("stream")
    }


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
async def test_an_empty_event_stream_then_an_answer_is_that_answer(
    backend: FakeBackend, gateway, stream
):
    answer = Script(pieces=[capture("chat.json")], content_type="application/json")
    backend.queue(EMPTY_STREAM, answer)
    client = await gateway(backend, NO_RETRY)
    resp = await post(client, "/api/chat", chat(stream=stream))
    assert resp.status == 200
    objs = ndjson(await resp.read()) if stream else [await resp.json()]
    text = "".join(obj["message"]["content"] for obj in objs)
    assert text == " var smoke friend last<tool_call> you incoming housing"
    final = objs[-1]
    assert final["done"] and final["done_reason"] == "length"
    assert (final["prompt_eval_count"], final["eval_count"]) == (9, 8)
    assert len(backend.completions()) == 2


async def test_a_stream_with_events_is_never_asked_again(backend: FakeBackend, gateway):
    # The first byte drops what a second ask needs: a stream cut after it is
    # the usual "unexpected EOF" (spec 3.8), and nothing is generated twice.
    data = capture("chat.sse")
    cut = data[: data.index(b"data: [DONE]")].rsplit(b"data: ", 1)[0]
    backend.queue(Script(pieces=[cut], content_type=SSE))
    client = await gateway(backend, NO_RETRY)
    got, answer = await _ask(client, False)
    assert got == 502 and answer["error"].endswith("unexpected EOF")
    assert len(backend.completions()) == 1


async def test_generate_and_raw_generate_are_asked_again_too(
    backend: FakeBackend, gateway
):
    client = await gateway(backend, NO_RETRY)
    for extra in ({}, {"raw": True}):
        backend.queue(
            EMPTY_STREAM, Script(status=400, error_body=TOO_LONG, headers=JSON)
        )
        body = {"model": "gpt-4o", "prompt": "hi", "stream": False, **extra}
        resp = await post(client, "/api/generate", body)
        assert resp.status == 400
        assert "maximum context length" in (await resp.json())["error"]
    paths = [r.path for r in backend.completions()]
    assert paths == ["/v1/chat/completions"] * 2 + ["/v1/completions"] * 2
