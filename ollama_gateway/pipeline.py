"""Pipeline: the composed request mapper, transports and response mapper.

`build_pipeline` turns the names in the settings into objects, inside out: the
last name of a stage is the base (`cls(config, None)`), each earlier one wraps it.
Each backend gets its own transport chain (its `transport` list, or the
pipeline's). The result is frozen; handlers make plain method calls on it.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from types import CodeType, TracebackType
from typing import Any

import msgspec

from ollama_gateway.errors import PluginConfigError, PluginLoadError, TranslationError
from ollama_gateway.plugins import ENTRY_POINT_GROUP, TranslatorSpec
from ollama_gateway.protocols import (
    RequestMapper,
    ResponseMapper,
    Stage,
    Transport,
)
from ollama_gateway.settings import Settings
from ollama_gateway.upstream import close_in_time

__all__ = ["Pipeline", "build_pipeline"]

log = logging.getLogger(__name__)

_PROTOCOLS: dict[Stage, type] = {
    "request": RequestMapper,
    "transport": Transport,
    "response": ResponseMapper,
}


@dataclass(frozen=True)
class Pipeline:
    """The translators in use. `transports` is keyed by backend name."""

    request: RequestMapper
    response: ResponseMapper
    transports: Mapping[str, Transport]
    names: Mapping[str, tuple[str, ...]]
    # Module -> the translators in use defined there; code object of a
    # translator class's own method (or of a function nested in one) -> it.
    modules: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    codes: Mapping[CodeType, str] = field(default_factory=dict)

    def translator_for(
        self, tb: TracebackType | None, among: Collection[str] = ()
    ) -> str | None:
        """Name the innermost translator whose code appears in a traceback.

        A frame of a translator class's own code names it; another frame of
        a module that defines several (one plugin, one module) names the
        one `among` the translators of the failing stage, if any is."""
        name = None
        while tb is not None:
            frame = tb.tb_frame
            found = self.codes.get(frame.f_code)
            if found is None:
                defined = self.modules.get(frame.f_globals.get("__name__", ""))
                if defined:
                    found = next((n for n in defined if n in among), defined[0])
            name = found or name
            tb = tb.tb_next
        return name

    def response_translator_for(self, tb: TracebackType | None) -> str | None:
        """`translator_for` a failure met reading an answer; with no
        traceback (a wrong value, no code raised), the outermost response
        translator, whose session returned it."""
        chain = self.names["response"]
        return chain[0] if tb is None else self.translator_for(tb, chain)

    def translator_failure(
        self, exc: Exception, backend: str
    ) -> TranslationError | None:
        """`exc`, met reading an answer of `backend`, as the failure of the
        translator whose code raised it, or None when none did (a bug of the
        gateway's own)."""
        chain = self.names.get(f"transport:{backend}", ())
        name = self.translator_for(exc.__traceback__, chain)
        if name is None:
            return None
        failure = TranslationError(name, exc)
        failure.__cause__ = exc  # its traceback is logged
        return failure

    def blame_transport(self, backend: str, exc: BaseException) -> str:
        """The transport translator of `backend` behind `exc`: the one whose
        code raised it, else the outermost of the chain (it returned it)."""
        chain = self.names.get(f"transport:{backend}") or ("transport",)
        return self.translator_for(exc.__traceback__, chain) or chain[0]

    async def aclose(self) -> None:
        for backend, transport in self.transports.items():
            try:
                # Bounded: one whose close never ended held the exit for good
                # (until the orchestrator's SIGKILL), the others left open.
                await close_in_time(transport)
            except Exception:
                # One transport that fails to close (a plugin's bug) neither
                # keeps the others open nor fails the shutdown's exit status.
                log.exception("closing the transport of backend %r failed", backend)


def build_pipeline(settings: Settings, specs: Mapping[str, TranslatorSpec]) -> Pipeline:
    """Compose the translators named in `settings.pipeline` and per backend."""
    pipeline = settings.pipeline
    request = _compose("request", pipeline.request, settings, specs)
    response = _compose("response", pipeline.response, settings, specs)
    transports: dict[str, Transport] = {}
    names: dict[str, tuple[str, ...]] = {
        "request": tuple(pipeline.request),
        "response": tuple(pipeline.response),
    }
    for backend in settings.backends:
        chain = backend.transport
        if chain is None:
            chain = pipeline.transport
            if backend.demo and chain[-1:] != ["demo"]:
                # The demo answers in-process, so the pipeline's chain serves
                # it only when based on `demo` (a plugin wrapping the demo).
                chain = ["demo"]
        transports[backend.name] = _compose("transport", chain, settings, specs)
        names[f"transport:{backend.name}"] = tuple(chain)
    used = {name for chain in names.values() for name in chain}
    _check_unused_tables(settings, specs, used)
    modules: dict[str, tuple[str, ...]] = {}
    codes: dict[CodeType, str] = {}
    for name in sorted(used):
        cls = specs[name].cls
        modules[cls.__module__] = (*modules.get(cls.__module__, ()), name)
        for code in _own_code(cls):
            codes.setdefault(code, name)
    return Pipeline(request, response, transports, names, modules, codes)


def _own_code(cls: type) -> Iterator[CodeType]:
    """The code of the functions a translator class defines itself, and of
    those nested in them (a body generator inside `send`); not its bases'
    (the wrapper bases are shared by all)."""
    pending = [
        function.__code__
        for value in vars(cls).values()
        if (function := getattr(value, "__func__", value)) is not None
        and isinstance(getattr(function, "__code__", None), CodeType)
    ]
    while pending:
        code = pending.pop()
        yield code
        pending.extend(c for c in code.co_consts if isinstance(c, CodeType))


def _compose(
    stage: Stage,
    chain: list[str],
    settings: Settings,
    specs: Mapping[str, TranslatorSpec],
) -> Any:
    if not chain:
        raise PluginLoadError(f"pipeline.{stage}: needs at least one translator")
    inner: Any = None
    for name in reversed(chain):
        spec = specs.get(name)
        if spec is None:
            known = ", ".join(
                sorted(s.name for s in specs.values() if s.stage == stage)
            )
            raise PluginLoadError(
                f"pipeline.{stage}: no translator named {name!r} (known: {known})"
                + _left_out(name, settings)
            )
        if spec.stage != stage:
            raise PluginLoadError(
                f"pipeline.{stage}: {name!r} is a {spec.stage} translator"
            )
        config = _config(spec, settings.translators.get(name, {}))
        try:
            inner = spec.cls(config, inner)
        except Exception as exc:
            # A wrapper listed as the base too: named as configured (the
            # wrapper bases' own error names only the class).
            raise PluginLoadError(
                f"translator {name!r} ({spec.distribution}) failed to start: {exc}"
            ) from exc
        if not isinstance(inner, _PROTOCOLS[stage]):
            raise PluginLoadError(
                f"translator {name!r} ({spec.distribution}) does not implement the "
                f"{stage} protocol ({_PROTOCOLS[stage].__name__})"
            )
    return inner


def _left_out(name: str, settings: Settings) -> str:
    """Why an installed translator is missing: its distribution is not in
    `OLLAMA_GATEWAY_PLUGINS` (read only for this error)."""
    if settings.plugins is None:
        return ""
    found = next(iter(md.entry_points(group=ENTRY_POINT_GROUP, name=name)), None)
    if found is None or found.dist is None:
        return ""
    return (
        f"; {found.dist.name} provides it, but OLLAMA_GATEWAY_PLUGINS does not "
        "list that distribution"
    )


def _check_unused_tables(
    settings: Settings, specs: Mapping[str, TranslatorSpec], used: set[str]
) -> None:
    """A `[translators.<name>]` table must name a translator and fit its Config,
    in use or not, so a typo in a name or a key cannot silently do nothing."""
    for name, raw in settings.translators.items():
        if name in used:
            continue
        spec = specs.get(name)
        if spec is None:
            known = ", ".join(sorted(specs))
            raise PluginConfigError(
                f"translators.{name}: no translator named {name!r} (known: {known})"
                + _left_out(name, settings)
            )
        _config(spec, raw)


def _config(spec: TranslatorSpec, raw: dict[str, Any]) -> msgspec.Struct:
    # A key the Config has no field for is refused even when the plugin's
    # Struct does not forbid unknown fields (msgspec's default), so a typo
    # cannot silently do nothing.
    known = {field.encode_name for field in msgspec.structs.fields(spec.cls.Config)}
    unknown = sorted(key for key in raw if key not in known)
    if unknown:
        raise PluginConfigError(
            f"translators.{spec.name}: Object contains unknown field `{unknown[0]}`"
        )
    try:
        config: msgspec.Struct = msgspec.convert(
            raw, type=spec.cls.Config, str_keys=True
        )
    except msgspec.ValidationError as exc:
        text, sep, path = str(exc).rpartition(" - at ")
        where = path.strip("`").removeprefix("$.") if sep else ""
        detail = f"{where}: {text}" if where else str(exc)
        raise PluginConfigError(f"translators.{spec.name}: {detail}") from None
    return config
