"""What an agent front's `tool_choice` asks of the model, in the terms a chat
completion carries.

Anthropic's `any` and `tool`, and the Responses API's `required`, a named
function and `allowed_tools`, each come down to two things: which of the
offered tools the model may call, and whether it must call one. The fronts
offer only the tools it may call, and a must-call goes upstream as
`tool_choice: "required"` (see `RequestContext.must_call_tool`). A named tool
is the one tool offered and required, which every backend that takes
`"required"` honours, where not all take OpenAI's named form. Clients rely
on it: LangChain's and the AI SDK's structured output through Anthropic's
API is a forced tool call.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AUTO", "NONE", "ToolChoice"]


@dataclass(frozen=True, slots=True)
class ToolChoice:
    # The names of the tools the model may call; None: every tool offered.
    names: frozenset[str] | None = None
    # It must call one of them.
    required: bool = False

    def allows(self, name: str | None) -> bool:
        return self.names is None or name in self.names


AUTO = ToolChoice()
NONE = ToolChoice(frozenset())
