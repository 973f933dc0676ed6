"""What each demo model answers. Pure and deterministic.

`reply()` turns an OpenAI request body into a `Reply` (see `demo_stream`).
The same body always gives the same answer; its `seed` (Ollama
`options.seed`) changes the wording. The model list is in `demo_catalogue`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .demo_catalogue import ERROR_TAGS, FAILURES, MODELS, STATUS_ERRORS, DemoError
from .demo_media import ImageInfo, describe, read_data_url
from .demo_schema import instance
from .demo_stream import Failure, Reply, ToolCall
from .demo_text import clip, long_answer, pick, reasoning_text, words

__all__ = ["reply"]

_BY_ID = {m.id: m for m in MODELS}


@dataclass
class _Request:
    """The parts of an OpenAI body the demo models look at."""

    model: str
    legacy: bool
    messages: list[dict[str, Any]]
    prompt: str
    seed: int | None
    tools: list[dict[str, Any]]
    response_format: dict[str, Any] | None
    thinking: bool
    effort: str
    images: list[ImageInfo] = field(default_factory=list)
    suffix: str = ""
    # Tools were offered with `tool_choice: "none"`.
    calls_refused: bool = False


@dataclass
class _Answer:
    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    failure: Failure | None = None
    formattable: bool = True


def reply(body: dict[str, Any], *, legacy: bool) -> Reply:
    """The answer to a `/chat/completions` (or legacy `/completions`) body."""
    model = str(body.get("model", ""))
    if model not in _BY_ID:
        raise DemoError(404, f"The model `{model}` does not exist or you do not "
                        "have access to it.", code="model_not_found")  # fmt: skip
    if model == "demo-embed":
        raise DemoError(400, "demo-embed is an embedding model and cannot chat")
    base, _, tag = model.partition(":")
    if base == "demo-error" and tag in STATUS_ERRORS:
        status, message, kind, code, headers = STATUS_ERRORS[tag]
        raise DemoError(status, message, kind, code, headers)
    request = _parse(body, model, legacy)
    answer = _BUILDERS[base](request, tag)
    if answer.failure == "midstream" and body.get("stream") is not True:
        raise DemoError(500, f"{model}: the model failed (simulated)", "server_error")
    return _finish(body, request, answer)


def _parse(body: dict[str, Any], model: str, legacy: bool) -> _Request:
    messages = [m for m in _array(body, "messages") if isinstance(m, dict)]
    if legacy:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            prompt = " ".join(map(str, _array(body, "prompt")))
        messages = [{"role": "user", "content": prompt}]
    users = [m for m in messages if m.get("role") == "user"]
    seed = body.get("seed")
    kwargs = body.get("chat_template_kwargs")
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    effort = body.get("reasoning_effort") or kwargs.get("reasoning_effort")
    thinking = effort != "none" and kwargs.get("enable_thinking") is not False
    tools = [t["function"] for t in _array(body, "tools")
             if isinstance(t, dict) and isinstance(t.get("function"), dict)]  # fmt: skip
    # As an OpenAI backend does: the `/v1` relay passes these on as clients
    # sent them, and a client that said "none" got tool calls all the same.
    choice = body.get("tool_choice")
    calls_refused = choice == "none" and bool(tools)
    if calls_refused:
        tools = []
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        named = choice["function"].get("name")
        tools = [t for t in tools if t.get("name") == named]
    if body.get("parallel_tool_calls") is False:
        tools = tools[:1]
    fmt = body.get("response_format")
    images = [read_data_url(str(part.get("image_url", {}).get("url", "")))
              for m in users for part in _parts(m)
              if part.get("type") == "image_url"]  # fmt: skip
    return _Request(
        model=model,
        legacy=legacy,
        messages=messages,
        prompt=_text(users[-1]) if users else "",
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        tools=[] if legacy else tools,
        calls_refused=calls_refused and not legacy,
        response_format=fmt if isinstance(fmt, dict) else None,
        thinking=thinking and not legacy,
        effort=str(effort or "medium"),
        images=images,
        suffix=str(body.get("suffix") or "") if legacy else "",
    )


def _array(body: dict[str, Any], key: str) -> list[Any]:
    """A field that must be an array (or absent), refused as OpenAI refuses it:
    the `/v1` relay hands bodies to the demo backend as clients sent them."""
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise DemoError(
            400,
            f"Invalid type for '{key}': expected an array, "
            f"but got {type(value).__name__} instead.",
            code="invalid_type",
        )
    return value


def _parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, list):
        return [p for p in content if isinstance(p, dict)]
    return [{"type": "text", "text": str(content or "")}]


def _text(message: dict[str, Any]) -> str:
    return " ".join(str(p.get("text", "")) for p in _parts(message)
                    if p.get("type") == "text")  # fmt: skip


_GREETINGS = (
    "Hello! This is the ollama-gateway demo backend.",
    "Hi there, the ollama-gateway demo backend speaking.",
    "Greetings from the demo backend of ollama-gateway.",
    "Hey! You reached the ollama-gateway demo backend.",
    "Good day. The ollama-gateway demo backend answers.",
    "Welcome to the ollama-gateway demo backend.",
    "Ahoy from the ollama-gateway demo backend.",
    "Salut! The ollama-gateway demo backend is listening.",
)


def _echo(request: _Request, tag: str) -> _Answer:
    greeting = pick(_GREETINGS, request.seed, "greeting")
    return _Answer(f"{greeting} You said: {clip(request.prompt)}")


def _long(request: _Request, tag: str) -> _Answer:
    return _Answer(long_answer(request.seed, request.prompt))


def _tools(request: _Request, tag: str) -> _Answer:
    results = _tool_results(request.messages)
    if results:
        listed = "; ".join(f"{name} returned {clip(content, 300)}"
                           for name, content in results)  # fmt: skip
        closing = pick(("That is all I needed.", "Thanks, tools!",
                        "Done, with a little help."), request.seed, "closing")  # fmt: skip
        return _Answer(f"Here is what the tools said: {listed}. {closing}")
    if request.calls_refused:
        return _Answer(
            'I am demo-tools, and tool_choice "none" tells me not to call '
            "any of the tools you offered, so I answer in text."
        )
    if not request.tools:
        return _Answer(
            "I am demo-tools, and you offered me no tools. Offer one and I will "
            "call it with arguments that fit its schema; offer two and I will "
            "call both at once; send their results back and I will answer."
        )
    calls = []
    for index, function in enumerate(request.tools[:2]):
        name = str(function.get("name", ""))
        arguments = instance(function.get("parameters") or {"type": "object"},
                             seed=request.seed)  # fmt: skip
        if not isinstance(arguments, dict):
            arguments = {}
        key = f"{name}|{index}|{request.seed}|{request.prompt}".encode()
        call_id = "call_" + hashlib.blake2b(key, digest_size=6).hexdigest()
        text = json.dumps(arguments, ensure_ascii=False)
        calls.append(ToolCall(call_id, name, text))
    return _Answer(tool_calls=calls)


def _tool_results(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The `tool` messages after the last assistant tool call, with tool names."""
    last = max((i for i, m in enumerate(messages)
                if m.get("role") == "assistant" and m.get("tool_calls")), default=-1)  # fmt: skip
    after = messages[last + 1 :]
    if last < 0 or not after or any(m.get("role") != "tool" for m in after):
        return []
    names = {c.get("id"): c.get("function", {}).get("name", "a tool")
             for c in messages[last]["tool_calls"] if isinstance(c, dict)}  # fmt: skip
    return [(str(names.get(m.get("tool_call_id"), m.get("name") or "a tool")),
             _text(m)) for m in after]  # fmt: skip


