"""Fuzzed request bodies on every POST endpoint: each answer is a valid Ollama
response or a JSON `{"error": ...}`, never a traceback, never a hang.

Ollama itself answers option type errors and an invalid `format` with a 500
`{"error": ...}` (spec 1.7, 1.9), so a 500 passes when its body is a proper
error; "internal server error" (an unhandled exception) and ERROR logs do not.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from aiohttp import ClientResponse
from hypothesis import HealthCheck, event, given, settings, strategies as st

from tests.conftest import FAST_DEMO
from tests.ops import Client

BOUND = 15.0
# The 500s Ollama itself answers (spec 1.7, 1.9, 2.10); any other is a bug.
OLLAMA_500 = ('option "', "invalid format: ", "pull model manifest: ")
EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24)
)
any_json = st.recursive(
    leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
names = st.sampled_from(
    ["demo", "demo-embed", "DEMO:Latest", "demo:latest", "nope", "", " "]
) | st.text(max_size=30)
texts = st.text(max_size=40)
chat_models = st.sampled_from(["demo", "DEMO:Latest", "demo:latest"])
embed_models = st.sampled_from(["demo-embed", "demo-embed:latest"])
listed = st.sampled_from(["demo", "demo-embed"])
good_images = st.lists(
    st.sampled_from(["aGVsbG8=", "iVBORw0KGgo=", "/9j/4AAQ"]), max_size=2
)
bad_images = st.lists(
    st.sampled_from(["not base64!!", "data:image/png;base64,AA"]) | texts,
    min_size=1,
    max_size=2,
)
good_message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", "User"]),
        "content": texts,
    },
    optional={"images": good_images, "thinking": texts},
)
bad_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["tool", "x", ""]) | any_json},
    optional={
        "content": texts | any_json,
        "images": bad_images | any_json,
        "tool_calls": st.lists(
            st.fixed_dictionaries(
                {
                    "function": st.fixed_dictionaries(
                        {"name": texts}, optional={"arguments": any_json}
                    )
                },
                optional={"id": texts},
            )
            | any_json,
            max_size=2,
        ),
        "tool_name": texts | any_json,
    },
)
# Anthropic's Messages API (/v1/messages): text or typed blocks.
blocks = st.lists(
    st.fixed_dictionaries({"type": st.just("text"), "text": texts})
    | st.fixed_dictionaries(
        {"type": st.just("image"), "source": st.fixed_dictionaries({
            "type": st.just("base64"),
            "media_type": st.just("image/png"),
            "data": st.sampled_from(["iVBORw0KGgo=", "aGVsbG8="]),
        })}
    ),
    min_size=1,
    max_size=2,
)  # fmt: skip
good_turn = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant"]), "content": texts | blocks}
)
bad_turn = st.fixed_dictionaries(
    {"role": st.sampled_from(["tool", "x", ""]) | any_json},
    optional={
        "content": any_json
        | st.lists(
            st.fixed_dictionaries(
                {"type": st.sampled_from(["tool_use", "tool_result", "image", "x"])},
                optional={"id": any_json, "input": any_json, "source": any_json},
            ),
            min_size=1,
            max_size=2,
        )
    },
)
# OpenAI's Responses API (/v1/responses): input items.
good_item = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "developer"])},
    optional={
        "type": st.just("message"),
        "content": texts
        | st.lists(
            st.fixed_dictionaries({"type": st.just("input_text"), "text": texts}),
            max_size=2,
        ),
    },
)
bad_item = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["function_call", "function_call_output", "reasoning", "x"]
        )
        | any_json
    },
    optional={
        "call_id": any_json,
        "name": any_json,
        "arguments": any_json,
        "output": any_json,
        "role": any_json,
        "content": any_json,
    },
)
good_options = st.fixed_dictionaries(
    {},
    optional={
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "top_k": st.integers(1, 100),
        "num_predict": st.integers(-2, 100),
        "stop": st.lists(texts, max_size=3),
        "seed": st.integers(-1, 2**31),
        "num_ctx": st.integers(1, 10**6),
        "presence_penalty": st.floats(-2, 2),
        "mirostat": st.integers(0, 2),
        "unknown": leaf,
    },
)
bad_options = st.dictionaries(
    st.sampled_from(
        [
            "temperature",
            "top_p",
            "top_k",
            "num_predict",
            "stop",
            "seed",
            "num_ctx",
            "min_p",
            "use_mmap",
            "typical_p",
        ]
    ),
    any_json,
    min_size=1,
    max_size=4,
)
schema = {"type": "object", "properties": {"a": {"type": "string"}}}
tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def field(good: Any, bad: Any = None) -> tuple[Any, Any]:
    """A field's valid values and its wrong ones (any JSON is always wrong too)."""
    return good, any_json if bad is None else bad | any_json


