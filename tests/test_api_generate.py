"""`POST /api/generate` (spec 2.6, 3.12): the chat-backed path, raw and suffix on
`/v1/completions`, load/unload, and request parsing in Ollama's order."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakebackend import Script, chat_chunk, sse
from tests.ndjson import GENERATE, assert_final, content_of, post, read_ndjson

INSERT = """
[models."gpt-4o"]
capabilities = ["completion", "insert"]
"""
RAW_CONFLICT = "raw mode does not support template, system, or context"


def gen(**fields: Any) -> dict[str, Any]:
    return {**GENERATE, **fields}


def text_chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    """One legacy `text_completion` stream chunk."""
    return {
        "id": "cmpl-fake",
        "object": "text_completion",
        "created": 1700000000,
        "model": "gpt-4o",
        "choices": [
            {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        ],
    }


def legacy_sse(*texts: str, finish: str = "stop") -> bytes:
    usage = {"prompt_tokens": 3, "completion_tokens": len(texts)}
    return sse(
        *(text_chunk(t) for t in texts),
        text_chunk("", finish),
        chat_chunk(choices=False, usage=usage),
    )


async def _error(resp) -> tuple[int, str]:
    assert resp.content_type == "application/json", await resp.text()
    body = await resp.json()
    assert list(body) == ["error"]
    return resp.status, body["error"]


async def _sent(client, backend, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    resp = await post(client, "/api/generate", body)
    assert resp.status == 200, await resp.text()
    await resp.read()
    recorded = backend.completions()[-1]
    upstream: dict[str, Any] = recorded.body
    return recorded.path, upstream


# Streaming ----------------------------------------------------------------------


async def test_stream_is_the_default(gateway, backend):
    backend.queue(Script.text("one two three", split=13))
    client = await gateway(backend)
    resp = await post(client, "/api/generate", GENERATE)
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    objs = await read_ndjson(resp)
    assert content_of(objs) == "one two three"
    for obj in objs[:-1]:
        assert set(obj) == {"model", "created_at", "response", "done"}
    final = assert_final(objs)
    assert final["response"] == ""
    assert final["done_reason"] == "stop"
    assert "message" not in final and "context" not in final
    assert final["prompt_eval_count"] == 7 and final["eval_count"] == 3
    assert final["eval_duration"] >= 1
    assert final["total_duration"] >= (
        final["prompt_eval_duration"] + final["eval_duration"]
    )


async def test_stream_false_is_one_json_object(gateway, backend):
    backend.queue(Script.text("whole answer", split=3))
    client = await gateway(backend)
    resp = await post(client, "/api/generate", gen(stream=False))
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    raw = await resp.read()
    assert not raw.endswith(b"\n")
    body = json.loads(raw)
    assert body["response"] == "whole answer"
    assert body["done"] is True and body["done_reason"] == "stop"
    assert "context" not in body and "message" not in body
    for name in ("total_duration", "load_duration", "eval_duration"):
        assert type(body[name]) is int and body[name] > 0


async def test_prompt_becomes_a_single_user_message(gateway, backend):
    client = await gateway(backend)
    path, sent = await _sent(client, backend, GENERATE)
    assert path == "/v1/chat/completions"
    assert sent["messages"] == [{"role": "user", "content": "hi"}]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


async def test_system_becomes_a_leading_system_message(gateway, backend):
    client = await gateway(backend)
    _, sent = await _sent(client, backend, gen(system="You are terse."))
    assert sent["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hi"},
    ]


async def test_context_is_ignored(gateway, backend):
    client = await gateway(backend)
    resp = await post(client, "/api/generate", gen(context=[1, 2, 3]))
    objs = await read_ndjson(resp)
    assert "context" not in assert_final(objs)
    sent = backend.completions()[0].body
    assert "context" not in sent
    assert sent["messages"] == [{"role": "user", "content": "hi"}]


async def test_thinking_is_a_top_level_field(gateway, backend):
    data = sse(
        chat_chunk({"reasoning_content": "hmm"}),
        chat_chunk({"content": "yes"}),
        chat_chunk({}, finish="stop"),
    )
    backend.queue(Script(pieces=[data]), Script(pieces=[data]))
    client = await gateway(backend)
    objs = await read_ndjson(await post(client, "/api/generate", GENERATE))
    assert objs[0] == {**objs[0], "response": "", "thinking": "hmm", "done": False}
    assert objs[1]["response"] == "yes" and "thinking" not in objs[1]
    body = await (await post(client, "/api/generate", gen(stream=False))).json()
    assert body["thinking"] == "hmm" and body["response"] == "yes"


@pytest.mark.parametrize(
    ("finish", "done_reason"),
    [("length", "length"), ("content_filter", "stop"), ("stop", "stop")],
)
async def test_done_reason(gateway, backend, finish, done_reason):
    data = sse(chat_chunk({"content": "x"}), chat_chunk({}, finish=finish))
    backend.queue(Script(pieces=[data]))
    client = await gateway(backend)
    final = assert_final(
        await read_ndjson(await post(client, "/api/generate", GENERATE))
    )
    assert final["done_reason"] == done_reason


async def test_model_echo_and_unknown_model(gateway, backend):
    client = await gateway(backend)
    objs = await read_ndjson(
        await post(client, "/api/generate", gen(model="GPT-4o:Latest"))
    )
    assert {o["model"] for o in objs} == {"GPT-4o:Latest"}
    resp = await post(client, "/api/generate", gen(model="nope"))
    assert await _error(resp) == (404, "model 'nope' not found")
    assert len(backend.completions()) == 1


# Raw and suffix -----------------------------------------------------------------


async def test_raw_goes_to_completions_verbatim(gateway, backend):
    prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    backend.queue(Script(pieces=[legacy_sse("Hel", "lo")]))
    client = await gateway(backend)
    resp = await post(
        client,
        "/api/generate",
        gen(prompt=prompt, raw=True, options={"num_predict": 9}),
    )
    objs = await read_ndjson(resp)
    assert content_of(objs) == "Hello"
    final = assert_final(objs)
    assert final["eval_count"] == 2 and final["prompt_eval_count"] == 3
    [recorded] = backend.completions()
    assert recorded.path == "/v1/completions"
    assert recorded.body["prompt"] == prompt
    assert "messages" not in recorded.body and "suffix" not in recorded.body
    assert recorded.body["max_tokens"] == 9
    assert recorded.body["stream"] is True


async def test_a_404_from_completions_says_what_the_backend_said(gateway, backend):
    # OpenAI's answer for a chat model on /v1/completions: the model is there,
    # so "not found" alone would send the user looking for the wrong fault.
    words = (
        "This is a chat model and not supported in the v1/completions endpoint. "
        "Did you mean to use v1/chat/completions?"
    )
    backend.queue(Script.error(404, words))
    client = await gateway(backend)
    resp = await post(client, "/api/generate", gen(raw=True))
    assert await _error(resp) == (
        404,
        f"model 'gpt-4o' not found at /v1/completions (the backend said: {words})",
    )
    # A backend that says the model is unknown gets Ollama's words alone.
    unknown = {
        "message": "The model `gpt-4o` does not exist",
        "code": "model_not_found",
    }
    backend.queue(Script(status=404, error_body={"error": unknown}))
    resp = await post(client, "/api/generate", gen(raw=True))
    assert await _error(resp) == (404, "model 'gpt-4o' not found")
    assert len(backend.completions()) == 2


async def test_raw_without_streaming(gateway, backend):
    backend.queue(Script(pieces=[legacy_sse("a", "b", finish="length")]))
    client = await gateway(backend)
    resp = await post(client, "/api/generate", gen(raw=True, stream=False))
    body = await resp.json()
    assert body["response"] == "ab" and body["done_reason"] == "length"


@pytest.mark.parametrize(
    "fields", [{"system": "s"}, {"template": "{{ .Prompt }}"}, {"context": [1, 2]}]
)
async def test_raw_with_system_template_or_context_is_400(gateway, backend, fields):
    client = await gateway(backend)
    resp = await post(client, "/api/generate", gen(raw=True, **fields))
    assert await _error(resp) == (400, RAW_CONFLICT)
    assert backend.completions() == []


async def test_suffix_needs_the_insert_capability(gateway, backend):
    client = await gateway(backend)
    resp = await post(client, "/api/generate", gen(suffix="return x"))
    status, message = await _error(resp)
    assert status == 400 and message.endswith("does not support insert")
    assert backend.completions() == []


async def test_suffix_goes_to_completions(gateway, backend):
    backend.queue(Script(pieces=[legacy_sse("x = 1\n")]))
    client = await gateway(backend, INSERT)
    body = gen(prompt="def f():\n", suffix="    return x\n")
    objs = await read_ndjson(await post(client, "/api/generate", body))
    assert content_of(objs) == "x = 1\n"
    [recorded] = backend.completions()
    assert recorded.path == "/v1/completions"
    assert recorded.body["prompt"] == "def f():\n"
    assert recorded.body["suffix"] == "    return x\n"


async def test_raw_leaves_the_suffix_out(gateway, backend):
    """Ollama renders the suffix with the model's template, and raw sends the
    prompt verbatim without one: the suffix is unused (the insert capability
    is still asked for)."""
    backend.queue(Script(pieces=[legacy_sse("x = 1\n")]))
    client = await gateway(backend, INSERT)
    body = gen(prompt="<PRE> a <SUF> b <MID>", suffix="b", raw=True)
    objs = await read_ndjson(await post(client, "/api/generate", body))
    assert content_of(objs) == "x = 1\n"
    [recorded] = backend.completions()
    assert recorded.path == "/v1/completions"
    assert recorded.body["prompt"] == "<PRE> a <SUF> b <MID>"
    assert "suffix" not in recorded.body
    plain = await gateway(backend)
    resp = await post(plain, "/api/generate", body)
    status, message = await _error(resp)
    assert status == 400 and message.endswith("does not support insert")


# Load, unload and parsing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "load"),
        ({"prompt": ""}, "load"),
        ({"prompt": "", "images": ["iVBORw0KGgo="]}, "load"),
        ({"keep_alive": 0}, "unload"),
        ({"prompt": "", "keep_alive": "0m"}, "unload"),
    ],
)
async def test_load_and_unload(gateway, backend, fields, reason):
    client = await gateway(backend)
    resp = await post(client, "/api/generate", {"model": "gpt-4o", **fields})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    obj = json.loads(await resp.read())
    assert obj == {
        "model": "gpt-4o",
        "created_at": obj["created_at"],
        "response": "",
        "done": True,
        "done_reason": reason,
    }
    assert backend.completions() == []


async def test_unload_comes_before_raw_checks(gateway, backend):
    client = await gateway(backend)
    body = {"model": "gpt-4o", "keep_alive": 0, "raw": True, "system": "s"}
    resp = await post(client, "/api/generate", body)
    assert (await resp.json())["done_reason"] == "unload"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"null", "model '' not found"),
        (b"{}", "model '' not found"),
        (b'{"prompt": "hi"}', "model '' not found"),
        (b'{"model": "  ", "prompt": "hi"}', "model '  ' not found"),
    ],
)
async def test_empty_model_is_404(gateway, backend, body, message):
    # Unlike chat's 400 `model is required`: Ollama's generate answers 404.
    client = await gateway(backend)
    resp = await client.post("/api/generate", data=body)
    assert await _error(resp) == (404, message)


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"", 400), (b"  ", 400), (b"[]", 400), (b'{"model":', 400), (b"nope", 400)],
)
async def test_bad_bodies(gateway, backend, body, status):
    client = await gateway(backend)
    code, message = await _error(await client.post("/api/generate", data=body))
    assert code == status and message
    if not body.strip():
        assert message == "missing request body"


@pytest.mark.parametrize(
    "fields",
    [{"stream": "yes"}, {"prompt": 5}, {"raw": "true"}, {"context": "abc"}],
)
async def test_wrong_types_are_400(gateway, backend, fields):
    client = await gateway(backend)
    status, _ = await _error(await post(client, "/api/generate", gen(**fields)))
    assert status == 400
    assert backend.completions() == []


async def test_form_content_type_and_unknown_fields(gateway, backend):
    client = await gateway(backend)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    body = gen(stream=False, unknown={"nested": True}, options={"mirostat": 2})
    resp = await client.post("/api/generate", data=json.dumps(body), headers=headers)
    assert resp.status == 200
    assert (await resp.json())["response"] == "Hello from fake"


@pytest.mark.parametrize(
    ("keep_alive", "status"),
    [("5m", 200), (300, 200), (42.5, 200), (-1, 200), ("-1m", 200), ("10", 400)],
)
async def test_keep_alive(gateway, backend, keep_alive, status):
    client = await gateway(backend)
    resp = await post(
        client, "/api/generate", {"model": "gpt-4o", "keep_alive": keep_alive}
    )
    assert resp.status == status
    if status == 400:
        assert await _error(resp) == (400, 'time: missing unit in duration "10"')


async def test_option_type_error_is_500(gateway, backend):
    client = await gateway(backend)
    resp = await post(client, "/api/generate", gen(options={"temperature": "hot"}))
    assert await _error(resp) == (500, 'option "temperature" must be of type float32')


async def test_options_are_mapped(gateway, backend):
    client = await gateway(backend)
    options = {"num_predict": 50, "temperature": 0, "stop": "END", "num_ctx": 4096}
    _, sent = await _sent(client, backend, gen(options=options))
    assert sent["max_tokens"] == 50
    assert sent["temperature"] == 0
    assert sent["stop"] == ["END"]
    assert "num_ctx" not in sent


@pytest.mark.parametrize("fields", [{"raw": True}, {"suffix": "end"}])
async def test_images_on_the_completions_path_are_refused(gateway, backend, fields):
    # /v1/completions takes no images: refusing beats dropping them silently.
    client = await gateway(backend, INSERT)
    body = gen(images=["iVBORw0KGgo="], **fields)
    status, message = await _error(await post(client, "/api/generate", body))
    assert status == 400
    assert "images" in message
    assert backend.completions() == []
    load = await post(client, "/api/generate", {**body, "prompt": ""})
    assert (await load.json())["done_reason"] == "load"
