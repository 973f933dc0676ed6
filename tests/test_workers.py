"""`--workers N`: N processes on one port. A scrape reaches one worker, yet
counts every worker's requests (one metrics directory for all of them)."""

from __future__ import annotations

import asyncio
import signal
import tempfile
from pathlib import Path

import aiohttp

from tests.ops import Gateway, Samples, start_gateway

BOUND = 30.0
REQUESTS = 40
WORKERS = "[server]\nworkers = 2\n"  # no backend: the demo answers


async def _tags_then_scrapes(gateway: Gateway) -> list[float]:
    """REQUESTS `/api/tags` and six scrapes, each on a new connection, so that
    the kernel spreads them over the workers."""
    counts = []
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(REQUESTS):
            async with session.get(gateway.url + "/api/tags") as resp:
                assert resp.status == 200
        await asyncio.sleep(0.1)  # the last request line is recorded after its answer
        for _ in range(6):
            async with session.get(gateway.url + "/metrics") as resp:
                samples = Samples(await resp.text())
            counts.append(
                samples.get("ollama_gateway_requests_total", endpoint="/api/tags")
            )
    return counts


def _metric_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("ollama-gateway-metrics-*"))


def _writers(shared: Path) -> set[str]:
    """The processes that wrote counters there (one file per process)."""
    return {p.stem.rsplit("_", 1)[1] for p in shared.glob("counter_*.db")}


async def _stop(gateway: Gateway) -> int:
    gateway.proc.send_signal(signal.SIGTERM)
    try:
        return await gateway.wait_exit(BOUND)
    finally:
        if gateway.proc.returncode is None:
            gateway.proc.kill()
            await gateway.proc.wait()


async def test_every_scrape_counts_the_requests_of_all_workers(tmp_path: Path):
    shared = tmp_path / "metrics"
    shared.mkdir()
    gateway = await start_gateway(
        tmp_path, WORKERS, PROMETHEUS_MULTIPROC_DIR=str(shared)
    )
    try:
        counts = await _tags_then_scrapes(gateway)
        # Both workers served and recorded requests (one file per process)...
        writers = _writers(shared)
        assert len(writers) == 2, writers
    finally:
        assert await _stop(gateway) == 0
    # ... and every scrape, whichever worker answered it, counts them all.
    assert counts == [REQUESTS] * 6


async def test_the_supervisor_makes_and_removes_its_own_metrics_directory(
    tmp_path: Path,
):
    before = _metric_dirs()
    gateway = await start_gateway(tmp_path, WORKERS)
    try:
        made = _metric_dirs() - before
        assert len(made) == 1
        assert await _tags_then_scrapes(gateway) == [REQUESTS] * 6
    finally:
        assert await _stop(gateway) == 0
    assert not made & _metric_dirs()
