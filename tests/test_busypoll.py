"""The busy-polling selector: epoll's answers unchanged; a spin only after
short waits, given up after spins that find nothing; never past a timer.

What is observed is which waits epoll was asked for (a poll with timeout 0
is a spin's, any other a sleep), not how long anything took.
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec
import pytest
from aiohttp import web

from ollama_gateway import busypoll
from ollama_gateway.busypoll import BusyPollSelector, busy_poll_selector
from ollama_gateway.serve import _new_loop
from ollama_gateway.settings import Settings


class _Recording(BusyPollSelector):
    """Records the timeout of every epoll wait it makes."""

    def __init__(self, budget: float) -> None:
        super().__init__(budget)
        self.waits: list[float | None] = []

    def reset(self) -> None:
        self.waits.clear()

    @property
    def slept(self) -> bool:
        return any(w is None or w > 0 for w in self.waits)

    @property
    def spun(self) -> bool:
        return any(w == 0 for w in self.waits)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture(autouse=True)
def _record(monkeypatch: pytest.MonkeyPatch) -> None:
    # BusyPollSelector waits through EpollSelector.select: record each call.
    inner = selectors.EpollSelector.select

    def select(
        self: selectors.EpollSelector, timeout: float | None = None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        if isinstance(self, _Recording):
            self.waits.append(timeout)
        return inner(self, timeout)

    monkeypatch.setattr(selectors.EpollSelector, "select", select)


@contextmanager
def _watching(
    pair: tuple[socket.socket, socket.socket], budget: float
) -> Iterator[tuple[_Recording, selectors.SelectorKey]]:
    """A recording selector with budget `budget` watching `pair`'s first end."""
    with _Recording(budget) as selector:
        yield selector, selector.register(pair[0], selectors.EVENT_READ)


def _short_wait(
    selector: _Recording, pair: tuple[socket.socket, socket.socket]
) -> None:
    """A wait that data already answers: far shorter than any budget here."""
    a, b = pair
    b.send(b"x")
    assert selector.select(1.0)
    a.recv(16)


def _earn(selector: _Recording, pair: tuple[socket.socket, socket.socket]) -> int:
    """Short waits until the selector spins; how many it took."""
    for count in range(1, 50):
        _short_wait(selector, pair)
        if selector.typical <= selector.budget:
            selector.reset()
            return count
    raise AssertionError(f"still not spinning after 49 short waits: {selector.typical}")


def _long_wait(selector: _Recording, pair: tuple[socket.socket, socket.socket]) -> None:
    """A wait that I/O ends after twenty budgets."""
    a, b = pair
    writer = threading.Timer(20 * selector.budget, b.send, (b"late",))
    writer.start()
    try:
        assert selector.select(None)
    finally:
        writer.join()
    a.recv(16)
    selector.reset()


def test_it_answers_as_epoll_does(pair: tuple[socket.socket, socket.socket]) -> None:
    _, b = pair
    with _watching(pair, 100e-6) as (selector, key):
        assert selector.select(0) == []
        b.send(b"x")
        assert selector.select(1.0) == [(key, selectors.EVENT_READ)]


def test_a_fresh_selector_sleeps_at_once(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    with _watching(pair, 0.5) as (selector, _):
        assert selector.select(0.01) == []
        # No short wait seen yet: one sleep with the caller's timeout, no spin.
        assert selector.waits == [0.01]


def test_a_pass_with_work_waiting_is_one_poll(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    with _watching(pair, 0.5) as (selector, _):
        _earn(selector, pair)
        assert selector.select(0) == []
        assert selector.waits == [0]


def test_after_a_short_wait_it_spins_and_catches_a_late_write(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    _, b = pair
    # A budget far beyond the write's delay: the write must come during the spin.
    with _watching(pair, 5.0) as (selector, key):
        _earn(selector, pair)
        writer = threading.Timer(0.02, b.send, (b"late",))
        writer.start()
        try:
            assert selector.select(None) == [(key, selectors.EVENT_READ)]
        finally:
            writer.join()
        assert selector.spun and not selector.slept


def test_a_long_wait_stops_the_spinning_and_short_ones_bring_it_back(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # A budget far above what a short wait takes, even on a loaded machine.
    with _watching(pair, 20e-3) as (selector, _):
        _earn(selector, pair)
        _long_wait(selector, pair)
        # It spun, found nothing, slept: and the next wait is a plain sleep.
        assert selector.select(0.001) == []
        assert selector.waits == [0.001]
        # One long wait counts as at most four budgets: a few short ones and
        # the loop spins again (uncapped, this one of twenty would take 7).
        assert _earn(selector, pair) <= 4


def test_an_idle_selector_does_not_spin(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    with _watching(pair, 1e-3) as (selector, _):
        _earn(selector, pair)
        # Timers end these waits, not I/O: they are not counted, and spin.
        assert selector.select(0.002) == []
        assert selector.spun and selector.slept
        _long_wait(selector, pair)
        for _ in range(3):
            selector.reset()
            assert selector.select(0.002) == []
            assert selector.waits == [0.002]


def test_with_many_sockets_open_it_sleeps_at_once(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(busypoll, "MAX_SPINNING_FDS", 2)
    extra = [socket.socketpair() for _ in range(2)]
    try:
        with _watching(pair, 1e-3) as (selector, _):
            _earn(selector, pair)
            for a, _b in extra:
                selector.register(a, selectors.EVENT_READ)
            assert selector.select(0.002) == []
            assert selector.waits == [0.002]  # three sockets: no spin
            selector.unregister(extra[0][0])
            selector.reset()
            assert selector.select(0.002) == []
            assert selector.spun  # two: it spins again
    finally:
        for a, b in extra:
            a.close()
            b.close()


def test_a_spin_ends_when_a_timer_is_due(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    with _watching(pair, 60.0) as (selector, _):
        _earn(selector, pair)
        started = time.monotonic()
        assert selector.select(0.01) == []
        # It spun until the timer (10 ms), not for its budget of a minute,
        # and did not sleep after it.
        assert time.monotonic() - started < 30.0
        assert selector.spun and not selector.slept
        # The timer's wait is not counted: the next one still spins.
        selector.reset()
        assert selector.select(0.001) == []
        assert selector.spun


def test_no_selector_of_its_own_for_a_budget_of_zero() -> None:
    assert busy_poll_selector(0) is None
    selector = busy_poll_selector(100)
    assert isinstance(selector, BusyPollSelector)
    assert selector.budget == pytest.approx(100e-6)
    selector.close()


def test_the_gateways_loop_serves_on_it() -> None:
    # The default settings give asyncio's loop this selector; a request
    # served through it over a real socket comes back whole.
    settings = Settings.load({})
    loop = _new_loop(settings)
    try:
        assert isinstance(loop, asyncio.SelectorEventLoop)
        assert isinstance(getattr(loop, "_selector", None), BusyPollSelector)

        async def hello(request: web.Request) -> web.Response:
            return web.Response(text="hello")

        async def exchange() -> bytes:
            app = web.Application()
            app.router.add_get("/", hello)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = await reader.read()
                writer.close()
                await writer.wait_closed()
                return answer
            finally:
                await runner.cleanup()

        answer = loop.run_until_complete(exchange())
        assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"hello")
    finally:
        loop.close()


def test_a_budget_of_zero_gives_asyncios_own_selector() -> None:
    settings = Settings.load({})
    off = msgspec.structs.replace(
        settings, server=msgspec.structs.replace(settings.server, busy_poll_us=0)
    )
    loop = _new_loop(off)
    try:
        assert not isinstance(getattr(loop, "_selector", None), BusyPollSelector)
    finally:
        loop.close()
