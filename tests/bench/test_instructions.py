"""The instruction-count report: reading callgrind's dump, and the table."""

from __future__ import annotations

import pytest

from tests.bench.instructions import Count, callgrind_totals, table

DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  python -m ollama_gateway serve --port 1
part: 1
events: Ir
summary: 0
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
16 5
totals: 989339451
"""


def test_the_total_is_read_from_the_totals_line():
    assert callgrind_totals(DUMP) == 989339451


def test_a_dump_without_totals_is_an_error():
    with pytest.raises(ValueError, match="no totals"):
        callgrind_totals(DUMP.replace("totals:", "summary:"))


def test_the_table_gives_units_and_the_ratio_to_the_naive_reference():
    text = table(
        {
            "gateway": {"ns": Count(1_000_000, 10), "stream": Count(20_000, 1_000)},
            "asclient": {"ns": Count(800_000, 10)},
            "naive": {"ns": Count(900_000, 9), "stream": Count(150_000, 1_000)},
        }
    )
    rows = text.splitlines()[2:]
    assert (
        rows[0] == "| gateway | non-stream c=1 (per request) | 10 | 100,000 | 1.00x |"
    )
    assert rows[1] == "| gateway | one stream (per line) | 1,000 | 20 | 0.13x |"
    assert (
        rows[2] == "| asclient | non-stream c=1 (per request) | 10 | 80,000 | 0.80x |"
    )
    assert rows[4] == "| naive | one stream (per line) | 1,000 | 150 | 1.00x |"


def test_without_the_naive_reference_there_is_no_ratio():
    text = table({"gateway": {"ns": Count(500, 5)}})
    assert (
        text.splitlines()[2]
        == "| gateway | non-stream c=1 (per request) | 5 | 100 | – |"
    )


def test_the_paced_scenario_has_its_own_row():
    text = table({"gateway": {"paced": Count(7_500_000, 100)}})
    assert (
        text.splitlines()[2]
        == "| gateway | paced streams (per line) | 100 | 75,000 | – |"
    )
