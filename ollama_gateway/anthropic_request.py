"""An Anthropic Messages request as an Ollama chat request, and its token estimate.

The conversion follows what Ollama does for `/v1/messages`: the system prompt
becomes a leading system message, tool results become `tool` messages placed
before the rest of their user turn (they answer the previous assistant turn's
calls), `max_tokens` becomes `num_predict`, and `thinking` becomes `think`.
Where Ollama silently drops what it cannot serve (a block type it does not
know), the gateway says so with a 400 instead of answering a different
question than the one asked.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ollama_gateway.errors import InvalidRequestError
from ollama_gateway.schemas import anthropic, ollama
from ollama_gateway.token_estimate import tokens_for_characters
from ollama_gateway.tool_choice import AUTO, NONE, ToolChoice
from ollama_gateway.turns import tidy_turns

__all__ = [
    "estimate_input_tokens",
    "history_call_ids",
    "map_messages_request",
    "tool_choice",
]

# Adjacent text blocks are separate paragraphs to Anthropic's models; joined
# with nothing (as Ollama does), Claude Code's `<system-reminder>` blocks run
# into the user's words.
_JOIN = "\n\n"
# Claude Code (2.1.36 on) opens its system prompt with a block such as
# `x-anthropic-billing-header: cc_version=2.1.197.563; cc_entrypoint=cli; cch=...;`,
# meant for Anthropic's billing. It tells the model nothing, and it changes from
# request to request: at the head of the prompt it defeats a backend's prefix
# cache (vLLM, llama.cpp, SGLang), so every turn re-reads the whole conversation.
_BILLING_HEADER = "x-anthropic-billing-header:"
# How Claude Code wraps what the system says among the user's words.
_REMINDER = ("<system-reminder>\n", "\n</system-reminder>")
# `output_config.effort` as Ollama's `think` levels (Ollama's mapping).
_EFFORTS: dict[str, str] = {
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "max",
}
_ANY_OBJECT = msgspec.Raw(b'{"type":"object","properties":{}}')
_encode = msgspec.json.Encoder().encode
_to_blocks = list[anthropic.ContentBlock]


class _FunctionSpec(msgspec.Struct, omit_defaults=True):
    name: str
    parameters: msgspec.Raw
    description: str | None = None


class _FunctionTool(msgspec.Struct):
    function: _FunctionSpec
    type: str = "function"


def map_messages_request(body: anthropic.MessagesRequest) -> ollama.ChatRequest:
    """The Ollama chat request for a Messages request (raises a 400 for what
    cannot be sent on)."""
    messages: list[ollama.Message] = []
    system = _system_text(_without_billing_header(body.system))
    if system:
        messages.append(ollama.Message(role="system", content=system))
    for position, message in enumerate(body.messages):
        messages.extend(_map_message(message, position))
    messages = _remind_in_place(messages)
    # Leading `system` turns, and runs of one role, made into what strict chat
    # templates take (see turns.py).
    messages = tidy_turns(messages)
    if not messages:
        raise InvalidRequestError("messages: at least one message is required")
    options: dict[str, Any] = {"num_predict": body.max_tokens}
    if body.temperature is not None:
        options["temperature"] = body.temperature
    if body.top_p is not None:
        options["top_p"] = body.top_p
    if body.top_k is not None:
        options["top_k"] = body.top_k
    if body.stop_sequences:
        options["stop"] = body.stop_sequences
    choice = tool_choice(body)
    tools = [
        _map_tool(tool, i)
        for i, tool in enumerate(body.tools or ())
        if choice.allows(tool.name)
    ]
    if choice.names and not tools:
        raise InvalidRequestError(
            f"tool_choice: no tool named {next(iter(choice.names))!r} in tools"
        )
    return ollama.ChatRequest(
        model=body.model,
        messages=messages,
        tools=tools or None,
        stream=body.stream,
        format=_map_format(body.output_config),
        options=options,
        think=_map_thinking(body.thinking, body.output_config),
    )


def _remind_in_place(messages: list[ollama.Message]) -> list[ollama.Message]:
    """`messages` with each `system` turn that follows the conversation's
    first turn made a user turn of `<system-reminder>` text, where it stands.

    Claude Code sends its notes so ("a.txt was modified by the user or a
    linter ...", the agent types). Joined to the leading system message, each
    new one changed the head of the prompt, so a backend's prefix cache (vLLM,
    llama.cpp, SGLang) had the whole conversation read again, and the note
    came before the turns it is about. As a reminder in a user turn it stays
    where it was sent, as Claude Code sends it to an API that refuses system
    turns (and as its system prompt tells the model to expect); the chat
    templates that take a system message only first take it too. One sent
    between a turn's tool calls and their results comes after the results:
    a turn between them would leave the calls unanswered (see map_messages).
    """
    out: list[ollama.Message] = []
    held: list[ollama.Message] = []
    started = False
    for message in messages:
        if message.role == "system" and started:
            message.role = "user"
            message.content = f"{_REMINDER[0]}{message.content}{_REMINDER[1]}"
            last = out[-1]
            if held or (last.role == "assistant" and last.tool_calls):
                held.append(message)
                continue
        elif message.role != "system":
            started = True
            if held and message.role != "tool":
                out.extend(held)
                held.clear()
        out.append(message)
    out.extend(held)
    return out


def tool_choice(body: anthropic.MessagesRequest) -> ToolChoice:
    """What `tool_choice` asks: `auto` (the default) leaves the model free,
    `none` offers it no tools, `any` requires a call, `tool` requires a call
    of the one it names."""
    choice = body.tool_choice
    if not isinstance(choice, dict):
        return AUTO
    kind = choice.get("type")
    if kind == "none":
        return NONE
    if kind == "any":
        return ToolChoice(required=True)
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequestError("tool_choice.name: a tool name is required")
        return ToolChoice(frozenset({name}), required=True)
    return AUTO


def _map_format(config: anthropic.OutputConfig | None) -> Any:
    """`output_config.format` (`{"type": "json_schema", "schema": ...}`) as
    Ollama's `format`: the schema itself."""
    found = config.format if config is not None else None
    if found is None:
        return None
    if not isinstance(found, dict) or found.get("type") != "json_schema":
        raise InvalidRequestError(
            'output_config.format: only {"type": "json_schema", "schema": {...}} '
            "is supported"
        )
    schema = found.get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequestError("output_config.format.schema must be an object")
    return schema


