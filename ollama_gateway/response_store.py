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
is not kept.

With `server.workers > 1` the workers share a directory that the supervisor
makes. A worker writes each conversation it keeps there too, as a file
(response_files.py), before the client can see that response end, and looks
for the file of one it does not hold. Each worker bounds its own
conversations by `max_bytes` (its memory and its files hold the same ones)
and removes a file when it lets the conversation go; every `SWEEP_EVERY`
seconds a saving worker also removes the expired files of all, so that a
worker that died leaves nothing for longer than the ttl. Expiry is then on
the wall clock, which every process reads alike. Files are written and read
in threads: a conversation can be megabytes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import NamedTuple

from ollama_gateway.response_files import ResponseFiles, owner_digest, safe_id

__all__ = ["SWEEP_EVERY", "ResponseStore", "owner_of"]

log = logging.getLogger(__name__)

SWEEP_EVERY = 60.0


def owner_of(headers: Mapping[str, str]) -> str:
    """Whose conversations a request's are: the key the client presented
    (none when the gateway asks for none), so that one client cannot follow
    up on another's."""
    return headers.get("Authorization") or headers.get("X-API-Key") or ""


class _Entry(NamedTuple):
    owner: str
    expires: float
    items: bytes


class _Sharing:
    """What a store shared through a directory has besides its memory."""

    __slots__ = ("files", "gone", "sweep_at", "writer")

    def __init__(self, directory: str) -> None:
        self.files = ResponseFiles(directory)
        # Ids let go whose files the next save removes.
        self.gone: list[str] = []
        self.sweep_at = 0.0
        # One thread, so that the file changes happen in the order they are
        # asked: a file is never written after its removal.
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="response-files")


class ResponseStore:
    """Conversations by response id, at most `max_bytes` of them, each for
    `ttl` seconds.

    Example:

        store = ResponseStore(max_bytes=64 << 20, ttl=1800)
        store.put("resp_1", owner="", items=b'[{"role":"user","content":"hi"}]')
        store.get("resp_1", owner="")  # the items, or None when unknown

    With a `directory` shared by the workers (see above), `save` and `read`
    also write and read its files; the store must then be `close`d.
    """

    __slots__ = (
        "_bytes",
        "_clock",
        "_entries",
        "_max_bytes",
        "_on_size",
        "_shared",
        "_timer",
        "_ttl",
    )

    def __init__(
        self,
        *,
        max_bytes: int,
        ttl: float,
        clock: Callable[[], float] | None = None,
        on_size: Callable[[int], None] | None = None,
        directory: str | None = None,
    ) -> None:
        self._max_bytes = max_bytes
        self._ttl = ttl
        if clock is None:
            clock = time.monotonic if directory is None else time.time
        self._clock = clock
        self._shared = None if directory is None else _Sharing(directory)
        # Told the bytes held after each change (the metrics' gauge).
        self._on_size = on_size
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        # Wakes when the oldest conversation expires (see `_arm`).
        self._timer: asyncio.TimerHandle | None = None

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

    @property
    def shared(self) -> bool:
        """Whether the workers share the store through a directory."""
        return self._shared is not None

    def put(self, response_id: str, owner: str, items: bytes) -> bool:
        """Keep `items` under `response_id`, in memory only; one larger than
        the whole store is not kept (its follow-up will not be found)."""
        if len(items) > self._max_bytes:
            return False
        self._drop(response_id)
        now = self._clock()
        self._entries[response_id] = _Entry(owner, now + self._ttl, items)
        self._bytes += len(items)
        self._evict(now)
        self._report()
        self._arm()
        return True

    async def save(self, response_id: str, owner: str, items: bytes) -> None:
        """`put`, and when shared, its file written (and those of the
        conversations let go removed) by the time this returns. A failure
        there is logged: the conversation is then kept by this worker only."""
        shared = self._shared
        if not self.put(response_id, owner, items) or shared is None:
            return
        entry = self._entries.get(response_id)
        if entry is None or not safe_id(response_id):
            return
        gone, shared.gone = shared.gone, []
        now = self._clock()
        sweep = now >= shared.sweep_at
        if sweep:
            shared.sweep_at = now + SWEEP_EVERY
        files = shared.files
        digest = owner_digest(owner)

        def write() -> None:
            files.remove(gone)
            files.write(response_id, digest, items, entry.expires)
            if sweep:
                files.sweep(now, self._ttl)

        try:
            await asyncio.get_running_loop().run_in_executor(shared.writer, write)
        except OSError as exc:
            log.warning("kept conversation not shared with the other workers: %s", exc)

    async def read(self, response_id: str, owner: str) -> bytes | None:
        """When shared, the conversation that `response_id` ended from its
        file, whichever worker wrote it, on the terms of `get`; else None."""
        shared = self._shared
        if shared is None or not safe_id(response_id):
            return None
        job = partial(
            shared.files.read,
            response_id,
            owner_digest(owner),
            self._clock(),
            self._max_bytes,
        )
        return await asyncio.get_running_loop().run_in_executor(None, job)

    def close(self) -> None:
        """Wait for the file changes asked so far (none is pending once
        every request has been answered)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._shared is not None:
            self._shared.writer.shutdown()

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

    def _arm(self) -> None:
        """Wake when the oldest conversation expires. Expired ones were let
        go only when another was stored: after a burst of `/v1/responses`
        and none since, up to `max_bytes` (and their files) stayed for good,
        in memory and in the gauge. One timer per store, not per request."""
        if self._timer is not None or not self._entries:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # stored outside a loop: let go by the next `put` only
        oldest = next(iter(self._entries.values()))
        wait = max(oldest.expires - self._clock(), 0.0)
        self._timer = loop.call_later(wait, self._expire)

    def _expire(self) -> None:
        """The timer: let the expired conversations go, their files too."""
        self._timer = None
        before = self._bytes
        self._evict(self._clock())
        if self._bytes != before:
            self._report()
        shared = self._shared
        if shared is not None and shared.gone:
            gone, shared.gone = shared.gone, []
            # On the writer thread, after any write asked before.
            shared.writer.submit(shared.files.remove, gone)
        self._arm()

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
        shared = self._shared
        while entries:
            oldest_id, oldest = next(iter(entries.items()))
            if self._bytes <= self._max_bytes and oldest.expires > now:
                break
            del entries[oldest_id]
            self._bytes -= len(oldest.items)
            if shared is not None:
                shared.gone.append(oldest_id)
