"""Aliases made by `/api/copy`: a small JSON file, so they survive a restart."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator

import msgspec

from ollama_gateway.errors import AliasLimitError, GatewayError
from ollama_gateway.modelinfo import MAX_NAME_LENGTH, is_usable_name
from ollama_gateway.settings import SettingsError

__all__ = ["AliasStore"]

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
    """

    def __init__(self, path: str = "", limit: int = 1000) -> None:
        self.path = path
        self.limit = limit
        self._aliases: dict[str, str] = self._read() if path else {}

    def items(self) -> list[tuple[str, str]]:
        return list(self._aliases.items())

    def set(self, destination: str, source: str) -> None:
        with self._locked():
            current = self._current()
            existing = _find(current, destination)
            if existing is None and len(current) >= self.limit:
                raise AliasLimitError(
                    f'cannot copy to "{destination}": the gateway holds '
                    f"{self.limit} aliases, its limit (catalogue.max_aliases); "
                    "delete one first"
                )
            aliases = {k: v for k, v in current.items() if k != existing}
            aliases[destination] = source
            self._write(aliases)
            self._aliases = aliases

    def remove(self, name: str) -> bool:
        """Remove `name`, spelled in any case, with or without `:latest`."""
        with self._locked():
            current = self._current()
            key = _find(current, name)
            if key is None:
                self._aliases = current
                return False
            aliases = {k: v for k, v in current.items() if k != key}
            self._write(aliases)
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

    def _current(self) -> dict[str, str]:
        """The aliases as saved now (by any worker), or this store's own."""
        if not self.path:
            return self._aliases
        try:
            return self._read()
        except SettingsError as exc:
            raise GatewayError(f"cannot save aliases: {exc}") from None

    def _read(self) -> dict[str, str]:
        where = f"catalogue.aliases_file: {self.path}"
        most = self.limit * _MOST_BYTES_PER_ALIAS
        try:
            with open(self.path, "rb") as file:
                raw = file.read(most + 1)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise SettingsError(f"{where}: {exc.strerror}") from None
        if not raw.strip():
            return {}  # made empty ahead of time (`touch`, a volume): no aliases yet
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
        return aliases

    def _write(self, aliases: dict[str, str]) -> None:
        """Save `aliases`; the caller takes them only once they are saved.

        A file that cannot be written (a read-only volume, a full disk) is an
        Ollama-style 500 that changes nothing: the aliases in memory and on
        disk stay as they were, so the list does not differ from what a
        restart reads back, and no temporary file is left behind.
        """
        if not self.path:
            return
        tmp = ""
        try:
            folder = os.path.dirname(os.path.abspath(self.path))
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".aliases-")
            with os.fdopen(fd, "wb") as file:
                file.write(msgspec.json.format(msgspec.json.encode(aliases)))
            os.replace(tmp, self.path)
        except OSError as exc:
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise _unsaved(exc) from None


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
