"""Aliases made by `/api/copy`: a small JSON file, so they survive a restart."""

from __future__ import annotations

import logging
import os
import tempfile

import msgspec

__all__ = ["AliasStore"]

log = logging.getLogger(__name__)


class AliasStore:
    """`destination -> source` names; written atomically on every change.

    With no path the aliases live in memory only.
    """

    def __init__(self, path: str = "") -> None:
        self.path = path
        self._aliases: dict[str, str] = self._read() if path else {}

    def items(self) -> list[tuple[str, str]]:
        return list(self._aliases.items())

    def set(self, destination: str, source: str) -> None:
        existing = self._find(destination)
        if existing is not None:
            del self._aliases[existing]
        self._aliases[destination] = source
        self._write()

    def remove(self, name: str) -> bool:
        """Remove `name`, spelled in any case, with or without `:latest`."""
        key = self._find(name)
        if key is None:
            return False
        del self._aliases[key]
        self._write()
        return True

    def _find(self, name: str) -> str | None:
        wanted = _key(name)
        return next((k for k in self._aliases if _key(k) == wanted), None)

    def _read(self) -> dict[str, str]:
        try:
            with open(self.path, "rb") as file:
                return msgspec.json.decode(file.read(), type=dict[str, str])
        except FileNotFoundError:
            return {}
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("ignoring unreadable aliases file %s: %s", self.path, exc)
            return {}

    def _write(self) -> None:
        if not self.path:
            return
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".aliases-")
        with os.fdopen(fd, "wb") as file:
            file.write(msgspec.json.format(msgspec.json.encode(self._aliases)))
        os.replace(tmp, self.path)


def _key(name: str) -> str:
    # The catalogue's lookup form; repeated here because the catalogue imports us.
    return name.strip().lower().removesuffix(":latest")
