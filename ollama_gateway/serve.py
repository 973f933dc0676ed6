"""Running the server: logging, the startup lines, signals and worker processes.

With `--workers N` (N > 1) this process supervises N workers that each run the
full gateway on the same port (SO_REUSEPORT; the kernel spreads connections),
each with its own upstream session. SIGTERM and SIGINT are passed on, and the
supervisor exits 0 when every worker drained and exited 0. A worker killed by
a signal while no stop was asked (the OOM killer, `kill -9`) is replaced at
once, and its live gauges dropped; its open streams are lost, so the
supervisor logs it as an error and exits 1 in the end. Workers whose
supervisor is gone drain and exit. The supervisor makes the directories the
workers share (metrics, kept `/v1/responses` conversations, the models
`/api/ps` lists) and removes them when it exits.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from types import FrameType
from typing import NamedTuple

from aiohttp import web
from prometheus_client.multiprocess import mark_process_dead
from yarl import URL

from ollama_gateway.app import create_app
from ollama_gateway.errors import PluginError
from ollama_gateway.keys import pipeline_key
from ollama_gateway.log import batch_log_lines, setup_logging
from ollama_gateway.metrics import MULTIPROCESS_DIR
from ollama_gateway.settings import Settings, SettingsError

__all__ = ["ListenError", "check_event_loop", "serve"]

log = logging.getLogger("ollama_gateway")

_BIND_ERRORS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})


class ListenError(Exception):
    """The address cannot be listened on (in use, not local, or not allowed)."""


def serve(settings: Settings) -> int:
    """Serve until SIGINT or SIGTERM; in-flight streams get the grace period."""
    setup_logging(settings.log_level)
    if settings.server.workers > 1:
        return _supervise(settings)
    return _run(settings, reuse_port=False)


class _SharedDirs(NamedTuple):
    """The directories the supervisor makes for its workers to share."""

    responses: str  # kept `/v1/responses` conversations (response_store.py)
    running: str  # the models `/api/ps` lists (running.py)


def _run(
    settings: Settings,
    *,
    reuse_port: bool,
    worker: int = 0,
    shared: _SharedDirs | None = None,
) -> int:
    if worker:
        setup_logging(settings.log_level)
    app = create_app(
        settings,
        response_dir=None if shared is None else shared.responses,
        running_dir=None if shared is None else shared.running,
    )
    server = settings.server
    loop = _new_loop(settings)
    # Startup objects (modules, settings, the app) live as long as the process:
    # kept out of later collections, which cost pauses with many open streams.
    gc.freeze()
    # Young collections every 700 allocations ran every other request; at
    # 10,000 they are rarer and do the same work (about 4 % more non-stream
    # requests per second at concurrency 1, A/B of 7 rounds).
    gc.set_threshold(10_000, *gc.get_threshold()[1:])

    def started(banner: str) -> None:
        # run_app calls this once the socket is bound, so the line is true.
        if worker <= 1:
            _log_startup(settings, app)

    if worker:
        stop = _stop_on_the_first_signal(loop)
        _stop_when_the_supervisor_is_gone(loop, stop, worker)
    # Log lines go out in batches while the loop runs (see log.py).
    stop_batching = batch_log_lines(loop)
    try:
        web.run_app(
            app,
            host=server.host,
            port=server.port,
            backlog=server.backlog,
            reuse_port=reuse_port or None,
            # Our own timer ends streams at the grace period (with an error line);
            # aiohttp's is the backstop that cancels anything left after it.
            shutdown_timeout=server.shutdown_grace + 5.0,
            handler_cancellation=True,
            access_log=None,
            print=started,
            loop=loop,
            handle_signals=not worker,
        )
    except OSError as exc:
        if exc.errno not in _BIND_ERRORS:
            raise
        raise ListenError(
            f"cannot listen on {server.host}:{server.port}: {exc.strerror}"
        ) from None
    finally:
        stop_batching()
    return 0


def check_event_loop(settings: Settings) -> None:
    """Make and close the configured loop, so `check-config` reports a missing
    uvloop as `serve` would."""
    _new_loop(settings).close()


def _new_loop(settings: Settings) -> asyncio.AbstractEventLoop:
    """asyncio's loop, or uvloop when `[server] event_loop = "uvloop"`."""
    if settings.server.event_loop == "asyncio":
        return asyncio.new_event_loop()
    try:
        import uvloop
    except ImportError:
        raise SettingsError(
            "server.event_loop: uvloop is not installed "
            "(pip install 'ollama-gateway[uvloop]')"
        ) from None
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def _worker_main(settings: Settings, number: int, shared: _SharedDirs) -> None:
    stop_cleanly_until_serving()
    try:
        sys.exit(_run(settings, reuse_port=True, worker=number, shared=shared))
    except (ListenError, SettingsError, PluginError) as exc:
        # What the single-process path reports in one line (a bad aliases
        # file, say), not a worker's traceback. One write of the whole line:
        # the workers fail together, and print's two writes (the text, then
        # the newline) let their lines run into one another.
        os.write(2, f"ollama-gateway: error: {exc}\n".encode())
        sys.exit(1)


