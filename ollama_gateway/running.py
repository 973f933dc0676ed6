"""`/api/ps` bookkeeping: models used within their keep-alive window."""

from __future__ import annotations

import time

from ollama_gateway.clock import format_unix
from ollama_gateway.modelinfo import ModelEntry, details_of
from ollama_gateway.schemas import ollama

__all__ = ["RunningModels"]

# A negative keep_alive means "forever"; show it as far in the future, as Ollama does.
_FAR_FUTURE = 253402300799.0  # 9999-12-31T23:59:59Z


class RunningModels:
    """Remembers when each model was last used and for how long it stays listed."""

    def __init__(self, default_keep_alive: float) -> None:
        self._default = default_keep_alive
        self._expires: dict[str, tuple[ModelEntry, float]] = {}

    def touch(self, entry: ModelEntry, keep_alive: float | None) -> None:
        seconds = self._default if keep_alive is None else keep_alive
        if seconds == 0:
            self._expires.pop(entry.name, None)
            return
        # Capped, forever included: a year past 9999 cannot be written as
        # RFC 3339, and one such entry would make every /api/ps fail.
        expires = min(time.time() + seconds, _FAR_FUTURE)
        self._expires[entry.name] = (entry, expires)

    def listing(self) -> ollama.ProcessResponse:
        now = time.time()
        live = [(e, t) for e, t in self._expires.values() if t > now]
        self._expires = {e.name: (e, t) for e, t in live}
        live.sort(key=lambda item: item[1], reverse=True)
        return ollama.ProcessResponse(
            models=[
                ollama.ProcessEntry(
                    name=entry.name,
                    model=entry.name,
                    size=entry.size,
                    digest=entry.digest,
                    details=details_of(entry),
                    expires_at=format_unix(expires),
                    size_vram=entry.size,
                    context_length=entry.context_length,
                )
                for entry, expires in live
            ]
        )
