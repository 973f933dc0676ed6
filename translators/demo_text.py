"""The demo's words: seeded choices, the long answer, reasoning text, embeddings.

Everything here is a pure function of its arguments. `seed` is the request's
upstream `seed` (Ollama `options.seed`) or None; None always gives the first,
canonical choice, so an unseeded request reads the same every time.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from typing import TypeVar

__all__ = [
    "DEFAULT_SEED",
    "clip",
    "embed",
    "long_answer",
    "pick",
    "reasoning_text",
    "variant",
    "words",
]

T = TypeVar("T")

# Texts that vary with the seed anyway (the long answer) use this when unseeded.
DEFAULT_SEED = 0


def variant(seed: int | None, salt: str, count: int) -> int:
    """A stable index in `range(count)` for this seed and purpose."""
    if count <= 1:
        return 0
    key = f"{'-' if seed is None else seed}|{salt}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "little") % count


def pick(options: Sequence[T], seed: int | None, salt: str, index: int = 0) -> T:
    """`options[index]` when unseeded; else a seed-chosen one, shifted by `index`.

    Consecutive indexes give distinct options (up to `len(options)`), which keeps
    array items apart when a schema asks for `uniqueItems`.
    """
    start = 0 if seed is None else variant(seed, salt, len(options))
    return options[(start + index) % len(options)]


def words(text: str) -> list[str]:
    """Word pieces with their trailing spaces: what the demo streams as tokens."""
    return re.findall(r"\S+\s*", text) or ([text] if text else [])


def clip(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_SENTENCES = (
    "The gateway turns every Ollama request into an OpenAI request and back again.",
    "Each word of this answer arrives as its own chunk, at the configured pace.",
    "A client should render the text as it streams, without waiting for the end.",
    "Scroll down while it writes: the view should follow, or stay where you put it.",
    "Press stop at any time; the gateway cancels the upstream request at once.",
    "Nothing here needs a GPU, a network connection or an API key.",
    "The same request always gets the same answer, which makes tests repeatable.",
    "Change the seed in the options and the wording changes with it.",
    "Long answers test wrapping, scrolling, copying and the memory of a client.",
    "Every streamed line is a JSON object, and the last one says done.",
    "Token counts and durations arrive in the final chunk, never before it.",
    "A careful client keeps reading until the end of the stream.",
    "Markdown is common in model output, so this answer uses a little of it.",
    "Headings, lists and code blocks should look right while they are half written.",
    "A code fence that is still open must not break the rest of the page.",
    "Cancelling in the middle of a sentence should leave the partial text visible.",
    "The demo counts one token per word, so the numbers are easy to check.",
    "Real models stream sub-word tokens, which are shorter than these.",
    "If the connection breaks, the gateway ends the stream with an error line.",
    "Clients must show that error instead of a silently truncated answer.",
    "Timeouts, retries and rate limits can be rehearsed with the demo-error models.",
    "Tool calls, images, reasoning and JSON output each have their own demo model.",
    "This paragraph exists to make the answer longer, and it succeeds.",
    "A quiet, predictable backend is the best place to find bugs in a client.",
)
_HEADINGS = (
    "Streaming", "Scrolling", "Cancelling", "Formatting", "Errors", "Metrics",
    "Determinism", "Pacing", "Markdown", "Testing",
)  # fmt: skip
_CODE = (
    "```python\n"
    "async for part in await client.chat(model='demo-long', messages=m, stream=True):\n"
    "    print(part.message.content, end='', flush=True)\n"
    "```\n\n"
)


def long_answer(seed: int | None, prompt: str) -> str:
    """About 600 words of Markdown: headings, paragraphs, a list and a code block."""
    key = DEFAULT_SEED if seed is None else seed
    parts = [f"# A long answer\n\nYou asked: {clip(prompt, 80) or '(nothing)'}\n\n"]
    for section in range(8):
        heading = pick(_HEADINGS, key, "heading", section)
        parts.append(f"## {section + 1}. {heading}\n\n")
        sentences = [
            _SENTENCES[variant(key, f"s{section}.{i}", len(_SENTENCES))]
            for i in range(6)
        ]
        parts.append(" ".join(sentences) + "\n\n")
        if section == 3:
            items = [pick(_SENTENCES, key, "item", i) for i in range(4)]
            parts.append("".join(f"- {item}\n" for item in items) + "\n")
        if section == 5:
            parts.append(_CODE)
    parts.append("That is the end of the long answer.")
    return "".join(parts)


_EFFORT_SENTENCES = {"low": 1, "minimal": 1, "medium": 3, "high": 6, "max": 8}
_MUSINGS = (
    "I am demo-think, a scripted model, so this reasoning is a performance.",
    "A client should show these words apart from the answer, for example folded.",
    "When the request says think false, no reasoning comes at all.",
    "Reasoning arrives before the answer, as real thinking models send it.",
    "The answer will quote the question, so a test can check both parts.",
    "Token counts include the reasoning, as Ollama counts them.",
    "Some clients hide reasoning by default; that is a fine choice too.",
    "At higher effort this reasoning simply gets longer.",
)


def reasoning_text(prompt: str, effort: str, seed: int | None) -> str:
    """The reasoning of demo-think: longer at a higher effort."""
    count = _EFFORT_SENTENCES.get(effort, 3)
    opening = f"The user wrote: “{clip(prompt, 120)}”. Effort: {effort}."
    musings = [pick(_MUSINGS, seed, "musing", i) for i in range(count)]
    return " ".join([opening, *musings])


def embed(text: str, dimensions: int) -> list[float]:
    """A unit vector from hashed character trigrams.

    The same text gives the same vector, and texts that share most trigrams point
    in nearly the same direction, so cosine similarity behaves plausibly.
    """
    vector = [0.0] * dimensions
    padded = f"  {' '.join(text.lower().split())}  "
    for i in range(len(padded) - 2):
        digest = hashlib.blake2b(padded[i : i + 3].encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "little") % dimensions
        vector[slot] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]
