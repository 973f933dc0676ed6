"""The official JavaScript client (`ollama` 0.6.4 on npm) against the gateway on
its real socket: list, show, a streaming chat, pull (which sends `name`), copy
and delete. Needs Node.js and `make js-deps`; without them the test fails."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import base_url
from tests.fakebackend import Script

JS_DIR = Path(__file__).parent / "js"
PULL_MISSING = "pull model manifest: file does not exist"


async def run_js_client(url: str, model: str) -> dict[str, Any]:
    return await run_node("client.mjs", url, model)


async def run_node(script: str, *args: str) -> dict[str, Any]:
    """Run a script of tests/js with the machine's Node.js; its JSON output."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "Node.js (`node`) is not on PATH: the JS client test needs Node.js 18+"
        )
    if not (JS_DIR / "node_modules" / ".package-lock.json").exists():
        pytest.fail("tests/js/node_modules is missing: run `make js-deps` first")
    process = await asyncio.create_subprocess_exec(
        node,
        script,
        *args,
        cwd=JS_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"{script} did not finish within 60 s")
    assert process.returncode == 0, stderr.decode()
    result: dict[str, Any] = json.loads(stdout)
    return result


async def test_official_js_client(backend, gateway):
    backend.queue(Script.text("Hi from the backend", split=9), Script.text("Whole"))
    client = await gateway(backend)
    out = await run_js_client(base_url(client), "gpt-4o")

    assert out["version"]["version"] != "0.0.0"
    names = [m["name"] for m in out["list"]["models"]]
    assert "gpt-4o:latest" in names
    entry = out["list"]["models"][names.index("gpt-4o:latest")]
    assert {"model", "modified_at", "size", "digest", "details"} <= set(entry)

    show = out["show"]
    assert "tools" in show["capabilities"]
    assert show["model_info"]["general.architecture"] == "gpt"

    chunks = out["chat"]
    assert len(chunks) >= 3
    assert "".join(c["message"]["content"] for c in chunks) == "Hi from the backend"
    assert all(c["model"] == "gpt-4o" for c in chunks)
    assert chunks[-1]["done"] is True and chunks[-1]["done_reason"] == "stop"
    assert all(c["done"] is False for c in chunks[:-1])
    assert out["chatWhole"]["message"]["content"] == "Whole"

    assert out["pull"] == {"status": "success"}
    statuses = [p["status"] for p in out["pullStream"]]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert out["pullMissing"] == {
        "name": "ResponseError",
        "message": PULL_MISSING,
        "status": 500,
    }
    assert out["pullMissingStream"]["message"] == PULL_MISSING

    assert out["copy"] == {"status": "success"}
    assert "js-alias:latest" in out["listAfterCopy"]
    assert out["delete"] == {"status": "success"}
    assert out["deleteMissing"]["status"] == 404
    assert out["showMissing"] == {
        "name": "ResponseError",
        "message": "model 'no-such-model' not found",
        "status": 404,
    }

    pulls = [r.body for r in backend.requests if r.path.endswith("/models")]
    assert pulls  # the catalogue, not a completion, answered the pulls
    assert len(backend.completions()) == 2


async def test_missing_node_fails_instead_of_skipping(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="Node.js"):
        await run_js_client("http://127.0.0.1:1", "m")
