"""Section 5 of the spec, cases 5-9 and 14-42 not covered by a topic file.

Where a topic file holds a case it is named there after its number too:
13 (test_cors), 18-21 (test_api_models), 36-39 and 59-62 (test_images_format),
43-51 (test_tools), 52-58 (test_thinking), 77-81 (test_api_embed),
82-86 (test_api_manage). Cases 1-12 and 63-76 live in test_api_chat,
test_api_generate and test_transport_real.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tests.fakebackend import FakeBackend, Script, sse


async def post(client: Any, path: str, body: Any) -> Any:
    return await client.post(path, data=json.dumps(body))


def lines(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.decode().split("\n") if line]


def chat(model: str = "gpt-4o", **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **fields}


def sent(fake: FakeBackend) -> dict[str, Any]:
    body: dict[str, Any] = fake.completions()[-1].body
    return body


# Transport


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/api/chat", "POST"),
        ("PUT", "/api/chat", "POST"),
        ("POST", "/", "HEAD, GET"),
        ("DELETE", "/api/tags", "HEAD, GET"),
        ("HEAD", "/api/ps", "GET"),
        ("GET", "/api/delete", "DELETE"),
        ("GET", "/api/blobs/sha256:abc", "HEAD, POST"),
    ],
)
async def test_case_9_wrong_method_is_gins_405(backend, gateway, method, path, allow):
    """Gin's 405: `text/plain` with no charset, and the `Allow` header listing
    the other methods in the order Ollama registers them (HEAD, GET, POST,
    DELETE)."""
    client = await gateway(backend)
    resp = await client.request(method, path)
    assert resp.status == 405
    assert resp.headers["Content-Type"] == "text/plain"
    assert resp.headers["Allow"] == allow
    if method != "HEAD":
        assert await resp.read() == b"405 method not allowed"


async def test_case_9_unknown_path_is_gins_404(backend, gateway):
    client = await gateway(backend)
    for method in ("GET", "POST"):
        resp = await client.request(method, "/api/nope")
        assert resp.status == 404
        assert resp.headers["Content-Type"] == "text/plain"
        assert "Allow" not in resp.headers
        assert await resp.read() == b"404 page not found"


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("/api/chat", b'{"model":', "unexpected EOF"),
        ("/api/generate", b'{"model": "gpt-4o", "prompt": "x', "unexpected EOF"),
        (
            "/api/chat",
            b"[]",
            "json: cannot unmarshal array into Go value of type api.ChatRequest",
        ),
        (
            "/api/generate",
            b'"x"',
            "json: cannot unmarshal string into Go value of type api.GenerateRequest",
        ),
        (
            "/api/chat",
            b'{"model": "gpt-4o", "messages": [], "stream": "yes"}',
            "json: cannot unmarshal string into Go struct field ChatRequest.stream"
            " of type bool",
        ),
        (
            "/api/chat",
            b'{"model": "gpt-4o", "messages": [{"role": "user", "images": [5]}]}',
            "json: cannot unmarshal number into Go struct field"
            " Message.messages.images of type api.ImageData",
        ),
        (
            "/api/generate",
            b'{"model": "gpt-4o", "context": ["a"]}',
            "json: cannot unmarshal string into Go struct field"
            " GenerateRequest.context of type int",
        ),
    ],
)
async def test_cases_5_6_8_refused_bodies_in_gos_words(
    backend, gateway, path, body, error
):
    """Ollama's 400s for a body cut short, one that is no object and a field
    of the wrong kind are its Go decoder's words (spec 1.1)."""
    client = await gateway(backend)
    resp = await client.post(path, data=body)
    assert resp.status == 400
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert await resp.json() == {"error": error}
    assert backend.completions() == []


# Model names and catalogue


