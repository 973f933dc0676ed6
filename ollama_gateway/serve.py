"""Running the server: logging, the startup lines, signals and worker processes.

With `--workers N` (N > 1) this process supervises N workers that each run the
full gateway on the same port (SO_REUSEPORT; the kernel spreads connections),
each with its own upstream session. SIGTERM and SIGINT are passed on, and the
supervisor exits 0 when every worker drained and exited 0. A worker that
ended in error while no stop was asked (killed by the OOM killer or `kill -9`,
or exited non-zero by itself) is replaced after a back-off, and its live
gauges dropped; its open streams are lost, so the supervisor logs it as an
error and exits 1 in the end. One that exited cleanly while no stop was
asked (sent a SIGTERM of its own) drained and lost nothing: it is replaced
too, with a warning. One that keeps failing before it serves makes
the supervisor give up: it stops the others and exits 1. Workers whose
supervisor is gone drain and exit. The supervisor makes the directories the
workers share (metrics, kept `/v1/responses` conversations, the models
`/api/ps` lists, the aliases `/api/copy` makes unless `catalogue.aliases_file`
names their file) and removes them when it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import gc
import glob
import logging
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from multiprocessing import resource_tracker
from types import FrameType
from typing import NamedTuple

import msgspec
from aiohttp import web
from prometheus_client.multiprocess import mark_process_dead
from yarl import URL

from ollama_gateway.app import create_app
from ollama_gateway.busypoll import busy_poll_selector
from ollama_gateway.errors import PluginError
from ollama_gateway.keys import pipeline_key
from ollama_gateway.log import batch_log_lines, setup_logging
from ollama_gateway.metrics import MULTIPROCESS_DIR, check_multiprocess_dir
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
        _check_once(settings)
        return _supervise(settings)
    return _run(settings, reuse_port=False)


def _check_once(settings: Settings) -> None:
    """Make the app once here, as `check-config` does, and drop it: a bad
    setting or plugin table (a SettingsError or PluginError) is then said
    once, with the single process's status (2). Found by each worker, it was
    said once per worker and the supervisor exited 1."""
    create_app(settings)
    directory = os.environ.get(MULTIPROCESS_DIR)
    if directory:
        # The files its metrics made in the workers' metrics directory the
        # environment names: a scrape would add them up as one more process's.
        for path in glob.glob(os.path.join(directory, f"*_{os.getpid()}.db")):
            os.remove(path)


class _SharedDirs(NamedTuple):
    """The directories the supervisor makes for its workers to share."""

    responses: str  # kept `/v1/responses` conversations (response_store.py)
    running: str  # the models `/api/ps` lists (running.py)
    aliases: str  # the file of the aliases `/api/copy` makes (aliases.py)


def _run(
    settings: Settings,
    *,
    reuse_port: bool,
    worker: int = 0,
    shared: _SharedDirs | None = None,
    ready: ctypes.c_bool | None = None,
) -> int:
    if worker:
        setup_logging(settings.log_level)
    app = create_app(
        settings,
        response_dir=None if shared is None else shared.responses,
        running_dir=None if shared is None else shared.running,
        aliases_file=None if shared is None else shared.aliases,
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
        if ready is not None:
            ready.value = True  # the supervisor's sign that it started
        if worker <= 1:
            _log_startup(settings, app, _bound_port(banner, settings.server.port))

    # Our handlers, not aiohttp's, in a single process too: a second signal
    # (Ctrl-C twice) made aiohttp's raise again in the drain, which cut the
    # streams without their last line and logged two tracebacks.
    stop = _stop_on_the_first_signal(loop)
    if worker:
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
            handle_signals=False,
        )
    except OSError as exc:
        # A host that does not resolve (`--host nosuch`) is one too: it was a
        # traceback.
        if exc.errno not in _BIND_ERRORS and not isinstance(exc, socket.gaierror):
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
        selector = busy_poll_selector(settings.server.busy_poll_us)
        if selector is None:
            return asyncio.new_event_loop()
        return asyncio.SelectorEventLoop(selector)
    try:
        import uvloop
    except ImportError:
        raise SettingsError(
            "server.event_loop: uvloop is not installed "
            "(pip install 'ollama-gateway[uvloop]')"
        ) from None
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def _worker_main(
    settings: Settings, number: int, shared: _SharedDirs, ready: ctypes.c_bool
) -> None:
    stop_cleanly_until_serving()
    try:
        sys.exit(
            _run(settings, reuse_port=True, worker=number, shared=shared, ready=ready)
        )
    except (ListenError, SettingsError, PluginError) as exc:
        # What the single-process path reports in one line (a bad aliases
        # file, say), not a worker's traceback. One write of the whole line:
        # the workers fail together, and print's two writes (the text, then
        # the newline) let their lines run into one another.
        os.write(2, f"ollama-gateway: error: {exc}\n".encode())
        sys.exit(CONFIG_ERROR)
    except Exception:
        # A log line, JSON with the rest, rather than multiprocessing's bare
        # traceback on stderr; the supervisor then replaces the worker.
        log.exception("worker-%d failed", number)
        sys.exit(1)


def _stop_on_the_first_signal(loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """The first SIGTERM or SIGINT starts the drain (as aiohttp's own
    handlers do); any later one is ignored. A worker is often sent the stop
    twice: the supervisor passes on what it gets, and Ctrl-C in a terminal
    signals the whole process group, as systemd's default KillMode signals
    every process of the unit. aiohttp's handlers, raising again, ended the
    drain at once, cutting the streams without their last line; the drain
    has its own bound (`shutdown_grace`)."""

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


_STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


def stop_cleanly_until_serving() -> None:
    """A worker asked to stop before its server is up (the loop's handlers
    replace these once it runs) has served nothing: it exits 0, not killed.
    The signals come blocked from the supervisor; one that came meanwhile is
    taken now."""
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _exit_cleanly)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    # At once, not by SystemExit: raised wherever the signal lands, one that
    # landed in a callback (importlib's module locks have them, and a worker
    # starting is mostly importing) was "ignored", and the worker, deaf to
    # any further stop, went on to serve for good while the supervisor
    # waited for it. Nothing is served or made yet that needs closing; a
    # second stop (the supervisor passes on the Ctrl-C the worker got too)
    # finds the process gone.
    os._exit(0)


def _supervise(settings: Settings) -> int:
    # Until `forward` is set, Ctrl-C is a KeyboardInterrupt again (cli.main's
    # handler ends the process at once): the directories made below are
    # removed on the way out.
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # One metrics directory for all workers, so that a scrape (which reaches
    # one worker) counts every worker's requests. Made fresh, removed at exit,
    # unless the environment names one already.
    check_multiprocess_dir()  # once, here, not in each worker
    own_dir = None
    if not os.environ.get(MULTIPROCESS_DIR):
        own_dir = tempfile.mkdtemp(prefix="ollama-gateway-metrics-")
        os.environ[MULTIPROCESS_DIR] = own_dir
    try:
        # Private (mode 0700) and removed at exit, even after a failed start:
        # one holds clients' conversations.
        with (
            _one_port_for_all(settings) as settings,
            tempfile.TemporaryDirectory(
                prefix="ollama-gateway-responses-", ignore_cleanup_errors=True
            ) as response_dir,
            tempfile.TemporaryDirectory(
                prefix="ollama-gateway-running-", ignore_cleanup_errors=True
            ) as running_dir,
            _aliases_file(settings) as aliases_file,
        ):
            shared = _SharedDirs(response_dir, running_dir, aliases_file)
            return _run_workers(settings, shared)
    finally:
        if own_dir is not None:
            del os.environ[MULTIPROCESS_DIR]
            shutil.rmtree(own_dir, ignore_errors=True)


@contextlib.contextmanager
def _aliases_file(settings: Settings) -> Iterator[str]:
    """The file the workers share their aliases through: the configured one,
    else one in a directory made for it (mode 0700) and removed at exit. Each
    worker kept its own in memory, so an alias made through one was unknown
    (404) to the others, for good without a configured file."""
    configured = settings.catalogue.aliases_file
    if configured:
        yield configured
        return
    with tempfile.TemporaryDirectory(
        prefix="ollama-gateway-aliases-", ignore_cleanup_errors=True
    ) as directory:
        yield os.path.join(directory, "aliases.json")


@contextlib.contextmanager
def _one_port_for_all(settings: Settings) -> Iterator[Settings]:
    """The settings with the port the workers share. `--port 0` asks the
    kernel for one: each worker asking on its own got its own, so the gateway
    listened on N random ports and logged one of them. The supervisor asks
    once and holds that port (bound with SO_REUSEPORT, not listening, so no
    connection is queued to it) while it runs, for replacements too."""
    server = settings.server
    if server.port != 0:
        yield settings
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            server.host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {server.host}:0: {exc.strerror}") from None
    with socket.socket(family, kind, proto) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            holder.bind(address)
        except OSError as exc:
            raise ListenError(
                f"cannot listen on {server.host}:0: {exc.strerror}"
            ) from None
        port: int = holder.getsockname()[1]
        yield msgspec.structs.replace(
            settings, server=msgspec.structs.replace(server, port=port)
        )


# A worker that ended in error while no stop was asked (killed by the OOM
# killer or an operator's `kill -9`, or exited non-zero by itself: an
# unexpected exception) is replaced, no sooner than RESTART_PAUSE after its
# own start; each further failure in a row doubles the pause, up to
# RESTART_PAUSE_MAX, so a crash loop does not spin. A worker that lived
# STEADY seconds starts the count again.
RESTART_PAUSE = 1.0
RESTART_PAUSE_MAX = 30.0
STEADY = 60.0
# A slot whose workers failed this many times in a row before serving will
# not start: the supervisor stops the others and exits 1 (the orchestrator
# sees the failure) instead of serving on short of workers for ever.
START_ATTEMPTS = 5
# A worker's exit code for an error that the single-process gateway reports
# in one line (it cannot listen, a bad setting or plugin): the same every
# time, so not worth a replacement.
CONFIG_ERROR = 78  # sysexits' EX_CONFIG


class _Slot:
    """One worker number: its process, and how its workers have fared."""

    __slots__ = ("failures", "number", "process", "ready", "started", "unstarted")

    def __init__(self, number: int) -> None:
        self.number = number
        self.process: multiprocessing.process.BaseProcess | None = None
        self.ready: ctypes.c_bool | None = None  # set by the worker once serving
        self.started = 0.0
        self.failures = 0  # in a row
        self.unstarted = 0  # failures in a row before serving

    def book_failure(self, *, served: bool = False) -> float:
        """Count the failure of the worker that ended; when to replace it.
        `served`: it counts as having served, whether or not it got so far
        (a clean exit is no failed start)."""
        assert self.ready is not None
        lived = time.monotonic() - self.started
        self.failures = 1 if lived >= STEADY else self.failures + 1
        self.unstarted = 0 if served or self.ready.value else self.unstarted + 1
        pause = min(RESTART_PAUSE * 2.0 ** (self.failures - 1), RESTART_PAUSE_MAX)
        return self.started + pause


def _run_workers(settings: Settings, shared: _SharedDirs) -> int:
    context = multiprocessing.get_context("spawn")
    slots = {n: _Slot(n) for n in range(1, settings.server.workers + 1)}
    running: dict[int, multiprocessing.process.BaseProcess] = {}
    due: dict[int, float] = {}  # replacements waiting out their pause
    stop = _Stop()
    failed: list[str] = []
    # The signal handler writes here, so that a wait for a replacement's
    # pause ends at once on a stop.
    wake, woken = os.pipe()
    os.set_blocking(woken, False)

    def start(slot: _Slot) -> None:
        slot.ready = context.RawValue(ctypes.c_bool, False)
        slot.process = context.Process(
            target=_worker_main,
            args=(settings, slot.number, shared, slot.ready),
            name=f"worker-{slot.number}",
        )
        # The worker is born with the stop signals blocked (the mask is
        # inherited), so one that comes while it imports waits for its own
        # handlers (see `stop_cleanly_until_serving`): Ctrl-C, which a
        # terminal sends to every process, printed a KeyboardInterrupt
        # traceback per starting worker. Ours is held for as long too.
        # (The spawn context's resource tracker, started with the first
        # worker, would unblock them on its way: it is started before.)
        resource_tracker.ensure_running()
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            slot.process.start()
            slot.started = time.monotonic()
            running[slot.number] = slot.process
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        if stop.asked():  # asked while it started: `forward` did not see it
            _pass_stop(slot.process, stop.signum)

    def forward(signum: int, frame: FrameType | None) -> None:
        stop.signum = signum
        for process in list(running.values()):
            _pass_stop(process, signum)
        with contextlib.suppress(BlockingIOError):  # full: a wake is pending
            os.write(woken, b"\0")

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        for slot in slots.values():
            start(slot)
        while running or due and not stop.asked():
            ended = _wait_for_ended(running, wake, due)
            for slot in (slots[number] for number in ended):
                if _book_the_end(slot, stop, failed, due):
                    forward(signal.SIGTERM, None)
            if stop.asked():
                due.clear()
            for number, when in list(due.items()):
                if when <= time.monotonic():
                    del due[number]
                    start(slots[number])
    finally:
        os.close(wake)
        os.close(woken)
    if failed:
        log.error("workers exited with an error: %s", ", ".join(failed))
        return 1
    return 0


def _book_the_end(
    slot: _Slot, stop: _Stop, failed: list[str], due: dict[int, float]
) -> bool:
    """Book a worker that ended (a failure in `failed`) and schedule its
    replacement in `due`; whether to give up."""
    process = slot.process
    assert process is not None
    _forget_process(process)
    name, pid, code, how = process.name, process.pid, process.exitcode, ""
    if code:
        how = _how_it_ended(code)
    process.close()  # its pipes: the supervisor may replace many
    if code == 0 and not stop.asked():
        # Stopped alone (a SIGTERM sent to its pid): it drained, so nothing
        # was lost, but the gateway would serve on one worker short for good.
        # Replaced with the same back-off, never given up on: it served.
        due[slot.number] = slot.book_failure(served=True)
        log.warning(
            "%s (pid %s) exited though the gateway was not stopping; "
            "starting another in its place",
            name,
            pid,
        )
        return False
    if not failed_workers({name: code}, stop.asked()):
        return False
    failed.append(name)
    if stop.asked() or code == CONFIG_ERROR:
        return False  # the latter said why, on stderr
    when = slot.book_failure()
    if slot.unstarted >= START_ATTEMPTS:
        log.error(
            "%s failed %d times in a row before serving (last: %s); "
            "giving up: stopping the other workers",
            name,
            slot.unstarted,
            how,
        )
        return True
    log.error("%s (pid %s) %s; starting another in its place", name, pid, how)
    due[slot.number] = when
    return False


def _wait_for_ended(
    running: dict[int, multiprocessing.process.BaseProcess],
    wake: int,
    due: Mapping[int, float],
) -> list[int]:
    """Wait until a worker ends, a replacement is due, or a signal came; the
    numbers of the workers that ended, joined and taken out of `running`.
    Any worker's end, not the first one's in order: a worker lost while the
    others serve is noticed at once."""
    sentinels = {p.sentinel: n for n, p in running.items()}
    timeout = max(0.0, min(due.values()) - time.monotonic()) if due else None
    ended = []
    for ready in multiprocessing.connection.wait([*sentinels, wake], timeout):
        if ready == wake:
            os.read(wake, 512)
            continue
        number = sentinels[ready]  # type: ignore[index]
        running.pop(number).join()
        ended.append(number)
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


def _how_it_ended(code: int) -> str:
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


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


def _bound_port(banner: str, asked: int) -> int:
    """The port run_app's banner names ("Running on http://host:port"): the
    one the kernel chose when `asked` is 0, which the line reported as 0."""
    found = re.search(r"Running on \S+:(\d+)\b", banner)
    return int(found.group(1)) if found else asked


def _log_startup(settings: Settings, app: web.Application, port: int) -> None:
    pipeline = app[pipeline_key]
    names = {stage: list(chain) for stage, chain in pipeline.names.items()}
    backends = [
        {"name": b.name, "url": "in-process demo" if b.demo else _safe_url(b.base_url)}
        for b in settings.backends
    ]
    host = settings.server.host
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address: "http://::1:11434" is no URL
    log.info(
        "ollama-gateway listening on http://%s:%d",
        host,
        port,
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
