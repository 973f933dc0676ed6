"""docs/plugins.md, followed as written: write the files it shows, pip-install the
plugin, enable it, and see upper-cased replies through the official client.

The plugin is installed with a real `pip install` (into a folder on PYTHONPATH,
so the test leaves the environment untouched) and discovered through its real
package metadata by a real gateway process.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import ollama

DOCS = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
FENCE = re.compile(r"^```\w+ file=(\S+)\n(.*?)^```", re.M | re.S)


def files_from_docs() -> dict[str, str]:
    return {name: body for name, body in FENCE.findall(DOCS.read_text())}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_docs_show_the_three_files():
    assert set(files_from_docs()) == {
        "upper_plugin.py",
        "pyproject.toml",
        "gateway.toml",
    }


def install_plugin(tmp_path: Path) -> tuple[Path, Path]:
    files = files_from_docs()
    project = tmp_path / "upper-plugin"
    project.mkdir()
    for name in ("upper_plugin.py", "pyproject.toml"):
        (project / name).write_text(files[name])
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--target", str(target), str(project)],
        check=True, timeout=300,
    )  # fmt: skip
    config = tmp_path / "gateway.toml"
    config.write_text(
        files["gateway.toml"] + "\n[translators.demo]\ntokens_per_second = 0\n"
    )
    return target, config


async def test_walkthrough_upper_cases_replies_through_the_official_client(tmp_path):
    target, config = await asyncio.to_thread(install_plugin, tmp_path)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OLLAMA_"))
    }
    env["PYTHONPATH"] = str(target)
    env["OLLAMA_GATEWAY_CONFIG"] = str(config)

    listing = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ollama_gateway", "plugins",
        env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(listing.communicate(), 60)
    assert listing.returncode == 0
    upper = next(p for p in json.loads(out) if p["name"] == "upper")
    assert upper["stage"] == "response"
    assert upper["distribution"] == "upper-plugin"
    assert upper["version"] == "0.1.0"
    assert upper["in_use"] is True

    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ollama_gateway", "serve", "--port", str(port),
        env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with ollama.AsyncClient(host=f"http://127.0.0.1:{port}") as api:
            for _ in range(100):
                try:
                    await api.list()
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            reply = await api.chat(
                model="demo", messages=[{"role": "user", "content": "hi"}]
            )
            streamed = [
                chunk.message.content
                async for chunk in await api.chat(
                    model="demo",
                    messages=[{"role": "user", "content": "hi"}],
                    stream=True,
                )
            ]
    finally:
        process.terminate()
        await asyncio.wait_for(process.communicate(), 30)
    assert reply.message.content.startswith("HELLO! THIS IS THE OLLAMA-GATEWAY DEMO")
    assert reply.message.content == reply.message.content.upper()
    assert "".join(streamed) == reply.message.content
    assert process.returncode == 0