async def test_case_14_tagged_and_untagged_names_resolve_to_one_model(backend, gateway):
    client = await gateway(backend)
    for name in ("gpt-4o", "gpt-4o:latest"):
        resp = await post(client, "/api/chat", chat(name, stream=False))
        assert resp.status == 200
        assert (await resp.json())["model"] == name
        assert sent(backend)["model"] == "gpt-4o"
        streamed = lines(await (await post(client, "/api/chat", chat(name))).read())
        assert {chunk["model"] for chunk in streamed} == {name}


async def test_case_15_mixed_case_resolves_and_is_echoed(backend, gateway):
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat("GPT-4o:Latest", stream=False))
    assert resp.status == 200
    assert (await resp.json())["model"] == "GPT-4o:Latest"
    assert sent(backend)["model"] == "gpt-4o"
    generated = await post(
        client, "/api/generate", {"model": "Gpt-4O", "prompt": "x", "stream": False}
    )
    assert (await generated.json())["model"] == "Gpt-4O"
    embedded = await post(
        client, "/api/embed", {"model": "TEXT-embedding-3-small", "input": "x"}
    )
    assert (await embedded.json())["model"] == "TEXT-embedding-3-small"


async def test_case_16_unknown_model_texts_per_endpoint(backend, gateway):
    client = await gateway(backend)
    expected = [
        ("/api/chat", chat("nope"), "model 'nope' not found"),
        ("/api/generate", {"model": "nope", "prompt": "x"}, "model 'nope' not found"),
        (
            "/api/embed",
            {"model": "nope", "input": "x"},
            'model "nope" not found, try pulling it first',
        ),
        ("/api/show", {"model": "nope"}, "model 'nope' not found"),
    ]
    for path, body, message in expected:
        resp = await post(client, path, body)
        assert resp.status == 404, path
        assert resp.headers["Content-Type"].startswith("application/json")
        assert await resp.json() == {"error": message}, path
    assert backend.completions() == []


async def test_case_17_empty_model_per_endpoint(backend, gateway):
    client = await gateway(backend)
    expected = [
        ("/api/chat", chat(""), 400, "model is required"),
        ("/api/generate", {"model": "", "prompt": "x"}, 404, "model '' not found"),
        ("/api/embeddings", {"model": "", "prompt": "x"}, 400, "model is required"),
        ("/api/show", {"model": ""}, 400, "model is required"),
    ]
    for path, body, status, message in expected:
        resp = await post(client, path, body)
        assert resp.status == status, path
        assert await resp.json() == {"error": message}, path
    whitespace = await post(client, "/api/chat", chat("   "))
    assert whitespace.status == 400
    assert backend.completions() == []


# Load / unload


async def test_case_22_generate_without_prompt_is_a_load(backend, gateway):
    client = await gateway(backend)
    resp = await post(client, "/api/generate", {"model": "gpt-4o"})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    raw = await resp.read()
    assert not raw.endswith(b"\n")
    body = json.loads(raw)
    assert set(body) == {"model", "created_at", "response", "done", "done_reason"}
    assert body["model"] == "gpt-4o"
    assert (body["response"], body["done"], body["done_reason"]) == ("", True, "load")
    assert backend.completions() == []


async def test_case_23_generate_keep_alive_zero_is_an_unload(backend, gateway):
    client = await gateway(backend)
    # Go makes keep_alive whole nanoseconds, truncating: less than one is 0.
    for keep_alive in (0, "0", "0s", 1e-10, 9.99e-10, "0.5ns", -0.0):
        body = {"model": "gpt-4o", "keep_alive": keep_alive}
        resp = await post(client, "/api/generate", body)
        assert resp.headers["Content-Type"].startswith("application/json")
        answer = await resp.json()
        assert answer["done_reason"] == "unload", keep_alive
        assert answer["done"] is True and answer["response"] == ""
    assert backend.completions() == []