def _stop_on_the_first_signal(loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """A worker's first SIGTERM or SIGINT starts its drain (as aiohttp's own
    handlers do); any later one is ignored. A worker is often sent the stop
    twice: the supervisor passes on what it gets, and Ctrl-C in a terminal
    signals the whole process group, as systemd's default KillMode signals
    every process of the unit. aiohttp's handlers, raising again, ended the
    drain at once, cutting the worker's streams without their last line; the
    drain has its own bound (`shutdown_grace`)."""

    stopping = False

    def stop() -> None:
        # Not by replacing the handler: two signals that came together are
        # both queued to this one already.
        nonlocal stopping
        if not stopping:
            stopping = True
            raise web.GracefulExit()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    return stop


def _stop_when_the_supervisor_is_gone(
    loop: asyncio.AbstractEventLoop, stop: Callable[[], None], number: int
) -> None:
    """Drain and exit, as on SIGTERM, once the supervisor is gone (killed
    with SIGKILL, say, which it cannot pass on). Orphaned workers served on
    for ever, old settings and all, sharing the port with any gateway started
    after. The parent's sentinel (a pipe the supervisor holds the other end
    of) reads as ended then."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel

    def gone() -> None:
        loop.remove_reader(sentinel)  # it stays readable: once is enough
        log.warning("the supervisor is gone: worker-%d stops", number)
        stop()

    loop.add_reader(sentinel, gone)


def stop_cleanly_until_serving() -> None:
    """A worker asked to stop before its server is up (the loop's handlers
    replace these once it runs) has served nothing: it exits 0, not killed."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def _supervise(settings: Settings) -> int:
    # One metrics directory for all workers, so that a scrape (which reaches
    # one worker) counts every worker's requests. Made fresh, removed at exit,
    # unless the environment names one already.
    own_dir = None
    if not os.environ.get(MULTIPROCESS_DIR):
        own_dir = tempfile.mkdtemp(prefix="ollama-gateway-metrics-")
        os.environ[MULTIPROCESS_DIR] = own_dir
    try:
        # Private (mode 0700) and removed at exit, even after a failed start:
        # one holds clients' conversations.
        with (
            tempfile.TemporaryDirectory(
                prefix="ollama-gateway-responses-", ignore_cleanup_errors=True
            ) as response_dir,
            tempfile.TemporaryDirectory(
                prefix="ollama-gateway-running-", ignore_cleanup_errors=True
            ) as running_dir,
        ):
            return _run_workers(settings, _SharedDirs(response_dir, running_dir))
    finally:
        if own_dir is not None:
            del os.environ[MULTIPROCESS_DIR]
            shutil.rmtree(own_dir, ignore_errors=True)


# A worker killed by a signal (the OOM killer, an operator's `kill -9`) is
# replaced; one that started less than this long ago is replaced only once
# this long has passed, so that a worker killed at every start is not
# restarted in a tight loop.
RESTART_PAUSE = 1.0


def _run_workers(settings: Settings, shared: _SharedDirs) -> int:
    context = multiprocessing.get_context("spawn")

    def start(number: int) -> multiprocessing.process.BaseProcess:
        process = context.Process(
            target=_worker_main,
            args=(settings, number, shared),
            name=f"worker-{number}",
        )
        process.start()
        return process

    running = {n: start(n) for n in range(1, settings.server.workers + 1)}
    started = {n: time.monotonic() for n in running}
    stop = _Stop()
    failed: list[str] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        stop.signum = signum
        for process in list(running.values()):
            _pass_stop(process, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while running:
        for number, process in _wait_for_ended(running):
            replace = _note_the_end(process, stop, failed)
            process.close()  # its pipes: the supervisor may replace many
            if not replace:
                continue
            time.sleep(max(0.0, started[number] + RESTART_PAUSE - time.monotonic()))
            if stop.asked():
                continue
            running[number] = start(number)
            started[number] = time.monotonic()
            if stop.asked():  # asked while it started: `forward` did not see it
                _pass_stop(running[number], stop.signum)
    if failed:
        log.error("workers exited with an error: %s", ", ".join(failed))
        return 1
    return 0


def _note_the_end(
    process: multiprocessing.process.BaseProcess, stop: _Stop, failed: list[str]
) -> bool:
    """Book an ended worker (a failure in `failed`); whether to replace it."""
    _forget_process(process)
    if not failed_workers({process.name: process.exitcode}, stop.asked()):
        return False
    failed.append(process.name)
    if not _killed(process) or stop.asked():
        return False
    log.error(
        "%s (pid %s) was killed by %s; starting another in its place",
        process.name,
        process.pid,
        _signal_name(process),
    )
    return True


def _wait_for_ended(
    running: dict[int, multiprocessing.process.BaseProcess],
) -> list[tuple[int, multiprocessing.process.BaseProcess]]:
    """Wait until a worker ends; those that ended, joined and taken out of
    `running`, by number. Any worker's end, not the first one's in order: a
    worker lost while the others serve is noticed at once."""
    sentinels = {p.sentinel: n for n, p in running.items()}
    ended = []
    for sentinel in multiprocessing.connection.wait(list(sentinels)):
        number = sentinels[sentinel]  # type: ignore[index]
        process = running.pop(number)
        process.join()
        ended.append((number, process))
    return ended


class _Stop:
    """The signal that asked the supervisor to stop (0: none yet); set by
    its signal handler while the supervisor waits or starts a worker."""

    __slots__ = ("signum",)

    def __init__(self) -> None:
        self.signum = 0

    def asked(self) -> bool:
        return self.signum != 0


def _pass_stop(process: multiprocessing.process.BaseProcess, signum: int) -> None:
    if process.pid is None or not process.is_alive():
        return
    if signum == signal.SIGTERM:
        process.terminate()
    else:
        _interrupt(process)


def _killed(process: multiprocessing.process.BaseProcess) -> bool:
    return process.exitcode is not None and process.exitcode < 0


def _signal_name(process: multiprocessing.process.BaseProcess) -> str:
    assert process.exitcode is not None
    try:
        return signal.Signals(-process.exitcode).name
    except ValueError:
        return f"signal {-process.exitcode}"


def _forget_process(process: multiprocessing.process.BaseProcess) -> None:
    """Drop an ended worker's live gauges (streams in flight, kept bytes):
    they would be summed into every scrape for ever, as if it still ran."""
    directory = os.environ.get(MULTIPROCESS_DIR)
    if directory and process.pid is not None:
        mark_process_dead(process.pid, directory)  # type: ignore[no-untyped-call]


def failed_workers(exit_codes: Mapping[str, int | None], stopping: bool) -> list[str]:
    """The workers that ended in error. Once the supervisor has passed a stop
    on, a worker that the signal ended is not one: still starting (importing,
    before its handlers are set), it dies of the signal's default action."""
    stopped = (-signal.SIGTERM, -signal.SIGINT) if stopping else ()
    return [
        name for name, code in exit_codes.items() if code != 0 and code not in stopped
    ]


def _interrupt(process: multiprocessing.process.BaseProcess) -> None:
    assert process.pid is not None
    os.kill(process.pid, signal.SIGINT)


def _log_startup(settings: Settings, app: web.Application) -> None:
    pipeline = app[pipeline_key]
    names = {stage: list(chain) for stage, chain in pipeline.names.items()}
    backends = [
        {"name": b.name, "url": "in-process demo" if b.demo else _safe_url(b.base_url)}
        for b in settings.backends
    ]
    log.info(
        "ollama-gateway listening on http://%s:%d",
        settings.server.host,
        settings.server.port,
        extra={
            "pipeline": names,
            "backends": backends,
            "workers": settings.server.workers,
        },
    )
    if settings.uses_demo_only:
        log.warning(
            "no backend configured (OPENAI_BASE_URL is not set): serving the built-in "
            "demo backend, whose models are named demo*"
        )


def _safe_url(url: str) -> str:
    """The URL without credentials: no user or password, no query string."""
    try:
        return str(URL(url).with_user(None).with_query(None))
    except ValueError:
        return "(unparsable URL)"
