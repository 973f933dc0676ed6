"""The command line as a real process: one-line errors with exit code 2, the
`plugins` listing, and `serve` end to end with SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import ollama
import pytest

from ollama_gateway.cli import main
from ollama_gateway.metrics import MULTIPROCESS_DIR

BUILTINS = {
    "ollama-to-openai": "request",
    "openai-http": "transport",
    "openai-to-ollama": "response",
    "demo": "transport",
}


def _env(**extra: str) -> dict[str, str]:
    """The test's environment without any gateway setting, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OLLAMA_", "OPENAI_")) and k != "LOG_LEVEL"
    }
    env.update(extra)
    return env


def _run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ollama_gateway", *args],
        env=_env(**env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        ((), {"OLLAMA_HOST": "a:b"}, "OLLAMA_HOST"),
        ((), {"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ((), {"OPENAI_BASE_URL": "ftp://x"}, "OPENAI_BASE_URL"),
        ((), {"OLLAMA_GATEWAY_CONFIG": "missing.toml"}, "OLLAMA_GATEWAY_CONFIG"),
        (("--config", "missing.toml"), {}, "--config"),
        (("--config", "unknown.toml"), {}, "bogus"),
        (("--port", "1", "--config", "unknown.toml"), {}, "bogus"),
        # Checked as the file's value is: it served as one process.
        (("--port", "0", "--workers", "0"), {}, "server.workers: must be at least 1"),
        (("--port", "0", "--workers", "-2"), {}, "server.workers"),
        # prometheus-client's own error was a traceback (a worker's, each
        # start, with `--workers`).
        (("--port", "0"), {MULTIPROCESS_DIR: "missing"}, MULTIPROCESS_DIR),
        (("--port", "0", "--workers", "2"), {MULTIPROCESS_DIR: "missing"}, "missing"),
        # A plugin's table, found when the app is made: by each worker, one
        # line each, and the supervisor exited 1.
        (("--port", "0", "--config", "plugin.toml"), {}, "translators.think-tags"),
        (
            ("--port", "0", "--config", "plugin.toml", "--workers", "2"),
            {},
            "think-tags",
        ),
    ],
)
def test_bad_settings_exit_2_with_one_line(tmp_path: Path, args, env, named):
    (tmp_path / "unknown.toml").write_text("[server]\nbogus = 1\n")
    (tmp_path / "plugin.toml").write_text(
        '[pipeline]\nresponse = ["think-tags", "openai-to-ollama"]\n'
        "[translators.think-tags]\nfield = 3\n"
    )
    result = _run("serve", *args, cwd=tmp_path, **env)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ollama-gateway: error: ")
    assert named in lines[0]
    assert "Traceback" not in result.stderr


def test_serve_is_the_default_command(tmp_path: Path):
    result = _run("--log-level", "nope", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("ollama-gateway: error: --log-level: 'nope'")


def test_plugins_lists_the_builtins_as_json(tmp_path: Path):
    result = _run("plugins", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = {entry["name"]: entry for entry in json.loads(result.stdout)}
    for name, stage in BUILTINS.items():
        entry = listed[name]
        assert entry["stage"] == stage
        assert entry["distribution"] == "ollama-gateway"
        assert entry["version"] and isinstance(entry["version"], str)
        assert entry["entry_point"].startswith("ollama_gateway_translators.")
    # Without a backend the demo serves; the OpenAI chain is listed but idle.
    assert listed["demo"]["in_use"] is True
    assert listed["ollama-to-openai"]["in_use"] is True
    assert listed["openai-to-ollama"]["in_use"] is True


def test_plugins_in_process_with_a_backend(monkeypatch, capsys):
    for key in list(os.environ):
        if key.startswith(("OLLAMA_", "OPENAI_")) or key == "LOG_LEVEL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert main(["plugins"]) == 0
    listed = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert listed["openai-http"]["in_use"] is True
    assert listed["demo"]["in_use"] is False
    assert set(BUILTINS) <= set(listed)


def test_check_config(monkeypatch, capsys, tmp_path: Path):
    for key in list(os.environ):
        if key.startswith(("OLLAMA_", "OPENAI_")) or key == "LOG_LEVEL":
            monkeypatch.delenv(key)
    assert main(["check-config"]) == 0
    assert capsys.readouterr().out == "configuration ok\n"
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nbogus = 1\n")
    assert main(["check-config", "--config", str(bad)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("ollama-gateway: error: invalid setting: ")
    assert error.count("\n") == 1


@pytest.mark.parametrize(
    "host",
    # Not an address of this machine (TEST-NET-2); a name that does not resolve.
    ["198.51.100.1:11434", "nosuch.invalid:11434"],
)
def test_check_config_refuses_a_host_serve_cannot_listen_on(monkeypatch, capsys, host):
    # It said "configuration ok", and serve then failed to start.
    monkeypatch.setenv("OLLAMA_HOST", host)
    assert main(["check-config"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"ollama-gateway: error: cannot listen on {host}: ")
    assert err.count("\n") == 1


def test_check_config_takes_a_port_in_use(monkeypatch, capsys):
    # The running gateway holds its own port while its next settings are
    # checked: no fault of the settings.
    with socket.socket() as running:
        running.bind(("127.0.0.1", 0))
        running.listen()
        port = running.getsockname()[1]
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
        assert main(["check-config"]) == 0
    assert capsys.readouterr().out == "configuration ok\n"


async def _wait_until_serving(url: str, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 15
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert proc.returncode is None, "the gateway exited early"
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("the gateway did not start listening")


async def test_serve_end_to_end_then_sigterm(backend, unused_tcp_port, tmp_path):
    port = unused_tcp_port
    # The flag wins over OLLAMA_HOST's port.
    env = _env(
        OPENAI_BASE_URL=backend.url, OPENAI_API_KEY="sk-e2e", OLLAMA_HOST="127.0.0.1:1"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ollama_gateway",
        "serve",
        "--port",
        str(port),
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        host = f"http://127.0.0.1:{port}"
        await _wait_until_serving(host + "/", proc)
        async with ollama.AsyncClient(host=host) as api:
            reply = await api.chat(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )
            stream = await api.generate(model="gpt-4o", prompt="hi", stream=True)
            chunks = [chunk async for chunk in stream]
        assert reply.message.content == "Hello from fake"
        assert "".join(c.response for c in chunks) == "Hello from fake"
        assert chunks[-1].done_reason == "stop"
        assert backend.completions()[0].headers["Authorization"] == "Bearer sk-e2e"
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    log = stderr.decode()
    assert "Traceback" not in log
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(f":{port}" in r.get("msg", "") for r in records), log
    assert not [r for r in records if r.get("level") in ("ERROR", "CRITICAL")]


def test_port_in_use_is_one_line_without_traceback(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run("serve", "--port", str(port), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("ollama-gateway: error: cannot listen on 127.0.0.1:")
    assert str(port) in last
    # Nothing claimed to listen before the socket was bound.
    assert "listening on" not in result.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_port_0_is_logged_as_the_port_the_kernel_chose(tmp_path: Path, host):
    # The line said "listening on http://127.0.0.1:0": a script that starts
    # the gateway on any free port could not learn which. An IPv6 address
    # was not bracketed: "http://::1:41234", no URL.
    serve = ("serve", "--port", "0", "--host", host)
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "ollama_gateway", *serve),
        env=_env(),
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(30):
            while "listening on" not in (line := await proc.stderr.readline()).decode():
                assert line, "the gateway ended without its startup line"
        url = json.loads(line)["msg"].removeprefix("ollama-gateway listening on ")
        assert not url.endswith(":0")
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/api/version") as resp:
                assert resp.status == 200
    finally:
        proc.terminate()
        await proc.communicate()


@pytest.mark.parametrize(
    ("workers", "port", "lines"),
    # Once per worker; with port 0 the supervisor, which picks the port for
    # all of them, meets it first.
    [("1", "0", 1), ("2", "1", 2), ("2", "0", 1)],
)
def test_a_host_that_does_not_resolve_is_one_line(
    tmp_path: Path, workers: str, port: str, lines: int
):
    # getaddrinfo's error was a traceback; each worker's, in turn, was
    # retried as a crash.
    args = ("--host", "nosuch.invalid", "--port", port, "--workers", workers)
    result = _run("serve", *args, cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "nosuch" in line]
    assert len(errors) == lines, result.stderr
    prefix = f"ollama-gateway: error: cannot listen on nosuch.invalid:{port}: "
    assert all(line.startswith(prefix) for line in errors), errors


def test_ctrl_c_while_starting_exits_130_without_a_traceback(tmp_path: Path):
    # SIGINT before the server's handlers are set (here while the settings
    # load; in real life mostly while the modules import) was Python's
    # KeyboardInterrupt traceback and a death by the signal.
    interrupt = "def interrupt():\n    os.kill(os.getpid(), signal.SIGINT)\n"
    result = _start_interrupted(tmp_path, interrupt)
    assert (result.returncode, result.stderr) == (130, "")


def test_ctrl_c_met_in_a_callback_while_starting_still_stops(tmp_path: Path):
    # A KeyboardInterrupt raised in a callback is "ignored" (importlib's
    # module locks have weakref callbacks, run during every import): Python
    # printed "Exception ignored in ...", and the gateway went on to serve.
    interrupt = (
        "def stop(ref):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "class Thing: pass\n"
        "def interrupt():\n"
        "    thing = Thing()\n"
        "    ref = weakref.ref(thing, stop)\n"
        "    del thing\n"
    )
    result = _start_interrupted(tmp_path, interrupt)
    assert (result.returncode, result.stderr) == (130, "")


def _start_interrupted(
    tmp_path: Path, interrupt: str
) -> subprocess.CompletedProcess[str]:
    """`serve`, whose settings load calls `interrupt()` (defined by that
    code) first."""
    code = (
        "import os, signal, sys, weakref\n"
        "from ollama_gateway import cli, settings\n"
        "load = settings.Settings.load\n"
        f"{interrupt}"
        "def interrupted(**kwargs):\n"
        "    interrupt()\n"
        "    return load(**kwargs)\n"
        "settings.Settings.load = interrupted\n"
        "sys.exit(cli.main(['serve', '--port', '0']))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_command_line_is_in_charge_before_the_heavy_imports():
    # `python -m ollama_gateway` and the `ollama-gateway` script import the
    # package, then the command line; what they import runs before main()
    # takes Ctrl-C over. The package's plugin API (msgspec, the schemas,
    # aiohttp's types) was most of the start-up.
    code = (
        "import sys, ollama_gateway.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith("
        "('msgspec', 'aiohttp', 'ollama_gateway.'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True
    )
    assert result.stdout.strip() == "['ollama_gateway.cli']", result.stderr


def test_uvloop_asked_for_but_missing_is_one_line(tmp_path: Path):
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "uvloop.py").write_text('raise ImportError("not installed")\n')
    (tmp_path / "uv.toml").write_text('[server]\nevent_loop = "uvloop"\n')
    pythonpath = f"{hide}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    for args in (
        ("serve", "--config", "uv.toml", "--port", "0"),
        ("check-config", "--config", "uv.toml"),
    ):
        result = _run(*args, cwd=tmp_path, PYTHONPATH=pythonpath)
        assert result.returncode == 2, args
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert lines == [
            "ollama-gateway: error: server.event_loop: uvloop is not installed "
            "(pip install 'ollama-gateway[uvloop]')"
        ]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_corrupt_aliases_file_is_one_line_without_traceback(tmp_path: Path, workers):
    (tmp_path / "aliases.json").write_text("{oops")
    (tmp_path / "a.toml").write_text('[catalogue]\naliases_file = "aliases.json"\n')
    result = _run(
        "serve", "--config", "a.toml", "--port", "0", "--workers", workers,
        cwd=tmp_path,
    )  # fmt: skip
    # Once and with one status, however many workers: each worker said it
    # and the supervisor exited 1.
    assert result.returncode == 2
    assert result.stderr.startswith("ollama-gateway: error: catalogue.aliases_file: ")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert (tmp_path / "aliases.json").read_text() == "{oops"
