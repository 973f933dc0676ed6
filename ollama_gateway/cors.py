"""CORS and Host checks as Ollama does them (spec 1.10), for browser clients."""

from __future__ import annotations

import ipaddress
import re
import socket

from aiohttp import web

__all__ = ["DEFAULT_ORIGINS", "HostCheck", "OriginPolicy"]

DEFAULT_ORIGINS = (
    "http://localhost", "https://localhost", "http://localhost:*", "https://localhost:*",
    "http://127.0.0.1", "https://127.0.0.1", "http://127.0.0.1:*", "https://127.0.0.1:*",
    "http://0.0.0.0", "https://0.0.0.0", "http://0.0.0.0:*", "https://0.0.0.0:*",
    "app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*",
)  # fmt: skip
ALLOW_HEADERS = (
    "Authorization, Content-Type, User-Agent, Accept, X-Requested-With, OpenAI-Beta, "
    "X-API-Key, X-Request-ID, x-stainless-arch, x-stainless-async, "
    "x-stainless-custom-poll-interval, x-stainless-helper-method, x-stainless-lang, "
    "x-stainless-os, x-stainless-package-version, x-stainless-poll-helper, "
    "x-stainless-retry-count, x-stainless-runtime, x-stainless-runtime-version, "
    "x-stainless-timeout"
)
ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"


class OriginPolicy:
    """Which browser origins may call the gateway; `*` in a pattern matches anything."""

    def __init__(self, extra: list[str]) -> None:
        patterns = [*DEFAULT_ORIGINS, *extra]
        self._any = "*" in patterns
        self._regex = re.compile(
            "|".join(re.escape(p).replace(r"\*", ".*") for p in patterns if p != "*")
        )

    def allows(self, origin: str, host: str = "") -> bool:
        """Whether `origin` may call; `host` is the request's Host header.

        An origin equal to `http(s)://<Host>` is the page's own server (fetch
        sends `Origin` on POSTs even then): Ollama's CORS layer lets it through
        as no CORS request at all, whatever the allowed list says.
        """
        if host and origin in (f"http://{host}", f"https://{host}"):
            return True
        return self._any or self._regex.fullmatch(origin) is not None

    def headers_for(self, origin: str) -> dict[str, str]:
        return {
            "Access-Control-Allow-Origin": "*" if self._any else origin,
            "Vary": "Origin",
        }

    def preflight(self, origin: str) -> web.Response:
        headers = self.headers_for(origin)
        headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
        headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        headers["Access-Control-Max-Age"] = "43200"
        return web.Response(status=204, headers=headers)


_SEEN_MAX = 256


class HostCheck:
    """DNS-rebinding protection when bound to loopback: reject foreign Host names."""

    def __init__(self, bind_host: str) -> None:
        self.enabled = _is_loopback(bind_host)
        self._own = socket.gethostname().lower()
        # Host header -> verdict: clients send the same few on every request,
        # and parsing an IP address each time was a visible cost. Bounded,
        # since the header is the client's to choose.
        self._seen: dict[str, bool] = {}

    def allows(self, host_header: str) -> bool:
        if not self.enabled or not host_header:
            return True
        verdict = self._seen.get(host_header)
        if verdict is None:
            if len(self._seen) >= _SEEN_MAX:
                self._seen.clear()
            verdict = self._seen[host_header] = self._judge(host_header)
        return verdict

    def _judge(self, host_header: str) -> bool:
        host = _strip_port(host_header).lower()
        if host in ("localhost", self._own) or host.endswith(
            (".localhost", ".local", ".internal")
        ):
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return address.is_loopback or address.is_private or address.is_unspecified


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
