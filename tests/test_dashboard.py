"""The Grafana dashboard: well formed, provisioned from where compose mounts it,
and every metric and label it queries exists in the gateway's `/metrics`."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST_DEMO
from tests.ndjson import chat, post
from tests.ops import Samples, read_metrics

DOCKER = Path(__file__).parent.parent / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "ollama-gateway.json"
METRIC = re.compile(r"\bollama_gateway_[a-z0-9_]+")
SELECTOR = re.compile(r"(ollama_gateway_[a-z0-9_]+)\{([^}]*)\}")
GROUPING = re.compile(r"\bby \(([^)]*)\)[^()]*\((?:rate\()?(ollama_gateway_[a-z0-9_]+)")
# Added by Prometheus at scrape time, or by histogram_quantile.
SCRAPE_LABELS = {"instance", "job"}


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels() -> list[dict[str, Any]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def _exprs() -> list[str]:
    return [t["expr"] for p in _panels() for t in p["targets"]]


def test_dashboard_is_well_formed():
    board = _dashboard()
    assert board["uid"] == "ollama-gateway"
    assert board["title"]
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in _panels():
        assert panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
    for expr in _exprs():
        for opening, closing in ("()", "[]", "{}"):
            assert expr.count(opening) == expr.count(closing), expr
        assert expr.count('"') % 2 == 0, expr


def test_dashboard_covers_the_issue_panels():
    exprs = "\n".join(_exprs())
    titles = " ".join(p["title"].lower() for p in _panels())
    for words in ("request rate", "errors", "duration", "first token", "tokens per second",
                  "streams in flight", "upstream errors"):  # fmt: skip
        assert words in titles, words
    assert (
        "histogram_quantile(0.99, sum by (le) (rate(ollama_gateway_request_duration_seconds_bucket"
        in exprs
    )
    assert (
        "histogram_quantile(0.5, sum by (le) (rate(ollama_gateway_time_to_first_token_seconds_bucket"
        in exprs
    )
    assert "sum by (kind) (rate(ollama_gateway_upstream_errors_total" in exprs


def test_quantiles_group_by_le():
    for expr in _exprs():
        if "histogram_quantile" in expr:
            assert re.search(r"by \(le\b[^)]*\) \(rate\(\w+_bucket", expr), expr


@pytest.fixture
async def scraped(gateway, backend) -> Samples:
    """/metrics after traffic that touches every series family."""
    client = await gateway(toml=FAST_DEMO)
    async with asyncio.timeout(20):
        await (await post(client, "/api/chat", chat(model="demo"))).read()
        await (await post(client, "/api/chat", chat(model="nope"))).read()
        return await read_metrics(client)


async def test_every_queried_metric_exists(scraped):
    names = scraped.names()
    queried = {name for expr in _exprs() for name in METRIC.findall(expr)}
    assert queried
    missing = sorted(queried - names)
    assert not missing, missing


async def test_every_queried_label_exists(scraped):
    labels: dict[str, set[str]] = {}
    for name, have, _ in scraped.rows:
        labels.setdefault(name, set()).update(have)
    for expr in _exprs():
        for name, matchers in SELECTOR.findall(expr):
            used = {m.split("=")[0].rstrip("!~ ").strip() for m in matchers.split(",")}
            assert used - SCRAPE_LABELS <= labels[name], (expr, used)
        for grouping, name in GROUPING.findall(expr):
            used = {label.strip() for label in grouping.split(",")}
            assert used - SCRAPE_LABELS <= labels[name], (expr, used)
    template = _dashboard()["templating"]["list"]
    instance = next(v for v in template if v["name"] == "instance")
    assert METRIC.search(instance["definition"])


def test_provisioning_finds_the_dashboard():
    provider = (
        DOCKER / "grafana/provisioning/dashboards/ollama-gateway.yml"
    ).read_text()
    mounted = re.search(r"path:\s*(\S+)", provider)
    assert mounted is not None
    compose = (DOCKER / "docker-compose.prod.yml").read_text()
    assert f"./grafana/dashboards:{mounted.group(1)}" in compose
    datasources = (
        DOCKER / "grafana/provisioning/datasources/prometheus.yml"
    ).read_text()
    uid = re.search(r"uid:\s*(\S+)", datasources)
    assert uid is not None
    chooser = next(
        v for v in _dashboard()["templating"]["list"] if v["type"] == "datasource"
    )
    assert chooser["query"] == "prometheus"
    assert chooser["current"]["value"] == uid.group(1)
    scrape = (DOCKER / "prometheus.yml").read_text()
    assert "metrics_path: /metrics" in scrape