def pick(*values: Any) -> Any:
    return st.sampled_from(values)


COMMON = {
    "stream": field(st.booleans()),
    "keep_alive": field(
        pick("5m", "-1m", "1.5h", "300ms", "0s", -1, 42.5, 600, None),
        pick("10", "abc", "1d", "", True),
    ),
}
GENERATION = {
    **COMMON,
    "options": field(good_options, bad_options),
    "format": field(pick("", "json", None, schema), pick("yaml", 3, [1])),
    "think": field(pick(None, False), pick(True, "extreme", "max", 1)),
    "logprobs": field(st.booleans()),
    "top_logprobs": field(st.integers(0, 20), pick(-1, 21, 1.5)),
}
# Per endpoint: the model field, its valid names, and (valid, wrong) per field.
ENDPOINTS: dict[str, tuple[str, Any, dict[str, tuple[Any, Any]]]] = {
    "/api/chat": ("model", chat_models, {
        **GENERATION,
        "messages": field(
            st.lists(good_message, min_size=1, max_size=3),
            st.lists(good_message | bad_message, min_size=1, max_size=3),
        ),
        "tools": field(pick([], None), st.lists(st.just(tool), min_size=1, max_size=2)),
    }),
    "/api/generate": ("model", chat_models, {
        **GENERATION,
        "prompt": field(texts.filter(str.strip)),
        "suffix": field(pick(None, "")),
        "system": field(texts),
        "template": field(texts),
        "context": field(st.lists(st.integers(0, 5), max_size=3)),
        "raw": field(pick(False, None), pick(True)),
        "images": field(good_images, bad_images),
    }),
    "/api/embed": ("model", embed_models, {
        **COMMON,
        "options": field(good_options, bad_options),
        "input": field(texts | st.lists(texts, max_size=3)),
        "truncate": field(st.booleans()),
        "dimensions": field(st.integers(1, 300), st.integers(-3, 0)),
    }),
    "/api/embeddings": ("model", embed_models, {
        **COMMON, "options": field(good_options, bad_options), "prompt": field(texts),
    }),
    "/api/show": ("model", listed, {"verbose": field(st.booleans())}),
    "/api/pull": ("model", listed, {
        "stream": field(st.booleans()), "insecure": field(st.booleans()),
    }),
    "/api/push": ("model", listed, {"stream": field(st.booleans())}),
    "/api/create": ("model", names, {
        "from": field(listed, names),
        "files": field(st.dictionaries(texts, texts, max_size=2)),
        "system": field(texts),
        "stream": field(st.booleans()),
        "quantize": field(texts),
    }),
    "/api/copy": ("source", listed, {
        "destination": field(
            st.from_regex(r"[a-z][a-z0-9_.-]{0,20}(:[a-z0-9]{1,8})?", fullmatch=True),
            names,
        ),
    }),
    "/api/delete": ("model", names, {"name": field(names)}),
    "/v1/chat/completions": ("model", chat_models, {
        "messages": field(
            st.lists(good_message, min_size=1, max_size=3),
            st.lists(bad_message, min_size=1, max_size=2),
        ),
        "stream": field(st.booleans()),
        "max_tokens": field(st.integers(1, 50), st.integers(-5, 0)),
        "temperature": field(st.floats(0, 2)),
    }),
    "/v1/messages": ("model", chat_models, {
        "messages": field(
            st.lists(good_turn, min_size=1, max_size=3),
            st.lists(good_turn | bad_turn, min_size=1, max_size=3),
        ),
        "max_tokens": field(st.integers(1, 50), pick(0, -1, "10", None, 1.5)),
        "system": field(texts | blocks, any_json),
        "stream": field(st.booleans(), any_json),
        "temperature": field(st.floats(0, 1), pick("hot", [1])),
        "stop_sequences": field(st.lists(texts, max_size=2), pick("x", [1])),
        "thinking": field(
            pick({"type": "enabled", "budget_tokens": 1024}, {"type": "disabled"}),
            pick({"type": 5}, "on", {"budget_tokens": "x"}),
        ),
        "tools": field(
            pick([], [{"name": "t", "input_schema": {"type": "object"}}]),
            pick([{"name": 5}], [{"type": "web_search_20250305"}], "x"),
        ),
    }),
    "/v1/responses": ("model", chat_models, {
        "input": field(
            texts.filter(str.strip) | st.lists(good_item, min_size=1, max_size=3),
            st.lists(good_item | bad_item, min_size=1, max_size=3) | any_json,
        ),
        "instructions": field(texts, any_json),
        "stream": field(st.booleans(), any_json),
        "max_output_tokens": field(st.integers(1, 50), pick(-1, "10", 1.5)),
        "temperature": field(st.floats(0, 2), pick("hot", [1])),
        "reasoning": field(
            pick({"effort": "low"}, {"effort": "high"}, None),
            pick({"effort": "extreme"}, "high", {"effort": 3}),
        ),
        "tools": field(
            pick([], [{"type": "function", "name": "f", "parameters": {}}]),
            pick([{"type": "function"}], [{"name": 5}], "x"),
        ),
        "text": field(
            pick({"format": {"type": "json_object"}}, {"format": {"type": "text"}}),
            pick({"format": {"type": "yaml"}}, {"format": 5}),
        ),
    }),
}  # fmt: skip
# Fields a valid body always has (the API refuses a body without them).
REQUIRED = {"/v1/messages": ("messages", "max_tokens"), "/v1/responses": ("input",)}


