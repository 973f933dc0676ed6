"""The model catalogue: what each backend serves, plus configured models and aliases.

Each backend's `GET /v1/models` is cached for `catalogue.ttl` seconds. A stale
list is served while a background refresh runs (one per backend), and a backend
that is down keeps its last good list, so it never takes the other backends'
models away; a failed listing is retried after a few seconds.
Names resolve case-insensitively, with or without `:latest`.

A backend with `litellm_model_info` also has its `GET /model/info` read with
each listing, at the same time and within the same bounds; it adds what that
LiteLLM proxy knows of each model (capabilities, context length). When it
fails, the listing stands alone: the last good info if there was one, else the
guesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from ollama_gateway.aliases import AliasStore
from ollama_gateway.clock import format_unix
from ollama_gateway.modelinfo import (
    LiteLLMInfo,
    ModelEntry,
    context_length_of,
    digest_of,
    guess_capabilities,
    guess_family,
    is_usable_name,
    litellm_infos,
    model_meta,
    parameter_size_of,
    tagged,
)
from ollama_gateway.schemas import openai
from ollama_gateway.settings import BackendSettings, ModelSettings, Settings

__all__ = ["Catalogue", "ListModels", "ReadModelInfo", "lookup_key"]

log = logging.getLogger(__name__)

ListModels = Callable[[BackendSettings], Awaitable[list[openai.ModelObject]]]
ReadModelInfo = Callable[[BackendSettings], Awaitable[list[openai.LiteLLMDeployment]]]

_RETRY_FAILED_AFTER = 5.0
_REFRESH_ON_MISS_AFTER = 5.0
_FIRST_LIST_WAIT = 3.0


def lookup_key(name: str) -> str:
    """The form names are compared in: lower case, without `:latest`."""
    return name.strip().lower().removesuffix(":latest")


class _BackendModels:
    __slots__ = (
        "error",
        "fetched_at",
        "info",
        "info_error",
        "models",
        "started_at",
        "task",
    )

    def __init__(self) -> None:
        self.models: list[openai.ModelObject] | None = None
        self.fetched_at = 0.0
        self.started_at = 0.0
        self.error = ""
        self.task: asyncio.Task[None] | None = None
        # `/model/info` by lookup key, and why its last reading failed ("" if
        # it did not): a failure is logged once, not on every refresh.
        self.info: dict[str, LiteLLMInfo] = {}
        self.info_error = ""


class Catalogue:
    """Lists and resolves models. Shared by all requests of one app.

    Each backend is listed by its own task, so a slow or hanging backend
    delays nobody for long: the first requests wait at most
    `_FIRST_LIST_WAIT` for first listings (longer only while nothing at all
    is listed), and later ones never wait for a refresh.
    """

    def __init__(
        self,
        settings: Settings,
        list_models: ListModels,
        read_model_info: ReadModelInfo | None = None,
        *,
        shared_aliases_file: str | None = None,
    ) -> None:
        self._settings = settings
        self._list_models = list_models
        self._read_model_info = read_model_info
        self._state = {b.name: _BackendModels() for b in settings.backends}
        self._listed = [b for b in settings.backends if not b.models]
        now = time.monotonic()
        for backend in settings.backends:
            if backend.models:
                state = self._state[backend.name]
                state.models = [openai.ModelObject(id=m) for m in backend.models]
                state.fetched_at = now
        catalogue = settings.catalogue
        if shared_aliases_file is None:
            self._aliases = AliasStore(catalogue.aliases_file, catalogue.max_aliases)
        else:
            self._aliases = AliasStore(
                shared_aliases_file, catalogue.max_aliases, shared=True
            )
        self._started = format_unix(time.time())
        self._entries: dict[str, ModelEntry] = {}
        self._built_at = -1.0

    async def entries(self) -> list[ModelEntry]:
        """Every model, hidden ones included, in listing order."""
        await self._ensure_fresh()
        self._take_aliases_changed()
        return list(self._entries.values())

    async def resolve(
        self, name: str, *, recheck_aliases: bool = False
    ) -> ModelEntry | None:
        """The entry for a client's model string, or None.

        An unknown name looks again upstream (at most every few seconds), so a
        model added to a backend since the last listing works at once, and the
        `ollama run` flow (show, 404, pull, show) finds it.

        With workers sharing their aliases, an unknown name, an alias, and
        any name when `recheck_aliases` (`/api/show`, `/api/copy`) first
        take the aliases another worker changed since (one stat when none
        did). A model a backend serves by its own name does not: it is the
        hot path, and an alias another worker made over such a name is
        taken with the next listing instead (`catalogue.ttl`).
        """
        await self._ensure_fresh()
        key = lookup_key(name)
        entry = self._find(key)
        if entry is not None and not entry.alias_of and not recheck_aliases:
            return entry
        if self._take_aliases_changed():
            entry = self._find(key)
        if entry is None:
            if self._listed_before(_REFRESH_ON_MISS_AFTER):
                await self._refresh_now()
            else:
                # A list past its ttl is being read again: the name may be
                # on it (with a ttl under the few seconds above, it else
                # stays unknown until a request comes after the refresh).
                await self._running_refreshes()
            entry = self._find(key) or self._by_wildcard(name)
        return entry

    def _by_wildcard(self, name: str) -> ModelEntry | None:
        """An entry for a name that a listed wildcard (LiteLLM's `openai/*`
        or `*` route, listed as it is) lets its backend serve, sent upstream
        as the client spelled it."""
        if not is_usable_name(name):
            return None
        key = lookup_key(name)
        for wildcard in self._entries.values():
            if _is_wildcard(wildcard.upstream_id) and _wildcard_matches(
                wildcard.upstream_id, key
            ):
                backend = self._backend_named(wildcard.backend)
                if backend is None:
                    continue
                upstream_id = _without_latest(name.strip())
                config = _config_for(self._settings.models, upstream_id)
                entry = self._entry(
                    tagged(upstream_id), upstream_id, backend, None, config, None
                )
                return replace(entry, backends=wildcard.backends)
        return None

    def _find(self, key: str) -> ModelEntry | None:
        """The entry of a lookup key, also spelled with Ollama's default host
        and namespace (`registry.ollama.ai/library/llama3` is `llama3`), as
        some clients send names fully qualified."""
        entry = self._entries.get(key)
        if entry is not None:
            return entry  # the usual case, without building the other forms
        for candidate in _default_parts_dropped(key)[1:]:
            entry = self._entries.get(candidate)
            if entry is not None:
                return entry
        return None

    def _take_aliases_changed(self) -> bool:
        """Rebuild with the shared aliases if another worker changed them."""
        if not self._aliases.reload_if_changed():
            return False
        self._rebuild()
        return True

    def backend_errors(self) -> dict[str, str]:
        """Backends whose model list could not be read, with the reason."""
        return {n: s.error for n, s in self._state.items() if s.error and not s.models}

    def add_alias(self, destination: str, source: ModelEntry) -> None:
        # An alias of an alias names the real model, so removing the first
        # alias leaves the second working.
        self._aliases.set(destination, source.alias_of or source.name)
        self._built_at = -1.0

    def remove_alias(self, name: str) -> bool:
        removed = self._aliases.remove(name)
        # Even when `name` is not there: the store has read the aliases file,
        # where another worker may have deleted it (or made others) since.
        self._built_at = -1.0
        return removed

    def is_alias(self, name: str) -> bool:
        key = lookup_key(name)
        return any(lookup_key(dest) == key for dest, _ in self._aliases.items())

    async def aclose(self) -> None:
        tasks = [t for t in self._tasks() if not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _tasks(self) -> list[asyncio.Task[None]]:
        return [s.task for s in self._state.values() if s.task is not None]

    def _listed_before(self, seconds: float) -> bool:
        """Whether some backend's list (not a pinned one) is older than that."""
        now = time.monotonic()
        return any(now - self._state[b.name].fetched_at > seconds for b in self._listed)

    async def _refresh_now(self) -> None:
        for backend in self._listed:
            self._start(backend)
        await self._running_refreshes()

    async def _running_refreshes(self) -> None:
        running = [t for t in self._tasks() if not t.done()]
        if running:
            await asyncio.wait(running)
        if self._built_at < 0:
            self._rebuild()

    async def _ensure_fresh(self) -> None:
        now = time.monotonic()
        for backend in self._listed:
            if self._stale(self._state[backend.name], now):
                self._start(backend)
        first = [s for s in self._state.values() if s.fetched_at == 0.0 and s.task]
        if first:
            # First listings: wait a little for all, and for as long as it takes
            # while nothing at all is listed. Refreshes never hold anyone up.
            started = min(s.started_at for s in first)
            left = _FIRST_LIST_WAIT - (now - started)
            tasks = [s.task for s in first if s.task is not None]
            if left > 0:
                await asyncio.wait(tasks, timeout=left)
            pending = [t for t in tasks if not t.done()]
            while pending and all(s.models is None for s in self._state.values()):
                _, still = await asyncio.wait(
                    pending, return_when=asyncio.FIRST_COMPLETED
                )
                pending = list(still)
        if self._built_at < 0:
            self._rebuild()

    def _start(self, backend: BackendSettings) -> None:
        state = self._state[backend.name]
        if state.task is None or state.task.done():
            state.started_at = time.monotonic()
            state.task = asyncio.create_task(self._refresh(backend))

    def _stale(self, state: _BackendModels, now: float) -> bool:
        if state.fetched_at == 0.0:
            return True
        ttl = self._settings.catalogue.ttl
        if state.error:
            ttl = min(ttl, _RETRY_FAILED_AFTER)
        return now - state.fetched_at > ttl

    async def _refresh(self, backend: BackendSettings) -> None:
        # Both reads at once, each bounded as the list always was, so the info
        # never makes a refresh take longer than a slow list could.
        async with asyncio.TaskGroup() as group:
            if backend.litellm_model_info and self._read_model_info is not None:
                group.create_task(self._refresh_info(backend, self._read_model_info))
            await self._refresh_list(backend)
        # The other workers' aliases, as the listing's own changes, are taken
        # here even for names only the hot path asks for (see `resolve`).
        self._aliases.reload_if_changed()
        self._rebuild()

    async def _refresh_list(self, backend: BackendSettings) -> None:
        state = self._state[backend.name]
        try:
            models = await self._list_models(backend)
        except Exception as exc:
            error = str(exc) or type(exc).__name__
            # Once per run of failures (again if the reason changes), as the
            # /model/info one: it was once per retry, every 5 s while
            # requests came, for as long as the backend was down.
            if error != state.error:
                log.warning("cannot list models of backend %s: %s", backend.name, error)
            state.error = error
        else:
            if state.error:
                log.info("backend %s lists its models again", backend.name)
            state.models, state.error = models, ""
        state.fetched_at = time.monotonic()

    async def _refresh_info(
        self, backend: BackendSettings, read_model_info: ReadModelInfo
    ) -> None:
        state = self._state[backend.name]
        try:
            deployments = await read_model_info(backend)
        except Exception as exc:
            # The last good info stays, as the last good list does: a proxy
            # restarting must not flip every model's capabilities for a while.
            if not state.info_error:
                log.warning(
                    "cannot read /model/info of backend %s (its last good "
                    "answer stays, else the guesses): %s",
                    backend.name,
                    str(exc) or type(exc).__name__,
                )
            state.info_error = str(exc) or type(exc).__name__
            return
        if state.info_error:
            log.info("read /model/info of backend %s again", backend.name)
        state.info_error = ""
        infos = litellm_infos(deployments)
        state.info = {lookup_key(name): info for name, info in infos.items()}

    def _rebuild(self) -> None:
        configured = self._settings.models
        by_key: dict[str, ModelEntry] = {}
        metas: dict[str, openai.ModelObject] = {}
        infos: dict[str, LiteLLMInfo] = {}
        for backend in self._settings.backends:
            state = self._state[backend.name]
            for meta in state.models or []:
                key = lookup_key(meta.id)
                metas.setdefault(key, meta)
                info = state.info.get(key)
                if info is not None:
                    infos.setdefault(key, info)
                config = _config_for(configured, meta.id)
                self._add(by_key, meta.id, backend, meta, config, info)
        for name, model in configured.items():
            self._add_configured(by_key, name, model, metas, infos)
        for destination, source in self._aliases.items():
            target = by_key.get(lookup_key(source))
            if target is not None:
                by_key[lookup_key(destination)] = replace(
                    target, name=tagged(destination), hidden=False, alias_of=target.name
                )
        self._entries = by_key
        self._built_at = time.monotonic()

    def _add(
        self,
        by_key: dict[str, ModelEntry],
        model_id: str,
        backend: BackendSettings,
        meta: openai.ModelObject | None,
        config: ModelSettings | None,
        info: LiteLLMInfo | None,
    ) -> None:
        key = lookup_key(model_id)
        existing = by_key.get(key)
        if existing is not None:
            if backend.name not in existing.backends:
                # Failover sends each backend its own spelling of the id.
                backends = (*existing.backends, backend.name)
                ids = tuple(existing.upstream_id_on(b) for b in existing.backends)
                by_key[key] = replace(
                    existing,
                    backends=backends,
                    upstream_ids=(*ids, model_id)
                    if any(i != model_id for i in ids)
                    else (),
                )
            return
        if config is not None and config.backend and config.backend != backend.name:
            return
        by_key[key] = self._entry(
            tagged(model_id), model_id, backend, meta, config, info
        )

    def _add_configured(
        self,
        by_key: dict[str, ModelEntry],
        name: str,
        model: ModelSettings,
        metas: dict[str, openai.ModelObject],
        infos: dict[str, LiteLLMInfo],
    ) -> None:
        key = lookup_key(name)
        targets = _targets(model)
        if not targets:
            # Settings for a listed model were applied when it was added; a model
            # no backend lists is served by the one it names (or the first).
            backend = self._backend_named(model.backend)
            if key not in by_key and backend is not None:
                by_key[key] = self._entry(
                    tagged(name), name, backend, None, model, None
                )
            return
        # Several targets are one model spelled differently on other backends
        # (`meta-llama/Llama-3-8B` on one, `llama3:8b` on another): their
        # backends form one failover list, each sent its own id.
        found = [
            (t, e) for t in targets if (e := by_key.get(lookup_key(t))) is not None
        ]
        if model.backend:
            served = [(t, e) for t, e in found if model.backend in e.backends]
            found = served or found[:1]
        spelled, target = found[0] if found else (targets[0], None)
        backend = self._backend_named(
            model.backend or (target.backend if target else "")
        )
        if backend is None:
            return
        # The target's backend metadata (context length, modalities) still
        # applies; configured values override it.
        meta = metas.get(lookup_key(spelled))
        info = infos.get(lookup_key(spelled))
        upstream_id = (
            target.upstream_id_on(backend.name) if target is not None else spelled
        )
        entry = self._entry(tagged(name), upstream_id, backend, meta, model, info)
        if target is not None and not model.backend:
            pairs: dict[str, str] = {}
            for _, each in found:
                for served_by in each.backends:
                    pairs.setdefault(served_by, each.upstream_id_on(served_by))
            ids = tuple(pairs.values())
            entry = replace(
                entry,
                backends=tuple(pairs),
                upstream_ids=ids if any(i != upstream_id for i in ids) else (),
            )
        by_key[key] = entry

    def _backend_named(self, name: str) -> BackendSettings | None:
        backends = self._settings.backends
        if not name:
            return backends[0] if backends else None
        return next((b for b in backends if b.name == name), None)

    def _entry(
        self,
        name: str,
        upstream_id: str,
        backend: BackendSettings,
        meta: openai.ModelObject | None,
        config: ModelSettings | None,
        info: LiteLLMInfo | None,
    ) -> ModelEntry:
        created = meta.created if meta is not None else None
        served = model_meta(meta)
        return ModelEntry(
            name=name,
            upstream_id=upstream_id,
            backends=(backend.name,),
            capabilities=guess_capabilities(upstream_id, config, meta, info),
            family=guess_family(upstream_id, config.family if config else ""),
            context_length=context_length_of(config, meta, info),
            embedding_length=(config and config.embedding_length) or served.n_embd,
            parameter_size=(config and config.parameter_size)
            or parameter_size_of(served.n_params),
            quantization_level=config.quantization_level if config else "",
            size=(config and config.size) or served.size,
            modified_at=_modified_at(created, self._started),
            digest=_digest(upstream_id, config),
            remote_host="demo" if backend.demo else _public_url(backend.base_url),
            # A wildcard is no model a client can pick: it is not listed,
            # and the names it matches resolve (see `_by_wildcard`).
            hidden=(config.hidden if config else False) or _is_wildcard(upstream_id),
        )


