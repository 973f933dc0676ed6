"""The model catalogue: listing, caching, failure handling, resolution, aliases."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import pytest

from ollama_gateway import catalogue as catalogue_module
from ollama_gateway.catalogue import Catalogue, lookup_key
from ollama_gateway.modelinfo import parameter_size_of, registry_name, tagged
from ollama_gateway.schemas import openai
from ollama_gateway.settings import BackendSettings, Settings, SettingsError

TWO_BACKENDS = """
[[backends]]
name = "b1"
base_url = "http://127.0.0.1:9/v1"

[[backends]]
name = "b2"
base_url = "http://127.0.0.1:9/v1"
"""


class Lister:
    """A scriptable `list_models`: per backend, a list of ids or an exception.

    `gate` holds every listing until set; `gates` holds one backend's.
    """

    def __init__(self, **lists: list[Any] | Exception) -> None:
        self.lists: dict[str, list[Any] | Exception] = dict(lists)
        self.calls: list[str] = []
        self.gate: asyncio.Event | None = None
        self.gates: dict[str, asyncio.Event] = {}

    async def __call__(self, backend: BackendSettings) -> list[openai.ModelObject]:
        self.calls.append(backend.name)
        if self.gate is not None:
            await self.gate.wait()
        if backend.name in self.gates:
            await self.gates[backend.name].wait()
        result = self.lists[backend.name]
        if isinstance(result, Exception):
            raise result
        return [
            item if isinstance(item, openai.ModelObject) else openai.ModelObject(item)
            for item in result
        ]


def settings(settings_for: Any, toml: str = "") -> Settings:
    return settings_for(toml=TWO_BACKENDS + toml)  # type: ignore[no-any-return]


async def names(cat: Catalogue) -> list[str]:
    return [e.name for e in await cat.entries() if not e.hidden]


def test_lookup_key_and_tagged_forms():
    assert lookup_key(" GPT-4o:Latest ") == "gpt-4o"
    assert lookup_key("qwen3:8b") == "qwen3:8b"
    assert tagged("gpt-4o") == "gpt-4o:latest"
    assert tagged("qwen3:8b") == "qwen3:8b"
    # A colon in the host part is not a tag.
    assert tagged("host:5000/org/model") == "host:5000/org/model:latest"


async def test_names_get_a_tag_and_resolve_in_any_case_with_or_without_latest(
    settings_for,
):
    lister = Lister(b1=["gpt-4o", "qwen3:8b", "org/Llama-3"], b2=[])
    cat = Catalogue(settings(settings_for), lister)
    assert await names(cat) == ["gpt-4o:latest", "qwen3:8b", "org/Llama-3:latest"]
    for asked in ("gpt-4o", "gpt-4o:latest", "GPT-4O:Latest", " gpt-4o "):
        entry = await cat.resolve(asked)
        assert entry is not None and entry.upstream_id == "gpt-4o", asked
    entry = await cat.resolve("ORG/llama-3:LATEST")
    assert entry is not None and entry.upstream_id == "org/Llama-3"
    assert await cat.resolve("qwen3") is None  # only `:latest` is implied
    assert await cat.resolve("nope") is None


async def test_list_is_cached_for_the_ttl(settings_for):
    lister = Lister(b1=["gpt-4o"], b2=["other"])
    cat = Catalogue(settings(settings_for, "[catalogue]\nttl = 60\n"), lister)
    await asyncio.gather(*(cat.entries() for _ in range(5)))
    await cat.resolve("gpt-4o")
    assert sorted(lister.calls) == ["b1", "b2"]


async def test_stale_list_is_served_while_one_background_refresh_runs(settings_for):
    lister = Lister(b1=["old-model"], b2=[])
    cat = Catalogue(settings(settings_for, "[catalogue]\nttl = 0.01\n"), lister)
    assert await names(cat) == ["old-model:latest"]
    await asyncio.sleep(0.03)
    lister.lists["b1"] = ["new-model"]
    lister.gate = asyncio.Event()
    # The refresh is blocked, yet every caller gets the stale list at once.
    for _ in range(3):
        listed = await asyncio.wait_for(names(cat), timeout=1)
        assert listed == ["old-model:latest"]
    for _ in range(
        10
    ):  # let the background refresh start (3.12 wait_for may not yield)
        await asyncio.sleep(0)
    assert lister.calls.count("b1") == 2  # one refresh, not one per request
    lister.gate.set()
    for _ in range(100):
        await asyncio.sleep(0.005)
        if await cat.resolve("new-model") is not None:
            break
    assert await cat.resolve("new-model") is not None
    assert await cat.resolve("old-model") is None
    await cat.aclose()


async def test_backend_that_goes_down_keeps_its_last_good_list(settings_for):
    lister = Lister(b1=["gpt-4o"], b2=["llama3"])
    cat = Catalogue(settings(settings_for, "[catalogue]\nttl = 0.01\n"), lister)
    assert sorted(await names(cat)) == ["gpt-4o:latest", "llama3:latest"]
    lister.lists["b2"] = ConnectionError("refused")
    lister.lists["b1"] = ["gpt-4o", "gpt-4.1"]
    await asyncio.sleep(0.03)
    await cat.entries()  # starts the refresh in the background
    await asyncio.sleep(0.02)
    listed = sorted(await names(cat))
    assert listed == ["gpt-4.1:latest", "gpt-4o:latest", "llama3:latest"]
    assert cat.backend_errors() == {}  # it still has models to serve
    await cat.aclose()


async def test_backend_down_from_the_start_does_not_hide_the_other(
    settings_for, monkeypatch
):
    monkeypatch.setattr(catalogue_module, "_RETRY_FAILED_AFTER", 0.01)
    lister = Lister(b1=["gpt-4o"], b2=ConnectionError("refused"))
    cat = Catalogue(settings(settings_for), lister)
    assert await names(cat) == ["gpt-4o:latest"]
    assert cat.backend_errors() == {"b2": "refused"}
    # Later requests do not wait for the dead backend, but it is retried.
    lister.gate = asyncio.Event()
    await asyncio.sleep(0.02)
    assert await asyncio.wait_for(names(cat), timeout=1) == ["gpt-4o:latest"]
    lister.lists["b2"] = ["llama3"]
    lister.gate.set()
    for _ in range(100):
        await asyncio.sleep(0.005)
        if await cat.resolve("llama3") is not None:
            break
    assert await cat.resolve("llama3") is not None
    assert cat.backend_errors() == {}
    await cat.aclose()


async def test_failed_backend_is_not_retried_on_every_request(settings_for):
    lister = Lister(b1=["gpt-4o"], b2=ConnectionError("refused"))
    cat = Catalogue(settings(settings_for), lister)
    for _ in range(5):
        await cat.entries()
        await asyncio.sleep(0)
    assert lister.calls.count("b2") == 1


async def _listed_by(lister: Lister, cat: Catalogue, calls: int) -> None:
    """Until b2 was asked `calls` times and its answer is taken in."""
    async with asyncio.timeout(5):
        while lister.calls.count("b2") < calls:
            await cat.entries()
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.01)


async def test_a_backend_down_is_logged_once_per_run_of_failures(settings_for, caplog):
    # Each retry (every 5 s while requests came) logged the same warning.
    lister = Lister(b1=["gpt-4o"], b2=ConnectionError("refused"))
    cat = Catalogue(settings(settings_for, "[catalogue]\nttl = 0\n"), lister)
    with caplog.at_level(logging.INFO, logger="ollama_gateway.catalogue"):
        await _listed_by(lister, cat, 5)
        lister.lists["b2"] = ["llama3"]
        await _listed_by(lister, cat, 6)
        assert cat.backend_errors() == {}
        lister.lists["b2"] = TimeoutError()
        await _listed_by(lister, cat, 8)
    await cat.aclose()
    assert [r.getMessage() for r in caplog.records] == [
        "cannot list models of backend b2: refused",
        "backend b2 lists its models again",
        "cannot list models of backend b2: TimeoutError",
    ]


async def test_model_served_by_both_backends_lists_once_with_both(settings_for):
    lister = Lister(b1=["gpt-4o", "only-b1"], b2=["GPT-4o", "only-b2"])
    cat = Catalogue(settings(settings_for), lister)
    assert sorted(await names(cat)) == [
        "gpt-4o:latest",
        "only-b1:latest",
        "only-b2:latest",
    ]
    entry = await cat.resolve("gpt-4o")
    assert entry is not None and entry.backends == ("b1", "b2")
    only = await cat.resolve("only-b2")
    assert only is not None and only.backends == ("b2",)


async def test_configured_backend_mapping_wins(settings_for):
    toml = '[models."gpt-4o"]\nbackend = "b2"\n[models."unlisted"]\nbackend = "b2"\n'
    lister = Lister(b1=["gpt-4o"], b2=["gpt-4o"])
    cat = Catalogue(settings(settings_for, toml), lister)
    entry = await cat.resolve("gpt-4o")
    assert entry is not None and entry.backends == ("b2",)
    unlisted = await cat.resolve("unlisted")
    assert unlisted is not None and unlisted.backends == ("b2",)
    assert unlisted.upstream_id == "unlisted"


async def test_configured_alias_targets_an_upstream_model(settings_for):
    toml = (
        '[models."llama3"]\ntarget = "gpt-4o"\ncontext_length = 8192\n'
        'capabilities = ["completion", "tools", "thinking"]\n'
    )
    lister = Lister(b1=[], b2=["gpt-4o"])
    cat = Catalogue(settings(settings_for, toml), lister)
    entry = await cat.resolve("LLAMA3:latest")
    assert entry is not None
    assert entry.name == "llama3:latest"
    assert entry.upstream_id == "gpt-4o"
    assert entry.backends == ("b2",)
    assert entry.context_length == 8192
    assert entry.supports("thinking")
    assert "llama3:latest" in await names(cat)
    assert "gpt-4o:latest" in await names(cat)


async def test_hidden_models_resolve_but_are_not_listed(settings_for):
    toml = '[models."gpt-4o"]\nhidden = true\n'
    lister = Lister(b1=["gpt-4o", "gpt-4.1"], b2=[])
    cat = Catalogue(settings(settings_for, toml), lister)
    assert await names(cat) == ["gpt-4.1:latest"]
    entry = await cat.resolve("gpt-4o")
    assert entry is not None and entry.hidden


async def test_capabilities_and_context_length_from_config(settings_for):
    toml = (
        '[models."gpt-4o"]\ncapabilities = ["completion", "vision"]\n'
        'context_length = 128000\nfamily = "gpt4"\nparameter_size = "1.8T"\n'
        'quantization_level = "F16"\nsize = 1234\n'
    )
    lister = Lister(b1=["gpt-4o"], b2=[])
    cat = Catalogue(settings(settings_for, toml), lister)
    entry = await cat.resolve("gpt-4o")
    assert entry is not None
    assert entry.capabilities == ("completion", "vision")
    assert not entry.supports("tools")
    assert entry.context_length == 128000
    assert (entry.family, entry.parameter_size) == ("gpt4", "1.8T")
    assert (entry.quantization_level, entry.size) == ("F16", 1234)


async def test_capabilities_and_context_from_backend_metadata(settings_for):
    models = [
        openai.ModelObject("Qwen/Qwen3-8B", max_model_len=40960),
        openai.ModelObject(
            "vendor/chat",
            context_length=200000,
            architecture={"input_modalities": ["text", "image"]},
            supported_parameters=["temperature", "reasoning"],
        ),
        openai.ModelObject("vendor/plain", supported_parameters=["temperature"]),
        openai.ModelObject("nomic-embed-text", max_input_tokens=2048),
    ]
    cat = Catalogue(settings(settings_for), Lister(b1=models, b2=[]))
    qwen = await cat.resolve("qwen/qwen3-8b")
    assert qwen is not None and qwen.context_length == 40960
    assert qwen.supports("thinking") and qwen.supports("tools")
    assert qwen.family == "qwen3"
    chat = await cat.resolve("vendor/chat")
    assert chat is not None and chat.context_length == 200000
    assert chat.supports("vision") and chat.supports("thinking")
    assert not chat.supports("tools")  # not in supported_parameters
    plain = await cat.resolve("vendor/plain")
    assert plain is not None and plain.capabilities == ("completion",)
    embed = await cat.resolve("nomic-embed-text")
    assert embed is not None and embed.capabilities == ("embedding",)
    assert embed.context_length == 2048


async def test_llamacpp_meta_is_read_leniently_and_config_wins(settings_for):
    meta = {"n_ctx_train": 32768, "n_embd": 896, "n_params": 494032768, "size": 9}
    models = [
        openai.ModelObject("qwen.gguf", meta=meta),
        # Another backend's `meta` of another shape is no metadata, not an error.
        openai.ModelObject("odd", meta={"n_ctx_train": "big"}),
        openai.ModelObject("text", meta="v1"),
    ]
    toml = '[models."qwen.gguf"]\ncontext_length = 8192\nparameter_size = "0.5B"\n'
    cat = Catalogue(settings(settings_for, toml), Lister(b1=models, b2=[]))
    qwen = await cat.resolve("qwen.gguf")
    assert qwen is not None
    assert (qwen.context_length, qwen.parameter_size) == (8192, "0.5B")
    assert (qwen.embedding_length, qwen.size) == (896, 9)
    for name in ("odd", "text"):
        entry = await cat.resolve(name)
        assert entry is not None
        assert (entry.context_length, entry.embedding_length, entry.size) == (0, 0, 0)
        assert entry.parameter_size == ""


@pytest.mark.parametrize(
    ("count", "size"),
    [
        (8030261248, "8.0B"),
        (7000000000, "7B"),
        (494032768, "494.03M"),
        (137000000, "137M"),
        (22713216, "22.71M"),
        (22000, "22K"),
        (999, "999"),
        (0, ""),
    ],
)
def test_parameter_size_is_written_as_ollama_writes_it(count, size):
    assert parameter_size_of(count) == size


async def test_listing_fields(settings_for):
    models = [openai.ModelObject("gpt-4o", created=1715367049), "no-created"]
    cat = Catalogue(settings(settings_for), Lister(b1=models, b2=[]))
    dated = await cat.resolve("gpt-4o")
    undated = await cat.resolve("no-created")
    assert dated is not None and undated is not None
    assert dated.modified_at == "2024-05-10T18:50:49.000000Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", undated.modified_at)
    assert re.fullmatch(r"[0-9a-f]{64}", dated.digest)
    assert dated.digest != undated.digest
    assert dated.remote_host == "http://127.0.0.1:9/v1"


async def test_pinned_backend_models_are_not_listed_upstream(settings_for):
    toml = """
