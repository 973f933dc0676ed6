"""CORS and Host checks as Ollama does them (spec 1.10), for browser clients."""

from __future__ import annotations

import enum
import ipaddress
import re
import socket

from aiohttp import web

__all__ = [
    "DEFAULT_ORIGINS",
    "MALFORMED_HOST",
    "HostCheck",
    "HostVerdict",
    "OriginPolicy",
]

DEFAULT_ORIGINS = (
    "http://localhost", "https://localhost", "http://localhost:*", "https://localhost:*",
    "http://127.0.0.1", "https://127.0.0.1", "http://127.0.0.1:*", "https://127.0.0.1:*",
    "http://0.0.0.0", "https://0.0.0.0", "http://0.0.0.0:*", "https://0.0.0.0:*",
    "app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*",
)  # fmt: skip
# Ollama's list, the gateway's key and request id headers, and those of the
# Anthropic API: `anthropic-version` on every request of Anthropic's SDKs and
# the AI SDK's provider, `anthropic-dangerous-direct-browser-access` on every
# one Anthropic's SDKs send from a browser, `anthropic-beta` for betas. A
# preflight that leaves out a header the request has fails it unsent.
ALLOW_HEADERS = (
    "Authorization, Content-Type, User-Agent, Accept, X-Requested-With, OpenAI-Beta, "
    "X-API-Key, X-Request-ID, anthropic-version, anthropic-beta, "
    "anthropic-dangerous-direct-browser-access, x-stainless-arch, x-stainless-async, "
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

# The bytes Go's HTTP server accepts in a Host header (httpguts.ValidHostHeader,
# which Ollama's server runs before its own check): no `@`, `/`, `?`, `#`,
# spaces, quotes, backslashes, controls or non-ASCII. A header with any other
# byte is a 400, whatever the address the server is bound to.
_HOST_BYTES = re.compile(r"[A-Za-z0-9!$%&'()*+,\-.:;=\[\]_~]*")
MALFORMED_HOST = "400 Bad Request: malformed Host header"


class HostVerdict(enum.Enum):
    """What the Host check makes of a Host header."""

    ALLOWED = "allowed"
    FORBIDDEN = "forbidden"  # 403: a name a rebinding page would send
    MALFORMED = "malformed"  # 400: bytes no HTTP server should take as a host


class HostCheck:
    """DNS-rebinding protection when bound to loopback: reject foreign Host names.

    The verdict is Ollama's (`allowedHostsMiddleware`): Go's `SplitHostPort`
    first (anything it cannot split is judged whole, so `127.0.0.1:80:90` is
    no IP), then an IP that is loopback, private or unspecified, then
    `localhost`, the machine's name or a `.localhost`, `.local` or
    `.internal` name. A malformed header is refused even when the check is off.
    """

    def __init__(self, bind_host: str) -> None:
        self.enabled = _is_loopback(bind_host)
        self._own = socket.gethostname().lower()
        # Host header -> verdict: clients send the same few on every request,
        # and parsing an IP address each time was a visible cost. Bounded,
        # since the header is the client's to choose.
        self._seen: dict[str, HostVerdict] = {}

    def verdict(self, host_header: str) -> HostVerdict:
        found = self._seen.get(host_header)
        if found is None:
            if len(self._seen) >= _SEEN_MAX:
                self._seen.clear()
            found = self._seen[host_header] = self._judge(host_header)
        return found

    def _judge(self, host_header: str) -> HostVerdict:
        if _HOST_BYTES.fullmatch(host_header) is None:
            return HostVerdict.MALFORMED
        if not self.enabled or self._is_local(_host_part(host_header).lower()):
            return HostVerdict.ALLOWED
        return HostVerdict.FORBIDDEN

    def _is_local(self, host: str) -> bool:
        if host in ("", "localhost", self._own) or host.endswith(
            (".localhost", ".local", ".internal")
        ):
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return _is_local_address(address)


def _is_local_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Go's `IsLoopback() || IsPrivate() || IsUnspecified()`.

    Not Python's `is_private`, which is much wider: it also takes link-local
    169.254/16 and fe80::/10, the documentation and benchmarking ranges,
    240/4, and (before Python 3.13) every IPv4-mapped address, so
    `[::ffff:8.8.8.8]` counted as private. Go's IsPrivate is RFC 1918 and
    fc00::/7 only, and Go judges an IPv4-mapped address as its IPv4 address.
    Ollama's `isLocalIP` (an address of one of the machine's own interfaces)
    has no counterpart here: refusing those is the safe side.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        else:
            return (
                address.is_loopback
                or address.is_unspecified
                or address in _UNIQUE_LOCAL
            )
    return (
        address.is_loopback
        or address.is_unspecified
        or any(address in network for network in _RFC1918)
    )


_RFC1918 = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")


def _host_part(hostport: str) -> str:
    """The host of `host[:port]` as Go's `net.SplitHostPort` finds it; what it
    refuses (no port, too many colons, stray brackets) is returned whole."""
    if hostport.startswith("[") and hostport.endswith("]"):
        # `[::1]` with no port: Go's split refuses it ("missing port") and
        # Ollama then cannot read it as an address. It is unambiguous, so it
        # is read as the address here: a deliberate leniency.
        return hostport[1:-1]
    colon = hostport.rfind(":")
    if colon < 0:
        return hostport
    if hostport.startswith("["):
        end = hostport.find("]")
        if end + 1 != colon:
            return hostport
        host, after_open, after_close = hostport[1:end], 1, end + 1
    else:
        host, after_open, after_close = hostport[:colon], 0, 0
        if ":" in host:
            return hostport
    if "[" in hostport[after_open:] or "]" in hostport[after_close:]:
        return hostport
    return host


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
