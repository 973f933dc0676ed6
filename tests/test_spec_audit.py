"""Discrepancies found by an audit against the spec, one test per finding.

Each test names the spec section it holds the gateway to.
"""

from __future__ import annotations

import ollama
import pytest

from tests.conftest import base_url
from tests.fakebackend import Script, sse
from tests.ndjson import CHAT, GENERATE, NO_RETRY, chat, post

# Upstream error mapping (spec 3.15)


async def test_model_not_found_code_on_a_400_is_a_404(gateway, backend):
    # A proxy that answers an unknown model with 400 and the code only (the
    # LiteLLM proxy words it otherwise: see test_backend_litellm.py).
    backend.queue(
        Script(
            status=400,
            error_body={
                "error": {
                    "message": "The model `gpt-4o` does not exist",
                    "type": "invalid_request_error",
                    "code": "model_not_found",
                }
            },
        )
    )
    client = await gateway(backend, NO_RETRY)
    resp = await post(client, "/api/chat", chat(model="GPT-4o"))
    assert resp.status == 404
    assert await resp.json() == {"error": "model 'GPT-4o' not found"}


@pytest.mark.parametrize("code", [401, 403])
async def test_auth_error_event_before_output_is_a_502_never_401(
    gateway, backend, code
):
    data = sse({"error": {"message": "Incorrect API key", "code": code}}, done=False)
    backend.queue(Script(pieces=[data]))
    client = await gateway(backend, NO_RETRY)
    resp = await post(client, "/api/chat", CHAT)
    assert resp.status == 502
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert await resp.json() == {
        "error": "upstream authentication failed: Incorrect API key"
    }


async def test_auth_error_in_a_json_answer_is_a_502_never_401(gateway, backend):
    # A backend that answers 200 with one JSON error object instead of SSE.
    body = b'{"error":{"message":"Incorrect API key","code":401}}'
    backend.queue(Script(pieces=[body], content_type="application/json"))
    client = await gateway(backend, NO_RETRY)
    resp = await post(client, "/api/generate", {**GENERATE, "stream": False})
    assert resp.status == 502
    assert await resp.json() == {
        "error": "upstream authentication failed: Incorrect API key"
    }


async def test_error_events_map_like_error_statuses(gateway, backend):
    client = await gateway(backend, NO_RETRY)
    cases = [
        ({"message": "bad field", "code": 422}, 400, "bad field"),
        ({"message": "no such model", "code": 404}, 404, "model 'gpt-4o' not found"),
        (
            {"message": "no such model", "code": "model_not_found"},
            404,
            "model 'gpt-4o' not found",
        ),
    ]
    for error, status, message in cases:
        backend.queue(Script(pieces=[sse({"error": error}, done=False)]))
        resp = await post(client, "/api/chat", CHAT)
        assert resp.status == status, error
        assert await resp.json() == {"error": message}


# Trailing slash (spec 1.1: gin redirects to the slash-less path)


async def test_trailing_slash_on_get_redirects_with_301(gateway, backend):
    client = await gateway(backend)
    resp = await client.get("/api/tags/?x=1", allow_redirects=False)
    assert resp.status == 301
    assert resp.headers["Location"] == "/api/tags?x=1"
    resp = await client.get("/api/tags/")
    assert resp.status == 200
    assert "models" in await resp.json()


async def test_trailing_slash_on_post_redirects_with_307(gateway, backend):
    client = await gateway(backend)
    resp = await post(client, "/api/chat/", {**CHAT, "stream": False})
    assert resp.status == 200
    assert resp.history[0].status == 307
    assert resp.history[0].headers["Location"] == "/api/chat"
    assert (await resp.json())["done"] is True


async def test_trailing_slash_on_an_unknown_path_is_still_404(gateway, backend):
    client = await gateway(backend)
    resp = await client.get("/api/nope/", allow_redirects=False)
    assert resp.status == 404
    assert await resp.text() == "404 page not found"
    # Only a route the method can use is redirected to (as gin does).
    resp = await client.get("/api/chat/", allow_redirects=False)
    assert resp.status == 404


# Invalid model names (spec 2.4, 2.10, 2.14)


async def test_show_of_an_invalid_name_is_400(gateway, backend):
    client = await gateway(backend)
    resp = await post(client, "/api/show", {"model": "bad name!"})
    assert resp.status == 400
    assert await resp.json() == {"error": "invalid model name"}


@pytest.mark.parametrize("stream", [True, False])
async def test_pull_of_an_invalid_name_is_400(gateway, backend, stream):
    client = await gateway(backend)
    resp = await post(client, "/api/pull", {"model": "bad name!", "stream": stream})
    assert resp.status == 400
    assert resp.content_type == "application/json"
    assert await resp.json() == {"error": "invalid model name"}


async def test_delete_of_an_invalid_name_is_400(gateway, backend):
    client = await gateway(backend)
    resp = await client.delete("/api/delete", data='{"name": "bad name!"}')
    assert resp.status == 400
    assert await resp.json() == {"error": 'name "bad name!" is invalid'}


async def test_copy_from_an_invalid_source_name_is_400(gateway, backend):
    client = await gateway(backend)
    body = {"source": "bad name!", "destination": "x"}
    resp = await post(client, "/api/copy", body)
    assert resp.status == 400
    assert await resp.json() == {"error": 'source "bad name!" is invalid'}


