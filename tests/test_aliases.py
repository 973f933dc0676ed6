"""The aliases `/api/copy` makes, as workers share them: two catalogues on one
shared file are two workers (tests/test_workers.py runs real ones)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from ollama_gateway.aliases import AliasStore
from ollama_gateway.catalogue import Catalogue
from ollama_gateway.errors import AliasLimitError
from tests.test_catalogue import Lister, names, settings


def worker(settings_for: Any, shared: Path, toml: str = "") -> Catalogue:
    lister = Lister(b1=["gpt-4o", "o3"], b2=[])
    return Catalogue(
        settings(settings_for, toml), lister, shared_aliases_file=str(shared)
    )


async def copy(cat: Catalogue, source: str, destination: str) -> None:
    entry = await cat.resolve(source, recheck_aliases=True)
    assert entry is not None
    cat.add_alias(destination, entry)


async def upstream_of(cat: Catalogue, name: str) -> str | None:
    entry = await cat.resolve(name)
    return None if entry is None else entry.upstream_id


class Stats:
    """Counts the stats of one file (the shared aliases file)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
        self.count = 0
        real = os.stat

        def counting(target: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            if os.fspath(target) == str(path):
                self.count += 1
            return real(target, *args, **kwargs)

        monkeypatch.setattr(os, "stat", counting)


async def test_a_worker_takes_the_copies_and_deletes_another_made(
    settings_for, tmp_path
):
    # Each worker kept its aliases in memory: the other answered 404 for a
    # new alias, listed and served a deleted one, and sent a re-pointed one
    # to its old model.
    shared = tmp_path / "aliases.json"
    first, second = worker(settings_for, shared), worker(settings_for, shared)
    assert await upstream_of(second, "gpt-4o") == "gpt-4o"  # listed, no aliases
    await copy(first, "gpt-4o", "mine")
    assert await upstream_of(second, "mine:latest") == "gpt-4o"  # a miss
    await copy(first, "o3", "mine")
    assert await upstream_of(second, "mine") == "o3"  # an alias hit
    assert "mine:latest" in await names(second)
    assert first.remove_alias("mine")
    assert "mine:latest" not in await names(second)  # /api/tags
    await copy(first, "gpt-4o", "again")
    assert await upstream_of(second, "mine") is None
    shown = await second.resolve("again", recheck_aliases=True)
    assert shown is not None and shown.alias_of == "gpt-4o:latest"
    # And the other way round: the second's copy over its own read of the file.
    await copy(second, "again", "third")
    assert await upstream_of(first, "third") == "gpt-4o"
    assert set(json.loads(shared.read_text())) == {"again", "third"}


async def test_an_alias_over_a_served_name_is_taken_by_show_and_listing(
    settings_for, tmp_path
):
    # `ollama cp o3 gpt-4o`: the served name is the hot path, which does not
    # look at the file; /api/show and /api/tags do, and so does the next
    # listing of the backends.
    shared = tmp_path / "aliases.json"
    toml = "[catalogue]\nttl = 0.05\n"
    first, second = worker(settings_for, shared), worker(settings_for, shared, toml)
    assert await upstream_of(second, "gpt-4o") == "gpt-4o"
    await copy(first, "o3", "gpt-4o")
    assert await upstream_of(second, "gpt-4o") == "gpt-4o"
    shown = await second.resolve("gpt-4o", recheck_aliases=True)
    assert shown is not None and shown.upstream_id == "o3"
    assert first.remove_alias("gpt-4o")
    # Past the ttl, a request starts the refresh; the one after it has it.
    await _until(lambda: upstream_of(second, "gpt-4o"), "gpt-4o")


async def _until(ask: Any, wanted: object) -> None:
    for _ in range(200):
        if await ask() == wanted:
            return
        await asyncio.sleep(0.01)
    assert await ask() == wanted


async def test_a_served_model_costs_no_stat_and_an_alias_one(
    settings_for, tmp_path, monkeypatch
):
    shared = tmp_path / "aliases.json"
    first, second = worker(settings_for, shared), worker(settings_for, shared)
    await copy(first, "gpt-4o", "mine")
    assert await upstream_of(second, "mine") == "gpt-4o"
    stats = Stats(monkeypatch, shared)
    for _ in range(50):
        assert await upstream_of(second, "gpt-4o") == "gpt-4o"
    assert stats.count == 0
    for _ in range(5):
        assert await upstream_of(second, "mine") == "gpt-4o"
    assert stats.count == 5


async def test_a_single_process_store_never_looks_at_its_file_again(
    settings_for, tmp_path, monkeypatch
):
    # Without --workers the catalogue's file is its own: nothing new is paid,
    # not even on a miss, and what it holds in memory is what it serves.
    path = tmp_path / "aliases.json"
    toml = f'[catalogue]\naliases_file = "{path}"\n'
    own = Catalogue(settings(settings_for, toml), Lister(b1=["gpt-4o"], b2=[]))
    assert await names(own) == ["gpt-4o:latest"]
    path.write_text('{"elsewhere": "gpt-4o"}')
    stats = Stats(monkeypatch, path)
    assert await upstream_of(own, "elsewhere") is None
    assert await names(own) == ["gpt-4o:latest"]
    assert stats.count == 0


def test_every_version_of_a_shared_file_is_told_apart(tmp_path):
    # A file system's clock ticks every few milliseconds, and the inode a
    # rename freed comes back at the next change: three quick changes of one
    # size could leave a file that looked like the one a worker read before
    # the first, and it kept the aliases of then. Each version's time is set
    # past the one it replaces.
    shared = tmp_path / "aliases.json"
    writer = AliasStore(str(shared), shared=True)
    reader = AliasStore(str(shared), shared=True)
    times = []
    for turn in range(30):
        writer.set("mine", f"model-{turn % 10}")
        times.append(shared.stat().st_mtime_ns)
        if turn % 3 == 0:
            assert reader.reload_if_changed()
            assert reader.items() == [("mine", f"model-{turn % 10}")]
            assert not reader.reload_if_changed()
    assert times == sorted(set(times))


def test_a_spoilt_shared_file_keeps_the_aliases_read_before(tmp_path, caplog):
    path = tmp_path / "aliases.json"
    writer = AliasStore(str(path), shared=True)
    reader = AliasStore(str(path), shared=True)
    writer.set("mine", "gpt-4o")
    assert reader.reload_if_changed()
    path.write_text("{oops")
    with caplog.at_level(logging.WARNING, logger="ollama_gateway.aliases"):
        assert not reader.reload_if_changed()
        assert not reader.reload_if_changed()  # said once per version
    assert reader.items() == [("mine", "gpt-4o")]
    [record] = caplog.records
    assert record.getMessage().startswith(f"catalogue.aliases_file: {path}: ")
    assert record.getMessage().endswith("; the aliases read before stay")
    path.write_text('{"fixed": "o3"}')
    assert reader.reload_if_changed()
    assert reader.items() == [("fixed", "o3")]


async def test_a_copy_refused_still_leaves_the_others_aliases_to_take(
    settings_for, tmp_path
):
    # The refused copy read the file (with the first's alias in it) without
    # taking it; had it noted that version as seen, the alias stayed unknown.
    shared = tmp_path / "aliases.json"
    toml = "[catalogue]\nmax_aliases = 1\n"
    first = worker(settings_for, shared, toml)
    second = worker(settings_for, shared, toml)
    source = await second.resolve("gpt-4o")
    assert source is not None
    await copy(first, "gpt-4o", "one")
    with pytest.raises(AliasLimitError):
        second.add_alias("two", source)
    assert "one:latest" in await names(second)
