"""Check the references inside compose files that JSON-schema validation misses.

`make docker-lint` runs it with the lint venv's Python (ruamel.yaml comes with
check-jsonschema). It reports `depends_on` targets, networks and named volumes
that are not defined, and an always-on service that depends on a profiled one.

    python docker/compose_refs.py docker/docker-compose.*.yml
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any

from ruamel.yaml import YAML


def names(value: Any) -> list[str]:
    """Keys of a mapping, or the items of a list (compose accepts both)."""
    if isinstance(value, dict):
        return [str(key) for key in value]
    if isinstance(value, list):
        return [str(item) for item in value if isinstance(item, str)]
    return []


def named_volumes(service: dict[str, Any]) -> Iterator[str]:
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            source = volume.get("source", "") if volume.get("type") == "volume" else ""
        else:
            source = str(volume).split(":", 1)[0] if ":" in str(volume) else ""
        if source and not source.startswith((".", "/", "~", "$")):
            yield source


def check(doc: dict[str, Any]) -> Iterable[str]:
    services: dict[str, Any] = doc.get("services") or {}
    networks = set(names(doc.get("networks"))) | {"default"}
    volumes = set(names(doc.get("volumes")))
    for name, service in services.items():
        for target in names(service.get("depends_on")):
            if target not in services:
                yield f"service {name}: depends_on unknown service {target}"
            elif not service.get("profiles") and services[target].get("profiles"):
                yield f"service {name}: always on, but depends on profiled {target}"
        for network in names(service.get("networks")):
            if network not in networks:
                yield f"service {name}: network {network} is not defined"
        for volume in named_volumes(service):
            if volume not in volumes:
                yield f"service {name}: volume {volume} is not defined"


def main(paths: list[str]) -> int:
    yaml = YAML(typ="safe")
    errors = 0
    for path in paths:
        with open(path, encoding="utf-8") as stream:
            doc = yaml.load(stream) or {}
        problems = list(check(doc))
        for problem in problems:
            print(f"{path}: {problem}", file=sys.stderr)
        errors += len(problems)
        if not problems:
            print(f"ok -- {path}: references resolve")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