def _without_billing_header(
    system: str | list[anthropic.ContentBlock] | None,
) -> str | list[anthropic.ContentBlock] | None:
    """The system prompt less Claude Code's billing header (see `_BILLING_HEADER`):
    a block of its own, or the first line of a string."""
    if isinstance(system, str):
        if system.startswith(_BILLING_HEADER):
            return system.partition("\n")[2].lstrip("\n")
        return system
    if system is None:
        return None
    return [
        block
        for block in system
        if not (block.type == "text" and (block.text or "").startswith(_BILLING_HEADER))
    ]


def _system_text(
    system: str | list[anthropic.ContentBlock] | None, where: str = "system"
) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    texts = []
    for i, block in enumerate(system):
        if block.type != "text":
            raise InvalidRequestError(
                f"{where}[{i}]: a system prompt takes text blocks only, "
                f"not {block.type!r}"
            )
        texts.append(block.text or "")
    return _JOIN.join(t for t in texts if t)


def _map_message(message: anthropic.Message, position: int) -> list[ollama.Message]:
    role = message.role
    if isinstance(message.content, str):
        return [ollama.Message(role=role, content=message.content)]
    if role == "system":
        text = _system_text(message.content, f"messages[{position}].content")
        return [ollama.Message(role=role, content=text)] if text else []
    texts: list[str] = []
    images: list[str] = []
    calls: list[ollama.ToolCall] = []
    thinking: list[str] = []
    results: list[ollama.Message] = []
    for i, block in enumerate(message.content):
        where = f"messages[{position}].content[{i}]"
        kind = block.type
        if kind == "text":
            if block.text:
                texts.append(block.text)
        elif kind == "image":
            images.append(_image_data(block, where))
        elif kind == "tool_use" and role == "assistant":
            calls.append(_tool_call(block, where))
        elif kind == "tool_result" and role == "user":
            results.append(_tool_result(block, where))
        elif kind == "thinking" and role == "assistant":
            if block.thinking:
                thinking.append(block.thinking)
        elif kind == "redacted_thinking" and role == "assistant":
            continue  # encrypted by Anthropic: nothing a backend could read
        else:
            raise InvalidRequestError(
                f"{where}: content blocks of type {kind!r} are not supported "
                f"in {role} messages by this gateway"
            )
    out = results
    if texts or images or calls or thinking:
        out.append(
            ollama.Message(
                role=role,
                content=_JOIN.join(texts),
                thinking="".join(thinking) or None,
                images=images or None,
                tool_calls=calls or None,
            )
        )
    return out


def _image_data(block: anthropic.ContentBlock, where: str) -> str:
    source = block.source
    if source is None or source.type != "base64" or not source.data:
        kind = source.type if source is not None else "none"
        # As Ollama: the gateway fetches nothing on a client's behalf.
        raise InvalidRequestError(
            f"{where}: image source type {kind!r} is not supported; "
            "send the image as base64 data"
        )
    return source.data


