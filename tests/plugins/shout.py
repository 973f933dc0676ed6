"""A third-party-style response translator: upper-cases every reply."""

from __future__ import annotations

from collections.abc import Sequence

from ollama_gateway import (
    RequestContext,
    ResponseMapperWrapper,
    StreamSession,
    StreamSessionWrapper,
    ollama,
)


class _Shout(StreamSessionWrapper):
    def transform(
        self, chunks: Sequence[ollama.ChatResponse]
    ) -> Sequence[ollama.ChatResponse]:
        for chunk in chunks:
            chunk.message.content = chunk.message.content.upper()
        return chunks


class ShoutResponse(ResponseMapperWrapper):
    """Upper-cases the content of every answer."""

    def wrap_session(
        self, session: StreamSession, ctx: RequestContext
    ) -> StreamSession:
        return _Shout(session)