[[backends]]
name = "pinned"
base_url = "http://127.0.0.1:9/v1"
models = ["fixed-a", "fixed-b"]
"""
    lister = Lister()
    cat = Catalogue(settings_for(toml=toml), lister)
    assert await names(cat) == ["fixed-a:latest", "fixed-b:latest"]
    assert lister.calls == []


async def test_alias_resolves_to_its_source_and_is_listed(settings_for):
    lister = Lister(b1=["gpt-4o"], b2=[])
    cat = Catalogue(settings(settings_for), lister)
    source = await cat.resolve("gpt-4o")
    assert source is not None
    cat.add_alias("gpt-3.5-turbo", source)
    alias = await cat.resolve("GPT-3.5-turbo:latest")
    assert alias is not None
    assert alias.name == "gpt-3.5-turbo:latest"
    assert alias.upstream_id == "gpt-4o" and alias.alias_of == "gpt-4o:latest"
    assert cat.is_alias("gpt-3.5-turbo:latest") and not cat.is_alias("gpt-4o")
    assert "gpt-3.5-turbo:latest" in await names(cat)


@pytest.mark.parametrize("removed_as", ["mine", "mine:latest", "MINE:Latest"])
async def test_alias_removal_accepts_any_spelling(settings_for, removed_as):
    cat = Catalogue(settings(settings_for), Lister(b1=["gpt-4o"], b2=[]))
    source = await cat.resolve("gpt-4o")
    assert source is not None
    cat.add_alias("mine", source)
    assert await cat.resolve("mine") is not None
    assert cat.remove_alias(removed_as)
    assert await cat.resolve("mine") is None
    assert not cat.remove_alias(removed_as)
    assert not cat.remove_alias("gpt-4o")


async def test_alias_of_an_alias_points_at_the_real_model(settings_for):
    cat = Catalogue(settings(settings_for), Lister(b1=["gpt-4o"], b2=[]))
    source = await cat.resolve("gpt-4o")
    assert source is not None
    cat.add_alias("first", source)
    first = await cat.resolve("first")
    assert first is not None
    cat.add_alias("second", first)
    cat.remove_alias("first")
    second = await cat.resolve("second")
    assert second is not None and second.upstream_id == "gpt-4o"


async def test_aliases_persist_in_the_aliases_file(settings_for, tmp_path):
    path = tmp_path / "state" / "aliases.json"
    toml = f'[catalogue]\naliases_file = "{path}"\n'
    cat = Catalogue(settings(settings_for, toml), Lister(b1=["gpt-4o"], b2=[]))
    source = await cat.resolve("gpt-4o")
    assert source is not None
    cat.add_alias("keep", source)
    cat.add_alias("drop", source)
    cat.remove_alias("drop")
    assert set(json.loads(path.read_text())) == {"keep"}
    again = Catalogue(settings(settings_for, toml), Lister(b1=["gpt-4o"], b2=[]))
    kept = await again.resolve("keep:latest")
    assert kept is not None and kept.upstream_id == "gpt-4o"
    assert await again.resolve("drop") is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not a JSON object of alias names"),
        ('["a", "b"]', "not a JSON object of alias names"),
        ('{"a": 1}', "not a JSON object of alias names"),
        ('{"a": "gpt-4o", "b": "gpt-4o", "c": "gpt-4o"}', "holds 3 aliases"),
        ('{"two words": "gpt-4o"}', "is not a usable alias name"),
        ('{"a": ""}', "is not a usable alias name"),
    ],
)
async def test_an_aliases_file_that_cannot_be_read_back_stops_the_start(
    settings_for, tmp_path, content, reason
):
    """Skipping it would overwrite it, aliases and all, at the next copy."""
    path = tmp_path / "aliases.json"
    path.write_text(content)
    toml = f'[catalogue]\naliases_file = "{path}"\nmax_aliases = 2\n'
    with pytest.raises(SettingsError, match=f"catalogue.aliases_file: {path}: "):
        Catalogue(settings(settings_for, toml), Lister(b1=["gpt-4o"], b2=[]))
    with pytest.raises(SettingsError, match=re.escape(reason)):
        Catalogue(settings(settings_for, toml), Lister(b1=["gpt-4o"], b2=[]))
    assert path.read_text() == content


@pytest.mark.parametrize("content", ["", "\n"])
async def test_an_empty_aliases_file_is_no_aliases_yet(settings_for, tmp_path, content):
    # As `touch` or a prepared volume leaves it: the first copy fills it.
    path = tmp_path / "aliases.json"
    path.write_text(content)
    toml = f'[catalogue]\naliases_file = "{path}"\n'
    cat = Catalogue(settings(settings_for, toml), Lister(b1=["gpt-4o"], b2=[]))
    source = await cat.resolve("gpt-4o")
    assert source is not None
    cat.add_alias("keep", source)
    assert set(json.loads(path.read_text())) == {"keep"}


def test_a_huge_aliases_file_is_refused_without_reading_it(settings_for, tmp_path):
    path = tmp_path / "aliases.json"
    with open(path, "wb") as file:
        file.truncate(1 << 30)  # sparse: 1 GiB that reading would have to go through
    toml = f'[catalogue]\naliases_file = "{path}"\nmax_aliases = 10\n'
    with pytest.raises(SettingsError, match="larger than 10 aliases can be"):
        Catalogue(settings(settings_for, toml), Lister(b1=["gpt-4o"], b2=[]))


async def test_alias_of_a_model_that_disappeared_is_not_listed(settings_for):
    lister = Lister(b1=["gpt-4o"], b2=[])
    cat = Catalogue(settings(settings_for, "[catalogue]\nttl = 0.01\n"), lister)
    source = await cat.resolve("gpt-4o")
    assert source is not None
    cat.add_alias("mine", source)
    lister.lists["b1"] = ["gpt-4.1"]
    await asyncio.sleep(0.02)
    await cat.entries()
    await asyncio.sleep(0.02)
    assert await names(cat) == ["gpt-4.1:latest"]
    await cat.aclose()


async def test_configured_alias_inherits_backend_metadata_of_its_target(settings_for):
    toml = '[models."fast"]\ntarget = "qwen/qwen3-8b:latest"\n'
    models = [openai.ModelObject("Qwen/Qwen3-8B", created=1, max_model_len=40960)]
    cat = Catalogue(settings(settings_for, toml), Lister(b1=models, b2=[]))
    entry = await cat.resolve("fast")
    assert entry is not None
    assert entry.upstream_id == "Qwen/Qwen3-8B"
    assert entry.context_length == 40960
    assert entry.modified_at == "1970-01-01T00:00:01.000000Z"


async def test_unknown_name_looks_again_upstream_at_most_every_few_seconds(
    settings_for, monkeypatch
):
    lister = Lister(b1=["gpt-4o"], b2=[])
    cat = Catalogue(settings(settings_for), lister)
    assert await cat.resolve("gpt-4o") is not None
    lister.lists["b1"] = ["gpt-4o", "brand-new"]
    assert await cat.resolve("brand-new") is None  # listed a moment ago
    assert lister.calls.count("b1") == 1
    monkeypatch.setattr(catalogue_module, "_REFRESH_ON_MISS_AFTER", 0.01)
    await asyncio.sleep(0.02)
    entry = await cat.resolve("brand-new")
    assert entry is not None and entry.upstream_id == "brand-new"
    assert lister.calls.count("b1") == 2
    assert await cat.resolve("still-unknown") is None
    assert await cat.resolve("still-unknown") is None
    assert lister.calls.count("b1") == 2  # the last listing is fresh


async def test_known_names_never_wait_for_a_listing(settings_for, monkeypatch):
    monkeypatch.setattr(catalogue_module, "_REFRESH_ON_MISS_AFTER", 0.0)
    lister = Lister(b1=["gpt-4o"], b2=[])
    cat = Catalogue(settings(settings_for), lister)
    await cat.resolve("gpt-4o")
    lister.gate = asyncio.Event()
    assert await asyncio.wait_for(cat.resolve("gpt-4o"), timeout=1) is not None
    assert lister.calls.count("b1") == 1


async def test_aclose_stops_a_running_refresh(settings_for):
    lister = Lister(b1=["gpt-4o"], b2=[])
    cat = Catalogue(settings(settings_for, "[catalogue]\nttl = 0.01\n"), lister)
    await cat.entries()
    await asyncio.sleep(0.02)
    lister.gate = asyncio.Event()
    await cat.entries()
    task = cat._state["b1"].task
    assert task is not None and not task.done()
    await cat.aclose()
    assert task.cancelled()


async def test_remote_host_never_shows_credentials(settings_for):
    toml = """
