"""A Responses API request (`POST /v1/responses`) as an Ollama chat request.

As Ollama does for `/v1/responses`: `instructions` and system or developer
messages are the system prompt, `function_call` items the assistant's tool
calls, `function_call_output` items tool results, `reasoning` items the
thinking of the turn they precede; `max_output_tokens` is `num_predict`,
`reasoning.effort` is `think`, `text.format` is `format`. What cannot be
served (remote images, files, background runs) is a 400 that names the field.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from ollama_gateway.errors import InvalidRequestError
from ollama_gateway.schemas import ollama, responses
from ollama_gateway.tool_choice import AUTO, NONE, ToolChoice
from ollama_gateway.turns import tidy_turns

__all__ = ["ParamError", "history_call_ids", "map_request", "namespaces", "tool_choice"]

_ROLES = frozenset({"user", "assistant", "system", "developer"})
# Ollama's levels, plus OpenAI's that it lacks mapped to the nearest one.
_EFFORTS: dict[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "max",
}
_EMPTY_PARAMETERS = {"type": "object", "properties": {}}
_decode_arguments = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class ParamError(InvalidRequestError):
    """A 400 (or `status`) that names the request field at fault (OpenAI's
    `param`), with OpenAI's `code` where it has one."""

    def __init__(
        self, message: str, param: str, *, status: int = 400, code: str | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.param = param
        self.code = code


def map_request(
    body: responses.ResponsesRequest, items: list[responses.InputItem]
) -> ollama.ChatRequest:
    """The chat request for a Responses request whose conversation is `items`
    (raises a 400 for what cannot be served)."""
    if body.background:
        raise ParamError("background responses are not supported", "background")
    if body.conversation is not None:
        raise ParamError(
            "conversation is not supported: send the whole conversation in input",
            "conversation",
        )
    messages: list[ollama.Message] = []
    if body.instructions:
        messages.append(ollama.Message(role="system", content=body.instructions))
    messages.extend(_map_items(items))
    # Codex's two developer messages, its user messages in a row: made into
    # what strict chat templates take (see turns.py).
    messages = tidy_turns(messages)
    if not messages:
        raise ParamError("input is required", "input")
    options: dict[str, Any] = {}
    if body.max_output_tokens is not None:
        options["num_predict"] = body.max_output_tokens
    if body.temperature is not None:
        options["temperature"] = body.temperature
    if body.top_p is not None:
        options["top_p"] = body.top_p
    choice = tool_choice(body)
    tools = _map_tools(body.tools or [], choice)
    if choice.required and choice.names and not tools:
        raise ParamError(
            f"tool_choice: no function named {next(iter(choice.names))!r} in tools",
            "tool_choice",
        )
    return ollama.ChatRequest(
        model=body.model,
        messages=messages,
        tools=tools or None,
        stream=body.stream is True,
        format=_map_format(body.text),
        options=options or None,
        think=_map_effort(body.reasoning),
    )


def _map_items(items: list[responses.InputItem]) -> list[ollama.Message]:
    messages: list[ollama.Message] = []
    # A reasoning item's text goes with the assistant turn that follows it.
    thinking: str | None = None
    for position, item in enumerate(items):
        where = f"input[{position}]"
        kind = item.type or ("message" if item.role else "")
        if kind == "message":
            role = item.role or ""
            if role not in _ROLES:
                raise ParamError(
                    f"{where}.role must be user, assistant, system or developer",
                    f"{where}.role",
                )
            text, images = _map_content(item.content, f"{where}.content")
            message = ollama.Message(
                role="system" if role == "developer" else role,
                content=text,
                images=images or None,
            )
            if role == "assistant" and thinking:
                message.thinking, thinking = thinking, None
            messages.append(message)
        elif kind == "function_call":
            if not item.name:
                raise ParamError(f"{where}.name is required", f"{where}.name")
            call = ollama.ToolCall(
                id=item.call_id or None,
                function=ollama.ToolCallFunction(
                    name=item.name, arguments=_map_arguments(item.arguments)
                ),
            )
            last = messages[-1] if messages else None
            if last is None or last.role != "assistant":
                last = ollama.Message(role="assistant", content="")
                messages.append(last)
            # Calls made in one turn are one assistant message, as chat has it.
            last.tool_calls = [*(last.tool_calls or ()), call]
            if thinking:
                last.thinking, thinking = thinking, None
        elif kind == "function_call_output":
            text, images = _map_content(item.output, f"{where}.output")
            messages.append(
                ollama.Message(
                    role="tool",
                    content=text,
                    images=images or None,
                    tool_call_id=item.call_id or None,
                )
            )
        elif kind == "reasoning":
            parts = item.summary or (
                item.content if isinstance(item.content, list) else []
            )
            thinking = "".join(p.text or "" for p in parts) or None
        else:
            raise ParamError(
                f"{where}: unsupported input item type {kind!r}", f"{where}.type"
            )
    return messages


def history_call_ids(items: list[responses.InputItem]) -> set[str]:
    """The call ids the conversation has, its calls' and their outputs': an
    answer's calls must not take one again (see `ResponseBuilder`)."""
    return {
        item.call_id
        for item in items
        if item.call_id and item.type in ("function_call", "function_call_output")
    }


def _map_content(
    content: str | list[responses.ContentPart] | None, where: str
) -> tuple[str, list[str]]:
    """The text and base64 images of a message's content or a tool's output."""
    if content is None or isinstance(content, str):
        return content or "", []
    texts: list[str] = []
    images: list[str] = []
    for position, part in enumerate(content):
        kind = part.type
        if kind in ("input_text", "output_text", "text"):
            texts.append(part.text or "")
        elif kind == "refusal":
            texts.append(part.refusal or "")
        elif kind == "input_image":
            images.append(_image_data(part, f"{where}[{position}]"))
        elif kind == "input_file":
            raise ParamError(
                "file inputs are not supported", f"{where}[{position}].type"
            )
        else:
            raise ParamError(
                f"{where}[{position}]: unsupported content type {kind!r}",
                f"{where}[{position}].type",
            )
    return "".join(texts), images


def _image_data(part: responses.ContentPart, where: str) -> str:
    url = part.image_url
    if not url:
        # A file_id names an upload to OpenAI's Files API, unknown here.
        raise ParamError(
            "input_image needs an image_url with a base64 data URL "
            "(file_id is not supported)",
            f"{where}.image_url",
        )
    head, comma, data = url.partition(",")
    if not url.startswith("data:") or not comma or not head.endswith(";base64"):
        raise ParamError(
            "image URLs are not supported: send the image as a base64 data URL "
            "(data:image/png;base64,...)",
            f"{where}.image_url",
        )
    return data


def _map_arguments(arguments: str | None) -> Any:
    """A call's JSON arguments as the object Ollama's messages hold; text that
    is not a JSON object is passed on as it is."""
    if not arguments:
        return {}
    try:
        value = _decode_arguments(arguments)
    except msgspec.DecodeError:
        return arguments
    return value if isinstance(value, dict) else arguments


def tool_choice(body: responses.ResponsesRequest) -> ToolChoice:
    """What `tool_choice` asks: `auto` (the default) leaves the model free,
    `none` offers it no tools, `required` requires a call, a named function a
    call of that one, `allowed_tools` narrows the choice to those it lists.
    A built-in tool's type (`web_search`, ...) names nothing offered here:
    the model is left free."""
    choice = body.tool_choice
    if choice == "none":
        return NONE
    if choice == "required":
        return ToolChoice(required=True)
    if not isinstance(choice, dict):
        return AUTO
    kind = choice.get("type")
    if kind == "function":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise ParamError("tool_choice.name is required", "tool_choice.name")
        return ToolChoice(frozenset({name}), required=True)
    if kind == "allowed_tools":
        listed = choice.get("tools")
        names = frozenset(
            t["name"]
            for t in (listed if isinstance(listed, list) else ())
            if isinstance(t, dict)
            and t.get("type") == "function"
            and isinstance(t.get("name"), str)
        )
        return ToolChoice(names, required=choice.get("mode") == "required")
    return AUTO


def _map_tools(tools: list[responses.Tool], choice: ToolChoice) -> list[msgspec.Raw]:
    mapped: list[msgspec.Raw] = []
    for where, tool, _ in _functions(tools):
        if not choice.allows(tool.name):
            continue
        if not tool.name:
            raise ParamError(f"{where}.name is required", f"{where}.name")
        function: dict[str, Any] = {"name": tool.name}
        if tool.description:
            function["description"] = tool.description
        function["parameters"] = (
            tool.parameters if tool.parameters is not None else _EMPTY_PARAMETERS
        )
        mapped.append(msgspec.Raw(_encode({"type": "function", "function": function})))
    return mapped


def _functions(
    tools: list[responses.Tool],
) -> Iterator[tuple[str, responses.Tool, str | None]]:
    """The function tools the model is offered, with where each stands and
    its namespace: those at the top, then those of each `namespace` group
    under their plain names (a chat tool has none; the answer puts it back,
    see `namespaces`). Other types are built-in tools (web_search, ...):
    nothing here runs them."""
    top = set()
    for position, tool in enumerate(tools):
        if tool.type == "function":
            top.add(tool.name)
            yield f"tools[{position}]", tool, None
    for position, tool in enumerate(tools):
        if tool.type != "namespace":
            continue
        for inner, member in enumerate(tool.tools or ()):
            # A name a top-level function has would make two tools of one.
            if member.type == "function" and member.name not in top:
                yield f"tools[{position}].tools[{inner}]", member, tool.name


def namespaces(tools: list[responses.Tool] | None) -> dict[str, str]:
    """The namespace of each namespaced function the model is offered, by
    name: a call of one goes back to the client with it (Codex runs it only
    so)."""
    found: dict[str, str] = {}
    for _, tool, namespace in _functions(tools or []):
        if namespace and tool.name:
            found.setdefault(tool.name, namespace)
    return found


def _map_format(text: responses.TextConfig | None) -> Any:
    fmt = text.format if text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return "json"
    if fmt.type == "json_schema":
        if not isinstance(fmt.schema, dict):
            raise ParamError(
                "text.format.schema must be a JSON Schema object",
                "text.format.schema",
            )
        return fmt.schema
    raise ParamError(
        f"unsupported text.format type {fmt.type!r} (text, json_object or json_schema)",
        "text.format.type",
    )


def _map_effort(reasoning: responses.Reasoning | None) -> bool | str | None:
    effort = reasoning.effort if reasoning is not None else None
    if effort is None:
        return None
    think = _EFFORTS.get(effort)
    if think is None:
        raise ParamError(
            f'invalid reasoning value: "{effort}" (must be "high", "medium", '
            '"low", "max", or "none")',
            "reasoning.effort",
        )
    return think
