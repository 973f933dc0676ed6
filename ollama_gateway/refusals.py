"""The optional request fields a backend's refusal names as ones it does not take.

Third-party OpenAI-compatible APIs validate a chat body more strictly than
OpenAI's, and refuse a whole request for one field they do not know, where
Ollama answers whatever options it is given:

- Mistral's API refuses `stream_options` (which the gateway sends on every
  stream for its token counts) with a 422, pydantic's "extra_forbidden":
  `{"loc": ["body", "stream_options", "include_usage"], "msg": "Extra inputs
  are not permitted"}`; vLLM words its own the same way.
- Gemini's OpenAI-compatible endpoint refuses `seed` and `frequency_penalty`
  with a 400 `Invalid JSON payload received. Unknown name "seed": Cannot find
  field.`
- DeepSeek's reasoner refused the sampling options with a 400
  "deepseek-reasoner does not support the parameter `temperature`", and
  OpenRouter passes on the OpenAI wording for a model that refuses one,
  "Unsupported parameter: 'frequency_penalty' is not supported with this
  model."

Only fields whose absence leaves the request answerable are dropped: sampling
options, the usage request of a stream, reasoning controls. Never `messages`,
`tools`, `response_format`, `stop` or the output limit (the latter has its own
rule), nor `logprobs`, which the client asked for to read them.
"""

from __future__ import annotations

import re

__all__ = ["DROPPABLE", "amend", "refused_fields"]

DROPPABLE = frozenset(
    {
        "stream_options",
        "seed",
        "temperature",
        "top_p",
        "frequency_penalty",
        "presence_penalty",
        "top_k",
        "min_p",
        "typical_p",
        "repeat_last_n",
        "repeat_penalty",
        "repetition_penalty",
        "reasoning_effort",
        "chat_template_kwargs",
        "parallel_tool_calls",
    }
)

# Each names a field of the body's top level only: Gemini's and Groq's
# refusals of a nested key say where ("Unknown name "const" at 'tools[0]…'",
# "'messages.0' : property 'id' is unsupported"), and they do not match.
_NAMED = re.compile(
    # Pydantic's validation error as the gateway words it (Mistral's 422).
    r"\bbody\.(\w+)[\w.]*: Extra inputs are not permitted"
    # The same error as JSON (escaped inside a string) or a Python repr (vLLM).
    r"""|extra_forbidden\\?['"]\s*,\s*\\?['"]loc\\?['"]\s*:\s*[\[(]\s*"""
    r"""\\?['"]body\\?['"]\s*,\s*\\?['"](\w+)"""
    # Google's (Gemini).
    r'|Unknown name \\?"(\w+)\\?": Cannot find field'
    # DeepSeek's.
    r"|does not support the parameter `(\w+)`"
    # OpenAI's, as OpenRouter and proxies pass it on.
    r"|Unsupported parameter: '(\w+)'|Unknown parameter: '(\w+)'"
    # Groq's.
    r"|(?<!' : )property '(\w+)' is unsupported"
    # xAI's, in camelCase: "Argument not supported on this model:
    # presencePenalty", "Model grok-4 does not support parameter reasoningEffort".
    r"|Argument not supported(?: on this model)?: (\w+)"
    r"|does not support parameter (\w+)"
)
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])([A-Z])")
# Hugging Face's text-generation-inference takes a top_p below 1 only (422
# "Input validation error: `top_p` must be > 0.0 and < 1.0"); 1 is no
# nucleus cut at all, as its default is.
_TOP_P_BELOW_1 = "`top_p` must be > 0.0 and < 1.0"
# LM Studio takes a `response_format` of "json_schema" or "text" only (400
# "'response_format.type' must be 'json_schema' or 'text'"): JSON mode goes
# to it as the schema of any object, which Ollama's JSON mode is.
_SCHEMA_ONLY = "'response_format.type' must be 'json_schema'"
_ANY_OBJECT = {"type": "object"}
# Fireworks answers a larger output limit only as a stream (400 "Requests
# with max_tokens > 4096 must have stream=true"): a whole answer asked for
# (`stream_upstream = "as-client"`) is asked for as a stream instead, which
# the gateway reads as well.
_STREAM_ONLY = "must have stream=true"
# The most stop sequences a refusal allows: OpenAI's 4 (behind a name the
# gateway does not know as OpenAI's, see `openai_hosted`), Gemini's 5 (Continue
# sends its templates' 5 to 9). Ollama takes any number.
_STOP_LIMIT = re.compile(
    r"Invalid 'stop': array too long\. Expected an array with maximum length (\d+)"
    r"|number of stop_sequences must not exceed (\d+)"
)
# Vertex's wording of Gemini's, with the bound exclusive.
_STOP_BELOW = re.compile(
    r"stopSequences value of \d+ but the supported range is from 1 \(inclusive\) "
    r"to (\d+) \(exclusive\)"
)


def refused_fields(message: str) -> frozenset[str]:
    """The droppable fields `message` (a backend's refusal) names; empty if
    it names none. Called on a refusal only, never on an answered request."""
    named = {
        _CAMEL_HUMP.sub(r"_\1", next(group for group in match.groups() if group))
        for match in _NAMED.finditer(message)
    }
    return DROPPABLE.intersection(name.lower() for name in named)


def amend(body: dict[str, object], message: str) -> bool:
    """Change `body` (a chat request the backend refused with `message`) into
    one it takes and Ollama would answer alike; whether anything changed."""
    dropped = [body.pop(name) for name in refused_fields(message) if name in body]
    if _TOP_P_BELOW_1 in message and body.get("top_p") == 1:
        dropped.append(body.pop("top_p"))
    stop = body.get("stop")
    limit = _stop_limit(message)
    if isinstance(stop, list) and 0 < limit < len(stop):
        body["stop"] = stop[:limit]
        dropped.append(stop[limit:])
    if _STREAM_ONLY in message and body.get("stream") is False:
        body["stream"] = True
        dropped.append(False)
    fmt = body.get("response_format")
    if _SCHEMA_ONLY in message and isinstance(fmt, dict):
        if fmt.get("type") == "json_object":
            schema = fmt.get("schema", _ANY_OBJECT)
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "schema", "schema": schema},
            }
            return True
    return bool(dropped)


def _stop_limit(message: str) -> int:
    """The most stop sequences `message` allows; 0 if it says nothing of them."""
    match = _STOP_LIMIT.search(message)
    if match is not None:
        return int(match.group(1) or match.group(2))
    below = _STOP_BELOW.search(message)
    return int(below.group(1)) - 1 if below is not None else 0