# A model list that cannot be read is an upstream failure, not an unknown
# model (spec 2.3, 3.15): as chat, generate, embed and tags already answer.


async def test_show_is_502_when_no_backend_can_list(gateway, backend):
    backend.models_status = 503
    client = await gateway(backend, NO_RETRY)
    resp = await post(client, "/api/show", {"model": "gpt-4o"})
    assert resp.status == 502
    error = (await resp.json())["error"]
    assert error.startswith("model 'gpt-4o' not found; the model list of backend")


@pytest.mark.parametrize("stream", [True, False])
async def test_pull_is_502_when_no_backend_can_list(gateway, backend, stream):
    backend.models_status = 503
    client = await gateway(backend, NO_RETRY)
    resp = await post(client, "/api/pull", {"model": "gpt-4o", "stream": stream})
    assert resp.status == 502
    assert resp.content_type == "application/json"
    assert "unavailable" in (await resp.json())["error"]


# /api/ps stays readable whatever keep_alive a client sent (spec 1.6, 2.5)


@pytest.mark.parametrize("keep_alive", [1e12, 1e300, "2562047h"])
async def test_a_huge_keep_alive_does_not_break_ps(gateway, backend, keep_alive):
    client = await gateway(backend)
    resp = await post(
        client, "/api/generate", {"model": "gpt-4o", "keep_alive": keep_alive}
    )
    assert (await resp.json())["done_reason"] == "load"
    resp = await client.get("/api/ps")
    assert resp.status == 200
    (entry,) = (await resp.json())["models"]
    assert entry["expires_at"] > "2300"
    async with ollama.AsyncClient(host=base_url(client)) as api:
        (model,) = (await api.ps()).models
        assert model.expires_at is not None and model.expires_at.year > 2300


# One odd `created` in a backend's model list (spec 3.14: unix seconds; missing
# or 0 -> the gateway's start time) must not take the catalogue down.


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        (1715367049000, None),  # milliseconds: year 56326
        (10**15, None),
        ("2024-05-10", None),
        (1715367049.5, "2024-05-10T18:50:49.500000Z"),
    ],
)
async def test_an_odd_created_falls_back_to_the_start_time(
    gateway, backend, created, expected
):
    backend.models = [
        {"id": "odd", "object": "model", "created": created},
        {"id": "gpt-4o", "object": "model", "created": 1715367049},
    ]
    client = await gateway(backend)
    resp = await client.get("/api/tags")
    assert resp.status == 200
    models = {m["name"]: m for m in (await resp.json())["models"]}
    assert models["gpt-4o:latest"]["modified_at"] == "2024-05-10T18:50:49.000000Z"
    odd = models["odd:latest"]["modified_at"]
    if expected is None:
        assert "2025" < odd < "3000"  # the gateway's start time
    else:
        assert odd == expected
    async with ollama.AsyncClient(host=base_url(client)) as api:
        assert len((await api.list()).models) == 2
    resp = await post(client, "/api/chat", {**CHAT, "stream": False})
    assert resp.status == 200


# A null where a string is required is the zero value, as Go decodes (spec 1.1)


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/api/chat", {**CHAT, "model": None}, 400, "model is required"),
        ("/api/generate", {**GENERATE, "model": None}, 404, "model '' not found"),
        ("/api/embeddings", {"model": None, "prompt": "x"}, 400, "model is required"),
        ("/api/show", {"model": None}, 400, "model is required"),
    ],
)
async def test_a_null_model_is_an_empty_model(
    gateway, backend, path, body, status, error
):
    client = await gateway(backend)
    resp = await post(client, path, body)
    assert resp.status == status
    assert await resp.json() == {"error": error}
    assert not backend.completions()


async def test_nulls_elsewhere_pass_and_other_type_errors_keep_their_message(
    gateway, backend
):
    client = await gateway(backend)
    messages = [{"role": "user", "content": "hi", "images": None}]
    body = {**CHAT, "messages": messages, "options": None, "format": None}
    resp = await post(client, "/api/chat", body)
    assert resp.status == 200
    # A wrong type that is not a null is refused in Go's words, and so is
    # one met once the nulls that Go takes are set aside.
    expected = {
        "model": "json: cannot unmarshal number into Go struct field "
        "ChatRequest.model of type string",
        "stream": "json: cannot unmarshal string into Go struct field "
        "ChatRequest.stream of type bool",
    }
    for body in ({**CHAT, "model": 5}, {**CHAT, "model": None, "stream": "yes"}):
        resp = await post(client, "/api/chat", body)
        assert resp.status == 400
        field = "model" if body["model"] else "stream"
        assert await resp.json() == {"error": expected[field]}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        # found by the fuzz test; Go reads the 0 and refuses a number
        (
            b"0\x00",
            "json: cannot unmarshal number into Go value of type api.ChatRequest",
        ),
        (b'{"model": null} x', "JSON is malformed: trailing characters"),
    ],
)
async def test_a_rejected_body_that_is_also_malformed_is_a_400(
    gateway, backend, body, error
):
    client = await gateway(backend)
    resp = await client.post("/api/chat", data=body)
    assert resp.status == 400
    assert (await resp.json())["error"].startswith(error)
