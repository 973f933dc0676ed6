"""Differences found by the seventh audit (black-box against a running gateway),
one test per finding; each names the spec section or client it holds us to."""

from __future__ import annotations

import json

import pytest

from tests.ndjson import chat, post

# Options (spec 1.7): the client-only keys Ollama's server no longer knows are
# ignored there, whatever their type, so a wrong type is no 500 here either.


@pytest.mark.parametrize(
    "options",
    [
        {"mirostat": "2"},
        {"mirostat_tau": "x", "mirostat_eta": True},
        {"tfs_z": "high"},
        {"numa": "yes", "low_vram": 1, "f16_kv": 1},
        {"logits_all": 1, "vocab_only": 1, "use_mlock": "no"},
        {"embedding_only": 0, "penalize_newline": "no"},
    ],
)
async def test_client_only_options_of_any_type_are_ignored(gateway, backend, options):
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False, options=options))
    assert resp.status == 200, await resp.text()
    sent = backend.completions()[-1].body
    assert not set(options) & set(sent)


# Wrong field types (spec 1.1): `options` that is no object is worded like every
# other wrong type, naming the field and what came, not a Go message with both
# left out.


@pytest.mark.parametrize(
    ("options", "got"), [("x", "str"), (5, "int"), ([1], "array"), (True, "bool")]
)
async def test_options_that_are_no_object_name_the_field_and_type(
    gateway, backend, options, got
):
    client = await gateway(backend)
    for path, body in [
        ("/api/chat", chat(options=options)),
        ("/api/generate", {"model": "gpt-4o", "prompt": "hi", "options": options}),
    ]:
        resp = await post(client, path, body)
        assert resp.status == 400
        assert await resp.json() == {
            "error": f"invalid value for options: expected object | null, got {got}"
        }
    assert not backend.completions()


# Embeddings (spec 2.8, 2.9, 1.7): Ollama checks `input` as it reads the body,
# before it looks the model up, and the scheduler checks `options` (500) before
# an empty input is answered.


async def test_embed_input_of_the_wrong_type_is_400_before_the_model_lookup(
    gateway, backend
):
    client = await gateway(backend)
    resp = await post(client, "/api/embed", {"model": "nope", "input": [1, 2]})
    assert resp.status == 400
    assert await resp.json() == {"error": "invalid input type"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/embed", {"input": "hi"}),
        ("/api/embed", {"input": []}),
        ("/api/embeddings", {"prompt": "hi"}),
        ("/api/embeddings", {"prompt": ""}),
    ],
)
async def test_embedding_options_of_the_wrong_type_are_500(
    gateway, backend, path, body
):
    client = await gateway(backend)
    body = {"model": "text-embedding-3-small", **body}
    resp = await post(client, path, {**body, "options": {"temperature": "hot"}})
    assert resp.status == 500
    assert await resp.json() == {
        "error": 'option "temperature" must be of type float32'
    }
    resp = await post(client, path, {**body, "options": "x"})
    assert resp.status == 400
    assert not [r for r in backend.requests if r.path.endswith("/embeddings")]
    resp = await post(client, path, {**body, "options": {"num_ctx": 512}})
    assert resp.status == 200


# /api/show (spec 2.4): the request's `system` replaces the system prompt shown,
# and its `options` are merged into the shown `parameters` (the Ollama CLI's
# `/set parameter` then `/show parameters` relies on it; the JS client sends both).


async def test_show_reports_the_requested_system_and_options(gateway, backend):
    toml = '[models."gpt-4o"]\ncontext_length = 8192\n'
    client = await gateway(backend, toml)
    options = {"temperature": 0.5, "num_ctx": 4096, "stop": ["a", 'b"'], "x": None}
    body = {"model": "gpt-4o", "system": "Be brief.", "options": options}
    resp = await post(client, "/api/show", body)
    assert resp.status == 200
    shown = await resp.json()
    assert shown["system"] == "Be brief."
    assert shown["parameters"].split("\n") == [
        f"{'num_ctx':<30} 4096",
        f"{'temperature':<30} 0.5",
        f"{'stop':<30} " + '"a"',
        f"{'stop':<30} " + '"b\\""',
    ]
    resp = await post(client, "/api/show", {"model": "gpt-4o"})
    plain = await resp.json()
    assert "system" not in plain
    assert plain["parameters"] == f"{'num_ctx':<30} 8192"


