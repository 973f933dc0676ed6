"""docs/operations.md names every setting, environment variable and metric."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import msgspec

from ollama_gateway.metrics import Metrics
from ollama_gateway.settings import Settings

OPERATIONS = Path(__file__).parent.parent / "docs" / "operations.md"
SETTINGS_SOURCE = Path(__file__).parent.parent / "ollama_gateway" / "settings.py"


def _struct(tp: Any) -> type[msgspec.Struct] | None:
    return tp if isinstance(tp, type) and issubclass(tp, msgspec.Struct) else None


def setting_paths(struct: type[msgspec.Struct], prefix: str = "") -> list[str]:
    """Dotted names of every field: `server.host`, `backends[].name`,
    `models.<name>.target`; nested Structs are walked, not named themselves."""
    paths = []
    for field in msgspec.structs.fields(struct):
        name = f"{prefix}{field.name}"
        tp = field.type
        args = typing.get_args(tp)
        origin = typing.get_origin(tp)
        if (inner := _struct(tp)) is not None:
            paths += setting_paths(inner, f"{name}.")
        elif origin is list and args and (inner := _struct(args[0])) is not None:
            paths += setting_paths(inner, f"{name}[].")
        elif origin is dict and len(args) == 2 and (inner := _struct(args[1])):
            paths += setting_paths(inner, f"{name}.<name>.")
        else:
            paths.append(name)
    return paths


def _doc() -> str:
    return OPERATIONS.read_text()


def test_walk_finds_nested_settings():
    paths = setting_paths(Settings)
    assert "server.shutdown_grace" in paths
    assert "backends[].base_url" in paths
    assert "models.<name>.target" in paths
    assert "log_level" in paths
    assert len(paths) > 50


def test_every_setting_is_documented():
    doc = _doc()
    missing = [p for p in setting_paths(Settings) if f"`{p}`" not in doc]
    assert not missing, missing


def test_every_environment_variable_is_documented():
    source = SETTINGS_SOURCE.read_text()
    names = set(re.findall(r'"((?:OLLAMA|OPENAI|LOG)_[A-Z_]+)"', source))
    assert {"OLLAMA_HOST", "OPENAI_BASE_URL", "OLLAMA_GATEWAY_API_KEYS"} <= names
    doc = _doc()
    missing = sorted(n for n in names if f"`{n}`" not in doc)
    assert not missing, missing


def _used_metrics() -> Metrics:
    """Metrics with every series touched, so each family shows its labels."""
    metrics = Metrics()
    metrics.record_request(
        endpoint="/api/chat",
        model="m",
        status=200,
        duration=1.0,
        ttft=0.5,
        prompt_tokens=1,
        completion_tokens=1,
    )
    metrics.record_upstream_error("connect")
    metrics.record_disconnect()
    metrics.record_retries(1)
    metrics.record_stream_start()
    return metrics


def test_every_metric_and_label_is_documented():
    doc = _doc()
    families = list(_used_metrics().registry.collect())
    assert len(families) >= 8
    for family in families:
        name = family.name + ("_total" if family.type == "counter" else "")
        row = next((line for line in doc.splitlines() if f"| `{name}` |" in line), "")
        assert row, name
        assert f"| {family.type} |" in row, (name, family.type)
        labels = {
            label
            for sample in family.samples
            for label in sample.labels
            if label != "le"
        }
        assert family.samples, name
        for label in labels:
            assert f"`{label}`" in row, (name, label)


def test_documented_metrics_exist():
    declared = {
        f.name + ("_total" if f.type == "counter" else "")
        for f in _used_metrics().registry.collect()
    }
    documented = set(re.findall(r"^\| `(ollama_gateway_\w+)` \|", _doc(), re.M))
    assert documented == declared
