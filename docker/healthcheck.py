"""Exit 0 when the gateway in this container answers GET /health with a 200.

The image's HEALTHCHECK and the compose files run it. It takes the port from
OLLAMA_HOST, as the gateway does, so a container started on another port (for
example `-e OLLAMA_HOST=127.0.0.1:18080` on the host network) checks the right
one. Standard library only: the prod image has no curl.
"""

from __future__ import annotations

import os
import sys
import urllib.request

DEFAULT_PORT = "11434"
WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}
TIMEOUT_SECONDS = 4.0


def health_url(ollama_host: str) -> str:
    """Map an OLLAMA_HOST value (`host:port`, `:port`, `[v6]:port`) to a URL."""
    # Without the spaces and quotes around it, and with a scheme's own
    # default port (`http://0.0.0.0` listens on 80), as Ollama and the
    # gateway read it: the check asked port 11434 of a gateway on another.
    hostport = ollama_host.strip().strip("\"'")
    default_port = DEFAULT_PORT
    if "://" in hostport:
        scheme, hostport = hostport.split("://", 1)
        default_port = {"http": "80", "https": "443"}.get(scheme, DEFAULT_PORT)
    hostport = hostport.split("/", 1)[0]
    host, port = hostport, ""
    if hostport.startswith("["):
        host, _, rest = hostport.partition("]")
        host += "]"
        port = rest.removeprefix(":")
    elif hostport.count(":") == 1:
        host, port = hostport.split(":")
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port or default_port}/health"


def main() -> int:
    url = health_url(os.environ.get("OLLAMA_HOST", ""))
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as resp:
            status = resp.status
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {url}: HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
