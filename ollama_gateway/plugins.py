"""Translator discovery through entry points, built-ins included, and their listing.

Built-ins are declared in our own `setup.cfg` under the same group and are also
listed in `DEFAULT_TRANSLATORS`, so they are present even when the installed
metadata is stale. Both paths go through `load_translators`, like third-party
plugins. Discovery runs when an app is created, never at import time.
"""

from __future__ import annotations

import importlib.metadata as md
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast, get_args

import msgspec

from ollama_gateway.errors import PluginLoadError
from ollama_gateway.protocols import Stage

__all__ = [
    "DEFAULT_TRANSLATORS",
    "ENTRY_POINT_GROUP",
    "OWN_DISTRIBUTION",
    "TranslatorSpec",
    "load_translators",
]

ENTRY_POINT_GROUP = "ollama_gateway.translators"
OWN_DISTRIBUTION = "ollama-gateway"
# What docs/plugins.md promises a name is: one a `[translators.<name>]` table
# and a `[pipeline]` list can name as written (a dot would nest the table).
_KEBAB_CASE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")

DEFAULT_TRANSLATORS = tuple(
    md.EntryPoint(name, value, ENTRY_POINT_GROUP)
    for name, value in (
        (
            "ollama-to-openai",
            "ollama_gateway_translators.ollama_to_openai:ChatRequestMapper",
        ),
        ("openai-http", "ollama_gateway_translators.openai_http:OpenAIHttpTransport"),
        (
            "openai-aiohttp",
            "ollama_gateway_translators.openai_http:OpenAIAiohttpTransport",
        ),
        (
            "openai-to-ollama",
            "ollama_gateway_translators.openai_to_ollama:ChatResponseMapper",
        ),
        ("demo", "ollama_gateway_translators.demo:DemoTransport"),
        ("retry", "ollama_gateway_translators.retry:RetryTransport"),
        ("think-tags", "ollama_gateway_translators.think_tags:ThinkTagsResponseMapper"),
        (
            "system-prompt",
            "ollama_gateway_translators.system_prompt:SystemPromptRequestMapper",
        ),
        (
            "azure-openai",
            "ollama_gateway_translators.azure_openai:AzureOpenAITransport",
        ),
    )
)


@dataclass(frozen=True)
class TranslatorSpec:
    """A loaded translator class and where it came from."""

    name: str
    stage: Stage
    cls: type[Any]
    distribution: str
    version: str
    value: str


def load_translators(
    entry_points: Iterable[md.EntryPoint] | None = None,
    *,
    allow: list[str] | None = None,
) -> dict[str, TranslatorSpec]:
    """Load every allowed translator class, keyed by entry-point name.

    `entry_points` replaces discovery (tests inject theirs). `allow` lists the
    third-party distributions to load: None loads all, [] built-ins only.
    """
    discovered = (
        md.entry_points(group=ENTRY_POINT_GROUP)
        if entry_points is None
        else entry_points
    )
    specs: dict[str, TranslatorSpec] = {}
    own_version = _own_version()
    builtin_values = {ep.value for ep in DEFAULT_TRANSLATORS}
    for ep in DEFAULT_TRANSLATORS:
        specs[ep.name] = _load(ep, OWN_DISTRIBUTION, own_version)
    allowed = None if allow is None else {_normalise(d) for d in allow}
    for ep in discovered:
        if ep.value in builtin_values and ep.name in specs:
            continue  # our own setup.cfg declaring the built-ins again
        dist, version = _distribution(ep)
        if allowed is not None and _normalise(dist) not in allowed:
            continue
        if not _KEBAB_CASE.fullmatch(ep.name):
            raise PluginLoadError(
                f"translator {ep.name!r} ({dist}): a translator name must be "
                "kebab-case (lowercase letters and digits, words joined by '-')"
            )
        if ep.name in specs:
            other = specs[ep.name]
            raise PluginLoadError(
                f"translator {ep.name!r} is declared by both {other.distribution} "
                f"and {dist}; uninstall one or rename it"
            )
        specs[ep.name] = _load(ep, dist, version)
    return specs


def _load(ep: md.EntryPoint, dist: str, version: str) -> TranslatorSpec:
    try:
        cls = ep.load()
    except Exception as exc:  # any import-time failure of a plugin stops the start
        raise PluginLoadError(
            f"translator {ep.name!r} ({dist}) failed to import {ep.value}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    stage = getattr(cls, "stage", None)
    if stage not in get_args(Stage):
        raise PluginLoadError(
            f"translator {ep.name!r} ({dist}): class attribute 'stage' must be one of "
            f"'request', 'transport', 'response', not {stage!r}"
        )
    config = getattr(cls, "Config", None)
    if not (isinstance(config, type) and issubclass(config, msgspec.Struct)):
        raise PluginLoadError(
            f"translator {ep.name!r} ({dist}): class attribute 'Config' must be a "
            "msgspec.Struct class"
        )
    return TranslatorSpec(ep.name, cast(Stage, stage), cls, dist, version, ep.value)


def _distribution(ep: md.EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    if dist is None:
        return "unknown", ""
    return dist.name, dist.version


def _own_version() -> str:
    try:
        return md.version(OWN_DISTRIBUTION)
    except md.PackageNotFoundError:
        return "0"


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")
