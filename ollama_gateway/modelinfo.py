"""What a model is: capabilities, family and context length, from config or guessed.

Configured values always win. Otherwise backend metadata is used where a backend
offers it (vLLM `max_model_len`, OpenRouter `context_length`, LiteLLM
`max_input_tokens` and `mode`, OpenRouter `architecture` and
`supported_parameters`, llama.cpp's `meta`, a LiteLLM proxy's `/model/info`
when it is read), and the id is read for well-known names last.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ollama_gateway.schemas import ollama, openai
from ollama_gateway.settings import ModelSettings

__all__ = [
    "LiteLLMInfo",
    "ModelEntry",
    "details_of",
    "digest_of",
    "guess_capabilities",
    "guess_family",
    "is_usable_name",
    "litellm_infos",
    "model_meta",
    "parameter_size_of",
    "registry_name",
    "tagged",
]

_EMBED = re.compile(r"embed|(^|[/_-])(bge|gte|e5|minilm|mxbai)([_-]|$)", re.I)
# Reasoning families by name: the o-series, GPT-5, gpt-oss, DeepSeek-R1 (and
# its distills), DeepSeek-V3.1 and later (hybrid), QwQ and Qwen3, Magistral,
# GLM-4.5 and later (and Z1), Gemini 2.5 and later, Grok 3 mini and Grok 4 on,
# Claude 3.7 and 4 on (as OpenRouter and LiteLLM name them), Granite 3.2
# and 3.3, and any model named a thinker. Not their predecessors: gpt-4o,
# deepseek-v3(-0324), qwen2.5, gemini-2.0-flash, grok-2, glm-4, claude-3.5,
# granite-3.1.
_THINK = re.compile(
    r"(^|[/_-])(o1|o3|o4|gpt-5|gpt-oss|deepseek-r1|r1|qwq|qwen3|magistral|"
    r"deepseek-(chat-)?v3\.[1-9]|deepseek-v[4-9]|glm-4\.[5-9]v?|glm-[5-9]|"
    r"glm-z1|gemini-2\.5|gemini-[3-9]|grok-3-mini|grok-[4-9]|grok-code|"
    r"claude-3[.-]7|claude-(opus|sonnet|haiku)-[4-9]|claude-[4-9]|granite-3\.[23]|"
    r"reasoner|thinking|think|reasoning)([._:-]|$)",
    re.I,
)
# Names of the same families that do not reason: xAI's `-non-reasoning`
# variants, gpt-5-chat (it refuses `reasoning_effort`), Qwen3's Instruct
# (2507, VL, Next) and Coder models (no thinking mode), Gemini's image and
# speech models.
_NO_THINK = re.compile(
    r"non-reasoning|no-?think|gpt-5-chat|"
    r"qwen3-[^/]*(instruct|coder)|gemini-[^/]*-(image|tts)",
    re.I,
)
# Also the reasoning families that see: o1, o3 (and pro), o4-mini (not
# o1-mini, o1-preview, o3-mini), Grok 4 on, GLM-4.5V and later V models.
# "-vl" and "-vlm" see; "-vllm" names the server a model was served by.
_VISION = re.compile(
    r"gpt-4o|gpt-4\.1|gpt-5|vision|"
    r"(^|[/_-])(vl(?!lm)|llava|pixtral|gemma-?3|claude|gemini)|"
    r"(^|/)(o1|o3|o3-pro|o4-mini)(-\d{4}-\d{2}-\d{2}|-high)?$|grok-[4-9]|glm-4\.\d+v",
    re.I,
)
# LiteLLM's `mode`s of the models that answer chat completions.
_CHAT_MODES = frozenset({"chat", "completion", "responses"})
_FAMILIES = (
    "llama", "qwen3", "qwen2", "qwen", "gemma3", "gemma2", "gemma", "mistral",
    "mixtral", "phi3", "phi", "deepseek", "granite", "command-r", "gpt-oss", "gpt",
    "claude", "gemini", "nomic-bert", "bert",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model of the catalogue, as listed and as sent upstream."""

    name: str
    upstream_id: str
    backends: tuple[str, ...]
    capabilities: tuple[str, ...]
    family: str
    context_length: int
    embedding_length: int
    parameter_size: str
    quantization_level: str
    size: int
    modified_at: str
    digest: str
    remote_host: str
    hidden: bool = False
    alias_of: str = ""
    # Each backend's own id for the model, in `backends` order, where they
    # differ (one lists `Llama3`, another `llama3:latest`); empty when
    # `upstream_id` is every backend's.
    upstream_ids: tuple[str, ...] = ()

    @property
    def backend(self) -> str:
        return self.backends[0]

    def upstream_id_on(self, backend: str) -> str:
        """The id to send `backend` for this model."""
        for name, model_id in zip(self.backends, self.upstream_ids, strict=False):
            if name == backend:
                return model_id
        return self.upstream_id

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities


