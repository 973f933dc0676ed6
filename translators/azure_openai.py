"""`azure-openai`: a transport wrapper for Azure OpenAI deployments.

Azure serves `{endpoint}/openai/deployments/{deployment}/chat/completions
?api-version=…` and takes the key in an `api-key` header. The deployment is the
request's model id, or the name `deployments` maps it to. Use it in front of
`openai-http` for one backend:

```toml
[[backends]]
name = "azure"
base_url = "https://my-resource.openai.azure.com"
api_key = "…"
transport = ["azure-openai", "openai-http"]
models = ["gpt-4o"]

[translators.azure-openai]
api_version = "2024-10-21"
deployments = { "gpt-4o" = "my-gpt4o-deployment" }
```
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from ollama_gateway.context import RequestContext
from ollama_gateway.protocols import Stage, Transport, UpstreamRequest, UpstreamResponse
from ollama_gateway.wrappers import TransportWrapper

__all__ = ["AzureOpenAIConfig", "AzureOpenAITransport"]


class AzureOpenAIConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`[translators.azure-openai]`."""

    api_version: str = "2024-10-21"
    deployments: dict[str, str] = msgspec.field(default_factory=dict)


class _Model(msgspec.Struct):
    model: str = ""


_decode_model = msgspec.json.Decoder(_Model).decode


class AzureOpenAITransport(TransportWrapper):
    """Rewrites paths to deployment URLs and the key to an `api-key` header."""

    stage: ClassVar[Stage] = "transport"
    Config: ClassVar[type[msgspec.Struct]] = AzureOpenAIConfig

    def __init__(self, config: msgspec.Struct, inner: Transport | None) -> None:
        super().__init__(config, inner)
        assert isinstance(config, AzureOpenAIConfig)
        self.azure = config

    async def send(
        self, request: UpstreamRequest, ctx: RequestContext
    ) -> UpstreamResponse:
        backend = request.backend
        headers = dict(request.headers)
        if backend.api_key and "Authorization" not in headers:
            headers["api-key"] = backend.api_key
        version = f"api-version={self.azure.api_version}"
        if request.path == "/models":
            path = f"/openai/models?{version}"
        else:
            model = _decode_model(request.body).model if request.body else ""
            deployment = self.azure.deployments.get(model, model)
            path = f"/openai/deployments/{deployment}{request.path}?{version}"
        rewritten = msgspec.structs.replace(
            request,
            path=path,
            headers=headers,
            backend=msgspec.structs.replace(backend, api_key=""),
        )
        return await self.inner.send(rewritten, ctx)
