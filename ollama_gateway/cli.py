"""The command line: `serve` (the default), `plugins` and `check-config`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ollama_gateway.settings import Settings

__all__ = ["main"]

log = logging.getLogger("ollama_gateway")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ollama-gateway",
        description="Serve the Ollama API from any OpenAI-compatible backend.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", help="TOML settings file (env OLLAMA_GATEWAY_CONFIG)"
    )
    common.add_argument(
        "--log-level",
        help="DEBUG, INFO, WARNING, ERROR or CRITICAL (env LOG_LEVEL)",
    )
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", parents=[common], help="run the gateway (default)")
    serve.add_argument("--host", help="address to listen on (env OLLAMA_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (env OLLAMA_HOST)")
    serve.add_argument("--workers", type=int, help="processes sharing the port")
    plugins = sub.add_parser(
        "plugins", parents=[common], help="list translators as JSON"
    )
    plugins.add_argument(
        "--all", action="store_true", help="ignore OLLAMA_GATEWAY_PLUGINS"
    )
    sub.add_parser(
        "check-config", parents=[common], help="validate the settings and exit"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Ctrl-C before the server's own handlers are set (while the modules
    # import, the settings load, the app is made): nothing is served yet, so
    # the process ends at once, with the shell's status for SIGINT. Not by a
    # KeyboardInterrupt: raised wherever the signal lands, it printed a
    # traceback, and one that landed in a callback (importlib's module locks
    # have them) was "ignored": the gateway went on to serve. This comes
    # before any heavy import (the package's are lazy, and this module's).
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # With workers, the supervisor takes KeyboardInterrupt back for the
        # directories it makes (see serve._supervise).
        return INTERRUPTED


# 128 + SIGINT, as a shell reports a command Ctrl-C ended.
INTERRUPTED = 130


def _interrupted(signum: int, frame: FrameType | None) -> None:
    os._exit(INTERRUPTED)


def _main(argv: Sequence[str] | None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if (
        not args_list
        or args_list[0].startswith("-")
        and args_list[0] not in ("-h", "--help")
    ):
        args_list.insert(0, "serve")
    args = _parser().parse_args(args_list)
    from ollama_gateway.errors import PluginError
    from ollama_gateway.settings import Settings, SettingsError

    try:
        settings = Settings.load(
            config_path=args.config,
            host=getattr(args, "host", None),
            port=getattr(args, "port", None),
            log_level=args.log_level,
            # Checked with the rest: `--workers 0` served as one process.
            workers=getattr(args, "workers", None),
        )
        if args.command == "plugins":
            return _plugins(settings, show_all=args.all)
        if args.command == "check-config":
            return _check(settings)
        from ollama_gateway.serve import ListenError, serve

        try:
            return serve(settings)
        except ListenError as exc:
            print(f"ollama-gateway: error: {exc}", file=sys.stderr)
            return 1
    except (SettingsError, PluginError) as exc:
        print(f"ollama-gateway: error: {exc}", file=sys.stderr)
        return 2


def _plugins(settings: Settings, *, show_all: bool) -> int:
    from ollama_gateway.listing import translator_listing

    sys.stdout.write(translator_listing(settings, show_all=show_all) + "\n")
    return 0


def _check(settings: Settings) -> int:
    from ollama_gateway.app import create_app
    from ollama_gateway.listen_check import check_listen_address
    from ollama_gateway.serve import ListenError, check_event_loop

    create_app(settings)
    check_event_loop(settings)
    try:
        check_listen_address(settings)
    except ListenError as exc:
        # Worded, and ended, as `serve` would end.
        print(f"ollama-gateway: error: {exc}", file=sys.stderr)
        return 1
    print("configuration ok")
    return 0