async def test_show_parameters_are_in_gos_form(gateway, backend):
    # Go's `%#v`, as Ollama prints them: JSON's form was close, but for a
    # float of integral value (1.0, not 1) and JSON's escapes (\u001b, not
    # \x1b) that a client unquoting them as Go does misreads.
    client = await gateway(backend)
    options = {"temperature": 1.0, "top_p": 0.95, "stop": ["\x1b[0m", "\u00a0"]}
    resp = await post(client, "/api/show", {"model": "gpt-4o", "options": options})
    shown = await resp.json()
    assert shown["parameters"].split("\n")[-4:] == [
        f"{'temperature':<30} 1",
        f"{'top_p':<30} 0.95",
        f"{'stop':<30} " + '"\\x1b[0m"',
        f"{'stop':<30} " + '"\\u00a0"',
    ]


async def test_show_options_that_are_no_object_are_400(gateway, backend):
    client = await gateway(backend)
    resp = await post(client, "/api/show", {"model": "gpt-4o", "options": "x"})
    assert resp.status == 400


# Create and blobs (spec 1.1, 2.12, 2.15): the body and the digest are checked as
# Ollama checks them before the gateway says it does not offer the operation.


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "missing request body"),
        ("{", "Input data was truncated"),
        ({"from": "gpt-4o"}, "invalid model name"),
        ({"model": "bad name!", "from": "gpt-4o"}, "invalid model name"),
    ],
)
async def test_create_checks_its_body_before_answering_501(
    gateway, backend, body, message
):
    client = await gateway(backend)
    resp = await post(client, "/api/create", body)
    assert resp.status == 400
    assert await resp.json() == {"error": message}
    resp = await post(client, "/api/create", {"name": "mine", "from": "gpt-4o"})
    assert resp.status == 501


@pytest.mark.parametrize("digest", ["nope", "sha256:abc", "md5:" + "0" * 64])
async def test_a_malformed_blob_digest_is_400(gateway, backend, digest):
    client = await gateway(backend)
    head = await client.head(f"/api/blobs/{digest}")
    assert head.status == 400
    upload = await client.post(f"/api/blobs/{digest}", data=b"weights")
    assert upload.status == 400
    assert await upload.json() == {"error": "invalid digest format"}
    # Ollama takes a dash for the colon too.
    head = await client.head("/api/blobs/sha256-" + "A" * 64)
    assert head.status == 404


# `_debug_render_only` (spec 1.2, 2.6): Ollama answers with what it would run,
# one JSON object even when streaming, and runs nothing; a backend is not asked
# for a (paid) completion.


async def test_debug_render_only_answers_without_a_completion(gateway, backend):
    client = await gateway(backend)
    png = "iVBORw0KGgoAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
    messages = [{"role": "user", "content": "hi", "images": [png, png]}]
    resp = await post(
        client, "/api/chat", chat(messages=messages, _debug_render_only=True)
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    answer = await resp.json()
    assert answer["model"] == "gpt-4o"
    assert answer["message"] == {"role": "", "content": ""}
    assert answer["done"] is False
    info = answer["_debug_info"]
    assert info["image_count"] == 2
    assert json.loads(info["rendered_template"])["messages"][0]["role"] == "user"
    body = {"model": "gpt-4o", "prompt": "hi", "_debug_render_only": True}
    resp = await post(client, "/api/generate", body)
    answer = await resp.json()
    assert answer["response"] == "" and answer["done"] is False
    assert "image_count" not in answer["_debug_info"]
    assert "hi" in answer["_debug_info"]["rendered_template"]
    assert not backend.completions()
    resp = await post(client, "/api/chat", chat(_debug_render_only=False, stream=False))
    assert (await resp.json())["done"] is True
