"""ollama-gateway: the Ollama HTTP API, served from any OpenAI-compatible backend.

This package's top level is the plugin API: the stage Protocols, the delegating
wrapper bases, the request context, the errors and the wire schemas.
"""

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