def bodies(path: str) -> st.SearchStrategy[bytes]:
    """Valid bodies, bodies with one wrong field, hostile shapes and raw bytes."""
    model, models, fields = ENDPOINTS[path]
    required = {model: models}
    for key in REQUIRED.get(path, ("messages",)):
        if key in fields:
            required[key] = fields[key][0]
    valid = st.fixed_dictionaries(
        required,
        optional={k: good for k, (good, _) in fields.items() if k not in required},
    )
    wrong_values = {model: names | any_json} | {
        k: bad for k, (_, bad) in fields.items()
    }
    one_wrong = st.tuples(valid, st.sampled_from(sorted(wrong_values))).flatmap(
        lambda pair: wrong_values[pair[1]].map(lambda v: {**pair[0], pair[1]: v})
    )
    hostile = st.dictionaries(
        st.sampled_from(sorted(wrong_values)) | st.text(max_size=8),
        any_json,
        max_size=6,
    )
    encoded = st.one_of(valid, one_wrong, one_wrong, hostile, any_json).map(
        lambda value: json.dumps(value).encode()
    )
    raw = st.binary(max_size=64) | pick(b"", b"  ", b"null", b"{", b"[]", b'{"model":')
    return st.one_of(encoded, encoded, encoded, raw)


STREAM_ENDS = {
    "/v1/chat/completions": (b"data: [DONE]",),
    "/v1/messages": (b"event: message_stop\n", b"event: error\n"),
    "/v1/responses": (
        b"event: response.completed\n",
        b"event: response.incomplete\n",
        b"event: response.failed\n",
    ),
}


