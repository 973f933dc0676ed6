"""Translators that go wrong in the ways a real plugin can."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import msgspec

from ollama_gateway import (
    RequestContext,
    ResponseMapperWrapper,
    StreamSession,
    StreamSessionWrapper,
    ollama,
)


class NotAStage:
    stage = "middle"
    Config = msgspec.Struct


class NoConfigAttribute:
    stage = "response"


class _Explode(StreamSessionWrapper):
    def transform(
        self, chunks: Sequence[ollama.ChatResponse]
    ) -> Sequence[ollama.ChatResponse]:
        raise RuntimeError("kaboom")


class ExplodingResponse(ResponseMapperWrapper):
    """Raises on the first chunk of every answer."""

    def wrap_session(
        self, session: StreamSession, ctx: RequestContext
    ) -> StreamSession:
        return _Explode(session)


class StrictConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    level: int = 1


class ConfiguredResponse(ResponseMapperWrapper):
    """Takes a config table with one integer field."""

    Config: ClassVar[type[msgspec.Struct]] = StrictConfig


class MissingMethods:
    """Claims the response stage but implements nothing."""

    stage = "response"
    Config = StrictConfig

    def __init__(self, config: msgspec.Struct, inner: object) -> None:
        self.inner = inner