async def test_case_23_one_nanosecond_keep_alive_is_a_load(backend, gateway):
    client = await gateway(backend)
    for keep_alive in (1e-9, "1ns", 0.5):
        body = {"model": "gpt-4o", "keep_alive": keep_alive}
        answer = await (await post(client, "/api/generate", body)).json()
        assert answer["done_reason"] == "load", keep_alive


async def test_case_24_chat_without_messages_is_a_load_or_unload(backend, gateway):
    client = await gateway(backend)
    for body, reason in (
        ({"model": "gpt-4o", "messages": []}, "load"),
        ({"model": "gpt-4o"}, "load"),
        ({"model": "gpt-4o", "messages": [], "keep_alive": 0}, "unload"),
    ):
        resp = await post(client, "/api/chat", body)
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/json")
        answer = await resp.json()
        assert answer["message"] == {"role": "assistant", "content": ""}
        assert answer["done"] is True and answer["done_reason"] == reason
    assert backend.completions() == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/generate", {"model": "nope"}),
        ("/api/generate", {"model": "nope", "keep_alive": 0}),
        ("/api/chat", {"model": "nope", "messages": []}),
    ],
)
async def test_case_25_load_of_an_unknown_model_is_404(backend, gateway, path, body):
    client = await gateway(backend)
    resp = await post(client, path, body)
    assert resp.status == 404
    assert await resp.json() == {"error": "model 'nope' not found"}


@pytest.mark.parametrize(
    "keep_alive",
    [
        *("5m", 300, 42.5, -1, "-1m", "0", "1h30m", "300ms"),
        # Go's limits: what an int64 of nanoseconds holds, a negative one more.
        *("2562047h", "9223372036854775807ns", "-9223372036854775808ns"),
        "2562047h47m16.854775807s",
    ],
)
async def test_case_26_keep_alive_values_accepted(backend, gateway, keep_alive):
    client = await gateway(backend)
    body = {"model": "gpt-4o", "messages": [], "keep_alive": keep_alive}
    resp = await post(client, "/api/chat", body)
    assert resp.status == 200


@pytest.mark.parametrize(
    ("keep_alive", "message"),
    [
        ("10", 'time: missing unit in duration "10"'),
        ("abc", 'time: invalid duration "abc"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("", 'time: invalid duration ""'),
        # Past an int64 of nanoseconds, as Go's time.ParseDuration says.
        ("2562048h", 'time: invalid duration "2562048h"'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
        ("-9223372036854775809ns", 'time: invalid duration "-9223372036854775809ns"'),
        (
            "2562047h47m16.854775808s",
            'time: invalid duration "2562047h47m16.854775808s"',
        ),
        ("9" * 5000 + "s", f'time: invalid duration "{"9" * 5000}s"'),
        (True, "Unsupported type: 'bool'"),
        # A number past any float64 (Go's decoder refuses it), as an integer.
        pytest.param(
            10**400,
            "invalid value for keep_alive: number out of range",
            id="past-float64",
        ),
        ({}, "Unsupported type: 'map[string]interface {}'"),
        ([], "Unsupported type: '[]interface {}'"),
    ],
)
async def test_case_26_keep_alive_values_rejected(
    backend, gateway, keep_alive, message
):
    client = await gateway(backend)
    for path in ("/api/chat", "/api/generate", "/api/embed"):
        body = {
            "model": "gpt-4o",
            "messages": [],
            "input": [],
            "keep_alive": keep_alive,
        }
        resp = await post(client, path, body)
        assert resp.status == 400, path
        assert await resp.json() == {"error": message}, path
    assert backend.completions() == []


# Options mapping


async def options_sent(client: Any, fake: FakeBackend, options: Any) -> dict[str, Any]:
    resp = await post(client, "/api/chat", chat(options=options, stream=False))
    assert resp.status == 200, await resp.text()
    return sent(fake)


async def test_case_27_num_predict_becomes_max_tokens(backend, gateway):
    client = await gateway(backend)
    assert (await options_sent(client, backend, {"num_predict": 50}))[
        "max_tokens"
    ] == 50
    for value in (-1, 0, -2):
        body = await options_sent(client, backend, {"num_predict": value})
        assert "max_tokens" not in body and "max_completion_tokens" not in body
    truncated = await options_sent(client, backend, {"num_predict": 50.9})
    assert truncated["max_tokens"] == 50


async def test_case_27_max_tokens_field_is_configurable(backend, gateway):
    toml = (
        f'[[backends]]\nname = "o"\nbase_url = "{backend.url}"\n'
        'max_tokens_field = "max_completion_tokens"\n'
    )
    client = await gateway(toml=toml)
    body = await options_sent(client, backend, {"num_predict": 7})
    assert body["max_completion_tokens"] == 7 and "max_tokens" not in body


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ("o3-mini", "max_completion_tokens"),
        ("o1", "max_completion_tokens"),
        ("o4-mini-2025-04-16", "max_completion_tokens"),
        ("gpt-5", "max_completion_tokens"),
        ("GPT-5.1", "max_completion_tokens"),
        ("gpt-4o", "max_tokens"),
        ("openai/gpt-oss-20b", "max_tokens"),
        ("openai/o3", "max_tokens"),  # OpenRouter's id: it takes max_tokens
    ],
)
async def test_case_27_openais_reasoning_models_get_max_completion_tokens(
    backend, gateway, model, field
):
    """OpenAI's o-series and GPT-5 refuse `max_tokens` with a 400 ("Use
    'max_completion_tokens' instead"): Ollama's clients send num_predict."""
    backend.models = [{"id": model, "object": "model"}]
    client = await gateway(backend)
    resp = await post(
        client, "/api/chat", chat(model=model, options={"num_predict": 9}, stream=False)
    )
    assert resp.status == 200, await resp.text()
    limits = {k: v for k, v in sent(backend).items() if k.startswith("max_")}
    assert limits == {field: 9}