_THOUGHTFUL = ("After thinking it over:", "Having thought about it:",
               "My considered answer:")  # fmt: skip
_UNTHOUGHTFUL = ("Without thinking first:", "Straight away:", "Off the cuff:")


def _think(request: _Request, tag: str) -> _Answer:
    if not request.thinking:
        lead = pick(_UNTHOUGHTFUL, request.seed, "lead")
        return _Answer(f"{lead} you said “{clip(request.prompt)}”.")
    reasoning = reasoning_text(request.prompt, request.effort, request.seed)
    lead = pick(_THOUGHTFUL, request.seed, "lead")
    return _Answer(f"{lead} you said “{clip(request.prompt)}”.", reasoning)


def _json(request: _Request, tag: str) -> _Answer:
    if _format_of(request) is None:
        return _Answer(
            'I am demo-json. Ask with `format: "json"` for a JSON object, or '
            "with `format` set to a JSON schema for JSON that validates against "
            "it. Without a format I answer in plain text, like this."
        )
    return _Answer("")  # filled in by _finish


def _vision(request: _Request, tag: str) -> _Answer:
    return _Answer(describe(request.images))


def _error(request: _Request, tag: str) -> _Answer:
    if tag in FAILURES:
        failure, what = FAILURES[tag]
        return _Answer(f"This is demo-error:{tag}: {what}", failure=failure,
                       formattable=False)  # fmt: skip
    tags = ", ".join(f"demo-error:{t}" for t in ERROR_TAGS)
    return _Answer(
        "I am demo-error. Ask for one of these models to see a failure: "
        f"{tags}. The numbers are HTTP statuses before the stream; drop, "
        "midstream, stall and invalid break the stream after it started.",
        formattable=False,
    )


