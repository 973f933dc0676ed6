"""Text as Go's JSON decoder reads it: what it takes as U+FFFD, made U+FFFD.

Ollama's server, and the clients and backends written against it, are read by
Go, which replaces each byte that is not UTF-8 and each `\\uXXXX` escape of a
lone UTF-16 surrogate with U+FFFD instead of refusing the text; msgspec refuses
both. Used for what the strict decoder refused: client bodies (`inbound`, the
`/v1` relay) and backends' events (`schemas.openai.decode_mended`).
"""

from __future__ import annotations

import re

__all__ = ["go_strings"]

# A byte that is not UTF-8, as `surrogateescape` keeps it;
# and, in the JSON text, an escaped backslash (so that `\\ud800` is no
# escape), a surrogate pair, or (group 1) a lone surrogate.
_SMUGGLED = re.compile("[\udc80-\udcff]")
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_ESCAPES = re.compile(
    rb"\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb"|(\\u[dD][89a-fA-F][0-9a-fA-F]{2})"
)


def go_strings(data: bytes) -> bytes | None:
    """`data` with what Go's JSON decoder reads as U+FFFD made U+FFFD, or None
    when there is nothing of the kind.

    Go replaces each byte that is not UTF-8, and each `\\uXXXX` escape of a
    lone UTF-16 surrogate, with U+FFFD instead of refusing the body; msgspec
    refuses both. Real clients send them: a JavaScript string cut in the middle
    of an emoji (by a context trimmer, say) becomes `"\\ud83d"` in
    `JSON.stringify`, and Ollama answers it. Only a body that did not decode
    gets here.
    """
    repaired = data
    try:
        data.decode()  # the common case, and far quicker than the repair
    except UnicodeDecodeError:
        text = data.decode("utf-8", "surrogateescape")
        repaired = _SMUGGLED.sub("\ufffd", text).encode()
    if _SURROGATE.search(repaired) is not None:
        repaired = _ESCAPES.sub(_lone_to_fffd, repaired)
    return repaired if repaired != data else None


def _lone_to_fffd(found: re.Match[bytes]) -> bytes:
    # An escaped backslash or a whole pair is kept; a lone surrogate is not.
    return found[0] if found.lastindex is None else rb"\ufffd"