async def test_case_28_sampling_options_keep_their_names(backend, gateway):
    client = await gateway(backend)
    options = {
        "temperature": 0.3,
        "top_p": 0.8,
        "seed": 42,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.25,
    }
    body = await options_sent(client, backend, options)
    assert {k: body[k] for k in options} == options
    bare = await options_sent(client, backend, {})
    for key in (*options, "max_tokens", "stop", "top_k"):
        assert key not in bare, key
    negative_seed = await options_sent(client, backend, {"seed": -1})
    assert "seed" not in negative_seed
    integer_temperature = await options_sent(client, backend, {"temperature": 1})
    assert integer_temperature["temperature"] == 1.0


async def test_case_29_stop_array_and_bare_string(backend, gateway):
    client = await gateway(backend)
    stops = await options_sent(client, backend, {"stop": ["\n", "user:"]})
    assert stops["stop"] == ["\n", "user:"]
    # Deviation (documented): Ollama answers 500 for a bare string.
    bare = await options_sent(client, backend, {"stop": "END"})
    assert bare["stop"] == ["END"]
    empty = await options_sent(client, backend, {"stop": []})
    assert "stop" not in empty


async def test_case_29_stop_is_cut_for_strict_backends(backend, gateway):
    toml = f'[[backends]]\nname = "o"\nbase_url = "{backend.url}"\nmax_stop = 4\n'
    client = await gateway(toml=toml)
    body = await options_sent(client, backend, {"stop": list("abcdef")})
    assert body["stop"] == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"temperature": "hot"}, 'option "temperature" must be of type float32'),
        ({"num_predict": "many"}, 'option "num_predict" must be of type integer'),
        ({"stop": 5}, 'option "stop" must be of type array'),
        ({"stop": ["a", 1]}, 'option "stop" must be of an array of strings'),
        ({"use_mmap": "yes"}, 'option "use_mmap" must be of type boolean'),
    ],
)
async def test_case_30_option_type_errors_are_ollamas_500(
    backend, gateway, options, message
):
    client = await gateway(backend)
    for path in ("/api/chat", "/api/generate"):
        body = chat(options=options) | {"prompt": "x"}
        resp = await post(client, path, body)
        assert resp.status == 500, path
        assert resp.headers["Content-Type"].startswith("application/json")
        assert await resp.json() == {"error": message}
    assert backend.completions() == []


