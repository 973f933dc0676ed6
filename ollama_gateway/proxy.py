"""Outbound proxies from the environment, for the transports.

`HTTPS_PROXY` for `https://` backends, `HTTP_PROXY` for `http://` ones,
`ALL_PROXY` for either when its own is unset, and `NO_PROXY` for the hosts
that go direct (hosts, domain suffixes, `host:port`, address ranges such as
`10.0.0.0/8`, or `*`), as curl and Go read them; upper or lower case, lower
winning, as Python's urllib reads the variables. A proxy without a scheme is
`http://`, as curl takes it.

A loopback backend (`localhost`, `127.0.0.0/8`, `::1`) is never proxied, as
Go's net/http does it: a proxy set for a machine's outbound traffic must not
take over a backend on the same machine (a llama.cpp server, say).
"""

from __future__ import annotations

import ipaddress
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ollama_gateway.errors import UpstreamConnectError

__all__ = ["Proxy", "proxy_for"]


@dataclass(frozen=True)
class Proxy:
    """Where to send a backend's requests instead: `url` without credentials,
    and the credentials it carried, for `Proxy-Authorization: Basic`."""

    url: str
    login: str = ""
    password: str = ""


def proxy_for(url: str) -> Proxy | None:
    """The proxy a request to `url` goes through, or None to go direct; read
    from the process's environment at each call."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host or _is_loopback(host):
        return None
    proxies = urllib.request.getproxies_environment()
    chosen = proxies.get(parts.scheme) or proxies.get("all")
    if not chosen:
        return None
    if _bypassed(host, parts.port, proxies.get("no", "")):
        return None
    return _parse(chosen)


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """NO_PROXY, as curl and Go read it: `*`, hosts and domain suffixes (with
    or without a leading dot), `host:port`, and address ranges (`10.0.0.0/8`)."""
    host = host.lower()
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = (
            ipaddress.ip_address(host)
        )
    except ValueError:
        address = None
    for entry in no_proxy.lower().split(","):
        entry = entry.strip()
        if entry == "*":
            return True
        if not entry:
            continue
        if "/" in entry:
            try:
                if address is not None and address in ipaddress.ip_network(
                    entry, strict=False
                ):
                    return True
            except ValueError:
                pass
            continue
        name, wanted_port = _split_port(entry)
        if wanted_port is not None and wanted_port != port:
            continue
        name = name.lstrip(".")
        if name and (host == name or host.endswith(f".{name}")):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address."""
    if entry.startswith("["):
        name, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        name, _, port = entry.partition(":")
    else:
        return entry, None
    return name, int(port) if port.isdigit() else None


def _is_loopback(host: str) -> bool:
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def _parse(value: str) -> Proxy:
    if "://" not in value:
        value = f"http://{value}"
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Going direct instead would send traffic around a proxy someone set
        # on purpose: fail each request with the reason.
        raise UpstreamConnectError(
            f"upstream unavailable: unsupported proxy {parts.scheme}://"
            f"{parts.hostname or ''} (only http:// and https:// proxies are)"
        )
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return Proxy(
        url=f"{parts.scheme}://{netloc}",
        login=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
    )
