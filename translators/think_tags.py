"""`think-tags`: moves `<think>…</think>` that a backend inlines in `content`
into `thinking`, also when a tag is split across chunks.

Some backends (llama.cpp without a reasoning parser, older vLLM, many hosted
DeepSeek-R1 and QwQ deployments) put the reasoning inline. `assume_open` covers
templates that open the think block in the prompt, so only `</think>` appears.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar

import msgspec

from ollama_gateway.context import RequestContext
from ollama_gateway.protocols import ResponseMapper, Stage, StreamSession
from ollama_gateway.schemas import ollama, openai
from ollama_gateway.wrappers import ResponseMapperWrapper

__all__ = ["ThinkTagSplitter", "ThinkTagsConfig", "ThinkTagsResponseMapper"]


# An empty tag would be found everywhere: refused when the settings load.
_Tag = Annotated[str, msgspec.Meta(min_length=1)]


class ThinkTagsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`[translators.think-tags]`."""

    open_tag: _Tag = "<think>"
    close_tag: _Tag = "</think>"
    assume_open: bool = False


class ThinkTagSplitter:
    """Incremental splitter: text in, (content, thinking) out, as Ollama's own
    thinking parser splits: only a block that opens the answer (after any
    whitespace) is thinking, only the first one, and the whitespace after
    each tag is dropped. A `<think>` later in the answer (a model writing
    about its tags, or code) stays content. Any piece that could still turn
    out to be a tag is held back until the next piece decides."""

    __slots__ = ("_close", "_held", "_open", "_state")

    def __init__(self, config: ThinkTagsConfig) -> None:
        self._open = config.open_tag
        self._close = config.close_tag
        self._held = ""
        self._state = _OPENED if config.assume_open else _LOOKING

    @property
    def inside(self) -> bool:
        return self._state in (_OPENED, _THINKING)

    def feed(self, text: str) -> tuple[str, str]:
        state = self._state
        if state == _DONE:
            return text, ""
        text = self._held + text
        self._held = ""
        content = thinking = ""
        if state == _LOOKING:
            start = text.lstrip()
            if start.startswith(self._open):
                text = start[len(self._open) :]
                state = _OPENED
            elif self._open.startswith(start):
                self._held = text  # whitespace, or the tag's beginning
                return "", ""
            else:
                # No block first: Ollama's parser keeps it all as content.
                self._state = _DONE
                return text, ""
        if state == _OPENED:
            text = text.lstrip()
            state = _THINKING if text else _OPENED
        if state == _THINKING:
            at = text.find(self._close)
            if at < 0:
                keep = _partial_suffix(text, self._close)
                self._held = text[len(text) - keep :]
                self._state = state
                return "", text[: len(text) - keep]
            thinking = text[:at]
            text = text[at + len(self._close) :]
            state = _CLOSED
        if state == _CLOSED:
            content = text.lstrip()
            state = _DONE if content else _CLOSED
        self._state = state
        return content, thinking

    def flush(self) -> tuple[str, str]:
        held, self._held = self._held, ""
        return ("", held) if self._state == _THINKING else (held, "")


# The splitter's states, in the order an answer goes through them.
_LOOKING, _OPENED, _THINKING, _CLOSED, _DONE = range(5)


def _partial_suffix(text: str, tag: str) -> int:
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class _ThinkTagsSession:
    __slots__ = ("_inner", "_splitter")

    def __init__(self, inner: StreamSession, config: ThinkTagsConfig) -> None:
        self._inner = inner
        self._splitter = ThinkTagSplitter(config)

    def feed(self, chunk: openai.ChatCompletionChunk) -> Sequence[ollama.ChatResponse]:
        out = self._inner.feed(chunk)
        return [c for c in map(self._split, out) if c is not None] if out else out

    def close(self) -> Sequence[ollama.ChatResponse]:
        tail = self._inner.close()
        content, thinking = self._splitter.flush()
        if not (content or thinking) or not tail:
            return tail
        # A chunk of its own: the final one carries no text (spec 2.7), and
        # clients that read it for its counts only would lose this.
        first = tail[0]
        held = ollama.ChatResponse(
            model=first.model,
            created_at=first.created_at,
            message=ollama.ResponseMessage("assistant", content, thinking or None),
            done=False,
        )
        return [held, *tail]

    def _split(self, chunk: ollama.ChatResponse) -> ollama.ChatResponse | None:
        message = chunk.message
        content, thinking = self._splitter.feed(message.content)
        message.content = content
        if thinking:
            message.thinking = (message.thinking or "") + thinking
        keep = content or message.thinking or message.tool_calls or chunk.logprobs
        return chunk if keep or chunk.done else None


class ThinkTagsResponseMapper(ResponseMapperWrapper):
    """Wraps the stream session of the inner response mapper."""

    stage: ClassVar[Stage] = "response"
    Config: ClassVar[type[msgspec.Struct]] = ThinkTagsConfig

    def __init__(self, config: msgspec.Struct, inner: ResponseMapper | None) -> None:
        super().__init__(config, inner)
        assert isinstance(config, ThinkTagsConfig)
        self.tags = config

    def wrap_session(
        self, session: StreamSession, ctx: RequestContext
    ) -> StreamSession:
        return _ThinkTagsSession(session, self.tags)