def _error_body(raw: bytes, *, openai: bool) -> str:
    body = json.loads(raw)
    assert isinstance(body, dict) and "error" in body, raw[:300]
    error = body["error"]
    if openai and isinstance(error, dict):
        error = error.get("message")
    assert isinstance(error, str) and error, raw[:300]
    return error


def _check_success(resp: ClientResponse, raw: bytes, path: str) -> None:
    content_type = resp.headers.get("Content-Type", "")
    if not raw:
        assert path in ("/api/copy", "/api/delete"), path
        return
    if content_type.startswith("application/x-ndjson"):
        text = raw.decode("utf-8")
        assert text.endswith("\n")
        lines = [json.loads(line) for line in text[:-1].split("\n")]
        assert all(isinstance(line, dict) for line in lines)
        last = lines[-1]
        assert last.get("done") is True or "error" in last or "status" in last, last
        return
    if content_type.startswith("text/event-stream"):
        assert path.startswith("/v1/"), path
        # Each API's own last event: OpenAI chat's [DONE], Anthropic's
        # message_stop (or error), the Responses API's end of the response.
        last = raw.rstrip().rsplit(b"\n\n", 1)[-1]
        assert last.startswith(STREAM_ENDS[path]), last[:200]
        return
    assert content_type.startswith("application/json"), content_type
    assert isinstance(json.loads(raw), dict)


async def _exercise(
    client: Client, caplog: pytest.LogCaptureFixture, path: str, body: bytes
) -> None:
    seen = len(caplog.records)
    method = "DELETE" if path == "/api/delete" else "POST"
    async with asyncio.timeout(BOUND):
        resp = await client.request(method, path, data=body)
        raw = await resp.read()
    event(f"status {resp.status}")  # shown by --hypothesis-show-statistics
    assert resp.status != 413
    if resp.status >= 400:
        assert resp.headers["Content-Type"].startswith("application/json"), raw[:200]
        error = _error_body(raw, openai=path.startswith("/v1/"))
        event(f"error {error[:25]}")
        assert "internal server error" not in error
        assert "Traceback" not in error
        if resp.status == 500:
            assert error.startswith(OLLAMA_500), error
        assert resp.status < 500 or resp.status in (500, 501, 502, 503)
    else:
        _check_success(resp, raw, path)
    new = caplog.records[seen:]
    bad = [(r.levelname, r.getMessage()) for r in new if r.levelno >= logging.ERROR]
    assert not bad, (body[:300], bad)


@pytest.fixture
async def demo(gateway: Any) -> Client:
    """One gateway per test function, shared by its examples."""
    client: Client = await gateway(toml=FAST_DEMO)
    return client


def _fuzz(path: str) -> Any:
    @EXAMPLES
    @given(body=bodies(path))
    async def test(demo: Client, caplog: pytest.LogCaptureFixture, body: bytes) -> None:
        caplog.set_level(logging.WARNING)
        await _exercise(demo, caplog, path, body)

    return test


test_fuzz_chat = _fuzz("/api/chat")
test_fuzz_generate = _fuzz("/api/generate")
test_fuzz_embed = _fuzz("/api/embed")
test_fuzz_embeddings = _fuzz("/api/embeddings")
test_fuzz_show = _fuzz("/api/show")
test_fuzz_pull = _fuzz("/api/pull")
test_fuzz_push = _fuzz("/api/push")
test_fuzz_create = _fuzz("/api/create")
test_fuzz_copy = _fuzz("/api/copy")
test_fuzz_delete = _fuzz("/api/delete")
test_fuzz_openai_chat = _fuzz("/v1/chat/completions")
test_fuzz_anthropic_messages = _fuzz("/v1/messages")
test_fuzz_openai_responses = _fuzz("/v1/responses")
