"""What Open WebUI's Ollama router sends, replayed through the gateway.

`fixtures/openwebui/requests.json` holds each request its
`routers/ollama.py` makes (see its `_source`), with its headers (the
connection's Bearer key, JSON Content-Type even on a GET, the user headers).
Open WebUI keys its model table by `/api/tags` `models[].model` and looks a
chat's model up there after appending `:latest` to an untagged name; it reads
`/api/ps` `expires_at` with Python's `datetime.fromisoformat`, compares
`/api/version` numerically, relays chat streams line by line as
`application/x-ndjson`, reads every other answer (and every error, for its
`error`) with aiohttp's or requests' `.json()`.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import pytest

from tests.captures import Captures
from tests.fakebackend import Script
from tests.ndjson import assert_final, read_ndjson

MODELS = ("llama3.2", "qwen3", "llava", "nomic-embed-text")
CAPTURES = Captures("openwebui", MODELS)
STREAMED_CHATS = [
    name
    for name, c in CAPTURES.items()
    if name != "_source"
    and c["path"] == "/api/chat"
    and json.loads(c["body"]).get("stream", True)
]


_replay = CAPTURES.replay
_gateway = CAPTURES.gateway


async def _json(resp: Any) -> Any:
    """As aiohttp's `.json()` reads it: only an `application/json` answer."""
    assert resp.content_type == "application/json", resp.content_type
    return json.loads(await resp.read())


@pytest.mark.parametrize("name", ["verify", "version"])
async def test_the_version_compares_as_open_webui_compares_it(gateway, backend, name):
    client = await _gateway(gateway, backend)
    resp = await _replay(client, name)
    assert resp.status == 200
    version = (await _json(resp))["version"]
    # get_ollama_versions: the lowest of all connections wins.
    assert tuple(map(int, re.sub(r"^v|-.*", "", version).split("."))) >= (0, 6, 4)


async def test_every_chat_model_is_found_in_its_table_of_tags(gateway, backend):
    client = await _gateway(gateway, backend)
    resp = await _replay(client, "tags")
    assert resp.status == 200
    models = (await _json(resp))["models"]
    table = {m["model"]: m for m in models}
    for m in models:
        assert m["name"] == m["model"]
        assert set(m["details"]) >= {"format", "family", "parameter_size"}
    for name, capture in CAPTURES.items():
        if name != "_source" and capture["path"] in ("/api/chat", "/api/generate"):
            model = json.loads(capture["body"])["model"]
            assert (model if ":" in model else f"{model}:latest") in table


async def test_ps_expiry_is_read_by_fromisoformat_after_a_chat(gateway, backend):
    backend.queue(Script.text("Blue light scatters."))
    client = await _gateway(gateway, backend)
    assert_final(await read_ndjson(await _replay(client, "chat")))
    resp = await _replay(client, "ps")
    assert resp.status == 200
    (loaded,) = (await _json(resp))["models"]
    assert loaded["model"] == "llama3.2:latest"
    assert datetime.fromisoformat(loaded["expires_at"]).tzinfo is not None


@pytest.mark.parametrize("name", STREAMED_CHATS)
async def test_every_streamed_chat_is_ndjson_line_by_line(gateway, backend, name):
    backend.queue(Script.text("Because of Rayleigh scattering.", split=7))
    client = await _gateway(gateway, backend)
    resp = await _replay(client, name)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/x-ndjson"
    lines = [line async for line in resp.content]
    objs = [json.loads(line) for line in lines]
    assert all(line.endswith(b"\n") for line in lines)
    final = assert_final(objs)
    assert final["model"] == json.loads(CAPTURES[name]["body"])["model"]


@pytest.mark.parametrize("name", ["chat_not_streamed", "chat_format_json"])
async def test_a_chat_not_streamed_is_one_json_object(gateway, backend, name):
    backend.queue(Script.text('{"tags": ["cat"]}'))
    client = await _gateway(gateway, backend)
    resp = await _replay(client, name)
    assert resp.status == 200
    answer = await _json(resp)
    assert answer["done"] is True
    assert answer["message"]["content"] == '{"tags": ["cat"]}'


async def test_generate_streams_with_the_name_as_it_was_sent(gateway, backend):
    backend.queue(Script.text("Leaves fall."))
    client = await _gateway(gateway, backend)
    resp = await _replay(client, "generate")
    assert resp.status == 200
    objs = [json.loads(line) async for line in resp.content]
    assert assert_final(objs)["model"] == "llama3.2"


async def test_unload_answers_one_json_object_its_r_json_can_read(gateway, backend):
    backend.queue(Script.text("Blue light scatters."))
    client = await _gateway(gateway, backend)
    assert_final(await read_ndjson(await _replay(client, "chat")))
    resp = await _replay(client, "unload")
    assert resp.status == 200
    answer = await _json(resp)
    assert (answer["done"], answer["done_reason"]) == (True, "unload")
    assert len(backend.completions()) == 1  # the chat's; an unload sends nothing
    # Its "unload" button is done when the model leaves /api/ps.
    assert (await _json(await _replay(client, "ps")))["models"] == []


async def test_embed_and_embeddings_answer_the_vectors(gateway, backend):
    client = await _gateway(gateway, backend)
    embed = await _json(await _replay(client, "embed"))
    assert len(embed["embeddings"]) == 2
    embeddings = await _json(await _replay(client, "embeddings"))
    assert len(embeddings["embedding"]) == len(backend.embedding)


async def test_show_answers_what_the_model_editor_reads(gateway, backend):
    client = await _gateway(gateway, backend)
    resp = await _replay(client, "show")
    assert resp.status == 200
    shown = await _json(resp)
    assert {"details", "model_info", "capabilities", "modified_at"} <= set(shown)


@pytest.mark.parametrize(
    ("name", "last"),
    [
        ("pull", {"status": "success"}),
        ("pull_unknown", {"error": "pull model manifest: file does not exist"}),
    ],
)
async def test_pull_streams_progress_to_its_end(gateway, backend, name, last):
    client = await _gateway(gateway, backend)
    resp = await _replay(client, name)
    assert resp.status == 200
    objs = [json.loads(line) async for line in resp.content]
    assert objs[-1] == last


@pytest.mark.parametrize("name", ["push", "create"])
async def test_what_is_not_offered_is_an_error_it_can_show(gateway, backend, name):
    client = await _gateway(gateway, backend)
    resp = await _replay(client, name)
    # send_post_request: `r.ok is False` -> HTTPException(r.status, res["error"]).
    assert resp.status == 501
    assert "not supported" in (await _json(resp))["error"]


async def test_copy_then_delete_an_alias(gateway, backend):
    client = await _gateway(gateway, backend)
    assert (await _replay(client, "copy")).status == 200
    tags = await _json(await _replay(client, "tags"))
    assert "house-model:latest" in {m["model"] for m in tags["models"]}
    assert (await _replay(client, "delete")).status == 200
    tags = await _json(await _replay(client, "tags"))
    assert "house-model:latest" not in {m["model"] for m in tags["models"]}
