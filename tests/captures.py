"""Requests captured from real clients (tests/fixtures/<client>/requests.json),
replayed through a gateway verbatim: method, path, headers and body bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fakebackend import FakeBackend

__all__ = ["load_captures", "replay", "serving"]

FIXTURES = Path(__file__).parent / "fixtures"


def load_captures(client: str) -> dict[str, Any]:
    captures: dict[str, Any] = json.loads(
        (FIXTURES / client / "requests.json").read_text()
    )
    return captures


async def replay(client: Any, capture: dict[str, Any], **headers: str) -> Any:
    """Send one capture; `headers` are added to (or replace) the captured ones."""
    return await client.request(
        capture["method"],
        capture["path"],
        data=capture.get("body", "").encode(),
        headers={**capture["headers"], **headers},
    )


async def serving(
    gateway: Any, backend: FakeBackend, models: tuple[str, ...], **env: str
) -> Any:
    """A gateway in front of a backend that lists exactly `models`."""
    backend.models = [{"id": name, "object": "model", "created": 0} for name in models]
    return await gateway(backend, **env)
