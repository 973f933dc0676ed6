"""`openai-http` (the default transport) and `openai-aiohttp`: OpenAI over
HTTP, through our lean HTTP/1.1 pool or through aiohttp's ClientSession."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from ollama_gateway.protocols import NoConfig, Stage, Transport
from ollama_gateway.transport import AiohttpTransport, Http1Transport

__all__ = ["OpenAIAiohttpTransport", "OpenAIHttpTransport"]


class OpenAIHttpTransport(Http1Transport):
    """Entry-point face of `Http1Transport`; it takes no settings of its own
    (timeouts come with each request from `[timeouts]`)."""

    stage: ClassVar[Stage] = "transport"
    Config: ClassVar[type[msgspec.Struct]] = NoConfig

    def __init__(self, config: msgspec.Struct, inner: Transport | None) -> None:
        if inner is not None:
            raise ValueError("openai-http is a base transport: list it last")
        super().__init__()


class OpenAIAiohttpTransport(AiohttpTransport):
    """Entry-point face of `AiohttpTransport`: the same contract through
    aiohttp's client (it follows redirects and decodes brotli, say)."""

    stage: ClassVar[Stage] = "transport"
    Config: ClassVar[type[msgspec.Struct]] = NoConfig

    def __init__(self, config: msgspec.Struct, inner: Transport | None) -> None:
        if inner is not None:
            raise ValueError("openai-aiohttp is a base transport: list it last")
        super().__init__()
