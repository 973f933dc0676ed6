"""Settings: one frozen Struct tree, read from the environment, a TOML file and flags.

This module is the only reader of `os.environ`. Precedence, lowest first: built-in
defaults, the TOML file named by `OLLAMA_GATEWAY_CONFIG` (or `--config`), the
environment, command-line flags. Every problem becomes a `SettingsError` whose
message names the setting, so the CLI can print one line and exit.

Example:

    settings = Settings.load(os.environ, config_path=None, host=None, port=None)
"""

from __future__ import annotations

import functools
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from ollama_gateway.durations import parse_default_keep_alive
from ollama_gateway.errors import GatewayError

__all__ = [
    "CAPABILITIES",
    "DEFAULT_OLLAMA_VERSION",
    "BackendSettings",
    "CatalogueSettings",
    "LimitSettings",
    "ModelSettings",
    "PipelineSettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "TimeoutSettings",
    "google_hosted",
    "openai_hosted",
    "parse_ollama_host",
]

DEFAULT_OLLAMA_VERSION = "0.32.15"
DEFAULT_PORT = 11434
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

Dialect = Literal["openai", "chat_template_kwargs", "none"]


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it."""


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Settings tables reject unknown keys, so a typo fails at start."""


# A longer spin would take most waits for short ones (see busypoll.py).
MAX_BUSY_POLL_US = 1000


