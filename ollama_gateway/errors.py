"""The gateway's exception tree and its rendering as Ollama error bodies.

```
GatewayError                   base: .status and .message, sent as {"error": message}
├── ClientRequestError         400: the caller's request cannot be served as sent
│   ├── InvalidRequestError    400: a body that does not decode or has a wrong type
│   ├── RequestTimeoutError    408: the client stopped sending its request body
│   ├── AliasLimitError        409: /api/copy past `catalogue.max_aliases`
│   └── UnsupportedError       501: an Ollama feature this gateway does not offer
├── ModelNotFoundError         404: no backend serves the model
├── OptionsError               500: an option of the wrong type (as Ollama answers)
├── AuthError                  401: inbound API key missing or wrong
├── BusyError                  503: too many upstream requests in flight
├── UpstreamError              502: anything that failed after we sent upstream
│   ├── UpstreamConnectError   502: connect, DNS or TLS failure
│   ├── UpstreamTimeoutError   504: no answer in time (first token, idle, total)
│   ├── UpstreamStatusError    the backend answered non-2xx; status mapped by spec 3.15
│   └── UpstreamProtocolError  502: malformed SSE or JSON from the backend
├── TranslationError           500: a translator raised; .translator names it
└── PluginError                startup only, never during a request
    ├── PluginLoadError        import failure, duplicate name, wrong stage, bad shape
    └── PluginConfigError      a translator's config table failed to convert
```
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

import msgspec

__all__ = [
    "AliasLimitError",
    "AuthError",
    "BusyError",
    "ClientRequestError",
    "GatewayError",
    "InvalidRequestError",
    "ModelNotFoundError",
    "OptionsError",
    "PluginConfigError",
    "PluginError",
    "PluginLoadError",
    "RequestTimeoutError",
    "TranslationError",
    "UnsupportedError",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamStatusError",
    "UpstreamTimeoutError",
    "error_body",
    "error_kind",
    "retry_after",
    "retry_after_header",
    "upstream_error_fields",
    "upstream_error_message",
]


class GatewayError(Exception):
    """Base class: carries the HTTP status and the message of the Ollama error body."""

    status = 500

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class ClientRequestError(GatewayError):
    """The caller's request cannot be served as sent."""

    status = 400


class InvalidRequestError(ClientRequestError):
    """The body is not JSON, not an object, or a field has the wrong type."""


class RequestTimeoutError(ClientRequestError):
    """The client stopped sending its request body; its connection is closed."""

    status = 408


class AliasLimitError(ClientRequestError):
    """`/api/copy` would make more aliases than `catalogue.max_aliases`."""

    status = 409


class UnsupportedError(ClientRequestError):
    """An Ollama feature that this gateway deliberately does not offer."""

    status = 501


class ModelNotFoundError(GatewayError):
    """No configured backend serves the requested model."""

    status = 404


class OptionsError(GatewayError):
    """An `options` value has the wrong type; Ollama answers these with 500."""

    status = 500


class AuthError(GatewayError):
    """The inbound API key is missing or not accepted."""

    status = 401


class BusyError(GatewayError):
    """The limit of concurrent upstream requests is reached."""

    status = 503


class UpstreamError(GatewayError):
    """Something failed after the request was sent to the backend."""

    status = 502


class UpstreamConnectError(UpstreamError):
    """The backend could not be reached (refused, DNS, TLS)."""


class UpstreamTimeoutError(UpstreamError):
    """The backend did not answer within a configured timeout."""

    status = 504


class UpstreamStatusError(UpstreamError):
    """The backend answered with a non-2xx status; `.upstream_status` keeps it,
    and `.retry_after` the `Retry-After` it sent with a 429 or 5xx."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        upstream_status: int,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message, status=status)
        self.upstream_status = upstream_status
        self.retry_after = retry_after


def retry_after_header(headers: Mapping[str, str]) -> str:
    """A refusal's `Retry-After` as it came (stripped; "" if none): the LiteLLM
    proxy passes its provider's on only as `llm_provider-retry-after`, so that
    one counts when there is no other."""
    return (
        headers.get("Retry-After") or headers.get("llm_provider-retry-after") or ""
    ).strip()


def retry_after(exc: GatewayError) -> dict[str, str]:
    """The headers that pass a backend's `Retry-After` on with its refusal:
    the clients' own retries (OpenAI's and Anthropic's SDKs) then wait as
    long as the backend asked, not their short default backoff."""
    wait = exc.retry_after if isinstance(exc, UpstreamStatusError) else None
    return {"Retry-After": wait} if wait else {}


class UpstreamProtocolError(UpstreamError):
    """The backend sent something that is not valid SSE or JSON."""


class TranslationError(GatewayError):
    """A translator raised while handling a request; `.translator` names it."""

    status = 500

    def __init__(self, translator: str, exc: BaseException) -> None:
        super().__init__(f"translator {translator!r} failed: {exc}")
        self.translator = translator


class PluginError(Exception):
    """A translator could not be set up; raised at startup only."""


class PluginLoadError(PluginError):
    """Import failure, duplicate name, wrong stage or wrong shape."""


class PluginConfigError(PluginError):
    """A translator's TOML table did not convert to its Config Struct."""


