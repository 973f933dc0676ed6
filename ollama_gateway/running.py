"""`/api/ps` bookkeeping: models used within their keep-alive window.

With `server.workers > 1` the workers share a directory that the supervisor
makes, so that `/api/ps` lists the models that any worker served, whichever
worker it reaches (a request goes to either): one file per model, its content
the model's `/api/ps` entry, its modification time when the model expires.
Each use sets that time anew, as one process does, so the latest request's
keep-alive holds, whichever worker served it; `keep_alive: 0` removes the
file. A worker changes a file's time with one `utime` (microseconds) and
writes the file only when it is not there (the first use, or after an
unload): to a temporary name, its time set, then renamed, so that a reader
finds a whole file or none.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time

import msgspec

from ollama_gateway.clock import format_unix
from ollama_gateway.modelinfo import ModelEntry, details_of
from ollama_gateway.schemas import ollama

__all__ = ["RunningModels"]

log = logging.getLogger(__name__)

# A negative keep_alive means "forever"; show it as far in the future, as Ollama does.
_FAR_FUTURE = 253402300799.0  # 9999-12-31T23:59:59Z
# "Forever" in a file's time: the last second every file system can hold (a
# 32-bit one stops there; others clamp later times to their own last). A
# keep-alive reaching past it is shown as forever.
_FILE_FOREVER = float(2**31 - 1)

_decode_entry = msgspec.json.Decoder(ollama.ProcessEntry).decode


class RunningModels:
    """Remembers when each model was last used and for how long it stays
    listed; with a `directory` shared by the workers (see above), for all of
    them.

    Example:

        running = RunningModels(300.0)
        running.touch(entry, keep_alive=None)  # the default keep-alive
        running.listing()  # ProcessResponse(models=[...])
    """

    def __init__(self, default_keep_alive: float, directory: str | None = None) -> None:
        self._default = default_keep_alive
        # This worker's own uses: the listing when there is no shared directory,
        # or when it cannot be read.
        self._expires: dict[str, tuple[ModelEntry, float]] = {}
        self._files = None if directory is None else _RunningFiles(directory)

    def touch(self, entry: ModelEntry, keep_alive: float | None) -> None:
        seconds = self._default if keep_alive is None else keep_alive
        if seconds == 0:
            self._expires.pop(entry.name, None)
            if self._files is not None:
                self._files.forget(entry)
            return
        # Capped, forever included: a year past 9999 cannot be written as
        # RFC 3339, and one such entry would make every /api/ps fail.
        expires = min(time.time() + seconds, _FAR_FUTURE)
        self._expires[entry.name] = (entry, expires)
        if self._files is not None:
            self._files.touch(entry, expires)

    def listing(self) -> ollama.ProcessResponse:
        now = time.time()
        self._expires = {e.name: (e, t) for e, t in self._expires.values() if t > now}
        live = self._shared_live(now)
        if live is None:
            live = [(_entry_of(e), t) for e, t in self._expires.values()]
        live.sort(key=lambda item: item[1], reverse=True)
        return ollama.ProcessResponse(
            models=[
                msgspec.structs.replace(shown, expires_at=format_unix(expires))
                for shown, expires in live
            ]
        )

    def _shared_live(
        self, now: float
    ) -> list[tuple[ollama.ProcessEntry, float]] | None:
        if self._files is None:
            return None
        try:
            return self._files.live(now)
        except OSError as exc:
            log.warning("models the other workers serve not listed: %s", exc)
            return None


def _entry_of(entry: ModelEntry) -> ollama.ProcessEntry:
    """The model's `/api/ps` entry, but for its expiry."""
    return ollama.ProcessEntry(
        name=entry.name,
        model=entry.name,
        size=entry.size,
        digest=entry.digest,
        details=details_of(entry),
        expires_at="",
        size_vram=entry.size,
        context_length=entry.context_length,
    )


class _RunningFiles:
    """The models' files in the workers' shared directory; every method
    blocks, briefly (tiny files, one `utime` a request)."""

    __slots__ = ("_dir",)

    def __init__(self, directory: str) -> None:
        self._dir = directory

    def touch(self, entry: ModelEntry, expires: float) -> None:
        """Set the model's expiry; write its file if it is not there."""
        path = self._path(entry.name)
        stamp = min(expires, _FILE_FOREVER)
        try:
            try:
                os.utime(path, (stamp, stamp))
            except FileNotFoundError:
                self._write(path, entry, stamp)
        except OSError as exc:
            log.warning("model use not shared with the other workers: %s", exc)

    def forget(self, entry: ModelEntry) -> None:
        """The model unloaded (`keep_alive: 0`): out of every worker's list."""
        try:
            os.unlink(self._path(entry.name))
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("model unload not shared with the other workers: %s", exc)

    def live(self, now: float) -> list[tuple[ollama.ProcessEntry, float]]:
        """Every worker's models that expire after `now`, with their expiry.
        Expired files stay (one per model at most): removing one could undo
        a use that another worker records at that moment."""
        live = []
        with os.scandir(self._dir) as found:
            for item in found:
                if item.name.startswith("."):
                    continue  # being written
                kept = _read(item.path)
                if kept is not None and kept[1] > now:
                    live.append(kept)
        return live

    def _path(self, name: str) -> str:
        # Names hold `:` and `/`; the file holds the name itself.
        digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()
        return os.path.join(self._dir, digest[:32])

    def _write(self, path: str, entry: ModelEntry, stamp: float) -> None:
        fd, temporary = tempfile.mkstemp(prefix=".", dir=self._dir)
        try:
            with open(fd, "wb") as file:
                file.write(ollama.encode(_entry_of(entry)))
                file.flush()
                os.utime(file.fileno(), (stamp, stamp))  # after the last write
            os.replace(temporary, path)
        except BaseException:
            _unlink(temporary)
            raise


def _read(path: str) -> tuple[ollama.ProcessEntry, float] | None:
    """A model's entry and expiry from its file; None when it is gone or not
    whole."""
    try:
        with open(path, "rb") as file:
            expires = os.fstat(file.fileno()).st_mtime
            data = file.read()
        entry = _decode_entry(data)
    except (OSError, msgspec.DecodeError):
        return None
    return entry, _FAR_FUTURE if expires >= _FILE_FOREVER else expires


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
