"""RequestContext: what every stage may know about the request being served."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ollama_gateway.modelinfo import ModelEntry
    from ollama_gateway.schemas.ollama import Message
    from ollama_gateway.settings import BackendSettings

__all__ = ["Endpoint", "RequestContext"]

Endpoint = Literal["chat", "generate", "embed", "embeddings", "openai", "other"]


class RequestContext:
    """Per-request state shared by the stages of the pipeline.

    One context is created per request and is owned by the handler; translators
    may read every field and write `extra`. `created_at` is refreshed once per
    upstream read (not per line), so stream sessions stamp chunks cheaply.
    """

    __slots__ = (
        "backend",
        "backend_settings",
        "cached_tokens",
        "client_key",
        "completion_tokens",
        "first_token_ns",
        "outcome",
        "prompt_size",
        "prompt_tokens",
        "reasoning_tokens",
        "retries",
        "created_at",
        "endpoint",
        "entry",
        "error",
        "extra",
        "filtered",
        "history",
        "logprobs",
        "model",
        "must_call_tool",
        "request_id",
        "started_ns",
        "stream",
        "think",
        "top_logprobs",
        "upstream_model",
        "upstream_sent_ns",
    )

    def __init__(
        self,
        *,
        request_id: str,
        endpoint: Endpoint,
        model: str,
        entry: ModelEntry | None = None,
        stream: bool = True,
        started_ns: int | None = None,
    ) -> None:
        self.request_id = request_id
        self.endpoint: Endpoint = endpoint
        self.model = model
        self.entry = entry
        self.upstream_model = entry.upstream_id if entry is not None else model
        self.backend = entry.backend if entry is not None else ""
        self.backend_settings: BackendSettings | None = None
        # The client's own Authorization, forwarded only in pass-through auth mode.
        self.client_key = ""
        self.stream = stream
        self.started_ns = time.perf_counter_ns() if started_ns is None else started_ns
        self.upstream_sent_ns = 0
        self.created_at = ""
        self.think: bool | str | None = None
        self.logprobs = False
        self.top_logprobs = 0
        # The client requires a tool call (the agent fronts' `tool_choice`,
        # see tool_choice.py); an Ollama chat has no tool choice.
        self.must_call_tool = False
        # Earlier turns of a generate conversation, when its `context` is
        # emulated: they go between the system prompt and the prompt.
        self.history: Sequence[Message] = ()
        self.extra: dict[str, object] = {}
        # Filled as the request runs; read once at the end for logs and metrics.
        self.first_token_ns = 0
        self.prompt_tokens = 0
        # Bytes of the request sent upstream, less its images: an Ollama
        # answer's `prompt_eval_count` when the backend reports no usage
        # (see token_estimate.py). None where a front counts its own.
        self.prompt_size: int | None = None
        self.completion_tokens = 0
        # Parts of those two as the backend reports them: prompt tokens read
        # from its prompt cache, and completion tokens spent thinking. Only
        # the agent fronts have a field for them (the Ollama API has none).
        self.cached_tokens = 0
        self.reasoning_tokens = 0
        # The backend's content filter ended the answer (`finish_reason:
        # "content_filter"`): Ollama's `done_reason` has no word for it (it
        # says `stop`), the agent fronts have one each.
        self.filtered = False
        self.retries = 0
        self.outcome = "ok"
        # The message of the failure that ended it (see log.note_error).
        self.error = ""

    def use(self, entry: ModelEntry) -> None:
        """Serve this request with a catalogue entry (its upstream id and backend)."""
        self.entry = entry
        self.upstream_model = entry.upstream_id
        self.backend = entry.backend
