"""The store behind `previous_response_id`: bounded in bytes and age, scoped
to the client that made the response."""

from __future__ import annotations

from ollama_gateway.response_store import ResponseStore


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
