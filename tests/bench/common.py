"""What the benchmark processes share: the event loop, file limits, token text."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["MODEL", "PACED_MODEL", "TOKENS", "raise_nofile", "run"]

T = TypeVar("T")

MODEL = "bench"
# Streams of this model are paced at 30-40 tokens/s each, one token per write.
PACED_MODEL = "bench-paced"

# A cycle of token texts as a tokenizer emits them: mostly short words with a
# leading space, some punctuation, a newline, a quote and non-ASCII text, so the
# encoders' escaping paths run too.
TOKENS = (
    " The",
    " quick",
    " brown",
    " fox",
    " jumps",
    " over",
    " the",
    " lazy",
    " dog",
    ".",
    "\n",
    ' "Déjà',
    " vu",
    '"',
    " 🦊",
    ",",
)


def raise_nofile(wanted: int = 16384) -> int:
    """Raise the soft open-file limit (1000 streams need ~2000 sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool = True) -> T:
    """Run `main` on uvloop when installed (the harness must outrun the gateway)."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            result: T = uvloop.run(main)
            return result
    return asyncio.run(main)
