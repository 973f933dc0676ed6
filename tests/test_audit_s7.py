"""Differences found by the seventh audit (black-box against a running gateway),
one test per finding; each names the spec section or client it holds us to."""

from __future__ import annotations

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
