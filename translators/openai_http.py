"""`openai-http`: the default transport, OpenAI over HTTP through aiohttp."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from ollama_gateway.protocols import NoConfig, Stage, Transport
from ollama_gateway.transport import AiohttpTransport

__all__ = ["OpenAIHttpTransport"]


class OpenAIHttpTransport(AiohttpTransport):
    """Entry-point face of `AiohttpTransport`; it takes no settings of its own
    (timeouts come with each request from `[timeouts]`)."""

    stage: ClassVar[Stage] = "transport"
    Config: ClassVar[type[msgspec.Struct]] = NoConfig

    def __init__(self, config: msgspec.Struct, inner: Transport | None) -> None:
        if inner is not None:
            raise ValueError("openai-http is a base transport: list it last")
        super().__init__()