async def test_case_31_runner_options_are_not_sent(backend, gateway):
    client = await gateway(backend)
    options = {
        "num_ctx": 8192,
        "num_gpu": 99,
        "use_mmap": True,
        "num_batch": 512,
        "num_thread": 8,
        "num_keep": 4,
        "main_gpu": None,
        "mirostat": 2,
        "tfs_z": 1.0,
    }
    body = await options_sent(client, backend, options)
    leaked = set(body) & {*options, "options"}
    assert leaked == set()


async def test_case_32_top_k_only_with_extensions(backend, gateway):
    client = await gateway(backend)
    plain = await options_sent(client, backend, {"top_k": 20, "min_p": 0.1})
    assert "top_k" not in plain and "min_p" not in plain
    toml = (
        f'[[backends]]\nname = "vllm"\nbase_url = "{backend.url}"\nextensions = true\n'
    )
    extended_client = await gateway(toml=toml)
    options = {"top_k": 20, "min_p": 0.1, "typical_p": 0.9, "repeat_penalty": 1.1}
    extended = await options_sent(extended_client, backend, options)
    assert extended["top_k"] == 20
    assert extended["min_p"] == 0.1
    assert extended["typical_p"] == 0.9
    assert extended["repetition_penalty"] == 1.1


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # Ollama's "no top-k" is any k <= 0; vLLM refuses one below -1 (and,
        # before 0.8, 0 too), and takes -1 as off, as llama.cpp does.
        ({"top_k": 0}, {"top_k": -1}),
        ({"top_k": -5}, {"top_k": -1}),
        ({"top_k": 7}, {"top_k": 7}),
        # Ollama clamps min_p to [0, 1]; vLLM refuses it outside.
        ({"min_p": 1.5}, {"min_p": 1.0}),
        ({"min_p": -0.1}, {"min_p": 0.0}),
    ],
)
async def test_top_k_and_min_p_go_as_vllm_takes_them(
    backend, gateway, options, expected
):
    toml = (
        f'[[backends]]\nname = "vllm"\nbase_url = "{backend.url}"\nextensions = true\n'
    )
    client = await gateway(toml=toml)
    sent = await options_sent(client, backend, options)
    assert {name: sent.get(name) for name in expected} == expected


# Chat content and roles


async def test_case_33_roles_are_lower_cased(backend, gateway):
    client = await gateway(backend)
    messages = [
        {"role": "System", "content": "be brief"},
        {"role": "User", "content": "hi"},
        {"role": "ASSISTANT", "content": "hello"},
        {"role": "user", "content": "again"},
    ]
    resp = await post(client, "/api/chat", chat(messages=messages, stream=False))
    assert resp.status == 200
    roles = [m["role"] for m in sent(backend)["messages"]]
    assert roles == ["system", "user", "assistant", "user"]


async def test_case_34_missing_content_is_sent_as_empty(backend, gateway):
    client = await gateway(backend)
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant"},
        {"role": "user", "content": None},
    ]
    resp = await post(client, "/api/chat", chat(messages=messages, stream=False))
    assert resp.status == 200
    assert sent(backend)["messages"][1:] == [
        {"role": "assistant", "content": ""},
        {"role": "user", "content": ""},
    ]


async def test_case_35_content_parts_are_400(backend, gateway):
    client = await gateway(backend)
    parts = [{"type": "text", "text": "hi"}]
    body = chat(messages=[{"role": "user", "content": parts}])
    resp = await post(client, "/api/chat", body)
    assert resp.status == 400
    assert resp.headers["Content-Type"].startswith("application/json")
    assert await resp.json() == {
        "error": "json: cannot unmarshal array into Go struct field "
        "Message.messages.content of type string"
    }
    assert backend.completions() == []