class ServerSettings(_Section, frozen=True):
    """Where and how the gateway listens."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    ollama_version: str = DEFAULT_OLLAMA_VERSION
    environment: str = "production"
    backlog: int = 4096
    workers: int = 1
    cors_origins: list[str] = msgspec.field(default_factory=list)
    shutdown_grace: float = 30.0
    default_keep_alive: str = "5m"
    # Generate's `context` emulated with kept turns (see generate_context.py);
    # off, it is ignored and answers carry none, as the spec's default.
    generate_context: bool = False
    # uvloop is opt-in: measured here, it accepts a burst of connections far more
    # slowly than asyncio's loop and saves nothing per chunk (docs/benchmarks.md).
    event_loop: Literal["asyncio", "uvloop"] = "asyncio"
    # Microseconds asyncio's loop polls before it sleeps, while waits are
    # short (see busypoll.py); 0: it sleeps at once. Not used with uvloop.
    busy_poll_us: int = 100


class TimeoutSettings(_Section, frozen=True):
    """Timeouts in seconds, 0 disables one: the upstream ones, and how long a
    client may take to send its request. No short upstream total by default:
    slow reasoning models can think for many minutes."""

    connect: float = 10.0
    first_token: float = 600.0
    idle: float = 300.0
    # The most the rest of a stream (usage trailer, [DONE], EOF) may take,
    # all told, once its finish_reason is in: those follow at once, and a
    # backend that then says nothing more has given the whole answer, so this
    # deadline (or any other after the finish) ends it, not as an error.
    after_finish: float = 5.0
    total: float = 0.0
    # aiohttp's keep-alive timeout: it runs from a connection's opening and
    # from each answer, so it bounds a request head still arriving as well as
    # an idle connection. 75 s is what aiohttp's run_app always used here.
    request_head: float = 75.0
    # The longest silence inside a request body (nginx's client_body_timeout
    # idea), not a bound on the whole body: a large image on a slow link must
    # still get through, and `limits.max_body_bytes` bounds how much comes.
    request_body: float = 30.0

    @property
    def first_wait(self) -> float | None:
        """The bound on the wait for an answer to start: `first_token`, and
        `total` too when it is set (it bounds the whole answer); None if off."""
        budgets = [t for t in (self.first_token, self.total) if t]
        return min(budgets) if budgets else None


class LimitSettings(_Section, frozen=True):
    """Request and stream size limits, and the cap on concurrent upstream calls."""

    max_body_bytes: int = 128 * 1024 * 1024
    max_event_bytes: int = 16 * 1024 * 1024
    # A whole answer read at once (embeddings, model lists): the largest
    # legitimate one, 2048 inputs of 3072 dimensions, is about 130 MB of JSON.
    max_answer_bytes: int = 256 * 1024 * 1024
    max_concurrent_upstream: int = 0
    # Each message costs about ten times its JSON in objects and is mapped in
    # one step of the event loop: 3 million small ones (119 MB, in the body
    # limit) held the loop 5 s and 1.3 GB. 100,000 take about 0.1 s; no model's
    # context holds that many anyway.
    max_messages: int = 100_000
    # The conversations `/v1/responses` keeps for `previous_response_id`, in
    # bytes of JSON, each for 30 minutes as Ollama keeps them; 0 keeps none.
    # Per worker (with `server.workers > 1`, in memory and in files alike).
    response_store_bytes: int = 64 * 1024 * 1024


class AuthSettings(_Section, frozen=True):
    """Inbound API keys; empty means no authentication (the Ollama default)."""

    api_keys: list[str] = msgspec.field(default_factory=list)
    pass_client_key: bool = False


class BackendSettings(_Section, frozen=True):
    """One OpenAI-compatible backend.

    `models` pins the model ids this backend serves; when empty they are read from
    its `GET /v1/models`. `dialect` says how `think` is sent (spec 3.5).
    """

    name: str
    base_url: str = ""
    api_key: str = ""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    dialect: Dialect = "openai"
    models: list[str] = msgspec.field(default_factory=list)
    transport: list[str] | None = None
    extensions: bool = False
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    # Ask for token usage at the end of streams (`stream_options`). Unset,
    # that is yes, but not of Mistral's API, which refuses the field with a
    # 422 and sends usage unasked (see __post_init__).
    stream_usage: bool | None = None
    stream_upstream: Literal["always", "as-client"] = "always"
    system_role: Literal["system", "developer"] = "system"
    # How a JSON schema `format` is sent: OpenAI's `response_format` type
    # "json_schema", or "json_object" with a `schema` beside it (the only form
    # llama-cpp-python's server takes).
    format_schema: Literal["json_schema", "json_object"] = "json_schema"
    # The backend's chat template takes one system message, first, then user
    # and assistant turns strictly alternating (Mistral's, as vLLM and
    # llama.cpp's server run them): the history is made so (see turns.py).
    alternating_roles: bool = False
    # Tool-call ids of the history are sent in Mistral's form (nine letters
    # and digits), the only one its API and chat templates take; unset, for
    # Mistral's API, told by its host (see mistral_call_ids()).
    mistral_call_ids: bool | None = None
    tool_result_name: bool = False
    history_thinking: Literal["drop", "reasoning_content", "reasoning"] = "drop"
    think_off_effort: str = "none"
    think_on_effort: str = ""
    max_stop: int = 0
    # Also read a LiteLLM proxy's `GET /model/info` with each model list, for
    # the capabilities and context length it knows per model. Opt-in: other
    # backends have no such path, and nothing in what they already answer
    # tells a LiteLLM proxy apart reliably (see docs/operations.md).
    litellm_model_info: bool = False
    # OpenAI's API or Azure OpenAI, with their limits; unset, told by the
    # host. Set for one behind a name of its own (an Azure API Management
    # gateway, a private endpoint), which no host test can see through.
    openai_hosted: bool | None = None
    demo: bool = False

    def __post_init__(self) -> None:
        if self.stream_usage is None:
            # Told here, once: the mapper reads a bool on every stream.
            asks = not _mistral_host(self.base_url)
            msgspec.structs.force_setattr(self, "stream_usage", asks)


class ModelSettings(_Section, frozen=True):
    """Per-model catalogue entries: aliases, capabilities and display details."""

    # One backend model, or the same model as each backend spells it.
    target: str | list[str] = ""
    backend: str = ""
    capabilities: list[str] | None = None
    context_length: int = 0
    embedding_length: int = 0
    family: str = ""
    parameter_size: str = ""
    quantization_level: str = ""
    size: int = 0
    hidden: bool = False


class CatalogueSettings(_Section, frozen=True):
    """How the model list is cached and where copy/delete aliases persist."""

    ttl: float = 60.0
    aliases_file: str = ""
    # Each copy rewrites the whole file and lookups walk every alias: bounded.
    max_aliases: int = 1000


class PipelineSettings(_Section, frozen=True):
    """Translator names per stage, outermost first; the last is the base."""

    request: list[str] = msgspec.field(default_factory=lambda: ["ollama-to-openai"])
    # Retries sit in front of HTTP: only before any byte, never twice a completion.
    transport: list[str] = msgspec.field(
        default_factory=lambda: ["retry", "openai-http"]
    )
    response: list[str] = msgspec.field(default_factory=lambda: ["openai-to-ollama"])


class Settings(_Section, frozen=True):
    """Everything the gateway reads at start, frozen."""

    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    timeouts: TimeoutSettings = msgspec.field(default_factory=TimeoutSettings)
    limits: LimitSettings = msgspec.field(default_factory=LimitSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    pipeline: PipelineSettings = msgspec.field(default_factory=PipelineSettings)
    backends: list[BackendSettings] = msgspec.field(default_factory=list)
    models: dict[str, ModelSettings] = msgspec.field(default_factory=dict)
    catalogue: CatalogueSettings = msgspec.field(default_factory=CatalogueSettings)
    translators: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    plugins: list[str] | None = None
    log_level: str = "INFO"
    config_path: str = ""

    @property
    def uses_demo_only(self) -> bool:
        return all(backend.demo for backend in self.backends)

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        config_path: str | None = None,
        host: str | None = None,
        port: int | None = None,
        log_level: str | None = None,
        workers: int | None = None,
    ) -> Settings:
        """Build settings from defaults, the TOML file, the environment and flags."""
        env = os.environ if environ is None else environ
        path = config_path or env.get("OLLAMA_GATEWAY_CONFIG", "")
        source = "--config" if config_path else "OLLAMA_GATEWAY_CONFIG"
        raw = _read_toml(path, source) if path else {}
        raw["config_path"] = path
        _apply_env(raw, env)
        server = raw.setdefault("server", {})
        if host is not None:
            server["host"] = host
        if port is not None:
            server["port"] = port
        if workers is not None:
            server["workers"] = workers
        if log_level is not None:
            raw["log_level"] = log_level
        # Where a bad level came from, for its message: a file's named the
        # variable LOG_LEVEL, which was not set.
        if log_level is not None:
            level_source = "--log-level"
        elif env.get("LOG_LEVEL", "").strip():
            level_source = "LOG_LEVEL"
        else:
            level_source = "log_level"
        settings = _finish(_convert(raw), level_source)
        keep_alive_source = (
            "OLLAMA_KEEP_ALIVE"
            if _ollama_var(env, "OLLAMA_KEEP_ALIVE")
            else "server.default_keep_alive"
        )
        _check_keep_alive(settings.server.default_keep_alive, keep_alive_source)
        return settings


def openai_hosted(backend: BackendSettings) -> bool:
    """Whether a backend is OpenAI's API or Azure OpenAI: they have limits of
    their own that servers of open models do not share (4 stop sequences, a
    temperature of 2, 2048 inputs to embed). As its `openai_hosted` says, or
    by its URL's host when unset."""
    if backend.openai_hosted is not None:
        return backend.openai_hosted
    return _openai_host(backend.base_url)