[[backends]]
name = "secret"
base_url = "https://user:pa55@llm.example.com:8443/v1?key=abc"
models = ["m"]
"""
    cat = Catalogue(settings_for(toml=toml), Lister())
    entry = await cat.resolve("m")
    assert entry is not None
    assert entry.remote_host == "https://llm.example.com:8443/v1"


async def test_a_hanging_backend_delays_the_first_listing_only_briefly(
    settings_for, monkeypatch
):
    monkeypatch.setattr(catalogue_module, "_FIRST_LIST_WAIT", 0.05)
    lister = Lister(b1=["gpt-4o"], b2=["llama3"])
    lister.gates["b2"] = asyncio.Event()
    cat = Catalogue(settings(settings_for), lister)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await asyncio.wait_for(names(cat), timeout=1) == ["gpt-4o:latest"]
    assert loop.time() - started < 0.5
    # Later requests do not wait at all.
    assert await asyncio.wait_for(names(cat), timeout=0.02) == ["gpt-4o:latest"]
    # A name only the slow backend may know waits for its listing.
    lookup = asyncio.create_task(cat.resolve("llama3"))
    await asyncio.sleep(0.02)
    assert not lookup.done()
    lister.gates["b2"].set()
    entry = await asyncio.wait_for(lookup, timeout=1)
    assert entry is not None and entry.backends == ("b2",)
    assert lister.calls.count("b2") == 1


async def test_first_listing_waits_while_nothing_is_listed(settings_for, monkeypatch):
    monkeypatch.setattr(catalogue_module, "_FIRST_LIST_WAIT", 0.01)
    lister = Lister(b1=ConnectionError("refused"), b2=["llama3"])
    lister.gates["b2"] = asyncio.Event()
    cat = Catalogue(settings(settings_for), lister)
    listing = asyncio.create_task(names(cat))
    await asyncio.sleep(0.05)
    assert not listing.done()  # b1 failed, b2 is slow: nothing to serve yet
    lister.gates["b2"].set()
    assert await asyncio.wait_for(listing, timeout=1) == ["llama3:latest"]


@pytest.mark.parametrize(
    ("name", "full"),
    [
        ("test", "registry.ollama.ai/library/test:latest"),
        ("GPT-4o", "registry.ollama.ai/library/GPT-4o:latest"),
        ("llama3:8b", "registry.ollama.ai/library/llama3:8b"),
        ("user/m:q4", "registry.ollama.ai/user/m:q4"),
        (
            "meta-llama/Llama-3.1-8B",
            "registry.ollama.ai/meta-llama/Llama-3.1-8B:latest",
        ),
        ("hf.co/u/m:Q4_K_M", "hf.co/u/m:Q4_K_M"),
        ("https://h/ns/m", "h/ns/m:latest"),
    ],
)
def test_registry_name_is_the_full_name_ollama_errors_print(
    name: str, full: str
) -> None:
    # Capability errors (`… does not support tools|insert`) spell the name so.
    assert registry_name(name) == full
