"""Kept `/v1/responses` conversations as files, in the directory that the
workers of one gateway share (`server.workers > 1`).

One file per response id, named by the id: a header (a magic, the CRC-32 and
length of the items, the SHA-256 of the owner's key, never the key) and then
the items' JSON. A file's modification time is its expiry, on the wall clock,
so that a sweep reads no file. Each file is written to a temporary name in the
same directory and then renamed over its own: a reader finds a whole file or
none, and anything else (cut short, altered, another owner's) reads as a miss.

Every call here blocks on the file system; the store makes them in threads.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import struct
import tempfile
import zlib
from collections.abc import Iterable

__all__ = ["ResponseFiles", "owner_digest", "safe_id"]

_HEADER = struct.Struct("<4sIQ32s")
_MAGIC = b"OGC1"
# The alphabet of `response_events.new_id` ("resp_" and hex), bounded: a
# client names the file it wants read, so nothing else ever reaches a path.
_ID = re.compile(r"[A-Za-z0-9_]{1,64}")


def safe_id(response_id: str) -> bool:
    """Whether `response_id` can be a file name here: no separator, no dot
    (temporary names start with one), nothing outside the id alphabet."""
    return _ID.fullmatch(response_id) is not None


def owner_digest(owner: str) -> bytes:
    """What a file records of its owner: a digest of the key, not the key."""
    return hashlib.sha256(owner.encode("utf-8", "surrogateescape")).digest()


class ResponseFiles:
    """The conversation files in `directory`; every method blocks.

    Example:

        files = ResponseFiles("/tmp/ollama-gateway-responses-x")
        files.write("resp_1", owner_digest(""), b"[]", time.time() + 60)
        files.read("resp_1", owner_digest(""), time.time(), 1 << 20)  # b"[]"
    """

    __slots__ = ("_dir",)

    def __init__(self, directory: str) -> None:
        self._dir = directory

    def write(
        self, response_id: str, owner: bytes, items: bytes, expires: float
    ) -> None:
        """Replace the file of `response_id` as a whole (mode 0600); raises
        OSError, with no file left behind, when that fails."""
        header = _HEADER.pack(_MAGIC, zlib.crc32(items), len(items), owner)
        fd, temporary = tempfile.mkstemp(prefix=".", dir=self._dir)
        try:
            with open(fd, "wb") as file:
                file.write(header)
                file.write(items)
                file.flush()
                # After the last write, which would set the time again.
                os.utime(file.fileno(), (expires, expires))
            os.replace(temporary, os.path.join(self._dir, response_id))
        except BaseException:
            _unlink(temporary)
            raise

    def read(
        self, response_id: str, owner: bytes, now: float, limit: int
    ) -> bytes | None:
        """The items of `response_id` when its file is whole, unexpired at
        `now`, `owner`'s, and of at most `limit` bytes of items; else None."""
        if not safe_id(response_id):
            return None
        try:
            with open(os.path.join(self._dir, response_id), "rb") as file:
                status = os.fstat(file.fileno())
                if status.st_mtime <= now or status.st_size > _HEADER.size + limit:
                    return None
                head = file.read(_HEADER.size)
                items = file.read()
        except OSError:
            return None
        if len(head) < _HEADER.size:
            return None
        magic, crc, length, digest = _HEADER.unpack(head)
        if magic != _MAGIC or not hmac.compare_digest(digest, owner):
            return None
        if length != len(items) or zlib.crc32(items) != crc:
            return None
        return items

    def remove(self, response_ids: Iterable[str]) -> None:
        """Remove these files; one already gone (a sweep's) is no error."""
        for response_id in response_ids:
            _unlink(os.path.join(self._dir, response_id))

    def sweep(self, now: float, ttl: float) -> None:
        """Remove every worker's expired files, so that a worker that died
        leaves nothing for longer than `ttl`; and temporary files a `ttl`
        old, which only a worker that died while writing leaves."""
        with os.scandir(self._dir) as entries:
            for entry in entries:
                try:
                    expires = entry.stat(follow_symlinks=False).st_mtime
                except OSError:
                    continue
                if not safe_id(entry.name):
                    expires += ttl
                if expires <= now:
                    _unlink(entry.path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
