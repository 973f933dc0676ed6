"""One shape of conversation for backends with strict chat templates.

The agent fronts (`/v1/messages`, `/v1/responses`) receive conversations that
Ollama's own templates take but many backends' do not: Claude Code puts
`system` turns among the others and Codex sends two `developer` messages, then
two user messages in a row. Mistral's templates (as vLLM and llama.cpp's
server run them) take one system message, first, and then strictly
alternating user and assistant turns; anything else fails the request. So
these fronts send every system text in one leading system message, in order,
and join consecutive turns of one role, as Anthropic's API does with them.
(`/v1/messages` first makes the `system` turns after the first turn user
turns of reminder text where they stand: see `anthropic_request`.)
Tool results stay one message each. A backend with such a template can ask
for the same on every chat (`backends[].alternating_roles`).
"""

from __future__ import annotations

from ollama_gateway.schemas import ollama

__all__ = ["tidy_turns"]

_JOIN = "\n\n"


def tidy_turns(messages: list[ollama.Message]) -> list[ollama.Message]:
    """The system texts in one leading system message, and each run of user
    (or assistant) turns as one message."""
    system: list[str] = []
    turns: list[ollama.Message] = []
    for message in messages:
        if message.role == "system":
            if message.content:
                system.append(message.content)
            continue
        last = turns[-1] if turns else None
        if last is None or last.role != message.role or message.role == "tool":
            turns.append(message)
            continue
        last.content = _JOIN.join(t for t in (last.content, message.content) if t)
        if message.thinking:
            last.thinking = (last.thinking or "") + message.thinking
        if message.images:
            last.images = [*(last.images or ()), *message.images]
        if message.tool_calls:
            last.tool_calls = [*(last.tool_calls or ()), *message.tool_calls]
    if not system:
        return turns
    return [ollama.Message(role="system", content=_JOIN.join(system)), *turns]
