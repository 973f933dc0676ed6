"""Requests captured from real clients (tests/fixtures/<client>/requests.json),
replayed through a gateway verbatim: method, path, headers and body bytes.
The backend's answers are scripted here as OpenAI streams them.
"""

from __future__ import annotations

import json
from collections.abc import ItemsView, Iterator
from pathlib import Path
from typing import Any

from tests.fakebackend import FakeBackend, Script, chat_chunk, sse

__all__ = [
    "USAGE",
    "Captures",
    "only_sent",
    "load_captures",
    "replay",
    "serving",
    "text_script",
    "tool_call_delta",
    "thought_then_answer",
    "two_calls_after",
]

FIXTURES = Path(__file__).parent / "fixtures"
USAGE = {"prompt_tokens": 17, "completion_tokens": 9, "total_tokens": 26}


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


def only_sent(backend: FakeBackend) -> dict[str, Any]:
    """The body of the one completion request the backend received."""
    (recorded,) = backend.completions()
    body: dict[str, Any] = recorded.body
    return body


def text_script(*pieces: str, usage: dict[str, int] | None = USAGE) -> Script:
    """A streamed answer of these pieces, then the usage unless None (as
    llama.cpp's server streams none)."""
    events = [chat_chunk({"role": "assistant", "content": ""})]
    events += [chat_chunk({"content": piece}) for piece in pieces]
    events.append(chat_chunk({}, finish="stop"))
    if usage is not None:
        events.append(chat_chunk(choices=False, usage=usage))
    return Script(pieces=[sse(*events)])


def tool_call_delta(index: int, **function: str) -> dict[str, Any]:
    """A delta with one fragment of a streamed tool call; the first, which
    names the function, carries its id."""
    part: dict[str, Any] = {"index": index, "function": function}
    if "name" in function:
        part.update(id=f"call_{index}", type="function")
    return {"tool_calls": [part]}


def two_calls_after(*opening: dict[str, Any]) -> Script:
    """The `opening` deltas (the role, reasoning), then two tool calls
    streamed in fragments, the finish and the usage."""
    call = tool_call_delta
    return Script(
        pieces=[
            sse(
                *(chat_chunk(delta) for delta in opening),
                chat_chunk(call(0, name="get_weather", arguments='{"ci')),
                chat_chunk(call(0, arguments='ty": "Paris"}')),
                chat_chunk(call(1, name="get_time", arguments='{"tz": "UTC"}')),
                chat_chunk({}, finish="tool_calls"),
                chat_chunk(choices=False, usage=USAGE),
            )
        ]
    )


def thought_then_answer() -> Script:
    """Reasoning ("hmm ok") streamed before the answer ("Answer")."""
    return Script(
        pieces=[
            sse(
                chat_chunk({"role": "assistant", "reasoning_content": "hmm "}),
                chat_chunk({"reasoning_content": "ok"}),
                chat_chunk({"content": "Answer"}),
                chat_chunk({}, finish="stop"),
                chat_chunk(choices=False, usage=USAGE),
            )
        ]
    )


class Captures:
    """One client's captures, with the models its requests ask for."""

    def __init__(self, client: str, models: tuple[str, ...]) -> None:
        self.requests: dict[str, dict[str, Any]] = load_captures(client)
        self.models = models

    def __iter__(self) -> Iterator[str]:
        return iter(self.requests)

    def items(self) -> ItemsView[str, dict[str, Any]]:
        return self.requests.items()

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
        return await replay(client, self.requests[name], **headers)

    async def gateway(self, gateway: Any, backend: FakeBackend, **env: str) -> Any:
        return await serving(gateway, backend, self.models, **env)
