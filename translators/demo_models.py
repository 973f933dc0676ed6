"""What each demo model answers, as OpenAI chunks. Pure and deterministic."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

__all__ = ["DemoError", "Reply", "embeddings", "model_list", "reply"]

CREATED = 1735689600  # 2025-01-01: a fixed date, so listings are stable
EMBED_DIMENSIONS = 256
MODELS = ("demo", "demo-embed")

_encode = msgspec.json.Encoder().encode


class DemoError(Exception):
    """A request the demo refuses, with the status a backend would give."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Reply:
    """A scripted answer: content pieces, reasoning pieces, tool calls, or an error."""

    model: str
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    prompt_tokens: int = 0
    legacy: bool = False
    status: int = 200
    error: str = ""
    first_token_delay: float = 0.0
    tokens_per_second: float = 0.0

    def events(self) -> list[bytes]:
        """The SSE events of the stream, `[DONE]` included."""
        chunks: list[dict[str, Any]] = [
            self._chunk({"reasoning_content": piece}) for piece in self.reasoning
        ]
        chunks += [self._content_chunk(piece) for piece in self.content]
        for index, (name, arguments) in enumerate(self.tool_calls):
            call = {
                "index": index,
                "id": f"call_demo{index}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            chunks.append(self._chunk({"tool_calls": [call]}))
        finish = "tool_calls" if self.tool_calls else "stop"
        chunks.append(self._chunk({}, finish))
        chunks.append(self._chunk(None) | {"choices": [], "usage": self.usage()})
        events = [b"data: " + _encode(c) + b"\n\n" for c in chunks]
        events.append(b"data: [DONE]\n\n")
        return events

    def as_completion(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self.content),
        }
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_demo{i}", "type": "function",
                 "function": {"name": name, "arguments": arguments}}
                for i, (name, arguments) in enumerate(self.tool_calls)
            ]  # fmt: skip
        finish = "tool_calls" if self.tool_calls else "stop"
        choice = {"index": 0, "message": message, "finish_reason": finish}
        return {"id": "demo", "object": "chat.completion", "model": self.model,
                "choices": [choice], "usage": self.usage()}  # fmt: skip

    def usage(self) -> dict[str, int]:
        completion = len(self.content) + len(self.reasoning) + len(self.tool_calls)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }

    def _content_chunk(self, piece: str) -> dict[str, Any]:
        if self.legacy:
            choice = {"index": 0, "text": piece, "finish_reason": None}
            return self._chunk(None) | {"choices": [choice]}
        return self._chunk({"content": piece})

    def _chunk(
        self, delta: dict[str, Any] | None, finish: str | None = None
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        if self.legacy:
            choice = {"index": 0, "text": "", "finish_reason": finish}
        kind = "text_completion" if self.legacy else "chat.completion.chunk"
        return {"id": "demo", "object": kind, "model": self.model, "choices": [choice]}


def model_list() -> dict[str, Any]:
    data = [{"id": m, "object": "model", "created": CREATED, "owned_by": "demo"}
            for m in MODELS]  # fmt: skip
    return {"object": "list", "data": data}


def reply(body: dict[str, Any], *, legacy: bool) -> Reply:
    model = str(body.get("model", ""))
    if model not in MODELS or model == "demo-embed":
        raise DemoError(
            404, f"The model `{model}` does not exist or is not a chat model"
        )
    text = _prompt_text(body, legacy=legacy)
    answer = f"Hello! This is the ollama-gateway demo backend. You said: {_clip(text)}"
    return Reply(
        model=model,
        content=_words(answer),
        prompt_tokens=len(text.split()) or 1,
        legacy=legacy,
    )


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    model = str(body.get("model", ""))
    if model != "demo-embed":
        raise DemoError(400, f"The model `{model}` does not support embeddings")
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
    dimensions = body.get("dimensions") or EMBED_DIMENSIONS
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": _embed(str(t), int(dimensions)),
        }
        for i, t in enumerate(texts)
    ]
    tokens = sum(len(str(t).split()) for t in texts)
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip


def _embed(text: str, dimensions: int) -> list[float]:
    # Hashed character trigrams: the same text gives the same vector, and texts
    # that share most trigrams point in nearly the same direction.
    vector = [0.0] * dimensions
    padded = f"  {text.lower()}  "
    for i in range(len(padded) - 2):
        digest = hashlib.blake2b(padded[i : i + 3].encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "little") % dimensions
        vector[slot] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def _prompt_text(body: dict[str, Any], *, legacy: bool) -> str:
    if legacy:
        return str(body.get("prompt", ""))
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(
                    str(p.get("text", "")) for p in content if isinstance(p, dict)
                )
            return str(content or "")
    return ""


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text) or [text]
