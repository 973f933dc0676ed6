"""The prompt token count the gateway reports when a backend sends no usage:
about four characters a token, at least one, as Ollama estimates. A backend
has no way to count a prompt without running it, and clients read the count
(Claude Code and Codex size their context with it; LangChain gives no
`usage_metadata` without it), so 0 would say the prompt was empty.

`/api/chat` and `/api/generate` count the bytes of the request sent upstream,
less its images' base64 (`RequestContext.prompt_size`), so an open stream
keeps no part of the request to count.

`/v1/messages` counts the text of its request (see
`anthropic_request.estimate_input_tokens`, which `count_tokens` answers too);
`/v1/responses` that of the chat its request became, whose messages hold the
same texts.
"""

from __future__ import annotations

from ollama_gateway.schemas import ollama

__all__ = ["estimate_chat_tokens", "tokens_for_characters"]


def tokens_for_characters(size: int) -> int:
    """About four characters a token, rounded up, at least one."""
    return max(1, -(-size // 4))


def estimate_chat_tokens(chat: ollama.ChatRequest) -> int:
    """The estimate for a chat request: its messages (roles, text, thinking,
    tool calls and results) and its tool definitions. Images are not
    counted."""
    size = 0
    for message in chat.messages or ():
        size += len(message.role) + len(message.content or "")
        size += len(message.thinking or "")
        for call in message.tool_calls or ():
            function = call.function
            size += len(function.name) + len(function.arguments_json())
    for tool in chat.tools or ():
        size += len(tool)
    return tokens_for_characters(size)