def _is_wildcard(model_id: str) -> bool:
    return "*" in model_id


def _wildcard_matches(wildcard: str, key: str) -> bool:
    """Whether a lookup key fits a wildcard id, `*` standing for anything and
    every other character for itself, case-insensitively."""
    pieces = (re.escape(piece) for piece in lookup_key(wildcard).split("*"))
    return re.fullmatch(".*".join(pieces), key, re.DOTALL) is not None


def _without_latest(name: str) -> str:
    return name[: -len(":latest")] if name.lower().endswith(":latest") else name


_DEFAULT_HOST = "registry.ollama.ai/"
_DEFAULT_NAMESPACE = "library/"


def _default_parts_dropped(key: str) -> list[str]:
    """The key as given, then without Ollama's default host, then without its
    default namespace too: an upstream id such as `library/x` still matches
    first."""
    without_host = key.removeprefix(_DEFAULT_HOST)
    forms = [key, without_host, without_host.removeprefix(_DEFAULT_NAMESPACE)]
    return list(dict.fromkeys(forms))


def _digest(upstream_id: str, config: ModelSettings | None) -> str:
    """Two names share a digest only when they are one model, as in Ollama
    (`ollama cp`): clients such as llm-ollama merge them and cache what
    /api/show said by digest. A configured model, with its own capabilities
    or context length, is another model, and a changed one a new one."""
    if config is None:
        return digest_of(upstream_id)
    return digest_of(f"{upstream_id}\n{msgspec.json.encode(config).decode()}")


def _targets(model: ModelSettings) -> list[str]:
    """The configured model's targets, in failover order (none for a listed
    model's own settings)."""
    target = model.target
    if isinstance(target, str):
        return [target] if target else []
    return [t for t in target if t]


def _config_for(
    configured: dict[str, ModelSettings], model_id: str
) -> ModelSettings | None:
    key = lookup_key(model_id)
    for name, model in configured.items():
        if not model.target and lookup_key(name) == key:
            return model
    return None


def _modified_at(created: Any, default: str) -> str:
    """`created` (Unix seconds) as RFC 3339; `default` when it is missing, 0, or
    not a time that can be written (a string; milliseconds past year 9999)."""
    if isinstance(created, bool) or not isinstance(created, int | float):
        return default
    if created <= 0:
        return default
    try:
        return format_unix(created)
    except (OverflowError, OSError, ValueError):
        return default


def _public_url(url: str) -> str:
    """The backend URL as clients may see it: no credentials, no query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
