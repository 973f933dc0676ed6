"""`POST /api/chat` as Ollama clients see it (spec 1.1-1.3, 1.5, 1.6, 2.7, 3.7-3.10),
plus the HTTP surface around it (404/405 texts, `/`, `/api/version`)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.fakebackend import Script, chat_chunk, reply_sse, sse
from tests.ndjson import (
    CHAT,
    assert_final,
    chat,
    content_of,
    ndjson,
    post,
    read_ndjson,
)

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")
METRICS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)


async def _sent(gateway, backend, body: dict[str, Any]) -> dict[str, Any]:
    """The JSON body the backend received for one chat request."""
    client = await gateway(backend)
    resp = await post(client, "/api/chat", body)
    assert resp.status == 200, await resp.text()
    await resp.read()
    [recorded] = backend.completions()
    assert recorded.path == "/v1/chat/completions"
    upstream: dict[str, Any] = recorded.body
    return upstream


async def _error(resp) -> tuple[int, str]:
    assert resp.content_type == "application/json", await resp.text()
    body = await resp.json()
    assert list(body) == ["error"] and isinstance(body["error"], str)
    return resp.status, body["error"]


# Streaming and framing ----------------------------------------------------------


async def test_stream_is_the_default(gateway, backend):
    backend.queue(Script.text("one two three", split=11))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", CHAT)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    assert "Content-Length" not in resp.headers  # chunked, flushed per read
    objs = await read_ndjson(resp)
    assert len(objs) >= 2
    assert content_of(objs) == "one two three"
    final = assert_final(objs)
    assert final["message"] == {"role": "assistant", "content": ""}
    for obj in objs:
        assert obj["model"] == "gpt-4o"
        assert RFC3339_UTC.fullmatch(obj["created_at"]), obj["created_at"]
        assert obj["message"]["role"] == "assistant"


async def test_stream_true_streams_too(gateway, backend):
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=True))
    assert_final(await read_ndjson(resp))


async def test_stream_false_is_one_json_object(gateway, backend):
    backend.queue(Script.text("all at once", split=5))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    raw = await resp.read()
    assert not raw.endswith(b"\n")
    body = json.loads(raw)
    assert body["done"] is True and body["done_reason"] == "stop"
    assert body["message"] == {"role": "assistant", "content": "all at once"}
    assert body["prompt_eval_count"] == 7 and body["eval_count"] == 3
    for name in METRICS:
        assert isinstance(body[name], int) and body[name] > 0, name


async def test_accept_header_does_not_choose_streaming(gateway, backend):
    client = await gateway(backend)
    headers = {"Accept": "application/json"}
    resp = await client.post("/api/chat", data=json.dumps(CHAT), headers=headers)
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    await resp.read()


async def test_form_content_type_body_is_read_as_json(gateway, backend):
    client = await gateway(backend)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    resp = await client.post(
        "/api/chat", data=json.dumps(chat(stream=False)), headers=headers
    )
    assert resp.status == 200
    assert (await resp.json())["message"]["content"] == "Hello from fake"


async def test_non_final_chunks_have_no_done_reason_or_metrics(gateway, backend):
    usage = {"prompt_tokens": 5, "completion_tokens": 2}
    data = sse(
        chat_chunk({"role": "assistant", "content": ""}),
        chat_chunk({"content": "a"}),
        chat_chunk({"content": "b"}, finish="stop"),
        chat_chunk(choices=False, usage=usage),
    )
    backend.queue(Script(pieces=[data]))
    client = await gateway(backend)
    objs = await read_ndjson(await post(client, "/api/chat", CHAT))
    # The role-only delta is skipped, as Ollama's native path does.
    assert [o["message"]["content"] for o in objs] == ["a", "b", ""]
    for obj in objs[:-1]:
        assert set(obj) == {"model", "created_at", "message", "done"}
        assert obj["done"] is False
    final = assert_final(objs)
    assert final["prompt_eval_count"] == 5 and final["eval_count"] == 2


async def test_final_chunk_metrics_are_integer_nanoseconds(gateway, backend):
    usage = {"prompt_tokens": 7, "completion_tokens": 4}
    events = [chat_chunk({"content": w}) for w in ("a ", "b ", "c ", "d")]
    events += [chat_chunk({}, finish="stop"), chat_chunk(choices=False, usage=usage)]
    pieces = [sse(e, done=False) for e in events[:3]] + [sse(*events[3:])]
    backend.queue(Script(pieces=pieces, delay=0.02))
    client = await gateway(backend)
    final = assert_final(await read_ndjson(await post(client, "/api/chat", CHAT)))
    for name in METRICS:
        assert type(final[name]) is int, name
    assert final["eval_duration"] >= 1
    assert final["total_duration"] >= (
        final["prompt_eval_duration"] + final["eval_duration"]
    )
    assert final["total_duration"] >= final["load_duration"]
    assert final["eval_duration"] >= 10_000_000  # the deltas came 20 ms apart
    assert final["prompt_eval_count"] == 7 and final["eval_count"] == 4
    assert "context" not in final


@pytest.mark.parametrize(
    ("finish", "done_reason"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("content_filter", "stop"),
        ("tool_calls", "stop"),
        (None, "stop"),  # no finish_reason but [DONE]: a normal stop
    ],
)
async def test_finish_reason_maps_to_done_reason(gateway, backend, finish, done_reason):
    events = [chat_chunk({"content": "x"}), chat_chunk({}, finish=finish)]
    backend.queue(Script(pieces=[sse(*events)]), Script(pieces=[sse(*events)]))
    client = await gateway(backend)
    final = assert_final(await read_ndjson(await post(client, "/api/chat", CHAT)))
    assert final["done_reason"] == done_reason
    body = await (await post(client, "/api/chat", chat(stream=False))).json()
    assert body["done_reason"] == done_reason


async def test_model_is_echoed_exactly_as_sent(gateway, backend):
    client = await gateway(backend)
    objs = await read_ndjson(
        await post(client, "/api/chat", chat(model="GPT-4o:Latest"))
    )
    assert {o["model"] for o in objs} == {"GPT-4o:Latest"}
    assert backend.completions()[0].body["model"] == "gpt-4o"
    body = await (
        await post(client, "/api/chat", chat(model="gpt-4o:latest", stream=False))
    ).json()
    assert body["model"] == "gpt-4o:latest"


async def test_unknown_model_is_404(gateway, backend):
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(model="nope"))
    assert await _error(resp) == (404, "model 'nope' not found")
    assert backend.completions() == []


# Request parsing ------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"   \n\t "])
async def test_empty_body(gateway, backend, body):
    client = await gateway(backend)
    resp = await client.post("/api/chat", data=body)
    assert await _error(resp) == (400, "missing request body")


@pytest.mark.parametrize("body", [b'{"model":', b"{model}", b"x"])
async def test_invalid_json(gateway, backend, body):
    client = await gateway(backend)
    status, message = await _error(await client.post("/api/chat", data=body))
    assert status == 400 and message


async def test_array_body_is_400(gateway, backend):
    client = await gateway(backend)
    status, message = await _error(await client.post("/api/chat", data=b"[]"))
    assert status == 400 and message


async def test_null_body_is_an_empty_request(gateway, backend):
    client = await gateway(backend)
    resp = await client.post("/api/chat", data=b"null")
    assert await _error(resp) == (400, "model is required")


@pytest.mark.parametrize("model", ["", "   "])
async def test_empty_model_is_required(gateway, backend, model):
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(model=model))
    assert await _error(resp) == (400, "model is required")


@pytest.mark.parametrize(
    "fields",
    [
        {"stream": "yes"},
        {"messages": "hi"},
        {"messages": [{"role": "user", "content": ["part"]}]},
        {"model": 5},
        {"top_logprobs": "2"},
    ],
)
async def test_wrong_field_type_is_400(gateway, backend, fields):
    client = await gateway(backend)
    status, message = await _error(await post(client, "/api/chat", chat(**fields)))
    assert status == 400 and message
    assert backend.completions() == []


async def test_unknown_fields_are_ignored(gateway, backend):
    client = await gateway(backend)
    body = chat(foo=1, stream=False, options={"mirostat": 2, "whatever": "x"})
    body["messages"][0]["extra"] = True
    resp = await post(client, "/api/chat", body)
    assert resp.status == 200
    assert (await resp.json())["done"] is True
    sent = backend.completions()[0].body
    assert "foo" not in sent and "whatever" not in sent and "mirostat" not in sent


# Load and unload --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"messages": []}, "load"),
        ({}, "load"),
        ({"messages": [], "keep_alive": 0}, "unload"),
        ({"messages": [], "keep_alive": "0s"}, "unload"),
        ({"keep_alive": 0}, "unload"),
    ],
)
async def test_load_and_unload_answers(gateway, backend, fields, reason):
    client = await gateway(backend)
    body = {"model": "gpt-4o", **fields}
    resp = await post(client, "/api/chat", body)  # stream omitted: still one object
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    obj = json.loads(await resp.read())
    assert obj == {
        "model": "gpt-4o",
        "created_at": obj["created_at"],
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": reason,
    }
    assert RFC3339_UTC.fullmatch(obj["created_at"])
    assert backend.completions() == []


async def test_load_of_unknown_model_is_404(gateway, backend):
    client = await gateway(backend)
    resp = await post(client, "/api/chat", {"model": "nope", "messages": []})
    assert await _error(resp) == (404, "model 'nope' not found")


@pytest.mark.parametrize("keep_alive", ["5m", 300, 42.5, -1, "-1m", "0", "1h30m", None])
async def test_keep_alive_accepted(gateway, backend, keep_alive):
    client = await gateway(backend)
    body = {"model": "gpt-4o", "messages": [], "keep_alive": keep_alive}
    resp = await post(client, "/api/chat", body)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["done_reason"] in ("load", "unload")


# Options mapping ----------------------------------------------------------------------


async def test_upstream_always_streams_with_usage(gateway, backend):
    for body in (CHAT, chat(stream=False)):
        backend.requests.clear()
        sent = await _sent(gateway, backend, body)
        assert sent["stream"] is True
        assert sent["stream_options"] == {"include_usage": True}
        assert sent["model"] == "gpt-4o"
        assert sent["messages"] == [{"role": "user", "content": "hi"}]


async def test_no_options_sends_no_sampling_fields(gateway, backend):
    sent = await _sent(gateway, backend, CHAT)
    assert set(sent) == {"model", "messages", "stream", "stream_options"}


async def test_num_predict_becomes_max_tokens(gateway, backend):
    sent = await _sent(gateway, backend, chat(options={"num_predict": 50}))
    assert sent["max_tokens"] == 50


@pytest.mark.parametrize("num_predict", [-1, -2, 0])
async def test_num_predict_unlimited_sends_no_max_tokens(gateway, backend, num_predict):
    sent = await _sent(gateway, backend, chat(options={"num_predict": num_predict}))
    assert "max_tokens" not in sent and "max_completion_tokens" not in sent


async def test_sampling_options_are_forwarded(gateway, backend):
    options = {
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 42,
        "frequency_penalty": 0.5,
        "presence_penalty": 1,
    }
    sent = await _sent(gateway, backend, chat(options=options))
    assert sent["temperature"] == 0.2
    assert sent["top_p"] == 0.9
    assert sent["seed"] == 42
    assert sent["frequency_penalty"] == 0.5
    assert sent["presence_penalty"] == 1.0


async def test_absent_temperature_stays_absent(gateway, backend):
    sent = await _sent(gateway, backend, chat(options={"top_p": 0.5}))
    assert "temperature" not in sent and sent["top_p"] == 0.5


async def test_null_option_is_skipped(gateway, backend):
    sent = await _sent(gateway, backend, chat(options={"temperature": None}))
    assert "temperature" not in sent


@pytest.mark.parametrize(
    ("stop", "sent_stop"),
    [(["\n", "user:"], ["\n", "user:"]), ("END", ["END"])],
)
async def test_stop_is_sent_as_a_list(gateway, backend, stop, sent_stop):
    sent = await _sent(gateway, backend, chat(options={"stop": stop}))
    assert sent["stop"] == sent_stop


async def test_server_side_options_are_not_sent(gateway, backend):
    options = {"num_ctx": 8192, "num_gpu": 1, "use_mmap": True, "num_thread": 4}
    sent = await _sent(gateway, backend, chat(options=options))
    for name in ("num_ctx", "num_gpu", "use_mmap", "num_thread", "options"):
        assert name not in sent


async def test_top_k_is_dropped_without_extensions(gateway, backend):
    sent = await _sent(gateway, backend, chat(options={"top_k": 20}))
    assert "top_k" not in sent


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"temperature": "hot"}, 'option "temperature" must be of type float32'),
        ({"num_predict": "many"}, 'option "num_predict" must be of type integer'),
        ({"use_mmap": 1}, 'option "use_mmap" must be of type boolean'),
        ({"stop": 5}, 'option "stop" must be of type array'),
    ],
)
async def test_option_type_errors_are_500(gateway, backend, options, message):
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(options=options))
    assert await _error(resp) == (500, message)
    assert backend.completions() == []


async def test_a_float_option_past_any_float64_is_a_400(gateway, backend):
    """Written as an integer, it got past the decoder and crashed the
    handler (a 500 "internal server error"); Go's decoder refuses the body."""
    client = await gateway(backend)
    for options in ({"temperature": 10**400}, {"top_p": -(10**400)}):
        resp = await post(client, "/api/chat", chat(options=options))
        assert await _error(resp) == (
            400,
            "invalid value for options[...]: number out of range",
        )
    assert backend.completions() == []


