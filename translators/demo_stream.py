"""A scripted answer and the OpenAI wire bytes for it: SSE events or one object.

`Reply` holds what a demo model says (reasoning, content, tool calls) and how
it goes wrong, if it does. `events()` renders the stream the way OpenAI does:
a role chunk, one chunk per token, tool-call arguments in several fragments,
the finish chunk, the usage trailer when asked for, then `[DONE]`. Each
`Event` says how many tokens it carries and any stall before it; `demo.py`
does the waiting. Pure: no clock, no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

__all__ = ["CREATED", "STALL_SECONDS", "Event", "Failure", "Reply", "ToolCall"]

CREATED = 1735689600  # 2025-01-01: a fixed date, so answers are byte-stable
STALL_SECONDS = 360.0  # demo-error:stall: longer than the default idle timeout (300 s)
FAIL_AFTER = 3  # content tokens sent before a scripted failure

Failure = Literal["drop", "midstream", "stall", "invalid"]

_encode = msgspec.json.Encoder().encode
_ALTERNATIVES = ("the", "a", "and", "demo", "model", "answer", "stream", "token")


@dataclass(frozen=True, slots=True)
class Event:
    """Bytes to send, the tokens they carry (for pacing) and a stall before them."""

    data: bytes
    tokens: int = 0
    pause: float = 0.0


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it

    def fragments(self) -> list[str]:
        """The arguments cut into a few pieces, as OpenAI streams them."""
        text = self.arguments
        size = max(4, -(-len(text) // 4))
        return [text[i : i + size] for i in range(0, len(text), size)] or [""]


@dataclass
class Reply:
    """One answer of a demo model."""

    model: str
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    legacy: bool = False
    include_usage: bool = False
    logprobs: int | None = None  # None: not asked; else how many alternatives
    failure: Failure | None = None
    tokens_per_second: float | None = None
    first_token_delay: float | None = None

    @property
    def id(self) -> str:
        text = "".join(self.reasoning + self.content) + self.model
        digest = hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
        return ("cmpl-" if self.legacy else "chatcmpl-") + digest

    def events(self) -> list[Event]:
        """The SSE events of the stream, with the scripted failure applied."""
        events: list[Event] = []
        if not self.legacy:
            role = {"role": "assistant", "content": "", "refusal": None}
            events.append(self._sse(self._chunk(role)))
        events += [
            self._sse(self._chunk({"reasoning_content": piece}), tokens=1)
            for piece in self.reasoning
        ]
        for position, piece in enumerate(self.content):
            if position == FAIL_AFTER and self.failure == "drop":
                return events  # the connection breaks: no finish, no [DONE]
            if position == FAIL_AFTER and self.failure == "midstream":
                events.append(self._sse(_error_event(self.model)))
                return events
            if position == FAIL_AFTER and self.failure == "invalid":
                events.append(Event(b'data: {"choices": [{"delta": {"content": "\n\n'))
            pause = STALL_SECONDS if position == 1 and self.failure == "stall" else 0
            event = self._sse(self._content_chunk(piece), tokens=1)
            events.append(Event(event.data, event.tokens, pause))
        for index, call in enumerate(self.tool_calls):
            for n, fragment in enumerate(call.fragments()):
                function = {"arguments": fragment}
                delta: dict[str, Any] = {"index": index, "function": function}
                if n == 0:
                    delta = {"index": index, "id": call.id, "type": "function",
                             "function": {"name": call.name, "arguments": fragment}}  # fmt: skip
                chunk = self._chunk({"tool_calls": [delta]})
                events.append(self._sse(chunk, tokens=1))
        events.append(self._sse(self._chunk({}, self.finish_reason)))
        if self.include_usage:
            trailer = self._chunk(None) | {"choices": [], "usage": self.usage()}
            events.append(self._sse(trailer))
        events.append(Event(b"data: [DONE]\n\n"))
        return events

    def completion(self) -> bytes:
        """The non-stream answer (`stream` not true), failures applied."""
        body = _encode(self._completion())
        if self.failure == "drop":
            return body[: len(body) // 2]
        if self.failure == "invalid":
            return body[:-1] + b",}"
        return body

    def tokens(self) -> int:
        fragments = sum(len(call.fragments()) for call in self.tool_calls)
        return len(self.content) + len(self.reasoning) + fragments

    def usage(self) -> dict[str, int]:
        completion = self.tokens()
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }

    def _completion(self) -> dict[str, Any]:
        text = "".join(self.content)
        if self.legacy:
            choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": None,
                                      "finish_reason": self.finish_reason}  # fmt: skip
            return self._envelope("text_completion", [choice], usage=self.usage())
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]  # fmt: skip
        choice = {"index": 0, "message": message, "logprobs": None,
                  "finish_reason": self.finish_reason}  # fmt: skip
        if self.logprobs is not None:
            choice["logprobs"] = {"content": [self._logprob(p) for p in self.content]}
        return self._envelope("chat.completion", [choice], usage=self.usage())

    def _sse(self, chunk: dict[str, Any], tokens: int = 0) -> Event:
        return Event(b"data: " + _encode(chunk) + b"\n\n", tokens)

    def _content_chunk(self, piece: str) -> dict[str, Any]:
        if self.legacy:
            choice: dict[str, Any] = {"index": 0, "text": piece, "logprobs": None,
                                      "finish_reason": None}  # fmt: skip
            if self.logprobs is not None:
                choice["logprobs"] = self._legacy_logprobs(piece)
            return self._envelope("text_completion", [choice])
        chunk = self._chunk({"content": piece})
        if self.logprobs is not None:
            chunk["choices"][0]["logprobs"] = {"content": [self._logprob(piece)]}
        return chunk

    def _chunk(
        self, delta: dict[str, Any] | None, finish: str | None = None
    ) -> dict[str, Any]:
        if self.legacy:
            choice = {"index": 0, "text": "", "logprobs": None, "finish_reason": finish}
            return self._envelope("text_completion", [choice])
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._envelope("chat.completion.chunk", [choice])

    def _envelope(
        self, kind: str, choices: list[dict[str, Any]], usage: Any = None
    ) -> dict[str, Any]:
        out = {"id": self.id, "object": kind, "created": CREATED, "model": self.model,
               "system_fingerprint": "fp_demo", "choices": choices}  # fmt: skip
        if usage is not None:
            out["usage"] = usage
        return out

    def _logprob(self, piece: str) -> dict[str, Any]:
        token = piece.strip() or piece
        top = [{"token": t, "logprob": lp, "bytes": list(t.encode())}
               for t, lp in self._alternatives(token)]  # fmt: skip
        return {"token": token, "logprob": _logprob_of(token),
                "bytes": list(token.encode()), "top_logprobs": top}  # fmt: skip

    def _legacy_logprobs(self, piece: str) -> dict[str, Any]:
        token = piece.strip() or piece
        top = dict(self._alternatives(token)) if self.logprobs else None
        return {"tokens": [token], "token_logprobs": [_logprob_of(token)],
                "top_logprobs": [top] if top is not None else None,
                "text_offset": [0]}  # fmt: skip

    def _alternatives(self, token: str) -> list[tuple[str, float]]:
        """The chosen token first, then others ever less likely."""
        count = self.logprobs or 0
        chosen = _logprob_of(token)
        others = [a for a in _ALTERNATIVES if a != token]
        others += [f"alt{i}" for i in range(count)]
        out = [(token, chosen)] if count else []
        out += [(others[i], round(chosen - 1.5 * (i + 1), 4)) for i in range(count - 1)]
        return out


def _logprob_of(token: str) -> float:
    digest = hashlib.blake2b(token.encode(), digest_size=2).digest()
    return -round(int.from_bytes(digest, "little") / 65535 * 2, 4)


def _error_event(model: str) -> dict[str, Any]:
    message = f"{model}: the model failed while generating (simulated mid-stream error)"
    return {"error": {"message": message, "type": "server_error", "param": None,
                      "code": None}}  # fmt: skip