# Generate mapping


async def test_case_40_generate_system_leads_the_messages(backend, gateway):
    client = await gateway(backend)
    body = {"model": "gpt-4o", "prompt": "hi", "system": "be brief", "stream": False}
    resp = await post(client, "/api/generate", body)
    assert resp.status == 200
    assert sent(backend)["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    await post(client, "/api/generate", {**body, "system": ""})
    assert sent(backend)["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "extra", [{"system": "s"}, {"template": "{{ .Prompt }}"}, {"context": [1, 2, 3]}]
)
async def test_case_40_raw_with_system_template_or_context_is_400(
    backend, gateway, extra
):
    client = await gateway(backend)
    body = {"model": "gpt-4o", "prompt": "x", "raw": True, **extra}
    resp = await post(client, "/api/generate", body)
    assert resp.status == 400
    assert await resp.json() == {
        "error": "raw mode does not support template, system, or context"
    }
    assert backend.completions() == []


def completion_script(text: str) -> Script:
    return Script(
        pieces=[sse({"choices": [{"text": text, "index": 0, "finish_reason": "stop"}]})]
    )


async def test_case_41_raw_goes_to_completions_verbatim(backend, gateway):
    backend.queue(completion_script("world"))
    client = await gateway(backend)
    prompt = "<|user|>\nhello  \n<|assistant|>"
    body = {"model": "gpt-4o", "prompt": prompt, "raw": True, "stream": False}
    resp = await post(client, "/api/generate", body)
    assert resp.status == 200
    answer = await resp.json()
    assert answer["response"] == "world" and "context" not in answer
    request = backend.completions()[-1]
    assert request.path == "/v1/completions"
    assert request.body["prompt"] == prompt
    assert request.body["model"] == "gpt-4o"
    assert "messages" not in request.body and "suffix" not in request.body


async def test_case_41_suffix_goes_to_completions(backend, gateway):
    backend.queue(completion_script("    return a + b"))
    toml = '[models."gpt-4o"]\ncapabilities = ["completion", "insert"]\n'
    client = await gateway(backend, toml)
    body = {
        "model": "gpt-4o",
        "prompt": "def add(a, b):\n",
        "suffix": "\n\nprint(add(1, 2))",
        "stream": False,
    }
    resp = await post(client, "/api/generate", body)
    assert resp.status == 200
    assert (await resp.json())["response"] == "    return a + b"
    request = backend.completions()[-1]
    assert request.path == "/v1/completions"
    assert request.body["prompt"] == body["prompt"]
    assert request.body["suffix"] == body["suffix"]


async def test_case_41_suffix_needs_the_insert_capability(backend, gateway):
    client = await gateway(backend)
    body = {"model": "gpt-4o", "prompt": "a", "suffix": "b"}
    resp = await post(client, "/api/generate", body)
    assert resp.status == 400
    assert await resp.json() == {
        "error": "registry.ollama.ai/library/gpt-4o:latest does not support insert"
    }


async def test_case_42_context_is_ignored_with_a_warning(backend, gateway, caplog):
    client = await gateway(backend)
    body = {"model": "gpt-4o", "prompt": "hi", "context": [1, 2, 3]}
    with caplog.at_level(logging.WARNING):
        resp = await post(client, "/api/generate", body)
        chunks = lines(await resp.read())
    assert resp.status == 200
    assert chunks[-1]["done"] is True
    assert all("context" not in chunk for chunk in chunks)
    assert sent(backend)["messages"] == [{"role": "user", "content": "hi"}]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("context" in r.getMessage() for r in warnings)
    whole = await post(client, "/api/generate", {**body, "stream": False})
    assert "context" not in await whole.json()