@dataclass(frozen=True, slots=True)
class LiteLLMInfo:
    """What a LiteLLM proxy's `/model/info` says of one model name. None (and
    0) where it does not know, so the guess stays."""

    mode: str | None = None
    context_length: int = 0
    tools: bool | None = None
    vision: bool | None = None
    thinking: bool | None = None


def litellm_infos(
    deployments: list[openai.LiteLLMDeployment],
) -> dict[str, LiteLLMInfo]:
    """Per model name, its deployments' `model_info` taken together.

    Deployments of one name stand for one model that LiteLLM balances over
    (the same model at two providers or regions), and a null or false on one
    is mostly LiteLLM not knowing that deployment's own model name. So a
    capability counts if any deployment has it, and is false only if one says
    false and none says true. The context length is the smallest known: a
    request may reach any of them.
    """
    grouped: dict[str, list[openai.LiteLLMModelInfo]] = {}
    for deployment in deployments:
        name, info = deployment.model_name, deployment.model_info
        if isinstance(name, str) and info is not None:
            grouped.setdefault(name, []).append(info)
    return {name: _merge_infos(infos) for name, infos in grouped.items()}


def _merge_infos(infos: list[openai.LiteLLMModelInfo]) -> LiteLLMInfo:
    modes = [i.mode for i in infos if isinstance(i.mode, str) and i.mode]
    # A chat mode first: a name with a chat deployment answers chats.
    modes.sort(key=lambda mode: mode not in _CHAT_MODES)
    lengths = [
        i.max_input_tokens
        for i in infos
        if isinstance(i.max_input_tokens, int)
        and not isinstance(i.max_input_tokens, bool)
        and i.max_input_tokens > 0
    ]
    return LiteLLMInfo(
        mode=modes[0] if modes else None,
        context_length=min(lengths, default=0),
        tools=_any_flag(i.supports_function_calling for i in infos),
        vision=_any_flag(i.supports_vision for i in infos),
        thinking=_any_flag(i.supports_reasoning for i in infos),
    )


def _any_flag(values: Iterable[Any]) -> bool | None:
    """True if any value is true, False if one is false and none true, None
    when all are null (or not booleans)."""
    flags = [v for v in values if isinstance(v, bool)]
    return any(flags) if flags else None


# Ollama's longest name: host (350), namespace, model and tag (80 each) and
# their separators. A copy's destination is kept in memory and in the aliases
# file, rewritten whole on every change: unbounded, 20 copies of 5 MB names
# made a 100 MB file.
MAX_NAME_LENGTH = 350 + 1 + 80 + 1 + 80 + 1 + 80


def is_usable_name(name: str) -> bool:
    """Whether a name can be typed back in a request: non-empty, no longer
    than Ollama allows, no whitespace or control characters. (Ollama's own
    grammar is stricter; names such as upstream ids with several `/` must
    keep working here.)"""
    return 0 < len(name) <= MAX_NAME_LENGTH and not any(
        c.isspace() or not c.isprintable() for c in name
    )


