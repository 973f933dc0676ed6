"""A backend's refusal of a prompt over the model's context, read from its words.

Ollama cuts an over-long prompt to `num_ctx` and answers; an OpenAI-compatible
backend refuses it with a 400 whose message says so in its own words, often
with the counts. The agent fronts say it the way their clients act on:
Claude Code compacts the conversation on Anthropic's "prompt is too long:
N tokens > M maximum", and asks again with a smaller `max_tokens` on "input
length and `max_tokens` exceed context limit: X + Y > Z"; Codex and OpenAI's
clients key on the code `context_length_exceeded`. Worded as the backend put
it, the agent only shows the error, and the session is stuck: with vLLM and a
32k model, every Claude Code request (`max_tokens` 32000) is such a refusal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Overflow", "read_overflow", "refuses_the_limit"]

# The backends' wordings (vLLM old and new, OpenAI, DeepSeek, OpenRouter,
# SGLang, llama.cpp's server, LM Studio), matched case-insensitively.
_LIMIT = re.compile(r"maximum context length (?:is|of) (\d+) tokens", re.I)
_PROMPT = re.compile(
    r"request has (\d+) input tokens"  # vLLM
    r"|requested (\d+) tokens in the messages"  # vLLM before 0.10
    r"|\((\d+) in the messages"  # vLLM before 0.10, DeepSeek
    r"|\((\d+) in your prompt"  # OpenAI, older
    r"|\((?:about )?(\d+) of text input"  # OpenRouter
    r"|messages resulted in (\d+) tokens"  # OpenAI
    r"|(\d+) tokens from the input messages",  # SGLang
    re.I,
)
_COMPLETION = re.compile(
    r"is too large: (\d+)"  # vLLM: "'max_tokens' ... is too large: 32000"
    r"|(\d+) in the completion"
    r"|(\d+) for the completion"
    r"|(\d+) tokens for the completion"
    r"|(\d+) in the output",
    re.I,
)
_WORDS = re.compile(
    r"maximum context length|context[ _]length[ _]exceeded"
    r"|exceeds? the available context size|exceed_context_size"
    r"|context window",
    re.I,
)


@dataclass(frozen=True, slots=True)
class Overflow:
    """The counts a refusal gave, where it gave them: the model's context,
    the prompt's tokens and the completion's (`max_tokens`)."""

    limit: int | None
    prompt: int | None
    completion: int | None


def read_overflow(message: str) -> Overflow | None:
    """The overflow a backend's error message reports, or None when it
    reports something else."""
    limit = _LIMIT.search(message)
    if limit is None and _WORDS.search(message) is None:
        return None
    return Overflow(
        int(limit.group(1)) if limit is not None else None,
        _number(_PROMPT.search(message)),
        _number(_COMPLETION.search(message)),
    )


def _number(found: re.Match[str] | None) -> int | None:
    if found is None:
        return None
    return int(next(g for g in found.groups() if g is not None))


# A backend's 400 for an output token limit past what the model can give,
# which Ollama takes as a cap it may not reach: vLLM's "This model's maximum
# context length is 4096 tokens. However, you requested 4196 tokens (100 in
# the messages, 4096 in the completion)" or "'max_tokens' or
# 'max_completion_tokens' is too large", SGLang's "... tokens for the
# completion", OpenAI's "max_tokens is too large: 32768. This model supports
# at most 16384 completion tokens". Continue sends its num_predict (4096) to
# any model, however small its context.
_LIMIT_TOO_LARGE = re.compile(
    r"(in|for) the completion|tokens'? (or '?max_completion_tokens'? )?is too large",
    re.I,
)


def refuses_the_limit(message: str) -> bool:
    """Whether a backend's 400 names the output token limit as past the
    model's room, on which the request is asked again without it (see
    inference.serve_completion)."""
    return _LIMIT_TOO_LARGE.search(message) is not None
