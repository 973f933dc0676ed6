"""Gemini 3's thought signatures in a history sent back to Google's endpoint.

Gemini's OpenAI-compatible endpoint streams each step's first function call
with `extra_content.google.thought_signature`, and Gemini 3 refuses a next
turn whose calls lack it (400 "Function call is missing a thought_signature";
discuss.ai.google.dev "OpenAI API compatibility broken due to thought_signature
on gemini-3-pro-preview", openai/openai-agents-python#2137). An Ollama message
has no field to keep it in, nor do most OpenAI clients keep Google's field:
such calls get Google's documented stand-in for a signature it did not make
(ai.google.dev/gemini-api/docs/thought-signatures). Other backends get none.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SKIP_SIGNATURE", "sign_relayed_calls"]

SKIP_SIGNATURE: dict[str, Any] = {
    "google": {"thought_signature": "skip_thought_signature_validator"}
}


def sign_relayed_calls(messages: list[Any]) -> None:
    """Give each call of an OpenAI history (a relayed body, as decoded) that
    has no `extra_content` of its own the stand-in; a client's real
    signature is kept. On each call, not only a step's first: the first may
    be one a client left out."""
    for message in messages:
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict) and "extra_content" not in call:
                call["extra_content"] = SKIP_SIGNATURE
