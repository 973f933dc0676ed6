"""`check-config`'s test of the listen address: would `serve` be let bind it?"""

from __future__ import annotations

import errno
import socket

from ollama_gateway.serve import ListenError
from ollama_gateway.settings import Settings

__all__ = ["check_listen_address"]


def check_listen_address(settings: Settings) -> None:
    """Bind each address `server.host` names, as `serve` binds them, with
    throwaway sockets: on port 0 (is the address this machine's?), then on
    the port itself (may this user take it?). A port in use is no fault:
    the running gateway may hold it while its next settings are checked.
    Raises ListenError worded as `serve`'s."""
    host, port = settings.server.host, settings.server.port
    try:
        # asyncio's create_server, which serve's run_app calls, asks so.
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    for family, kind, proto, _, address in found:
        for probe_port in (0, port) if port else (0,):
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    probe.bind((address[0], probe_port, *address[2:]))
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise ListenError(
                            f"cannot listen on {host}:{port}: {exc.strerror}"
                        ) from None
