"""Helpers for replaying a client library's captured requests (fixtures/<client>/).

Each capture holds a request verbatim: `method`, `path`, `headers` and `body`.
The backend's answers are scripted here as OpenAI streams them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fakebackend import Script, chat_chunk, sse

__all__ = ["USAGE", "load_captures", "replay", "text_script", "tool_call_delta"]

USAGE = {"prompt_tokens": 17, "completion_tokens": 9, "total_tokens": 26}


def load_captures(client: str) -> dict[str, dict[str, Any]]:
    path = Path(__file__).parent / "fixtures" / client / "requests.json"
    captures: dict[str, dict[str, Any]] = json.loads(path.read_text())
    return captures


async def replay(client: Any, capture: dict[str, Any], **headers: str) -> Any:
    """Send a captured request as it was, with any header replaced."""
    return await client.request(
        capture["method"],
        capture["path"],
        data=capture.get("body", "").encode(),
        headers={**capture["headers"], **headers},
    )


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
