"""Recent Responses API conversations, for `previous_response_id`.

A client of `/v1/responses` may send only its new turn and name the response
it follows; the conversation up to that response must then be known here.
Each stored response keeps the whole conversation it ended (its input items,
those of the responses before it, and its own output items) as the JSON of
an `input` list, so a follow-up is that list plus its own items, mapped like
any request. Copies, not a chain of parents: one evicted response then breaks
no other.

The store is one process's memory, bounded in bytes and in age (least
recently stored first out), and scoped to the client's key, so a response id
seen by one client is no use to another. A response asked with `store: false`
is not kept. With `server.workers > 1` each worker has its own store.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["ResponseStore"]


class _Entry(NamedTuple):
    owner: str
    expires: float
    items: bytes


class ResponseStore:
    """Conversations by response id, at most `max_bytes` of them, each for
    `ttl` seconds.

    Example:

        store = ResponseStore(max_bytes=64 << 20, ttl=1800)
        store.put("resp_1", owner="", items=b'[{"role":"user","content":"hi"}]')
        store.get("resp_1", owner="")  # the items, or None when unknown
    """

    __slots__ = ("_bytes", "_clock", "_entries", "_max_bytes", "_on_size", "_ttl")

    def __init__(
        self,
        *,
        max_bytes: int,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        on_size: Callable[[int], None] | None = None,
    ) -> None:
        self._max_bytes = max_bytes
        self._ttl = ttl
        self._clock = clock
        # Told the bytes held after each change (the metrics' gauge).
        self._on_size = on_size
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def max_bytes(self) -> int:
        """The store's bound; 0 when it keeps nothing."""
        return self._max_bytes

    @property
    def size(self) -> int:
        """The bytes of conversation held now."""
        return self._bytes

    def put(self, response_id: str, owner: str, items: bytes) -> None:
        """Keep `items` under `response_id`; one larger than the whole store
        is not kept (its follow-up will not be found)."""
        if len(items) > self._max_bytes:
            return
        self._drop(response_id)
        now = self._clock()
        self._entries[response_id] = _Entry(owner, now + self._ttl, items)
        self._bytes += len(items)
        self._evict(now)
        self._report()

    def get(self, response_id: str, owner: str) -> bytes | None:
        """The conversation that `response_id` ended, if it is still held and
        was stored for the same client."""
        entry = self._entries.get(response_id)
        if entry is None or entry.owner != owner:
            return None
        if entry.expires <= self._clock():
            self._drop(response_id)
            self._report()
            return None
        return entry.items

    def _report(self) -> None:
        if self._on_size is not None:
            self._on_size(self._bytes)

    def _drop(self, response_id: str) -> None:
        entry = self._entries.pop(response_id, None)
        if entry is not None:
            self._bytes -= len(entry.items)

    def _evict(self, now: float) -> None:
        # Oldest first: by insertion order, which is also expiry order (one
        # ttl for all), so the expired are all at the front.
        entries = self._entries
        while entries:
            oldest_id, oldest = next(iter(entries.items()))
            if self._bytes <= self._max_bytes and oldest.expires > now:
                break
            del entries[oldest_id]
            self._bytes -= len(oldest.items)