def mistral_call_ids(backend: BackendSettings) -> bool:
    """Whether a backend takes tool-call ids in Mistral's form only: as its
    `mistral_call_ids` says, or when unset, whether it is Mistral's API."""
    if backend.mistral_call_ids is not None:
        return backend.mistral_call_ids
    return _mistral_host(backend.base_url)


@functools.lru_cache(maxsize=64)
def _host(base_url: str) -> str:
    """A base URL's host name, lower-cased; "" for a bad URL (which
    _check_backends reports as such). Parsed once per URL: the host tests
    below run on requests."""
    try:
        return (urlsplit(base_url).hostname or "").lower()
    except ValueError:
        return ""


def _mistral_host(base_url: str) -> bool:
    """Mistral's API: its tool-call ids, its refusal of `stream_options`."""
    return _host(base_url) == "api.mistral.ai"


def _openai_host(base_url: str) -> bool:
    host = _host(base_url)
    return host == "api.openai.com" or host.endswith(
        (".openai.azure.com", ".cognitiveservices.azure.com")
    )


def google_hosted(backend: BackendSettings) -> bool:
    """Whether a backend is Google's OpenAI-compatible endpoint (the Gemini
    API's, or Vertex AI's), by its URL's host."""
    return _google_host(backend.base_url)


def _google_host(base_url: str) -> bool:
    host = _host(base_url)
    return host == "generativelanguage.googleapis.com" or host.endswith(
        "aiplatform.googleapis.com"
    )


def parse_ollama_host(value: str) -> tuple[str, int]:
    """Read `OLLAMA_HOST` the way Ollama's envconfig does: `[scheme://]host[:port]`."""
    text = value.strip()
    default_port = DEFAULT_PORT
    scheme, sep, hostport = text.partition("://")
    if not sep:
        hostport = text
    elif scheme == "http":
        default_port = 80
    elif scheme == "https":
        default_port = 443
    hostport = hostport.split("/", 1)[0]
    host, port_text = _split_host_port(hostport)
    if port_text is None:
        return host or "127.0.0.1", default_port
    if not port_text.isdigit() or int(port_text) > 65535:
        raise SettingsError(f"OLLAMA_HOST: invalid port {port_text!r} in {value!r}")
    # Ollama listens on every interface when the host part is empty (":11434").
    return host or "0.0.0.0", int(port_text)


