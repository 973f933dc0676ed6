"""Aliases made by `/api/copy`: a small JSON file, so they survive a restart.

With `--workers N` the workers share one file (the configured one, or one the
supervisor makes) and each notices the others' changes by the file's identity
(inode, size, modification time): every change is a new file renamed into
place, and its time is set past the last one's, so two changes within one
tick of the file system's clock still differ. The catalogue asks for that
check only where it matters (see catalogue.py), never for a model a backend
serves by its own name.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Iterator

import msgspec

from ollama_gateway.errors import AliasLimitError, GatewayError
from ollama_gateway.modelinfo import MAX_NAME_LENGTH, is_usable_name
from ollama_gateway.settings import SettingsError

__all__ = ["AliasStore"]

log = logging.getLogger(__name__)

# What tells one version of the file from another: inode, size, mtime (ns).
_Identity = tuple[int, int, int]

# The most one alias can take in the file: two names of Ollama's longest, each
# character at worst a six-byte JSON escape, plus quotes, colon and indent.
_MOST_BYTES_PER_ALIAS = 2 * MAX_NAME_LENGTH * 6 + 16


class AliasStore:
    """`destination -> source` names; written atomically on every change.

    With no path the aliases live in memory only. At most `limit` of them:
    each change rewrites the whole file, and lookups walk them all.
    A file that cannot be read back whole (not JSON, wrong shape, more
    aliases than the limit, bigger than that many can be) stops the start
    with a `SettingsError`: skipping it would overwrite it at the next copy.
    A `shared` store (the workers' file) can be asked whether the file has
    changed since it last read it (`reload_if_changed`).
    """

    def __init__(
        self, path: str = "", limit: int = 1000, *, shared: bool = False
    ) -> None:
        self.path = path
        self.limit = limit
        self._shared = shared and bool(path)
        self._aliases: dict[str, str] = {}
        # The file as this store last read or wrote it (None: there was none).
        self._seen: _Identity | None = None
        if path:
            self._aliases, self._seen = self._read()

    def items(self) -> list[tuple[str, str]]:
        return list(self._aliases.items())

    def reload_if_changed(self) -> bool:
        """Read the shared file again if another worker changed it since this
        store last read or wrote it (one stat when it did not); whether the
        aliases were read again. Always False for a store of its own."""
        if not self._shared:
            return False
        try:
            now: _Identity | None = _identity(os.stat(self.path))
        except OSError:
            now = None
        if now == self._seen:
            return False
        try:
            self._aliases, self._seen = self._read()
        except SettingsError as exc:
            # Spoilt by a hand, not by a worker: the aliases read before
            # stay until it is repaired (said once per version of the file),
            # and the next copy or delete says why it cannot be made.
            log.warning("%s; the aliases read before stay", exc)
            self._seen = now
            return False
        return True

    def set(self, destination: str, source: str) -> None:
        with self._locked():
            current, seen = self._current()
            existing = _find(current, destination)
            if existing is None and len(current) >= self.limit:
                raise AliasLimitError(
                    f'cannot copy to "{destination}": the gateway holds '
                    f"{self.limit} aliases, its limit (catalogue.max_aliases); "
                    "delete one first"
                )
            aliases = {k: v for k, v in current.items() if k != existing}
            aliases[destination] = source
            self._seen = self._write(aliases, replacing=seen)
            self._aliases = aliases

    def remove(self, name: str) -> bool:
        """Remove `name`, spelled in any case, with or without `:latest`."""
        with self._locked():
            current, seen = self._current()
            key = _find(current, name)
            if key is None:
                self._aliases, self._seen = current, seen
                return False
            aliases = {k: v for k, v in current.items() if k != key}
            self._seen = self._write(aliases, replacing=seen)
            self._aliases = aliases
            return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the file's lock: with `--workers N` each worker has its own
        store, and a change made from what one worker last read overwrote
        the aliases the others had saved since (they were gone at the next
        start). A change is made to the file as it is now, one at a time."""
        if not self.path:
            yield
            return
        try:
            folder = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(folder, exist_ok=True)
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise _unsaved(exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held for one small file write
            yield
        finally:
            os.close(fd)  # releases the lock

    def _current(self) -> tuple[dict[str, str], _Identity | None]:
        """The aliases as saved now (by any worker), or this store's own.
        Taken only with the change: a change that fails leaves the store as
        it was, and a shared one then still sees the file as changed."""
        if not self.path:
            return self._aliases, None
        try:
            return self._read()
        except SettingsError as exc:
            raise GatewayError(f"cannot save aliases: {exc}") from None

    def _read(self) -> tuple[dict[str, str], _Identity | None]:
        """The aliases in the file, and (shared) which version of it that is."""
        where = f"catalogue.aliases_file: {self.path}"
        most = self.limit * _MOST_BYTES_PER_ALIAS
        seen = None
        try:
            with open(self.path, "rb") as file:
                if self._shared:
                    # Of the file read, not of one renamed there since the stat.
                    seen = _identity(os.fstat(file.fileno()))
                raw = file.read(most + 1)
        except FileNotFoundError:
            return {}, None
        except OSError as exc:
            raise SettingsError(f"{where}: {exc.strerror}") from None
        if not raw.strip():
            return {}, seen  # made empty ahead of time (`touch`, a volume)
        if len(raw) > most:
            raise SettingsError(
                f"{where}: larger than {self.limit} aliases can be "
                f"(catalogue.max_aliases); not read"
            )
        try:
            aliases = msgspec.json.decode(raw, type=dict[str, str])
        except msgspec.DecodeError as exc:
            raise SettingsError(
                f"{where}: not a JSON object of alias names ({exc}); repair or "
                "remove it"
            ) from None
        if len(aliases) > self.limit:
            raise SettingsError(
                f"{where}: holds {len(aliases)} aliases, more than "
                f"catalogue.max_aliases ({self.limit})"
            )
        for destination, source in aliases.items():
            if not (is_usable_name(destination) and source):
                raise SettingsError(
                    f"{where}: {destination[:80]!r} is not a usable alias name"
                )
        return aliases, seen

    def _write(
        self, aliases: dict[str, str], replacing: _Identity | None
    ) -> _Identity | None:
        """Save `aliases` in place of the file `replacing` (shared: the
        identity of the new file); the caller takes them only once they are
        saved.

        A file that cannot be written (a read-only volume, a full disk) is an
        Ollama-style 500 that changes nothing: the aliases in memory and on
        disk stay as they were, so the list does not differ from what a
        restart reads back, and no temporary file is left behind.
        """
        if not self.path:
            return None
        tmp = ""
        try:
            folder = os.path.dirname(os.path.abspath(self.path))
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".aliases-")
            with os.fdopen(fd, "wb") as file:
                file.write(msgspec.json.format(msgspec.json.encode(aliases)))
                written = self._stamp(file.fileno(), replacing)
            os.replace(tmp, self.path)
        except OSError as exc:
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise _unsaved(exc) from None
        return written

    def _stamp(self, fd: int, replacing: _Identity | None) -> _Identity | None:
        """A shared file's new version gets a time past the one it replaces,
        so its identity differs even when the file system's clock has not
        moved on since (it ticks every few milliseconds) and the inode of an
        earlier version comes back; the identity it will have."""
        if not self._shared:
            return None
        stamp = time.time_ns()
        if replacing is not None:
            stamp = max(stamp, replacing[2] + 1)
        os.utime(fd, ns=(stamp, stamp))
        return _identity(os.fstat(fd))


def _identity(status: os.stat_result) -> _Identity:
    return (status.st_ino, status.st_size, status.st_mtime_ns)


def _unsaved(exc: OSError) -> GatewayError:
    return GatewayError(
        "cannot save aliases: catalogue.aliases_file cannot be written "
        f"({exc.strerror or exc})"
    )


def _find(aliases: dict[str, str], name: str) -> str | None:
    wanted = _key(name)
    return next((k for k in aliases if _key(k) == wanted), None)


def _key(name: str) -> str:
    # The catalogue's lookup form; repeated here because the catalogue imports us.
    return name.strip().lower().removesuffix(":latest")