def _tool_call(block: anthropic.ContentBlock, where: str) -> ollama.ToolCall:
    if not block.id or not block.name:
        raise InvalidRequestError(f"{where}: a tool_use block needs an id and a name")
    arguments = block.input if block.input is not None else {}
    if not isinstance(arguments, dict):
        raise InvalidRequestError(f"{where}: tool_use input must be an object")
    return ollama.ToolCall(
        function=ollama.ToolCallFunction(name=block.name, arguments=arguments),
        id=block.id,
    )


def _tool_result(block: anthropic.ContentBlock, where: str) -> ollama.Message:
    if not block.tool_use_id:
        raise InvalidRequestError(f"{where}: a tool_result block needs a tool_use_id")
    content = block.content
    texts: list[str] = []
    images: list[str] = []
    if isinstance(content, str):
        texts.append(content)
    elif content is not None:
        try:
            blocks = msgspec.convert(content, _to_blocks)
        except msgspec.ValidationError as exc:
            raise InvalidRequestError(f"{where}.content: {exc}") from None
        for i, part in enumerate(blocks):
            if part.type == "text":
                texts.append(part.text or "")
            elif part.type == "image":
                images.append(_image_data(part, f"{where}.content[{i}]"))
            else:
                raise InvalidRequestError(
                    f"{where}.content[{i}]: a tool result takes text and image "
                    f"blocks, not {part.type!r}"
                )
    return ollama.Message(
        role="tool",
        content=_JOIN.join(texts),
        images=images or None,
        tool_call_id=block.tool_use_id,
    )


def _map_tool(tool: anthropic.Tool, position: int) -> msgspec.Raw:
    if tool.type not in (None, "custom"):
        # Server tools (web search, code execution) run on Anthropic's side,
        # and the versioned built-ins (bash, text editor) have schemas only
        # Anthropic's models know: the gateway can do neither.
        raise InvalidRequestError(
            f"tools[{position}]: tool type {tool.type!r} is not supported by "
            "this gateway; only client tools with an input_schema are"
        )
    if not tool.name:
        raise InvalidRequestError(f"tools[{position}]: a tool needs a name")
    spec = _FunctionSpec(
        name=tool.name,
        parameters=tool.input_schema or _ANY_OBJECT,
        description=tool.description,
    )
    return msgspec.Raw(_encode(_FunctionTool(spec)))


def _map_thinking(
    thinking: anthropic.ThinkingConfig | None, config: anthropic.OutputConfig | None
) -> bool | str | None:
    """`think` as Ollama makes it: `enabled` is true and `disabled` false;
    otherwise (`adaptive`, left out, the modes newer than this gateway)
    `output_config.effort` is the level, `xhigh` taken as `high`. Claude Code
    sends `adaptive` with an effort on every request: without it a reasoning
    model ran at its own default whatever effort the user chose."""
    if thinking is not None and thinking.type == "enabled":
        return True
    if thinking is not None and thinking.type == "disabled":
        return False
    effort = config.effort if config is not None else None
    if not effort:
        return None
    # An effort Ollama has no level for (`minimal`, a newer one) is ignored,
    # as Ollama ignores it: the model's own default.
    return _EFFORTS.get(effort.strip().lower())


def history_call_ids(body: anthropic.MessagesRequest) -> set[str]:
    """The tool call ids the conversation has, its calls' and its results':
    an answer's calls must not take one again (see `anthropic_answer`)."""
    found: set[str] = set()
    for message in body.messages:
        if isinstance(message.content, str):
            continue
        for block in message.content:
            ident = block.id if block.type == "tool_use" else block.tool_use_id
            if ident:
                found.add(ident)
    return found


def estimate_input_tokens(
    body: anthropic.MessagesRequest | anthropic.CountTokensRequest,
) -> int:
    """About four characters a token over the text of the request (system,
    messages, tool calls and results, tool definitions), at least one: the
    same estimate Ollama gives, as a backend has no way to count a prompt
    without running it. Images are not counted."""
    size = _text_size(body.system)
    for message in body.messages:
        size += len(message.role) + _text_size(message.content)
    for tool in body.tools or ():
        size += len(tool.name) + len(tool.description or "")
        size += len(tool.input_schema or b"")
    return tokens_for_characters(size)


def _text_size(content: str | list[anthropic.ContentBlock] | None) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content)
    size = 0
    for block in content:
        size += len(block.text or "") + len(block.thinking or "")
        if block.type == "tool_use":
            size += len(block.name or "") + len(_encode(block.input))
        elif block.type == "tool_result":
            size += _result_size(block.content)
    return size


def _result_size(content: Any) -> int:
    """A tool result's size as the JSON it came in, less its images: not
    counted there either, where a screenshot Claude Code read counted as a
    hundred thousand tokens and more."""
    if not isinstance(content, list):
        return len(_encode(content))
    return sum(
        len(_encode(part))
        for part in content
        if not (isinstance(part, dict) and part.get("type") == "image")
    )
