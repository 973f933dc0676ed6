"""`make bench-instructions`: user-space instructions per request, under callgrind.

    python -m tests.bench.instructions [--targets gateway,asclient,naive]
                                       [--scenarios ns,stream,paced]
                                       [--seconds 10]

Timing on a shared 2-core machine moves by more than a change of a few
microseconds a request (a round of the concurrency-1 figure spreads about
±20 %). An instruction count does not: the same code serving the same requests
counts the same to within 0.1 %. Each target runs under valgrind's callgrind
with instrumentation off; after a warm-up the count is switched on for a
timed run of the benchmark's own client, then off again, and divided by what
that run served:

- non-stream `/api/chat` at concurrency 1: instructions per request;
- one 1000-chunk stream, several rounds: instructions per NDJSON line;
- `paced` (asked for by name, `--scenarios paced`): PACED_STREAMS streams of
  the backend's paced model at once, PACED_TOKENS tokens each, one token per
  upstream read (each stream sends 30-40 a second, too few for the gateway to
  find two of one stream in one read even under callgrind): instructions per
  NDJSON line, the path of the "1000 paced streams" scenario, where each line
  is written from the upstream connection's callback.

The gateway runs with `busy_poll_us = 0`: its spin before a sleep
(busypoll.py) executes instructions for as long as a wait lasts.

What the count leaves out: the kernel (system calls, the loopback TCP stack)
and what a cold cache or a wake-up costs, which are most of a request's
time here. So it ranks changes to the Python path; it is no stand-in for
`make bench`. Needs valgrind (Debian: `apt-get install valgrind`).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from tests.bench.__main__ import (
    Target,
    clean_env,
    launch,
    run_client,
    start_backend,
    stop,
    targets,
    uvloop_hider,
)

# valgrind starts a Python process in seconds, not milliseconds.
READY_WITHIN = 120.0
STREAM_TOKENS = 1000
STREAM_ROUNDS = 5
PACED_STREAMS = 20
PACED_TOKENS = 200
# The gateway's busy polling (busypoll.py) executes instructions while it
# waits: counted, they would measure how long the waits were, not the path.
NO_BUSY_POLL = "[server]\nbusy_poll_us = 0\n"


@dataclass(frozen=True)
class Count:
    """What one target executed in one measured run."""

    instructions: int
    units: int  # requests or lines served while counting

    @property
    def per_unit(self) -> float:
        return self.instructions / self.units if self.units else 0.0


def callgrind_totals(dump: str) -> int:
    """The instruction total of a callgrind dump (its `totals:` line)."""
    for line in dump.splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise ValueError("no totals line in the callgrind dump")


def _control(option: str, pid: int) -> None:
    subprocess.run(
        ["callgrind_control", option, str(pid)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _dump_after(directory: Path, pid: int, before: set[Path]) -> Path:
    """The dump file `callgrind_control -d` made (written as it returns, but
    wait a little for the file system)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        made = set(directory.glob(f"callgrind.{pid}.*")) - before
        if made:
            return max(made)
        time.sleep(0.1)
    raise RuntimeError(f"callgrind wrote no dump for process {pid}")


DEFAULT_SCENARIOS = ("ns", "stream")


def measure(
    target: Target,
    port: int,
    pid: int,
    out: Path,
    seconds: float,
    wanted: tuple[str, ...] = DEFAULT_SCENARIOS,
) -> dict[str, Count]:
    """Counts of the scenarios `wanted`, one after the other."""
    found: dict[str, Count] = {}
    scenarios: dict[str, tuple[str, dict[str, float]]] = {
        "ns": ("nonstream", {"duration": seconds, "warmup": 0}),
        "stream": (
            "streams",
            {"streams": 1, "rounds": STREAM_ROUNDS, "tokens": STREAM_TOKENS},
        ),
        "paced": (
            "paced",
            {"streams": PACED_STREAMS, "tokens": PACED_TOKENS, "ramp": 1.0},
        ),
    }
    for name, (mode, options) in scenarios.items():
        if name not in wanted:
            continue
        if target.scenarios is not None and name not in target.scenarios:
            continue
        # Warm up uncounted: imports, caches, the first connections.
        warm = {**options, "duration": 3}
        if name == "paced":
            warm["tokens"] = 20  # a short round: the paced model is slow
        run_client(mode, port, target.kind, 600, None, **warm)
        before = set(out.glob(f"callgrind.{pid}.*"))
        _control("--instr=on", pid)
        result = run_client(mode, port, target.kind, 600, None, **options)
        _control("--instr=off", pid)
        _control("--dump", pid)
        if result.get("errors"):
            raise SystemExit(f"{target.name} {name}: {result['first_error']}")
        total = callgrind_totals(_dump_after(out, pid, before).read_text())
        if name == "ns":
            units = int(result["requests"])
        elif name == "paced":
            units = int(result["lines"])
        else:
            # The client's unmeasured first round was counted too.
            units = (STREAM_ROUNDS + 1) * int(result["lines_per_stream"])
        found[name] = Count(total, units)
    return found


