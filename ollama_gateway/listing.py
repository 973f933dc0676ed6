"""`ollama-gateway plugins`: the discovered translators as JSON."""

from __future__ import annotations

import msgspec

from ollama_gateway.pipeline import build_pipeline
from ollama_gateway.plugins import load_translators
from ollama_gateway.settings import Settings

__all__ = ["translator_listing"]


class _Listed(msgspec.Struct):
    name: str
    stage: str
    distribution: str
    version: str
    entry_point: str
    in_use: bool


def translator_listing(settings: Settings, *, show_all: bool = False) -> str:
    specs = load_translators(allow=None if show_all else settings.plugins)
    pipeline = build_pipeline(settings, specs)
    used = {name for chain in pipeline.names.values() for name in chain}
    listed = [
        _Listed(s.name, s.stage, s.distribution, s.version, s.value, s.name in used)
        for s in sorted(specs.values(), key=lambda s: (s.stage, s.name))
    ]
    return msgspec.json.format(msgspec.json.encode(listed)).decode()