async def test_empty_tools_are_not_sent(gateway, backend):
    sent = await _sent(gateway, backend, chat(tools=[]))
    assert "tools" not in sent


async def test_messages_are_mapped(gateway, backend):
    messages = [
        {"role": "System", "content": "be brief"},
        {"role": "User"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "again"},
    ]
    sent = await _sent(gateway, backend, chat(messages=messages))
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": ""},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "again"},
    ]


# HTTP surface -------------------------------------------------------------------------


async def test_wrong_method_is_405_text(gateway, backend):
    client = await gateway(backend)
    resp = await client.get("/api/chat")
    assert resp.status == 405
    assert resp.content_type == "text/plain"
    assert await resp.text() == "405 method not allowed"


async def test_head_is_405_where_ollama_serves_only_get(gateway, backend):
    client = await gateway(backend)
    resp = await client.head("/api/ps")
    assert resp.status == 405
    # ...and where Ollama serves HEAD too, so does the gateway.
    for path in ("/", "/api/version", "/api/tags"):
        assert (await client.head(path)).status == 200, path


async def test_unknown_path_is_404_text(gateway, backend):
    client = await gateway(backend)
    resp = await client.get("/api/nope")
    assert resp.status == 404
    assert resp.content_type == "text/plain"
    assert await resp.text() == "404 page not found"


