"""The verdicts of the `make bench` table (run by `make test`)."""

from __future__ import annotations

from tests.bench.__main__ import Figures, Plan, Target, table

TARGETS = [
    Target("gateway", "gateway", "ollama"),
    Target("naive", "naive reference", "ollama"),
]
STEADY = "paced: CPU µs per chunk (steady) ≤ 1x (0.7x)"


def _verdict(gateway: dict[str, float], naive: dict[str, float]) -> str:
    results = {"gateway": Figures(values=gateway), "naive": Figures(values=naive)}
    _, verdicts = table(Plan(), TARGETS, results)
    found = [v for v in verdicts if v.startswith(STEADY)]
    assert len(found) == 1, verdicts
    return found[0].removeprefix(STEADY + ": ")


def test_paced_cpu_is_judged_on_the_steady_window():
    steady = {"cpu_per_chunk_us": 25.0, "cpu_per_chunk_all_us": 50.0}
    naive = {"cpu_per_chunk_us": 30.0, "cpu_per_chunk_all_us": 40.0}
    assert _verdict(steady, naive) == "yes"
    assert _verdict({**steady, "cpu_per_chunk_us": 20.0}, naive) == "yes (stretch too)"
    assert _verdict({**steady, "cpu_per_chunk_us": 31.0}, naive) == "**no**"


def test_paced_cpu_without_a_steady_window_is_judged_on_the_whole_run():
    gateway = {"cpu_per_chunk_us": 25.0, "cpu_per_chunk_all_us": 33.0}
    naive = {"cpu_per_chunk_all_us": 40.0}  # opened slower than it ran
    note = " (on the whole-run figures: no steady window)"
    assert _verdict(gateway, naive) == "yes" + note
    assert _verdict({**gateway, "cpu_per_chunk_all_us": 41.0}, naive) == "**no**" + note


def test_paced_cpu_has_no_verdict_without_figures():
    results = {"gateway": Figures(values={}), "naive": Figures(values={})}
    _, verdicts = table(Plan(), TARGETS, results)
    assert not [v for v in verdicts if v.startswith(STEADY)]