def tagged(name: str) -> str:
    """The name with `:latest` when it has no tag after its last `/`."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def registry_name(name: str) -> str:
    """The full name Ollama's capability errors spell out (its `ParseName`
    then `String`): `test` is `registry.ollama.ai/library/test:latest`,
    `user/m:q4` is `registry.ollama.ai/user/m:q4`; a name that already names
    a host (three parts or more) keeps it."""
    if "@" in name:
        return name  # a digest reference: Ollama prints it as it came
    path, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        path, tag = name, "latest"
    parts = path.partition("://")[2].split("/") if "://" in path else path.split("/")
    if len(parts) == 1:
        parts = ["registry.ollama.ai", "library", *parts]
    elif len(parts) == 2:
        parts = ["registry.ollama.ai", *parts]
    return "/".join(parts) + ":" + tag


def digest_of(upstream_id: str) -> str:
    """A stable 64-hex digest for a model that has no blob of its own."""
    return hashlib.sha256(upstream_id.encode()).hexdigest()


def guess_family(model_id: str, configured: str = "") -> str:
    if configured:
        return configured
    base = model_id.rsplit("/", 1)[-1].lower()
    for family in _FAMILIES:
        if base.startswith(family) or f"-{family}" in base:
            return family.replace("-", "")
    word = re.match(r"[a-z]+", base)
    return word.group(0) if word else ""


def guess_capabilities(
    model_id: str,
    settings: ModelSettings | None,
    meta: openai.ModelObject | None,
    info: LiteLLMInfo | None = None,
) -> tuple[str, ...]:
    """The model's Ollama capabilities: configured, else what its backend
    says (a LiteLLM `/model/info` true or false decides), else guessed."""
    if settings is not None and settings.capabilities is not None:
        return tuple(settings.capabilities)
    mode = meta.mode if meta is not None and isinstance(meta.mode, str) else None
    if info is not None and info.mode is not None:
        mode = info.mode
    if mode == "embedding" or (mode is None and _EMBED.search(model_id)):
        return ("embedding",)
    if mode is not None and mode not in _CHAT_MODES:
        # LiteLLM also lists image, speech, transcription and rerank models:
        # none answers a chat, a generate or an embed.
        return ()
    params = _supported_parameters(meta)
    tools = params is None or "tools" in params
    vision = _accepts_images(meta) or (
        (meta is None or meta.architecture is None) and bool(_VISION.search(model_id))
    )
    thinking = _thinks(model_id) or (params is not None and "reasoning" in params)
    if info is not None:
        tools = _known(info.tools, tools)
        vision = _known(info.vision, vision)
        thinking = _known(info.thinking, thinking)
    caps = ["completion"]
    if tools:
        caps.append("tools")
    if vision:
        caps.append("vision")
    if thinking:
        caps.append("thinking")
    if params is not None and "suffix" in params:
        caps.append("insert")  # it takes a suffix: fill-in-the-middle
    return tuple(caps)


def _thinks(model_id: str) -> bool:
    """Whether the id names a reasoning model (see _THINK and _NO_THINK)."""
    return bool(_THINK.search(model_id)) and not _NO_THINK.search(model_id)


def _known(said: bool | None, guessed: bool) -> bool:
    return guessed if said is None else said


def context_length_of(
    settings: ModelSettings | None,
    meta: openai.ModelObject | None,
    info: LiteLLMInfo | None = None,
) -> int:
    if settings is not None and settings.context_length:
        return settings.context_length
    listed = (
        (meta.max_model_len, meta.context_length, meta.max_input_tokens)
        if meta is not None
        else ()
    )
    for value in listed:
        if _is_positive_int(value):
            return int(value)
    # `/model/info` only when the model list said nothing: both come from
    # the same LiteLLM, and its list speaks for the name clients use.
    if info is not None and info.context_length:
        return info.context_length
    return model_meta(meta).n_ctx_train


def _is_positive_int(value: Any) -> bool:
    """Whether a backend's number can be a context length: a float, a string,
    a bool or a -1 (for "unknown") is not one, so the next source is read."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


_NO_META = openai.ModelMeta()


def model_meta(meta: openai.ModelObject | None) -> openai.ModelMeta:
    """llama.cpp's `meta` of a model; zeros when there is none or it is of
    another shape."""
    raw = meta.meta if meta is not None else None
    if not isinstance(raw, dict):
        return _NO_META
    # Field by field: one odd value (`n_params: 8e9`, `size: "4GB"`) must not
    # take `n_ctx_train`, the context length, away with it.
    return openai.ModelMeta(
        n_ctx_train=_count(raw.get("n_ctx_train")),
        n_embd=_count(raw.get("n_embd")),
        n_params=_count(raw.get("n_params")),
        size=_count(raw.get("size")),
    )


def _count(value: Any) -> int:
    return int(value) if _is_positive_int(value) else 0


def parameter_size_of(count: int) -> str:
    """A parameter count as Ollama writes it in `details.parameter_size`:
    `8.0B`, `494.03M`, `137M`, `22K` (empty for none)."""
    if count <= 0:
        return ""
    for unit, scale, decimals in (("B", 10**9, 1), ("M", 10**6, 2)):
        if count >= scale:
            if count % scale == 0:
                return f"{count // scale}{unit}"
            return f"{count / scale:.{decimals}f}{unit}"
    if count >= 1000:
        return f"{count / 1000:.0f}K"
    return str(count)


def _supported_parameters(meta: openai.ModelObject | None) -> list[str] | None:
    if meta is None or not isinstance(meta.supported_parameters, list):
        return None
    return [p for p in meta.supported_parameters if isinstance(p, str)]


def _accepts_images(meta: openai.ModelObject | None) -> bool:
    arch = meta.architecture if meta is not None else None
    if not isinstance(arch, dict):
        return False
    modalities = arch.get("input_modalities")
    return isinstance(modalities, list) and "image" in modalities


def details_of(entry: ModelEntry) -> ollama.ModelDetails:
    """The `details` object that tags, show and ps give for a model."""
    return ollama.ModelDetails(
        parent_model="",
        format="gguf",
        family=entry.family,
        families=[entry.family] if entry.family else None,
        parameter_size=entry.parameter_size,
        quantization_level=entry.quantization_level,
    )