async def test_root_get_and_head(gateway, backend):
    client = await gateway(backend)
    resp = await client.get("/")
    assert resp.status == 200
    assert await resp.text() == "Ollama is running"
    resp = await client.head("/")
    assert resp.status == 200
    assert await resp.read() == b""


async def test_version(gateway, backend):
    client = await gateway(backend)
    resp = await client.get("/api/version")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    version = (await resp.json())["version"]
    parts = version.split(".")
    assert len(parts) == 3 and all(p.isdigit() for p in parts)
    assert version != "0.0.0"
    assert tuple(int(p) for p in parts) >= (0, 6, 4)
    head = await client.head("/api/version")
    assert head.status == 200


async def test_version_is_configurable(gateway, backend):
    client = await gateway(backend, "[server]\nollama_version = '0.9.1'\n")
    assert (await (await client.get("/api/version")).json()) == {"version": "0.9.1"}


async def test_streamed_lines_parse_one_by_one(gateway, backend):
    backend.queue(Script(pieces=[reply_sse("x y z")]))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", CHAT)
    lines = []
    async for line in resp.content:
        assert line.endswith(b"\n") and line.strip()
        lines.append(json.loads(line))
    assert lines == ndjson(b"".join(json.dumps(o).encode() + b"\n" for o in lines))
    assert_final(lines)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # Ollama's sampler takes a negative temperature as 0 (greedy) and a
        # top_p past 1 as 1; OpenAI and vLLM refuse both with a 400.
        ({"temperature": -0.5}, {"temperature": 0.0}),
        ({"top_p": 1.5}, {"top_p": 1.0}),
        # A top_p of 0 (greedy) as the least that vLLM and SGLang take.
        ({"top_p": -1}, {"top_p": 1e-9}),
        ({"top_p": 0}, {"top_p": 1e-9}),
        ({"frequency_penalty": 3, "presence_penalty": -2.5},
         {"frequency_penalty": 2.0, "presence_penalty": -2.0}),
        ({"temperature": 1.5, "top_p": 0.3}, {"temperature": 1.5, "top_p": 0.3}),
    ],
)  # fmt: skip
async def test_sampling_options_are_kept_in_openais_ranges(
    gateway, backend, options, expected
):
    sent = await _sent(gateway, backend, chat(options=options))
    assert {name: sent.get(name) for name in expected} == expected
