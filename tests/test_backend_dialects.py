"""What particular backends really send, through the gateway and the fake backend.

Each test names the backend and the public source of the shape it replays.
"""

from __future__ import annotations

from tests.fakebackend import Script, chat_chunk, sse
from tests.ndjson import CHAT, chat, ndjson, post


async def test_llamacpp_error_field_mid_stream_is_an_error_line(backend, gateway):
    # llama.cpp server before ggml-org/llama.cpp#16109 (merged 2025-09): a failure
    # after the headers came as an `error:` SSE field, then `data: [DONE]`.
    head = sse(chat_chunk({"content": "Hi"}), done=False)
    tail = (
        b'error: {"code":500,"message":"slot unavailable","type":"server_error"}\n\n'
        b"data: [DONE]\n\n"
    )
    backend.queue(Script(pieces=[head, tail]))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", CHAT)
    assert resp.status == 200
    objs = ndjson(await resp.read())
    assert objs[0]["message"]["content"] == "Hi"
    assert objs[-1] == {"error": "slot unavailable"}
    assert not any(o.get("done") for o in objs)


async def test_llamacpp_error_field_before_output_keeps_its_status(backend, gateway):
    body = (
        b'error: {"code":400,"message":"the request exceeds the available context'
        b' size","type":"invalid_request_error"}\n\ndata: [DONE]\n\n'
    )
    backend.queue(Script(pieces=[body]))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 400
    assert (await resp.json()) == {
        "error": "the request exceeds the available context size"
    }


async def test_gemini_error_list_body_gives_its_message(backend, gateway):
    # Gemini's OpenAI-compatible endpoint answers errors as a JSON *list*
    # (seen in bytedance/deer-flow#1515, Simpleyyt/ai-manus#101).
    body = [
        {
            "error": {
                "code": 400,
                "message": 'Invalid JSON payload received. Unknown name "top_k"',
                "status": "INVALID_ARGUMENT",
            }
        }
    ]
    backend.queue(Script(status=400, error_body=body))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", CHAT)
    assert resp.status == 400
    assert await resp.json() == {
        "error": 'Invalid JSON payload received. Unknown name "top_k"'
    }


async def test_fastapi_validation_detail_list_gives_its_messages(backend, gateway):
    body = {
        "detail": [
            {"loc": ["body", "messages"], "msg": "Field required", "type": "missing"},
            {"loc": ["body", "top_k"], "msg": "Input should be an integer"},
        ]
    }
    backend.queue(Script(status=422, error_body=body))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", CHAT)
    assert resp.status == 400
    assert await resp.json() == {
        "error": "body.messages: Field required; body.top_k: Input should be an integer"
    }
