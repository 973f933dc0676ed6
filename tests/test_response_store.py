"""The store behind `previous_response_id`: bounded in bytes and age, scoped
to the client that made the response, and shared by the workers through a
directory of files when there are several."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollama_gateway.response_events import new_id
from ollama_gateway.response_files import ResponseFiles, owner_digest, safe_id
from ollama_gateway.response_store import SWEEP_EVERY, ResponseStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_stored_conversation_comes_back_for_its_owner_only() -> None:
    store = ResponseStore(max_bytes=100, ttl=60)
    store.put("resp_1", "key-a", b"[1]")
    assert store.get("resp_1", "key-a") == b"[1]"
    assert store.get("resp_1", "key-b") is None
    assert store.get("resp_2", "key-a") is None


def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    store = ResponseStore(max_bytes=100, ttl=60, clock=clock)
    store.put("resp_1", "", b"[1]")
    clock.now += 59.9
    assert store.get("resp_1", "") == b"[1]"
    clock.now += 0.2
    assert store.get("resp_1", "") is None
    assert len(store) == 0 and store.size == 0


def test_the_oldest_go_first_when_the_bytes_run_out() -> None:
    store = ResponseStore(max_bytes=10, ttl=60)
    store.put("resp_1", "", b"[1111]")  # 6 bytes
    store.put("resp_2", "", b"[22]")  # 4: 10 in all, still within
    assert store.get("resp_1", "") is not None
    store.put("resp_3", "", b"[3]")  # 13 in all: resp_1 goes
    assert store.get("resp_1", "") is None
    assert store.get("resp_2", "") == b"[22]"
    assert store.get("resp_3", "") == b"[3]"
    assert store.size == 7


def test_expired_entries_are_let_go_when_others_are_stored() -> None:
    clock = Clock()
    store = ResponseStore(max_bytes=100, ttl=60, clock=clock)
    store.put("resp_1", "", b"[1]")
    clock.now += 61
    store.put("resp_2", "", b"[2]")
    assert len(store) == 1 and store.size == 3


async def test_expired_entries_are_let_go_though_none_is_stored_after() -> None:
    # They went only with the next `put`: after the last /v1/responses
    # request, the store (and its gauge) stayed full for good.
    sizes: list[int] = []
    emptied = asyncio.Event()

    def on_size(size: int) -> None:
        sizes.append(size)
        if size == 0:
            emptied.set()

    store = ResponseStore(max_bytes=100, ttl=0.01, on_size=on_size)
    store.put("resp_1", "", b"[1]")
    store.put("resp_2", "", b"[22]")
    await asyncio.wait_for(emptied.wait(), 10)
    assert sizes[:2] == [3, 7] and sizes[-1] == 0
    assert len(store) == 0 and store.get("resp_2", "") is None
    store.close()


def test_a_conversation_larger_than_the_store_is_not_kept() -> None:
    store = ResponseStore(max_bytes=4, ttl=60)
    store.put("resp_1", "", b"[1]")
    store.put("resp_2", "", b"[12345]")
    assert store.get("resp_2", "") is None
    assert store.get("resp_1", "") == b"[1]"  # and nothing else was pushed out


def test_storing_an_id_again_replaces_it() -> None:
    store = ResponseStore(max_bytes=100, ttl=60)
    store.put("resp_1", "", b"[1]")
    store.put("resp_1", "", b"[1, 2]")
    assert store.get("resp_1", "") == b"[1, 2]"
    assert len(store) == 1 and store.size == 6


def test_each_change_reports_the_bytes_held() -> None:
    clock = Clock()
    sizes: list[int] = []
    store = ResponseStore(max_bytes=10, ttl=60, clock=clock, on_size=sizes.append)
    store.put("resp_1", "", b"[1111]")  # 6
    store.put("resp_2", "", b"[2222]")  # 12 > 10: resp_1 goes
    clock.now += 61
    assert store.get("resp_2", "") is None  # expired, let go
    assert sizes == [6, 6, 0]


# Shared through a directory: two stores on one directory stand for two
# workers of one gateway.


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def workers(tmp_path: Path, clock: Clock) -> Iterator[tuple[ResponseStore, ...]]:
    """Two stores of 10 bytes each, 60 s ttl, sharing `tmp_path`."""
    stores = tuple(
        ResponseStore(max_bytes=10, ttl=60, clock=clock, directory=str(tmp_path))
        for _ in range(2)
    )
    yield stores
    for store in stores:
        store.close()


async def test_a_conversation_one_worker_saves_the_other_reads(workers, tmp_path):
    one, other = workers
    await one.save("resp_1", "key-a", b"[1]")
    assert one.get("resp_1", "key-a") == b"[1]"
    assert other.get("resp_1", "key-a") is None  # not in its memory...
    assert await other.read("resp_1", "key-a") == b"[1]"  # ... but in the file
    assert other.size == 0 and one.size == 3  # each worker counts its own
    [path] = tmp_path.iterdir()
    assert path.name == "resp_1"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"key-a" not in path.read_bytes()  # a digest, never the key


async def test_a_saved_file_is_for_its_owner_only(workers):
    one, other = workers
    await one.save("resp_1", "key-a", b"[1]")
    assert await other.read("resp_1", "key-b") is None
    assert await other.read("resp_1", "") is None
    assert await other.read("resp_2", "key-a") is None


async def test_a_saved_file_expires_with_the_ttl(workers, clock):
    one, other = workers
    await one.save("resp_1", "", b"[1]")
    clock.now += 59.9
    assert await other.read("resp_1", "") == b"[1]"
    clock.now += 0.2
    assert await other.read("resp_1", "") is None


async def test_saving_again_replaces_the_file(workers):
    one, other = workers
    await one.save("resp_1", "", b"[1]")
    await one.save("resp_1", "", b"[1, 2]")
    assert await other.read("resp_1", "") == b"[1, 2]"


async def test_a_worker_removes_the_files_of_what_it_lets_go(workers, tmp_path):
    one, other = workers
    await one.save("resp_1", "", b"[1111]")  # 6 bytes
    await one.save("resp_2", "", b"[22]")  # 10 in all
    await one.save("resp_3", "", b"[3]")  # 13: resp_1 goes, its file too
    assert names(tmp_path) == ["resp_2", "resp_3"]
    assert await other.read("resp_1", "") is None
    assert await other.read("resp_2", "") == b"[22]"


async def test_too_large_a_conversation_leaves_no_file(workers, tmp_path):
    one, _ = workers
    await one.save("resp_1", "", b"[1234567890]")
    assert list(tmp_path.iterdir()) == []


async def test_expired_files_of_any_worker_are_swept(workers, tmp_path, clock):
    one, other = workers
    await one.save("resp_1", "", b"[1]")  # at 1000, expires at 1060; a sweep
    clock.now += 30
    await one.save("resp_2", "", b"[2]")  # expires at 1090; no sweep
    # A worker that died while writing left a temporary file a ttl ago.
    stale = tmp_path / ".stale"
    stale.write_bytes(b"half")
    os.utime(stale, (clock.now - 60, clock.now - 60))
    clock.now += 31
    await other.save("resp_3", "", b"[3]")  # its first save sweeps
    assert names(tmp_path) == ["resp_2", "resp_3"]
    # Not again until SWEEP_EVERY has passed: an expired file stays till then
    # (and is a miss meanwhile).
    clock.now += 30
    await other.save("resp_4", "", b"[4]")
    assert names(tmp_path) == ["resp_2", "resp_3", "resp_4"]
    assert await other.read("resp_2", "") is None
    clock.now = 1061 + SWEEP_EVERY
    await other.save("resp_5", "", b"[5]")
    assert names(tmp_path) == ["resp_4", "resp_5"]


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_the_files_of_expired_conversations_go_with_them(tmp_path):
    emptied = asyncio.Event()
    store = ResponseStore(
        max_bytes=100,
        ttl=0.01,
        directory=str(tmp_path),
        on_size=lambda size: emptied.set() if size == 0 else None,
    )
    await store.save("resp_1", "", b"[1]")
    await asyncio.wait_for(emptied.wait(), 10)
    store.close()  # the file changes asked so far are done
    assert list(tmp_path.iterdir()) == []


async def test_a_sweep_spares_a_file_being_written(workers, tmp_path, clock):
    one, _ = workers
    # Written at the sweep's `now`: what another worker is writing right then.
    writing = tmp_path / ".writing"
    writing.write_bytes(b"half")
    os.utime(writing, (clock.now, clock.now))
    await one.save("resp_1", "", b"[1]")
    assert writing.exists()


@pytest.mark.parametrize(
    "response_id",
    ["../resp_1", "x/../resp_1", "/etc/passwd", "..", ".", "", ".stale", "resp_1\n"]
    + ["resp 1", "r" * 65, "résp_1", "resp_1\x00"],
)
async def test_an_id_that_is_no_file_name_never_reaches_the_files(
    workers, tmp_path, monkeypatch, response_id
):
    one, other = workers
    await one.save("resp_1", "", b"[1]")
    looked: list[str] = []
    monkeypatch.setattr(ResponseFiles, "read", lambda _, rid, *a: looked.append(rid))
    assert await other.read(response_id, "") is None
    assert looked == []
    assert not safe_id(response_id)
    # And the files' own reader refuses it as well.
    files = ResponseFiles(str(tmp_path / "sub"))
    (tmp_path / "sub").mkdir()
    monkeypatch.undo()
    assert files.read(response_id, owner_digest(""), 0.0, 100) is None


def test_the_ids_the_gateway_makes_are_file_names() -> None:
    assert safe_id(new_id("resp"))


def _cut(data: bytes) -> bytes:
    return data[:-1]


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


def _flip_first(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


def _grown(data: bytes) -> bytes:
    return data + b" "


@pytest.mark.parametrize(
    "damage",
    [_cut, _flip_last, _flip_first, _grown, lambda d: b"", lambda d: d[:10]],
)
async def test_a_damaged_file_is_a_miss(workers, tmp_path, damage):
    one, other = workers
    await one.save("resp_1", "", b"[1, 2]")
    path = tmp_path / "resp_1"
    expires = path.stat().st_mtime
    path.write_bytes(damage(path.read_bytes()))
    os.utime(path, (expires, expires))
    assert await other.read("resp_1", "") is None


async def test_a_directory_in_place_of_a_file_is_a_miss(workers, tmp_path):
    _, other = workers
    (tmp_path / "resp_1").mkdir()
    assert await other.read("resp_1", "") is None


async def test_a_file_larger_than_a_store_is_a_miss(tmp_path, clock):
    big = ResponseStore(max_bytes=100, ttl=60, clock=clock, directory=str(tmp_path))
    small = ResponseStore(max_bytes=5, ttl=60, clock=clock, directory=str(tmp_path))
    try:
        await big.save("resp_1", "", b"[1, 2, 3]")
        assert await small.read("resp_1", "") is None
    finally:
        big.close()
        small.close()


async def test_a_failed_write_keeps_the_conversation_in_memory(tmp_path, clock, caplog):
    gone = tmp_path / "gone"  # no directory there: no file can be made
    store = ResponseStore(max_bytes=10, ttl=60, clock=clock, directory=str(gone))
    try:
        await store.save("resp_1", "", b"[1]")
        assert store.get("resp_1", "") == b"[1]"
        assert await store.read("resp_1", "") is None
    finally:
        store.close()
    assert "not shared with the other workers" in caplog.text


async def test_a_store_without_a_directory_reads_no_file(tmp_path):
    store = ResponseStore(max_bytes=100, ttl=60)
    await store.save("resp_1", "", b"[1]")
    assert not store.shared
    assert store.get("resp_1", "") == b"[1]"
    assert await store.read("resp_1", "") is None
    store.close()