class _ErrorBody(msgspec.Struct):
    error: str


_encode_error = msgspec.json.Encoder().encode


def error_body(message: str) -> bytes:
    """The Ollama error object, `{"error": message}`, as compact JSON bytes."""
    return _encode_error(_ErrorBody(message))


def error_kind(exc: GatewayError) -> str:
    """A short label for logs and metrics: connect, timeout, status, protocol or
    the class of a non-upstream error."""
    for cls, kind in (
        (UpstreamConnectError, "upstream_connect"),
        (UpstreamTimeoutError, "upstream_timeout"),
        (UpstreamStatusError, "upstream_status"),
        (UpstreamProtocolError, "upstream_protocol"),
        (TranslationError, "translator_error"),
    ):
        if isinstance(exc, cls):
            return kind
    return "rejected" if exc.status < 500 else "error"


_HTML_START = re.compile(r"<(!doctype html|html|head|body)\b", re.IGNORECASE)
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_HTML_SKIPPED = re.compile(
    r"<(script|style)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL
)
_HTML_TAG = re.compile(r"<[^>]*>")


def upstream_error_message(body: bytes) -> str:
    """Extract a human message from a backend's error body (spec 3.15 order)."""
    return upstream_error_fields(body)[0]


def upstream_error_fields(body: bytes) -> tuple[str, str | None]:
    """The message of a backend's error body (see `upstream_error_message`)
    and its string `error.code` (or top-level `code`), e.g. `model_not_found`,
    from one decode."""
    try:
        data: Any = msgspec.json.decode(body)
    except msgspec.DecodeError:
        text = body.decode("utf-8", "replace").strip()
        if text[:1] == "<":
            text = _html_text(text)
        return text[:1000] or "upstream error", None
    message = _message_from(data) or body.decode("utf-8", "replace")[:1000]
    code = None
    if isinstance(data, dict):
        error = data.get("error")
        code = error.get("code") if isinstance(error, dict) else data.get("code")
    return message, code if isinstance(code, str) else None


def _html_text(text: str) -> str:
    """An HTML error page (a proxy's 502, a CDN's 52x): its title, else its
    text without tags, rather than the markup."""
    title = _HTML_TITLE.search(text)
    if title is not None and title.group(1).strip():
        return " ".join(html.unescape(title.group(1)).split())
    if _HTML_START.match(text) is None:
        return text  # some other text that starts with "<"
    body = _HTML_SKIPPED.sub(" ", text)
    return " ".join(html.unescape(_HTML_TAG.sub(" ", body)).split())


def _message_from(data: Any) -> str | None:
    if isinstance(data, str):
        return data
    if isinstance(data, list) and data:
        # Gemini's OpenAI-compatible endpoint: `[{"error": {...}}]`.
        return _message_from(data[0])
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        if isinstance(message, str):
            return _with_provider_detail(message, error.get("metadata"))
    if isinstance(error, str):
        return error
    for key in ("message", "detail"):
        value = data.get(key)
        if isinstance(value, str):
            return value
    message = data.get("message")
    if isinstance(message, dict):
        # Mistral's 422: `{"object": "error", "message": {"detail": [...]}}`.
        return _message_from(message)
    return _validation_message(data.get("detail"))


def _with_provider_detail(message: str, metadata: Any) -> str:
    """OpenRouter's "Provider returned error" says nothing a user can act on:
    the provider's own words are in `metadata.raw` (its error body as JSON
    text, plain text, or an object), and they are added."""
    if not isinstance(metadata, dict):
        return message
    raw = metadata.get("raw")
    if isinstance(raw, str):
        detail = upstream_error_message(raw.encode()) if raw.strip() else ""
    else:
        detail = (_message_from(raw) or "") if raw is not None else ""
    if not detail or detail in message:
        return message
    provider = metadata.get("provider_name")
    named = f" ({provider})" if isinstance(provider, str) and provider else ""
    return f"{message}{named}: {detail}"


def _validation_message(detail: Any) -> str | None:
    """FastAPI's 422 `detail`: a list of `{"loc": [...], "msg": ...}`."""
    if not isinstance(detail, list):
        return None
    messages = []
    for item in detail:
        if isinstance(item, dict) and isinstance(item.get("msg"), str):
            loc = item.get("loc")
            where = ".".join(str(x) for x in loc) if isinstance(loc, list) else ""
            messages.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(messages) or None
