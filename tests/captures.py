"""A client's captured requests (`fixtures/<client>/requests.json`), replayed.

Each capture is the method, path, headers and body a client library sent,
verbatim; a test replays it through a gateway in front of the fake backend,
whose model list names the models the captures ask for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.fakebackend import FakeBackend

__all__ = ["Captures"]


class Captures:
    def __init__(self, client: str, models: tuple[str, ...]) -> None:
        path = Path(__file__).parent / "fixtures" / client / "requests.json"
        self.requests: dict[str, dict[str, Any]] = json.loads(path.read_text())
        self.models = models

    def __iter__(self) -> Iterator[str]:
        return iter(self.requests)

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self.requests[name]

    def completions(self) -> list[str]:
        """The names of the captures that ask for a chat or a generate."""
        paths = ("/api/chat", "/api/generate")
        return [name for name, r in self.requests.items() if r["path"] in paths]

    def body(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.requests[name]["body"])
        return body

    async def replay(self, client: Any, name: str, **headers: str) -> Any:
        capture = self.requests[name]
        return await client.request(
            capture["method"],
            capture["path"],
            data=capture.get("body", "").encode(),
            headers={**capture["headers"], **headers},
        )

    async def gateway(self, gateway: Any, backend: FakeBackend, **env: str) -> Any:
        backend.models = [
            {"id": name, "object": "model", "created": 0} for name in self.models
        ]
        return await gateway(backend, **env)