def table(counts: dict[str, dict[str, Count]]) -> str:
    """A Markdown table of the counts, with the ratio to the naive reference."""
    naive = counts.get("naive", {})
    lines = [
        "| target | scenario | served | instructions per unit | x naive |",
        "|---|---|---|---|---|",
    ]
    labels = {
        "ns": "non-stream c=1 (per request)",
        "stream": "one stream (per line)",
        "paced": "paced streams (per line)",
    }
    for name, found in counts.items():
        for scenario, count in found.items():
            base = naive.get(scenario)
            ratio = f"{count.per_unit / base.per_unit:.2f}x" if base else "–"
            lines.append(
                f"| {name} | {labels[scenario]} | {count.units:,} | "
                f"{count.per_unit:,.0f} | {ratio} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--targets",
        default="gateway,asclient,naive",
        help="comma-separated subset of: gateway, asclient, naive",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help="comma-separated subset of: ns, stream, paced",
    )
    parser.add_argument(
        "--seconds", type=float, default=10, help="length of the counted run"
    )
    args = parser.parse_args()
    missing = [t for t in ("valgrind", "callgrind_control") if not shutil.which(t)]
    if missing:
        print(
            f"{', '.join(missing)} not found: install valgrind "
            "(Debian: apt-get install valgrind)",
            file=sys.stderr,
        )
        return 2
    wanted = args.targets.split(",")
    scenarios = tuple(args.scenarios.split(","))
    if bad := [s for s in scenarios if s not in ("ns", "stream", "paced")]:
        parser.error(f"unknown scenarios: {', '.join(bad)}")
    # One worker, asyncio's loop: the processes callgrind can follow.
    known = {
        t.name: t
        for t in targets(uvloop=False)
        if t.name in ("gateway", "asclient", "naive")
    }
    unknown = [w for w in wanted if w not in known]
    if unknown:
        parser.error(f"unknown targets: {', '.join(unknown)}")
    env = clean_env()
    print(
        f"# ollama-gateway instruction counts, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    )
    print(f"python {platform.python_version()}, valgrind callgrind, user space only")
    counts: dict[str, dict[str, Count]] = {}
    with tempfile.TemporaryDirectory(prefix="ollama-gateway-callgrind-") as tmp:
        out = Path(tmp)
        hide = uvloop_hider(out)
        backend, backend_port = start_backend(env)
        try:
            for name in wanted:
                t0 = time.monotonic()
                target = known[name]
                wrapped = replace(
                    target,
                    argv=(
                        "valgrind",
                        "--tool=callgrind",
                        "--instr-atstart=no",
                        f"--callgrind-out-file={out}/callgrind.%p",
                        *target.argv,
                    ),
                    config=target.config + (NO_BUSY_POLL if name != "naive" else ""),
                )
                with launch(
                    wrapped,
                    env=env,
                    tmp=out,
                    hide=hide,
                    backend_url=f"http://127.0.0.1:{backend_port}/v1",
                    ready_within=READY_WITHIN,
                ) as (port, pids):
                    counts[name] = measure(
                        target, port, pids()[0], out, args.seconds, scenarios
                    )
                print(f"  {target.label}: {time.monotonic() - t0:.0f} s", flush=True)
        finally:
            stop(backend)
    print()
    print(table(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
