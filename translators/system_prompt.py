"""`system-prompt`: adds, replaces or prepends a system prompt per model pattern.

```toml
[pipeline]
request = ["system-prompt", "ollama-to-openai"]

[[translators.system-prompt.rules]]
models = "llama3*"          # fnmatch pattern on the client's model name
prompt = "You are terse."
mode = "add"                # add (only if none), replace, or prepend
```
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import ClassVar, Literal

import msgspec

from ollama_gateway.context import RequestContext
from ollama_gateway.protocols import RequestMapper, Stage
from ollama_gateway.schemas import ollama, openai
from ollama_gateway.wrappers import RequestMapperWrapper

__all__ = ["SystemPromptConfig", "SystemPromptRequestMapper", "SystemPromptRule"]


class SystemPromptRule(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One rule; the first rule whose pattern matches the model applies."""

    prompt: str
    models: str = "*"
    mode: Literal["add", "replace", "prepend"] = "add"


class SystemPromptConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`[translators.system-prompt]`: the rules, in order."""

    rules: list[SystemPromptRule] = msgspec.field(default_factory=list)


class SystemPromptRequestMapper(RequestMapperWrapper):
    """Edits the system message of chat-shaped upstream requests."""

    stage: ClassVar[Stage] = "request"
    Config: ClassVar[type[msgspec.Struct]] = SystemPromptConfig

    def __init__(self, config: msgspec.Struct, inner: RequestMapper | None) -> None:
        super().__init__(config, inner)
        assert isinstance(config, SystemPromptConfig)
        self.rules = config.rules

    def map_chat(
        self, request: ollama.ChatRequest, ctx: RequestContext
    ) -> openai.ChatCompletionRequest:
        body = self.inner.map_chat(request, ctx)
        self._apply(body, ctx)
        return body

    def map_generate(
        self, request: ollama.GenerateRequest, ctx: RequestContext
    ) -> openai.ChatCompletionRequest | openai.CompletionRequest:
        body = self.inner.map_generate(request, ctx)
        if isinstance(body, openai.ChatCompletionRequest):
            self._apply(body, ctx)
        return body  # raw and fill-in-the-middle prompts are sent verbatim

    def _apply(self, body: openai.ChatCompletionRequest, ctx: RequestContext) -> None:
        name = ctx.model.lower()
        rule = next(
            (r for r in self.rules if fnmatchcase(name, r.models.lower())), None
        )
        if rule is None:
            return
        messages = body.messages
        current = messages[0] if messages and messages[0].role == "system" else None
        if current is None:
            messages.insert(0, openai.ChatMessage(role="system", content=rule.prompt))
        elif rule.mode == "replace":
            current.content = rule.prompt
        elif rule.mode == "prepend":
            existing = current.content if isinstance(current.content, str) else ""
            current.content = (
                f"{rule.prompt}\n\n{existing}" if existing else rule.prompt
            )