def _code(request: _Request, tag: str) -> _Answer:
    """The middle between the prompt and the suffix: says what it joins."""
    if not request.legacy:
        return _Answer("demo-code fills in the middle: use /api/generate with "
                       "a suffix, or raw: true.")  # fmt: skip
    before = request.prompt.rstrip().rsplit("\n", 1)[-1]
    after = request.suffix.lstrip().split("\n", 1)[0]
    return _Answer(f"# demo-code: between {clip(before)!r} and {clip(after)!r}")


_BUILDERS: dict[str, Callable[[_Request, str], _Answer]] = {
    "demo": _echo, "demo-long": _long, "demo-tools": _tools, "demo-think": _think,
    "demo-json": _json, "demo-vision": _vision, "demo-error": _error,
    "demo-code": _code,
}  # fmt: skip


def _format_of(request: _Request) -> str | None:
    """The JSON text the response format asks for, or None for free text."""
    fmt = request.response_format
    kind = fmt.get("type") if fmt else None
    if kind == "json_schema" and fmt is not None:
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if isinstance(schema, dict):
            return json.dumps(instance(schema, seed=request.seed), indent=2,
                              ensure_ascii=False)  # fmt: skip
        kind = "json_object"
    if kind == "json_object":
        answer = pick(("Hello from demo-json.", "JSON mode works.", "All good."),
                      request.seed, "json")  # fmt: skip
        value = {"model": request.model, "you_said": clip(request.prompt),
                 "words": len(request.prompt.split()), "answer": answer}  # fmt: skip
        return json.dumps(value, indent=2, ensure_ascii=False)
    return None


_MARKER = re.compile(
    r"demo:(tokens_per_second|first_token_delay)\s*=\s*(\d+(?:\.\d*)?)"
)


def _finish(body: dict[str, Any], request: _Request, answer: _Answer) -> Reply:
    text = answer.text
    formatted = _format_of(request) if answer.formattable else None
    if formatted is not None and not answer.tool_calls:
        text = formatted
    text = _apply_stop(text, body.get("stop"))
    reasoning = words(answer.reasoning) if request.thinking else []
    content = words(text)
    calls = [] if request.legacy else answer.tool_calls
    finish = "tool_calls" if calls else "stop"
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    if isinstance(limit, int) and len(reasoning) + len(content) > limit > 0:
        reasoning = reasoning[:limit]
        content = content[: limit - len(reasoning)]
        calls, finish = [], "length"
    logprobs = _logprobs(body, request.legacy)
    options = body.get("stream_options")
    pacing = {name: float(value) for name, value in _MARKER.findall(
        " ".join(_text(m) for m in request.messages
                 if m.get("role") in ("system", "user")))}  # fmt: skip
    return Reply(
        model=request.model,
        content=content,
        reasoning=reasoning,
        tool_calls=calls,
        finish_reason=finish,
        prompt_tokens=max(1, sum(len(_text(m).split()) for m in request.messages)),
        legacy=request.legacy,
        include_usage=isinstance(options, dict)
        and options.get("include_usage") is True,
        logprobs=logprobs,
        failure=answer.failure,
        tokens_per_second=pacing.get("tokens_per_second"),
        first_token_delay=pacing.get("first_token_delay"),
    )


def _logprobs(body: dict[str, Any], legacy: bool) -> int | None:
    """How many alternatives per token the body asks for; None: no logprobs."""
    asked = body.get("logprobs")
    if legacy:
        return asked if isinstance(asked, int) and not isinstance(asked, bool) else None
    if asked is not True:
        return None
    top = body.get("top_logprobs")
    return top if isinstance(top, int) and not isinstance(top, bool) else 0


def _apply_stop(text: str, stop: Any) -> str:
    """The text up to the first stop string (which is not included)."""
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    found = [text.find(s) for s in stops if isinstance(s, str) and s and s in text]
    return text[: min(found)] if found else text
