"""Requests captured from real clients (tests/fixtures/<client>/requests.json),
replayed through a gateway verbatim: method, path, headers and body bytes.
The backend's answers are scripted here as OpenAI streams them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fakebackend import FakeBackend, Script, chat_chunk, sse

__all__ = [
    "USAGE",
    "load_captures",
    "replay",
    "serving",
    "text_script",
    "tool_call_delta",
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
