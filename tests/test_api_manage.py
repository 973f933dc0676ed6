"""Model management: pull, copy, delete, push, create, blobs (spec 2.10-2.15;
section 5 cases 82-86)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import ollama
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import base_url

PULL_MISSING = "pull model manifest: file does not exist"


async def post(client: Any, path: str, body: Any) -> Any:
    return await client.post(path, data=json.dumps(body))


def lines(raw: bytes) -> list[dict[str, Any]]:
    text = raw.decode()
    assert text.endswith("\n")
    parts = text[:-1].split("\n")
    assert all(parts), "no blank lines"
    return [json.loads(part) for part in parts]


async def tag_names(client: Any) -> list[str]:
    resp = await client.get("/api/tags")
    return [m["name"] for m in (await resp.json())["models"]]


@pytest.mark.parametrize("key", ["model", "name"])
async def test_case_82_pull_listed_model_streams_to_success(backend, gateway, key):
    client = await gateway(backend)
    resp = await post(client, "/api/pull", {key: "gpt-4o"})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    statuses = [line["status"] for line in lines(await resp.read())]
    assert statuses[0] == "pulling manifest"
    assert statuses[-1] == "success"
    assert backend.completions() == []


async def test_case_82_pull_non_stream_and_python_client(backend, gateway):
    client = await gateway(backend)
    resp = await post(client, "/api/pull", {"model": "GPT-4o:latest", "stream": False})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert await resp.json() == {"status": "success"}
    async with ollama.AsyncClient(host=base_url(client)) as api:
        done = await api.pull("gpt-4o")
        progress = [p.status async for p in await api.pull("gpt-4o", stream=True)]
    assert done.status == "success"
    assert progress[-1] == "success"


async def test_case_83_pull_unknown_model(backend, gateway):
    client = await gateway(backend)
    resp = await post(client, "/api/pull", {"model": "nope", "stream": False})
    assert resp.status == 500
    assert resp.headers["Content-Type"].startswith("application/json")
    assert await resp.json() == {"error": PULL_MISSING}
    streamed = await post(client, "/api/pull", {"model": "nope"})
    assert streamed.status == 200
    assert lines(await streamed.read()) == [
        {"status": "pulling manifest"},
        {"error": PULL_MISSING},
    ]
    async with ollama.AsyncClient(host=base_url(client)) as api:
        with pytest.raises(ollama.ResponseError) as raised:
            await api.pull("nope")
    assert raised.value.error == PULL_MISSING
    assert raised.value.status_code == 500


async def test_pull_without_a_name_is_400(backend, gateway):
    client = await gateway(backend)
    resp = await post(client, "/api/pull", {"stream": False})
    assert resp.status == 400
    assert "error" in await resp.json()


async def test_case_85_copy_makes_an_alias_that_lists_and_chats(backend, gateway):
    client = await gateway(backend)
    body = {"source": "gpt-4o", "destination": "gpt-3.5-turbo"}
    resp = await post(client, "/api/copy", body)
    assert resp.status == 200
    assert await resp.read() == b""
    assert "gpt-3.5-turbo:latest" in await tag_names(client)
    chat = {
        "model": "gpt-3.5-turbo",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
    }
    reply = await post(client, "/api/chat", chat)
    assert reply.status == 200
    answer = await reply.json()
    assert answer["model"] == "gpt-3.5-turbo"
    assert answer["message"]["content"] == "Hello from fake"
    assert backend.completions()[-1].body["model"] == "gpt-4o"
    show = await post(client, "/api/show", {"model": "gpt-3.5-turbo"})
    assert show.status == 200


async def test_copy_errors(backend, gateway):
    client = await gateway(backend)
    unknown = await post(client, "/api/copy", {"source": "x", "destination": "y"})
    assert unknown.status == 404
    assert await unknown.json() == {"error": 'model "x" not found'}
    no_source = await post(client, "/api/copy", {"source": "", "destination": "y"})
    assert no_source.status == 400
    assert await no_source.json() == {"error": 'source "" is invalid'}
    no_dest = await post(client, "/api/copy", {"source": "gpt-4o", "destination": ""})
    assert no_dest.status == 400
    assert await no_dest.json() == {"error": 'destination "" is invalid'}
    for bad in ("two words", "tab\tname", "line\nbreak", " "):
        resp = await post(client, "/api/copy", {"source": "gpt-4o", "destination": bad})
        assert resp.status == 400, bad
        assert await resp.json() == {"error": f'destination "{bad}" is invalid'}
    for good in ("m", "m:v1.2", "team/m:q4_K_M", "host.example:5000/team/m:1"):
        resp = await post(
            client, "/api/copy", {"source": "gpt-4o", "destination": good}
        )
        assert resp.status == 200, good


async def test_case_84_delete_reads_the_json_body_of_a_delete(backend, gateway):
    client = await gateway(backend)
    await post(client, "/api/copy", {"source": "gpt-4o", "destination": "mine"})
    resp = await client.delete("/api/delete", data=json.dumps({"name": "mine"}))
    assert resp.status == 200
    assert await resp.read() == b""
    assert "mine:latest" not in await tag_names(client)
    again = await client.delete("/api/delete", data=json.dumps({"name": "mine"}))
    assert again.status == 404
    assert await again.json() == {"error": "model 'mine' not found"}
    unknown = await client.delete("/api/delete", data=json.dumps({"model": "x"}))
    assert unknown.status == 404
    assert await unknown.json() == {"error": "model 'x' not found"}


async def test_delete_alias_by_its_tagged_name(backend, gateway):
    client = await gateway(backend)
    await post(client, "/api/copy", {"source": "gpt-4o", "destination": "mine"})
    resp = await client.delete("/api/delete", data=json.dumps({"model": "Mine:latest"}))
    assert resp.status == 200
    assert "mine:latest" not in await tag_names(client)


async def test_delete_of_an_upstream_model_is_501(backend, gateway):
    # Documented deviation: a backend's model cannot be deleted from here.
    client = await gateway(backend)
    resp = await client.delete("/api/delete", data=json.dumps({"model": "gpt-4o"}))
    assert resp.status == 501
    assert resp.headers["Content-Type"].startswith("application/json")
    assert "cannot be deleted" in (await resp.json())["error"]
    assert "gpt-4o:latest" in await tag_names(client)


async def test_delete_without_a_name_is_400(backend, gateway):
    client = await gateway(backend)
    resp = await client.delete("/api/delete", data=b"{}")
    assert resp.status == 400


async def test_python_client_copy_and_delete(backend, gateway):
    client = await gateway(backend)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        copied = await api.copy("gpt-4o", "backup")
        listed = [m.model for m in (await api.list()).models]
        deleted = await api.delete("backup")
        after = [m.model for m in (await api.list()).models]
        with pytest.raises(ollama.ResponseError) as raised:
            await api.delete("backup")
    assert copied.status == "success" and deleted.status == "success"
    assert "backup:latest" in listed and "backup:latest" not in after
    assert raised.value.status_code == 404


async def test_aliases_persist_across_an_app_restart(
    backend, gateway, tmp_path, aiohttp_client
):
    path = tmp_path / "aliases.json"
    toml = f'[catalogue]\naliases_file = "{path}"\n'
    first = await gateway(backend, toml)
    await post(first, "/api/copy", {"source": "gpt-4o", "destination": "kept"})
    await post(first, "/api/copy", {"source": "gpt-4o", "destination": "gone"})
    await first.delete("/api/delete", data=json.dumps({"name": "gone"}))
    await first.close()
    second: TestClient[Any, Any] = await gateway(backend, toml)
    names = await tag_names(second)
    assert "kept:latest" in names and "gone:latest" not in names
    body = {"model": "kept", "messages": [{"role": "user", "content": "x"}]}
    reply = await post(second, "/api/chat", {**body, "stream": False})
    assert (await reply.json())["model"] == "kept"


async def test_case_86_push_is_501_json(backend, gateway):
    client = await gateway(backend)
    resp = await post(client, "/api/push", {"model": "gpt-4o"})
    assert resp.status == 501
    assert resp.headers["Content-Type"].startswith("application/json")
    assert await resp.json() == {"error": "push is not supported by this gateway"}
    missing = await post(client, "/api/push", {})
    assert missing.status == 400
    assert await missing.json() == {"error": "model is required"}
    async with ollama.AsyncClient(host=base_url(client)) as api:
        with pytest.raises(ollama.ResponseError) as raised:
            await api.push("gpt-4o")
    assert raised.value.status_code == 501


async def test_case_86_create_is_501_json(backend, gateway):
    client = await gateway(backend)
    body = {"model": "mine", "from": "gpt-4o", "system": "be brief"}
    resp = await post(client, "/api/create", body)
    assert resp.status == 501
    assert resp.headers["Content-Type"].startswith("application/json")
    assert "create is not supported" in (await resp.json())["error"]
    async with ollama.AsyncClient(host=base_url(client)) as api:
        with pytest.raises(ollama.ResponseError) as raised:
            await api.create(model="mine", from_="gpt-4o")
    assert raised.value.status_code == 501
    assert "mine:latest" not in await tag_names(client)


async def test_case_86_blobs(backend, gateway, tmp_path):
    client = await gateway(backend)
    digest = "sha256:" + hashlib.sha256(b"weights").hexdigest()
    head = await client.head(f"/api/blobs/{digest}")
    assert head.status == 404
    assert await head.read() == b""
    upload = await client.post(f"/api/blobs/{digest}", data=b"weights")
    assert upload.status == 501
    assert upload.headers["Content-Type"].startswith("application/json")
    assert isinstance((await upload.json())["error"], str)
    blob = tmp_path / "weights.bin"
    blob.write_bytes(b"weights")
    async with ollama.AsyncClient(host=base_url(client)) as api:
        with pytest.raises(ollama.ResponseError) as raised:
            await api.create_blob(blob)
    assert raised.value.status_code == 501


async def test_copy_refuses_a_destination_longer_than_ollama_allows(
    backend, gateway, tmp_path
):
    # Each copy rewrites the whole aliases file: with no bound on a name, 20
    # copies of 5 MB names made a 100 MB file and a 560 MB process. Ollama's
    # longest name is 593 characters (host 350, namespace, model and tag 80).
    path = tmp_path / "aliases.json"
    client = await gateway(backend, f'[catalogue]\naliases_file = "{path}"\n')
    longest = "h" * 350 + "/" + "n" * 80 + "/" + "m" * 80 + ":" + "t" * 80
    resp = await post(client, "/api/copy", {"source": "gpt-4o", "destination": longest})
    assert resp.status == 200
    too_long = longest + "t"
    resp = await post(
        client, "/api/copy", {"source": "gpt-4o", "destination": too_long}
    )
    assert resp.status == 400
    assert await resp.json() == {"error": f'destination "{too_long}" is invalid'}
    huge = "a" * (256 << 10)
    resp = await post(client, "/api/copy", {"source": "gpt-4o", "destination": huge})
    assert resp.status == 400
    assert path.stat().st_size < 1024


async def test_copy_past_the_alias_cap_is_a_409_and_changes_nothing(
    backend, gateway, tmp_path
):
    path = tmp_path / "aliases.json"
    toml = f'[catalogue]\naliases_file = "{path}"\nmax_aliases = 2\n'
    client = await gateway(backend, toml)
    for name in ("one", "two"):
        resp = await post(
            client, "/api/copy", {"source": "gpt-4o", "destination": name}
        )
        assert resp.status == 200
    before = path.read_text()
    third = await post(
        client, "/api/copy", {"source": "gpt-4o", "destination": "three"}
    )
    assert third.status == 409
    assert await third.json() == {
        "error": 'cannot copy to "three": the gateway holds 2 aliases, its limit '
        "(catalogue.max_aliases); delete one first"
    }
    assert path.read_text() == before
    assert "three:latest" not in await tag_names(client)
    # Copying over an existing alias makes none more; a delete makes room.
    again = await post(client, "/api/copy", {"source": "gpt-4o", "destination": "TWO"})
    assert again.status == 200
    await client.delete("/api/delete", data=json.dumps({"name": "one"}))
    third = await post(
        client, "/api/copy", {"source": "gpt-4o", "destination": "three"}
    )
    assert third.status == 200
    assert set(json.loads(path.read_text())) == {"TWO", "three"}


async def test_an_aliases_file_that_cannot_be_written_is_a_500_that_changes_nothing(
    backend, gateway, tmp_path
):
    # A read-only volume or a full disk: the copy or delete was a bare
    # "internal server error", yet took effect in memory. The next copy that
    # could be saved then wrote it: a delete that failed deleted the alias.
    path = tmp_path / "state" / "aliases.json"
    client = await gateway(backend, f'[catalogue]\naliases_file = "{path}"\n')
    kept = await post(client, "/api/copy", {"source": "gpt-4o", "destination": "kept"})
    assert kept.status == 200
    saved = path.read_bytes()
    path.unlink()
    path.mkdir()  # the file can no longer be read or replaced
    failed = await post(client, "/api/copy", {"source": "gpt-4o", "destination": "new"})
    assert failed.status == 500
    error = (await failed.json())["error"]
    assert error.startswith("cannot save aliases: catalogue.aliases_file")
    async with ollama.AsyncClient(host=base_url(client)) as api:
        with pytest.raises(ollama.ResponseError) as raised:
            await api.delete("kept")
    assert raised.value.status_code == 500
    assert raised.value.error == error
    # No temporary file is left behind (the lock file stays, as locks do).
    left = sorted(p.name for p in path.parent.iterdir())
    assert left == ["aliases.json", "aliases.json.lock"]
    names = await tag_names(client)
    assert "kept:latest" in names and "new:latest" not in names
    path.rmdir()
    path.write_bytes(saved)  # the volume is writable again
    third = await post(
        client, "/api/copy", {"source": "gpt-4o", "destination": "third"}
    )
    assert third.status == 200
    assert set(json.loads(path.read_text())) == {"kept", "third"}


async def test_workers_sharing_an_aliases_file_keep_each_others_aliases(
    backend, gateway, tmp_path
):
    # With --workers N each worker has its own store: a copy through one
    # rewrote the file from what that worker had read, so the alias another
    # worker had just saved was gone at the next start. Two apps on one file
    # are two workers.
    path = tmp_path / "aliases.json"
    toml = f'[catalogue]\naliases_file = "{path}"\n'
    first = await gateway(backend, toml)
    second = await gateway(backend, toml)
    for client, name in ((first, "one"), (second, "two"), (first, "three")):
        resp = await post(
            client, "/api/copy", {"source": "gpt-4o", "destination": name}
        )
        assert resp.status == 200
    assert set(json.loads(path.read_text())) == {"one", "two", "three"}
    gone = await second.delete("/api/delete", data=json.dumps({"name": "one"}))
    assert gone.status == 200
    assert set(json.loads(path.read_text())) == {"two", "three"}
    # The first still lists "one": its delete finds it gone, as Ollama would.
    assert "one:latest" in await tag_names(first)
    again = await first.delete("/api/delete", data=json.dumps({"name": "one"}))
    assert again.status == 404
    assert await again.json() == {"error": "model 'one' not found"}
    assert "one:latest" not in await tag_names(first)
    restarted = await gateway(backend, toml)
    names = await tag_names(restarted)
    assert {"two:latest", "three:latest"} <= set(names) and "one:latest" not in names
