"""ollama-gateway: the Ollama HTTP API, served from any OpenAI-compatible backend.

This package's top level is the plugin API: the stage Protocols, the delegating
wrapper bases, the request context, the errors and the wire schemas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ollama_gateway.context import RequestContext
    from ollama_gateway.errors import (
        GatewayError,
        PluginConfigError,
        PluginError,
        PluginLoadError,
        TranslationError,
        UpstreamError,
    )
    from ollama_gateway.memory import MemoryResponse
    from ollama_gateway.protocols import (
        NoConfig,
        RequestMapper,
        ResponseMapper,
        Stage,
        StreamSession,
        Transport,
        UpstreamRequest,
        UpstreamResponse,
        WholeAnswerSession,
    )
    from ollama_gateway.schemas import ollama, openai
    from ollama_gateway.wrappers import (
        RequestMapperWrapper,
        ResponseMapperWrapper,
        StreamSessionWrapper,
        TransportWrapper,
    )

# Where each name lives: imported on first use (PEP 562), not with the
# package. `python -m ollama_gateway` and the `ollama-gateway` script import
# the package before the command line can take Ctrl-C over (see cli.main);
# its plugin API pulled in msgspec, aiohttp's typing and the schemas first,
# most of the start-up, during which a Ctrl-C printed a traceback or, met in
# one of importlib's callbacks, was "ignored" and the gateway served on.
_HOMES = {
    "RequestContext": "ollama_gateway.context",
    "GatewayError": "ollama_gateway.errors",
    "PluginConfigError": "ollama_gateway.errors",
    "PluginError": "ollama_gateway.errors",
    "PluginLoadError": "ollama_gateway.errors",
    "TranslationError": "ollama_gateway.errors",
    "UpstreamError": "ollama_gateway.errors",
    "MemoryResponse": "ollama_gateway.memory",
    "NoConfig": "ollama_gateway.protocols",
    "RequestMapper": "ollama_gateway.protocols",
    "ResponseMapper": "ollama_gateway.protocols",
    "Stage": "ollama_gateway.protocols",
    "StreamSession": "ollama_gateway.protocols",
    "Transport": "ollama_gateway.protocols",
    "UpstreamRequest": "ollama_gateway.protocols",
    "UpstreamResponse": "ollama_gateway.protocols",
    "WholeAnswerSession": "ollama_gateway.protocols",
    "ollama": "ollama_gateway.schemas",
    "openai": "ollama_gateway.schemas",
    "RequestMapperWrapper": "ollama_gateway.wrappers",
    "ResponseMapperWrapper": "ollama_gateway.wrappers",
    "StreamSessionWrapper": "ollama_gateway.wrappers",
    "TransportWrapper": "ollama_gateway.wrappers",
}

if not TYPE_CHECKING:  # type checkers see the imports above, and no Any

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value  # later lookups are plain ones
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})


__all__ = [
    "GatewayError",
    "MemoryResponse",
    "NoConfig",
    "PluginConfigError",
    "PluginError",
    "PluginLoadError",
    "RequestContext",
    "RequestMapper",
    "RequestMapperWrapper",
    "ResponseMapper",
    "ResponseMapperWrapper",
    "Stage",
    "StreamSession",
    "StreamSessionWrapper",
    "TranslationError",
    "Transport",
    "TransportWrapper",
    "UpstreamError",
    "UpstreamRequest",
    "UpstreamResponse",
    "WholeAnswerSession",
    "ollama",
    "openai",
]
