"""`make bench`: the gateway against the naive reference, in one run.

    python -m tests.bench [--quick] [--targets direct,gateway,...] [--json PATH]

Starts the fake backend once, then each target in turn as a real process
(direct = the backend itself), runs every scenario against it with a client
process, samples /proc for CPU and RSS, and prints a Markdown table with the
ratios gateway/naive and the targets of issue 7. Everything is on 127.0.0.1;
every client run is bounded in time and count.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import msgspec

from tests.bench.common import MODEL, raise_nofile

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

# Put first on PYTHONPATH, it hides an installed uvloop from the gateway and its
# --workers children alike: those targets run as the default install does.
_NO_UVLOOP = 'raise ImportError("hidden by the benchmark: the default install")\n'


@dataclass(frozen=True)
class Plan:
    """Sizes and durations of the scenarios."""

    ns_concurrency: tuple[int, ...] = (1, 16, 64)
    ns_duration: float = 2.5
    ns_warmup: float = 0.5
    ns_tokens: int = 16
    # Concurrency 1 is measured in interleaved rounds (every target running,
    # each in turn, the order rotating): a single run per target, one after
    # the other, gave ratios from 0.7x to 1.2x on a shared machine.
    ns1_rounds: int = 7
    ns1_duration: float = 1.5
    long_tokens: int = 1000
    # Medians over enough rounds that a moment of the shared host's slowness
    # (a whole 15-round series of the single stream took 45 ms) does not
    # decide the figure.
    single_rounds: int = 60
    multi_streams: int = 50
    multi_rounds: int = 5
    paced_streams: int = 1000
    # 15-20 s a stream: a reference that takes 10 s to open its 1000 streams
    # (as the naive one did on a slow day) still has a steady window.
    paced_tokens: int = 600
    paced_ramp: float = 2.0
    scenarios: tuple[str, ...] = ("paced", "ns", "single", "multi")


QUICK = Plan(
    ns_concurrency=(1, 16),
    ns_duration=1.0,
    ns_warmup=0.2,
    ns1_rounds=2,
    ns1_duration=0.5,
    single_rounds=5,
    multi_streams=10,
    multi_rounds=2,
    paced_streams=100,
    paced_tokens=60,
    paced_ramp=0.5,
)


@dataclass(frozen=True)
class Target:
    name: str
    label: str
    kind: str  # "ollama" or "openai" (the backend itself)
    argv: tuple[str, ...] = ()
    uvloop: bool = False
    # A TOML config; "{backend}" is the fake backend's /v1 URL (then it names
    # the backend itself, and OPENAI_BASE_URL is not set).
    config: str = ""
    # The scenarios it runs (None: all of the plan's).
    scenarios: tuple[str, ...] | None = None


@dataclass
class Figures:
    """What one target scored; keys are scenario names."""

    values: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


AS_CLIENT = """[[backends]]
name = "openai"
base_url = "{backend}"
stream_upstream = "as-client"
"""


def _uvloop_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("uvloop")
    except PackageNotFoundError:
        return None


def targets(uvloop: bool) -> list[Target]:
    """The gateway as installed by default (asyncio's loop), with --workers 2,
    and with the `uvloop` extra when it is installed."""
    serve = (PYTHON, "-m", "ollama_gateway", "serve", "--port", "{port}")
    out = [
        Target("direct", "direct backend", "openai"),
        Target("gateway", "gateway", "ollama", serve),
        # The same upstream call as the naive reference makes for stream:false
        # (one JSON answer, not 20 SSE events); the default streams upstream.
        Target(
            "asclient",
            "gateway, stream_upstream = as-client",
            "ollama",
            serve,
            config=AS_CLIENT,
            scenarios=("ns",),
        ),
        Target("workers2", "gateway --workers 2", "ollama", (*serve, "--workers", "2")),
    ]
    if uvloop:
        out.append(Target("uvloop", "gateway + uvloop", "ollama", serve, uvloop=True))
    out.append(
        Target(
            "naive",
            "naive reference",
            "ollama",
            (PYTHON, "-m", "tests.bench.naive", "{port}"),
        )
    )
    return out


# -- processes and /proc ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent]
        found += children
        frontier += children
    return found


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes, in seconds."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def listen_overflows() -> int:
    """TcpExt ListenOverflows: SYNs dropped because an accept queue was full
    (system-wide; during the paced scenario our client is the one connecting)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for head, row in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            fields = dict(zip(head.split(), row.split(), strict=False))
            return int(fields.get("ListenOverflows", 0))
    return 0


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@contextmanager
def process(
    argv: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            for pid in reversed(descendants(proc.pid)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(5)


def start_backend(env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [PYTHON, "-m", "tests.bench.backend", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        stop(proc)
        raise SystemExit(f"the fake backend did not start: {line!r}")
    return proc, int(line.split()[1])


def wait_ready(
    port: int,
    kind: str,
    proc: subprocess.Popen[bytes],
    log: Path,
    within: float = 20.0,
) -> None:
    """Poll with a real non-stream request until it answers 200."""
    path = "/api/chat" if kind == "ollama" else "/v1/chat/completions"
    body = msgspec.json.encode(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "stream": False,
        }
    )
    deadline = time.monotonic() + within
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status == 200:
                return
            last = f"status {response.status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise SystemExit(f"target on port {port} never became ready ({last}):\n{tail}")


def run_client(
    mode: str,
    port: int,
    kind: str,
    timeout: float,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    **options: object,
) -> dict[str, Any]:
    argv = [
        PYTHON,
        "-m",
        "tests.bench.client",
        mode,
        "--port",
        str(port),
        "--kind",
        kind,
    ]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    result: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stdout:
            event: dict[str, Any] = msgspec.json.decode(line)
            if event.get("event") == "result":
                result = event
            elif on_event is not None:
                on_event(event)
            if time.monotonic() > deadline:
                break
        proc.wait(max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if not result:
        raise RuntimeError(f"client {mode} on port {port} gave no result")
    return result


# -- scenarios ----------------------------------------------------------------


def measure(
    target: Target, port: int, pids: Callable[[], list[int]], plan: Plan
) -> Figures:
    fig = Figures()
    values = fig.values
    kind = target.kind

    def note(scenario: str, result: dict[str, Any]) -> None:
        if result.get("errors"):
            fig.notes.append(
                f"{scenario}: {result['errors']} errors, first: {result['first_error']}"
            )

    if "paced" in plan.scenarios:
        # 1000 paced streams first, on a fresh process: its memory figure is then
        # not flattered by arenas that earlier scenarios left behind.
        rss_before = rss_kib(pids())
        ticks: list[tuple[dict[str, Any], float, int]] = []

        def on_tick(event: dict[str, Any]) -> None:
            ticks.append((event, cpu_seconds(pids()), rss_kib(pids())))

        cpu_start = cpu_seconds(pids())
        overflows = listen_overflows()
        paced = run_client(
            "paced",
            port,
            kind,
            timeout=plan.paced_ramp + plan.paced_tokens / 30 + 60,
            on_event=on_tick,
            streams=plan.paced_streams,
            tokens=plan.paced_tokens,
            ramp=plan.paced_ramp,
        )
        cpu_end = cpu_seconds(pids())
        values["paced_overflows"] = listen_overflows() - overflows
        note("paced", paced)
        values["paced_completed"] = paced["completed"]
        values["paced_streams"] = paced["streams"]
        # Steady state: from when every stream has its first line (or the ramp is
        # over) to the last tick before any stream ended.
        # Steady state: every stream has had its first line and none has ended.
        held = [
            tick
            for tick in ticks
            if tick[0]["done"] == 0 and tick[0]["open"] == plan.paced_streams
        ]
        if len(held) >= 2 and held[-1][0]["lines"] > held[0][0]["lines"]:
            (first, cpu_first, _), (last, cpu_last, _) = held[0], held[-1]
            lines = last["lines"] - first["lines"]
            values["cpu_per_chunk_us"] = (cpu_last - cpu_first) / lines * 1e6
            values["paced_window_s"] = last["t"] - first["t"]
        else:
            fig.notes.append(
                "paced: no two ticks with every stream open and none ended "
                "(the streams were opened slower than they ran)"
            )
        opened = [t[0]["t"] for t in ticks if t[0]["open"] == plan.paced_streams]
        if opened:
            values["paced_open_s"] = opened[0]
        values["paced_s"] = paced["seconds"]
        if ticks:
            peak = max(rss for _, _, rss in ticks)
            values["rss_per_stream_kib"] = (peak - rss_before) / plan.paced_streams
        if paced["lines"]:
            values["cpu_per_chunk_all_us"] = (
                (cpu_end - cpu_start) / paced["lines"] * 1e6
            )

    if "ns" in plan.scenarios:
        for concurrency in plan.ns_concurrency:
            if concurrency == 1 and target.name in INTERLEAVED:
                continue  # see interleaved_c1()
            result = run_client(
                "nonstream",
                port,
                kind,
                timeout=plan.ns_warmup + plan.ns_duration + 40,
                concurrency=concurrency,
                duration=plan.ns_duration,
                warmup=plan.ns_warmup,
                tokens=plan.ns_tokens,
            )
            note(f"non-stream c={concurrency}", result)
            values[f"ns{concurrency}_rps"] = result["rps"]
            values[f"ns{concurrency}_p50"] = result["p50_ms"]
            values[f"ns{concurrency}_p99"] = result["p99_ms"]

    if "single" in plan.scenarios and target.name not in INTERLEAVED_STREAMS:
        single = run_client(
            "streams",
            port,
            kind,
            timeout=120,
            streams=1,
            rounds=plan.single_rounds,
            tokens=plan.long_tokens,
        )
        note("one stream", single)
        values["single_ms"] = single["wall_ms"]
        values["single_lps"] = single["lines_per_s"]
        values["single_ttfl"] = single["ttfl_ms"]

    if "multi" in plan.scenarios and target.name not in INTERLEAVED_STREAMS:
        multi = run_client(
            "streams",
            port,
            kind,
            timeout=180,
            streams=plan.multi_streams,
            rounds=plan.multi_rounds,
            tokens=plan.long_tokens,
        )
        note("concurrent streams", multi)
        values["multi_lps"] = multi["lines_per_s"]
    return fig


# The targets whose concurrency-1 figures, and (the second tuple) whose stream
# figures, come from interleaved rounds; the others, for information only, get
# one run each.
INTERLEAVED = ("direct", "gateway", "asclient", "naive")
INTERLEAVED_STREAMS = ("direct", "gateway", "naive")


def interleaved(
    ports: dict[str, int], kinds: dict[str, str], plan: Plan
) -> tuple[dict[str, dict[str, float]], list[str]]:
    """The ratio-deciding scenarios with every target already running:
    `ns1_rounds` passes, each target once per pass and the order rotated each
    pass. A pass runs non-stream requests at concurrency 1 and, for the
    `INTERLEAVED_STREAMS` targets, its share of the one-stream rounds and one
    round of the concurrent streams. A slow minute of the shared host then
    costs every target alike, not whichever one it fell on. Returns each
    target's medians over the passes, and notes with the spread of the
    per-pass ratios to the naive reference."""
    names = list(ports)
    passes = plan.ns1_rounds
    ns1 = "ns" in plan.scenarios and 1 in plan.ns_concurrency
    single_each = max(1, round(plan.single_rounds / passes))
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in names}

    def add(name: str, scenario: str, result: dict[str, Any]) -> None:
        runs[name].setdefault(scenario, []).append(result)

    for r in range(passes):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            port, kind = ports[name], kinds[name]
            if ns1:
                add(name, "ns1", run_client(
                    "nonstream", port, kind,
                    timeout=plan.ns_warmup + plan.ns1_duration + 40,
                    concurrency=1, duration=plan.ns1_duration,
                    warmup=min(plan.ns_warmup, 0.3), tokens=plan.ns_tokens,
                ))  # fmt: skip
            if name not in INTERLEAVED_STREAMS:
                continue
            if "single" in plan.scenarios:
                add(name, "single", run_client(
                    "streams", port, kind, timeout=120, streams=1,
                    rounds=single_each, tokens=plan.long_tokens,
                ))  # fmt: skip
            if "multi" in plan.scenarios:
                add(name, "multi", run_client(
                    "streams", port, kind, timeout=180,
                    streams=plan.multi_streams, rounds=1, tokens=plan.long_tokens,
                ))  # fmt: skip
    fields = {
        "ns1": (("ns1_rps", "rps"), ("ns1_p50", "p50_ms"), ("ns1_p99", "p99_ms")),
        "single": (
            ("single_ms", "wall_ms"),
            ("single_lps", "lines_per_s"),
            ("single_ttfl", "ttfl_ms"),
        ),
        "multi": (("multi_lps", "lines_per_s"),),
    }
    labels = {
        "ns1": ("non-stream c=1", "rps"),
        "single": ("one 1000-chunk stream", "lines_per_s"),
        "multi": ("concurrent streams", "lines_per_s"),
    }
    medians: dict[str, dict[str, float]] = {name: {} for name in names}
    notes = []
    for name, scenarios in runs.items():
        for scenario, results in scenarios.items():
            for key, source in fields[scenario]:
                medians[name][key] = statistics.median(r[source] for r in results)
            errors = sum(r.get("errors", 0) for r in results)
            if errors:
                first = next(r["first_error"] for r in results if r.get("errors"))
                label = labels[scenario][0]
                notes.append(f"{name}: {label}: {errors} errors, first: {first}")
    naive = runs.get("naive", {})
    for scenario, (label, source) in labels.items():
        for name in ("gateway", "asclient"):
            mine, theirs = runs.get(name, {}).get(scenario), naive.get(scenario)
            if not mine or not theirs:
                continue
            ratios = sorted(
                g[source] / n[source]
                for g, n in zip(mine, theirs, strict=True)
                if n[source]
            )
            if ratios:
                notes.append(
                    f"{name}: {label} over {len(ratios)} interleaved passes: "
                    f"{ratios[0]:.2f}x-{ratios[-1]:.2f}x the naive reference "
                    f"(median of each target's passes in the table)"
                )
    return medians, notes


# -- the table ----------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    label: str
    key: str
    fmt: Callable[[float], str]
    higher_is_better: bool = True
    target: str = ""
    met: Callable[[float, float], bool] | None = None  # (gateway, naive)


def _rate(v: float) -> str:
    return f"{v / 1000:,.1f}k" if v >= 10_000 else f"{v:,.0f}"


def _ms(v: float) -> str:
    return f"{v:.2f}"


def _one(v: float) -> str:
    return f"{v:.1f}"


def rows(plan: Plan) -> list[Row]:
    out = []
    for c in plan.ns_concurrency:
        met = (lambda g, n: g >= 1.15 * n) if c == 1 else None
        out += [
            Row(
                f"non-stream c={c}: req/s",
                f"ns{c}_rps",
                _rate,
                target="≥ 1.15x" if c == 1 else "",
                met=met,
            ),
            Row(f"non-stream c={c}: p50 ms", f"ns{c}_p50", _ms, False),
            Row(f"non-stream c={c}: p99 ms", f"ns{c}_p99", _ms, False),
        ]
    n = plan.long_tokens
    out += [
        Row(f"one {n}-chunk stream: ms", "single_ms", _ms, False),
        Row(
            f"one {n}-chunk stream: lines/s",
            "single_lps",
            _rate,
            target="≥ 5x",
            met=lambda g, n: g >= 5 * n,
        ),
        Row(f"one {n}-chunk stream: first line ms", "single_ttfl", _ms, False),
        Row(
            f"{plan.multi_streams} streams: aggregate lines/s",
            "multi_lps",
            _rate,
            target="≥ 6x",
            met=lambda g, n: g >= 6 * n,
        ),
        Row(
            f"{plan.paced_streams} paced streams: completed",
            "paced_completed",
            lambda v: f"{v:.0f}",
            target=f"all {plan.paced_streams}",
            met=lambda g, n: g == plan.paced_streams,
        ),
        Row("paced: s until every stream is open", "paced_open_s", _ms, False),
        Row(
            "paced: SYNs dropped (listen queue full)",
            "paced_overflows",
            lambda v: f"{v:.0f}",
            False,
        ),
        Row("paced: s until the last stream ended", "paced_s", _ms, False),
        Row(
            "paced: RSS KiB per open stream",
            "rss_per_stream_kib",
            _one,
            False,
            target="≤ 20 KiB",
            met=lambda g, n: g <= 20,
        ),
        Row(
            "paced: CPU µs per chunk (steady)",
            "cpu_per_chunk_us",
            _one,
            False,
            target="≤ 1x (0.7x)",
            met=lambda g, n: g <= n,
        ),
        Row("paced: CPU µs per chunk (whole run)", "cpu_per_chunk_all_us", _one, False),
    ]
    return out


def table(
    plan: Plan, names: list[Target], results: dict[str, Figures]
) -> tuple[str, list[str]]:
    columns = [t for t in names if t.name in results]
    head = ["scenario", *(t.label for t in columns), "gateway/naive", "target", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    verdicts = []
    for row in rows(plan):
        cells = [row.label]
        for t in columns:
            value = results[t.name].values.get(row.key)
            cells.append("–" if value is None else row.fmt(value))
        gateway = results.get("gateway", Figures()).values.get(row.key)
        naive = results.get("naive", Figures()).values.get(row.key)
        ratio = ""
        if gateway is not None and naive:
            ratio = f"{gateway / naive:.2f}x"
        met = ""
        basis = ""
        if row.key == "cpu_per_chunk_us" and (gateway is None or naive is None):
            # No steady window for one of them: judged on the whole run, and
            # the verdict says so.
            whole = "cpu_per_chunk_all_us"
            gateway = results.get("gateway", Figures()).values.get(whole)
            naive = results.get("naive", Figures()).values.get(whole)
            basis = " (on the whole-run figures: no steady window)"
        if row.met is not None and gateway is not None and naive is not None:
            ok = row.met(gateway, naive)
            if row.key == "cpu_per_chunk_us" and ok and gateway <= 0.7 * naive:
                met = "yes (stretch too)"
            else:
                met = "yes" if ok else "**no**"
            met += basis
            verdicts.append(f"{row.label} {row.target}: {met}")
        cells += [ratio, row.target, met]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), verdicts


# -- main -----------------------------------------------------------------------


def clean_env() -> dict[str, str]:
    """This environment without the gateway's own settings: every target
    runs on its defaults and the config the benchmark gives it."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "OPENAI_"))
    }
    env.pop("LOG_LEVEL", None)
    env["PYTHONPATH"] = str(ROOT)
    return env


def uvloop_hider(tmp: Path) -> Path:
    """A directory that, put first on PYTHONPATH, hides an installed uvloop."""
    hide = tmp / "no-uvloop"
    hide.mkdir()
    (hide / "uvloop.py").write_text(_NO_UVLOOP)
    return hide


@contextmanager
def launch(
    target: Target,
    *,
    env: dict[str, str],
    tmp: Path,
    hide: Path,
    backend_url: str,
    ready_within: float = 20.0,
) -> Iterator[tuple[int, Callable[[], list[int]]]]:
    """Run a target as its own process; yields its port and its process ids."""
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in target.argv]
    target_env = dict(env)
    toml = target.config.replace("{backend}", backend_url)
    if "{backend}" not in target.config:
        target_env["OPENAI_BASE_URL"] = backend_url
    if target.uvloop:
        toml += '[server]\nevent_loop = "uvloop"\n'
    else:
        target_env["PYTHONPATH"] = f"{hide}{os.pathsep}{ROOT}"
    if toml:
        config = tmp / f"{target.name}.toml"
        config.write_text(toml)
        target_env["OLLAMA_GATEWAY_CONFIG"] = str(config)
    log = tmp / f"{target.name}-{port}.log"
    with process(argv, target_env, log) as proc:
        wait_ready(port, target.kind, proc, log, ready_within)
        yield port, partial(descendants, proc.pid)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, to try the harness"
    )
    parser.add_argument(
        "--targets",
        help="comma-separated subset of: direct, gateway, asclient, workers2, "
        "uvloop, naive",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--scenarios", help="comma-separated subset of: paced, ns, single, multi"
    )
    parser.add_argument("--paced-streams", type=int, help="default 1000")
    parser.add_argument("--paced-tokens", type=int, help="default 600")
    args = parser.parse_args()
    plan = QUICK if args.quick else Plan()
    sizes = {
        "paced_streams": args.paced_streams,
        "paced_tokens": args.paced_tokens,
    }
    plan = replace(plan, **{k: v for k, v in sizes.items() if v is not None})
    if args.scenarios:
        plan = replace(plan, scenarios=tuple(args.scenarios.split(",")))
    nofile = raise_nofile()
    uvloop = _uvloop_version()
    chosen = targets(uvloop is not None)
    if args.targets:
        wanted = set(args.targets.split(","))
        chosen = [t for t in chosen if t.name in wanted]
    env = clean_env()
    print(f"# ollama-gateway benchmark, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(
        f"python {platform.python_version()}, uvloop {uvloop or 'not installed'}, "
        f"{os.cpu_count()} CPUs, load average {_load()}, open-file limit {nofile}"
    )
    started = time.monotonic()
    results: dict[str, Figures] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ollama-gateway-bench-") as tmp:
        hide = uvloop_hider(Path(tmp))
        backend, backend_port = start_backend(env)
        backend_url = f"http://127.0.0.1:{backend_port}/v1"
        start = partial(
            launch, env=env, tmp=Path(tmp), hide=hide, backend_url=backend_url
        )
        try:
            for target in chosen:
                t0 = time.monotonic()
                own = plan
                if target.scenarios is not None:
                    kept = (s for s in plan.scenarios if s in target.scenarios)
                    own = replace(plan, scenarios=tuple(kept))
                if target.name == "direct":
                    pids: Callable[[], list[int]] = partial(list, (backend.pid,))
                    results[target.name] = measure(target, backend_port, pids, own)
                else:
                    with start(target) as (port, pids):
                        results[target.name] = measure(target, port, pids, own)
                print(
                    f"  {target.label}: {time.monotonic() - t0:.0f} s, load average {_load()}",
                    flush=True,
                )
            mixed = [
                t
                for t in chosen
                if t.name in INTERLEAVED
                and set(t.scenarios or plan.scenarios) & {"ns", "single", "multi"}
            ]
            if mixed:
                t0 = time.monotonic()
                with ExitStack() as stack:
                    ports = {}
                    for target in mixed:
                        if target.name == "direct":
                            ports[target.name] = backend_port
                        else:
                            ports[target.name] = stack.enter_context(start(target))[0]
                    medians, mixed_notes = interleaved(
                        ports, {t.name: t.kind for t in mixed}, plan
                    )
                for name, values in medians.items():
                    results[name].values.update(values)
                notes.extend(mixed_notes)
                print(
                    f"  interleaved passes: {time.monotonic() - t0:.0f} s, "
                    f"load average {_load()}",
                    flush=True,
                )
        finally:
            stop(backend)
    text, verdicts = table(plan, chosen, results)
    like = results.get("asclient", Figures()).values.get("ns1_rps")
    naive_rps = results.get("naive", Figures()).values.get("ns1_rps")
    if like is not None and naive_rps:
        ok = "yes" if like >= 1.15 * naive_rps else "**no**"
        verdicts.append(
            f"non-stream c=1: req/s ≥ 1.15x, gateway with stream_upstream = "
            f"as-client (the naive reference's upstream call): "
            f"{like / naive_rps:.2f}x, {ok}"
        )
    print()
    print(text)
    print()
    for verdict in verdicts:
        print(f"- {verdict}")
    for name, figures in results.items():
        for note in figures.notes:
            print(f"- {name}: {note}")
    for note in notes:
        print(f"- {note}")
    print(
        f"\n{time.monotonic() - started:.0f} s in all; load average at the end {_load()}"
    )
    if args.json:
        Path(args.json).write_text(
            msgspec.json.encode({k: v.values for k, v in results.items()}).decode()
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