def _split_host_port(hostport: str) -> tuple[str, str | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end != -1:
            rest = hostport[end + 1 :]
            host = hostport[1:end]
            return host, rest[1:] if rest.startswith(":") else None
    if hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
        return host, port
    try:
        return str(ipaddress.ip_address(hostport.strip("[]"))), None
    except ValueError:
        return hostport, None


def _read_toml(path: str, source: str) -> dict[str, Any]:
    """`source` is where the path came from (the flag or the variable), for errors."""
    try:
        with open(path, "rb") as file:
            # A BOM, as some Windows editors write, is no setting: skipped.
            return tomllib.loads(file.read().decode("utf-8-sig"))
    except FileNotFoundError:
        raise SettingsError(f"{source}: no such file {path!r}") from None
    except UnicodeDecodeError as exc:
        # Was a traceback: a file saved as Latin-1 or UTF-16, say.
        raise SettingsError(
            f"{source}: {path}: not UTF-8, as TOML must be "
            f"(byte {exc.object[exc.start]:#04x} at offset {exc.start})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{source}: {path}: {exc}") from None
    except OSError as exc:
        raise SettingsError(f"{source}: {path}: {exc.strerror}") from None


def _ollama_var(env: Mapping[str, str], name: str) -> str:
    """One of Ollama's own variables as its envconfig reads it: without the
    spaces and quotes around it. `OLLAMA_HOST="'0.0.0.0'"` (as Windows'
    `setx` or a quoted unit file leaves it) stopped the start here."""
    return env.get(name, "").strip().strip("\"'")


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    server = raw.setdefault("server", {})
    if host := _ollama_var(env, "OLLAMA_HOST"):
        server["host"], server["port"] = parse_ollama_host(host)
    if origins := _ollama_var(env, "OLLAMA_ORIGINS"):
        extra = [o.strip() for o in origins.split(",") if o.strip()]
        server["cors_origins"] = [*server.get("cors_origins", []), *extra]
    if keep_alive := _ollama_var(env, "OLLAMA_KEEP_ALIVE"):
        server["default_keep_alive"] = keep_alive
    if env.get("LOG_LEVEL", "").strip():
        raw["log_level"] = env["LOG_LEVEL"].strip()
    if "OLLAMA_GATEWAY_PLUGINS" in env:
        names = env["OLLAMA_GATEWAY_PLUGINS"].split(",")
        raw["plugins"] = [n.strip() for n in names if n.strip()]
    if env.get("OLLAMA_GATEWAY_API_KEYS", "").strip():
        keys = [k.strip() for k in env["OLLAMA_GATEWAY_API_KEYS"].split(",")]
        if not any(keys):
            # `"$KEY1,$KEY2"` with both unset: the empty list replaced the
            # file's keys and turned authentication off, silently.
            raise SettingsError(
                "OLLAMA_GATEWAY_API_KEYS: holds no key, only commas and spaces"
            )
        raw.setdefault("auth", {})["api_keys"] = [k for k in keys if k]
    _apply_backend_env(raw, env)


def _apply_backend_env(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    base_url = env.get("OPENAI_BASE_URL", "").strip()
    api_key = env.get("OPENAI_API_KEY", "").strip()
    backends: Any = raw.setdefault("backends", [])
    if not isinstance(backends, list):
        return  # _convert reports the type error with its path
    named = next((b for b in backends if _table(b).get("name") == "openai"), None)
    if base_url:
        if named is None:
            named = {"name": "openai"}
            backends.insert(0, named)
        named["base_url"] = base_url
    if api_key:
        # The conventional key fills every backend that has none of its own.
        for backend in backends:
            table = _table(backend)
            if table and not table.get("api_key") and not table.get("demo"):
                table["api_key"] = api_key


def _table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _convert(raw: dict[str, Any]) -> Settings:
    try:
        return msgspec.convert(raw, type=Settings, str_keys=True)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid setting: {_pretty_path(str(exc))}") from None


def _pretty_path(message: str) -> str:
    # msgspec says "... - at `$.server.port`"; name the setting first.
    text, sep, path = message.rpartition(" - at ")
    if not sep:
        return message
    setting = path.strip("`").removeprefix("$.").removeprefix("$")
    return f"{setting}: {text}" if setting else text


def _finish(settings: Settings, level_source: str) -> Settings:
    level = settings.log_level.upper()
    if level not in LOG_LEVELS:
        raise SettingsError(
            f"{level_source}: {settings.log_level!r} is not one of "
            + ", ".join(LOG_LEVELS)
        )
    server = settings.server
    if not 0 <= server.port <= 65535:
        raise SettingsError(f"server.port: {server.port} is not a TCP port")
    if server.workers < 1:
        raise SettingsError("server.workers: must be at least 1")
    if settings.catalogue.max_aliases < 1:
        raise SettingsError("catalogue.max_aliases: must be at least 1")
    _check_not_negative(settings)
    if server.busy_poll_us > MAX_BUSY_POLL_US:
        # Every wait would count as short: the loop would never sleep.
        raise SettingsError(
            f"server.busy_poll_us: at most {MAX_BUSY_POLL_US}, not {server.busy_poll_us}"
        )
    _check_version(server.ollama_version)
    backends = list(settings.backends)
    _check_backends(backends)
    if not backends:
        backends.append(BackendSettings(name="demo", demo=True))
    _check_models(settings.models, {b.name for b in backends})
    return msgspec.structs.replace(settings, log_level=level, backends=backends)


# Ollama's capability names, the only ones its clients act on.
CAPABILITIES = (
    "completion",
    "tools",
    "insert",
    "vision",
    "embedding",
    "thinking",
    "image",
    "audio",
)


def _check_models(models: Mapping[str, ModelSettings], backends: set[str]) -> None:
    """A typo here did silently nothing: `capabilities = ["tool"]` was
    reported as it was written, which no client reads (and tools were then
    refused), and a `backend` no backend is named left the model "not
    found"."""
    for name, model in models.items():
        for capability in model.capabilities or ():
            if capability not in CAPABILITIES:
                raise SettingsError(
                    f"models.{name}.capabilities: {capability!r} is not one of "
                    + ", ".join(CAPABILITIES)
                )
        if model.backend and model.backend not in backends:
            raise SettingsError(
                f"models.{name}.backend: no backend is named {model.backend!r} "
                f"(backends: {', '.join(sorted(backends))})"
            )


def _check_keep_alive(value: str, source: str) -> None:
    # Checked here, where its source is known: create_app named the variable
    # OLLAMA_KEEP_ALIVE for a bad value from the file too.
    try:
        parse_default_keep_alive(value)
    except GatewayError as exc:
        raise SettingsError(f"{source}: {exc.message}") from None


def _check_not_negative(settings: Settings) -> None:
    """No number here means anything below 0: a negative timeout fired at
    once (every request an "upstream timeout"), a negative cap refused every
    request with a puzzling message."""
    sections: dict[str, msgspec.Struct] = {
        "server": settings.server,
        "timeouts": settings.timeouts,
        "limits": settings.limits,
        "catalogue": settings.catalogue,
    }
    for section, values in sections.items():
        for name in values.__struct_fields__:
            value = getattr(values, name)
            if type(value) in (int, float) and value < 0:
                raise SettingsError(
                    f"{section}.{name}: must be 0 or more, not {value:g}"
                )


def _check_url(setting: str, url: str) -> None:
    """What the transports need of a base URL: found at the first request
    instead, it failed every one (and the URL, credentials and all, went into
    each error). The message leaves the URL out for that reason."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535"
        raise SettingsError(f"{setting}: not a valid URL: {exc}") from None
    if not parts.hostname:
        raise SettingsError(f"{setting}: not a valid URL: it names no host")
    if port == 0:
        raise SettingsError(f"{setting}: not a valid URL: port 0")
    if any(c.isspace() for c in url):
        raise SettingsError(f"{setting}: not a valid URL: it contains a space")


def _check_version(version: str) -> None:
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise SettingsError(f"server.ollama_version: {version!r} is not x.y.z")
    if tuple(int(p) for p in parts) < (0, 6, 4):
        raise SettingsError(
            "server.ollama_version: must be at least 0.6.4 "
            "(VS Code Copilot refuses older servers)"
        )


def _check_backends(backends: list[BackendSettings]) -> None:
    seen: set[str] = set()
    for backend in backends:
        if backend.name in seen:
            raise SettingsError(f"backends: the name {backend.name!r} is used twice")
        seen.add(backend.name)
        if backend.demo:
            continue
        if backend.litellm_model_info and backend.models:
            raise SettingsError(
                f"backends.{backend.name}.litellm_model_info: read with the model "
                "list, which a backend with pinned `models` never reads"
            )
        url = backend.base_url
        if backend.api_key and "@" in url.split("://", 1)[-1].split("/", 1)[0]:
            raise SettingsError(
                f"backends.{backend.name}.base_url: has credentials and an api_key "
                "is set too; use one of them"
            )
        where = "OPENAI_BASE_URL" if backend.name == "openai" else "base_url"
        if not url.startswith(("http://", "https://")):
            raise SettingsError(
                f"backends.{backend.name}.{where}: {url!r} must start with "
                "http:// or https://"
            )
        _check_url(f"backends.{backend.name}.{where}", url)
