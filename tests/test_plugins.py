"""Translator discovery, composition and failure handling (plugins.py, pipeline.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from importlib.metadata import EntryPoint
from typing import Any

import ollama
import pytest

from ollama_gateway import upstream
from ollama_gateway.app import create_app
from ollama_gateway.errors import PluginConfigError, PluginLoadError
from ollama_gateway.keys import pipeline_key, upstream_key
from ollama_gateway.plugins import (
    DEFAULT_TRANSLATORS,
    ENTRY_POINT_GROUP,
    load_translators,
)
from tests.fakebackend import FakeBackend, Script, chat_chunk, sse

BOUND = 20.0

BUILTINS = {"ollama-to-openai", "openai-http", "openai-aiohttp",
            "openai-to-ollama", "demo", "retry",
            "think-tags", "system-prompt", "azure-openai"}  # fmt: skip


def ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name, value, ENTRY_POINT_GROUP)


SHOUT = ep("shout", "tests.plugins.shout:ShoutResponse")
EXPLODE = ep("explode", "tests.plugins.broken:ExplodingResponse")


def test_builtins_load_through_the_same_loader_as_plugins():
    specs = load_translators([])
    assert set(specs) == BUILTINS
    assert {s.distribution for s in specs.values()} == {"ollama-gateway"}
    assert {ep.name for ep in DEFAULT_TRANSLATORS} == BUILTINS


def test_installed_metadata_declares_the_builtins_under_our_group():
    from importlib.metadata import entry_points

    declared = {e.name for e in entry_points(group=ENTRY_POINT_GROUP)}
    assert BUILTINS <= declared


def test_a_third_party_translator_is_listed_with_its_stage():
    specs = load_translators([SHOUT])
    assert specs["shout"].stage == "response"
    assert specs["shout"].cls.__name__ == "ShoutResponse"


def test_empty_allowlist_loads_builtins_only():
    assert "shout" not in load_translators([SHOUT], allow=[])
    assert "shout" in load_translators([SHOUT], allow=None)


def test_import_failure_names_the_plugin():
    with pytest.raises(PluginLoadError, match="'ghost'.*failed to import"):
        load_translators([ep("ghost", "tests.plugins.does_not_exist:Ghost")])


def test_wrong_stage_attribute_is_refused():
    with pytest.raises(PluginLoadError, match="'odd'.*'stage' must be one of"):
        load_translators([ep("odd", "tests.plugins.broken:NotAStage")])


def test_missing_config_attribute_is_refused():
    with pytest.raises(PluginLoadError, match="'Config' must be a msgspec.Struct"):
        load_translators([ep("bare", "tests.plugins.broken:NoConfigAttribute")])


def test_duplicate_name_names_both_distributions():
    with pytest.raises(
        PluginLoadError, match="'demo' is declared by both ollama-gateway"
    ):
        load_translators([ep("demo", "tests.plugins.shout:ShoutResponse")])


@pytest.mark.parametrize("name", ["Shout", "my_shout", "my.shout", "-shout", "a--b"])
def test_a_name_that_is_not_kebab_case_is_refused(name):
    with pytest.raises(PluginLoadError, match=f"'{name}'.*must be kebab-case"):
        load_translators([ep(name, "tests.plugins.shout:ShoutResponse")])
    # A distribution left out by the allowlist is not looked at.
    assert name not in load_translators([ep(name, SHOUT.value)], allow=[])


def test_translator_listed_under_the_wrong_stage(settings_for):
    settings = settings_for(toml='[pipeline]\nrequest = ["shout", "ollama-to-openai"]')
    with pytest.raises(
        PluginLoadError, match="pipeline.request: 'shout' is a response"
    ):
        create_app(settings, entry_points=[SHOUT])


def test_unknown_translator_name_lists_the_known_ones(settings_for):
    settings = settings_for(toml='[pipeline]\nresponse = ["nope", "openai-to-ollama"]')
    with pytest.raises(PluginLoadError, match="no translator named 'nope'.*think-tags"):
        create_app(settings, entry_points=[])


def test_bad_config_table_names_translator_and_field(settings_for):
    toml = """
[pipeline]
response = ["configured", "openai-to-ollama"]
[translators.configured]
level = "high"
"""
    configured = ep("configured", "tests.plugins.broken:ConfiguredResponse")
    with pytest.raises(
        PluginConfigError, match=r"translators.configured: level: Expected `int`"
    ):
        create_app(settings_for(toml=toml), entry_points=[configured])


def test_unknown_config_key_is_refused(settings_for):
    toml = '[pipeline]\nresponse = ["think-tags", "openai-to-ollama"]\n'
    toml += '[translators.think-tags]\nclose_tgs = "x"\n'
    with pytest.raises(PluginConfigError, match="translators.think-tags.*close_tgs"):
        create_app(settings_for(toml=toml), entry_points=[])


def test_an_empty_think_tag_is_refused(settings_for):
    toml = '[pipeline]\nresponse = ["think-tags", "openai-to-ollama"]\n'
    toml += '[translators.think-tags]\nopen_tag = ""\n'
    with pytest.raises(PluginConfigError, match="think-tags: open_tag: .*length"):
        create_app(settings_for(toml=toml), entry_points=[])


def test_unknown_config_key_is_refused_when_the_struct_would_ignore_it(
    settings_for,
):
    toml = '[pipeline]\nresponse = ["lenient", "openai-to-ollama"]\n'
    toml += '[translators.lenient]\nprompt = "x"\npromt = "y"\n'
    lenient = ep("lenient", "tests.plugins.broken:LenientResponse")
    with pytest.raises(
        PluginConfigError,
        match="^translators.lenient: Object contains unknown field `promt`$",
    ):
        create_app(settings_for(toml=toml), entry_points=[lenient])
    app = create_app(
        settings_for(toml=toml.replace('promt = "y"', "")), entry_points=[lenient]
    )
    assert app[pipeline_key].names["response"] == ("lenient", "openai-to-ollama")


def test_config_table_of_an_unused_translator_is_checked(settings_for):
    toml = '[translators.think-tags]\nclose_tgs = "x"\n'
    with pytest.raises(PluginConfigError, match="translators.think-tags.*close_tgs"):
        create_app(settings_for(toml=toml), entry_points=[])


def test_config_table_for_no_translator_is_refused(settings_for):
    toml = "[translators.retyr]\nattempts = 0\n"
    with pytest.raises(
        PluginConfigError, match="translators.retyr: no translator named 'retyr'"
    ):
        create_app(settings_for(toml=toml), entry_points=[])


def test_object_that_does_not_implement_its_protocol_is_refused(settings_for):
    settings = settings_for(
        toml='[pipeline]\nresponse = ["hollow", "openai-to-ollama"]'
    )
    hollow = ep("hollow", "tests.plugins.broken:MissingMethods")
    with pytest.raises(
        PluginLoadError, match="does not implement the response protocol"
    ):
        create_app(settings, entry_points=[hollow])


def test_a_wrapper_cannot_be_the_base(settings_for):
    settings = settings_for(toml='[pipeline]\nresponse = ["shout"]')
    with pytest.raises(
        PluginLoadError,
        match=r"^translator 'shout' \(unknown\) failed to start: ShoutResponse "
        "wraps another translator: list it before the base one$",
    ):
        create_app(settings, entry_points=[SHOUT])


async def test_plugin_upper_cases_chat_and_generate(
    backend, aiohttp_client, settings_for
):
    toml = '[pipeline]\nresponse = ["shout", "openai-to-ollama"]'
    app = create_app(settings_for(backend, toml), entry_points=[SHOUT])
    client = await aiohttp_client(app)
    backend.queue(Script.text("quiet words", split=5), Script.text("more words"))
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    streamed = await client.post("/api/chat", json=body)
    lines = [json.loads(line) for line in (await streamed.text()).splitlines()]
    assert "".join(line["message"]["content"] for line in lines) == "QUIET WORDS"
    answer = await client.post(
        "/api/generate", json={"model": "gpt-4o", "prompt": "x", "stream": False}
    )
    assert (await answer.json())["response"] == "MORE WORDS"


async def test_translator_error_is_a_500_naming_it_and_serving_goes_on(
    backend, aiohttp_client, settings_for, caplog
):
    toml = '[pipeline]\nresponse = ["explode", "openai-to-ollama"]'
    app = create_app(settings_for(backend, toml), entry_points=[EXPLODE])
    client = await aiohttp_client(app)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    for stream in (True, False):
        response = await client.post("/api/chat", json={**body, "stream": stream})
        assert response.status == 500
        assert response.headers["Content-Type"].startswith("application/json")
        assert await response.json() == {"error": "translator 'explode' failed: kaboom"}
    tags = await client.get("/api/tags")
    assert tags.status == 200
    assert any("translator explode failed" in r.getMessage() for r in caplog.records)


def test_cli_names_a_broken_plugin_in_one_line(tmp_path):
    config = tmp_path / "gw.toml"
    config.write_text('[pipeline]\nresponse = ["nope", "openai-to-ollama"]\n')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ollama_gateway",
            "check-config",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "no translator named 'nope'" in lines[0]
    assert "Traceback" not in result.stderr


FAULTY = ep("faulty", "tests.plugins.broken:FaultyTransport")


async def faulty_gateway(
    backend: FakeBackend,
    aiohttp_client: Any,
    settings_for: Any,
    fault: str,
    chain: str = '"faulty"',
) -> Any:
    """A client of a gateway whose transport chain is `chain`, then
    openai-http, with the FaultyTransport failing as `fault` says."""
    toml = (
        f'[pipeline]\ntransport = [{chain}, "openai-http"]\n'
        f'[translators.faulty]\nfault = "{fault}"\n'
    )
    app = create_app(settings_for(backend, toml), entry_points=[FAULTY])
    return await aiohttp_client(app)


@pytest.mark.parametrize(
    ("fault", "chain", "reason"),
    [
        # Behind `retry`, which must not take a transport's bug for a connect
        # error: the backend has answered, so sending again would run it twice.
        ("raise", '"retry", "faulty"', "lost the answer"),
        ("none", '"faulty"', "send returned NoneType, not an UpstreamResponse"),
    ],
)
async def test_a_failing_transport_is_a_500_naming_it_and_is_not_retried(
    backend, aiohttp_client, settings_for, fault, chain, reason
):
    client = await faulty_gateway(backend, aiohttp_client, settings_for, fault, chain)
    async with ollama.AsyncClient(host=str(client.make_url(""))) as api:
        for stream in (False, True):
            with pytest.raises(ollama.ResponseError) as raised:
                answer = await api.chat(
                    model="gpt-4o",
                    messages=[{"role": "user", "content": "x"}],
                    stream=stream,
                )
                if stream:
                    [chunk async for chunk in answer]
            assert raised.value.status_code == 500
            expected = f"translator 'faulty' failed: {reason}"
            assert raised.value.error.startswith(expected)
    assert len(backend.completions()) == 2


NONE_REQUEST = ep("none-request", "tests.plugins.broken:NoneRequest")
DICT_EMBED = ep("dict-embed", "tests.plugins.broken:DictEmbedResponse")


@pytest.mark.parametrize(
    ("path", "body", "wanted"),
    [
        ("/api/chat", {"messages": [{"role": "user", "content": "x"}]},
         "ChatCompletionRequest"),
        ("/api/generate", {"prompt": "x"},
         "ChatCompletionRequest or CompletionRequest"),
        ("/api/embed", {"input": "x"}, "EmbeddingRequest"),
        ("/api/embeddings", {"prompt": "x"}, "EmbeddingRequest"),
    ],
)  # fmt: skip
async def test_a_request_mapper_that_returns_no_request_is_a_500_naming_it(
    backend, aiohttp_client, settings_for, path, body, wanted
):
    # Not sent on: a None went upstream as `null`, and the backend's 400
    # blamed the client for the plugin's bug.
    toml = '[pipeline]\nrequest = ["none-request", "ollama-to-openai"]'
    app = create_app(settings_for(backend, toml), entry_points=[NONE_REQUEST])
    client = await aiohttp_client(app)
    response = await client.post(path, json={"model": "gpt-4o", **body})
    assert response.status == 500
    assert await response.json() == {
        "error": f"translator 'none-request' failed: returned NoneType, not {wanted}"
    }
    assert [r for r in backend.requests if r.path != "/v1/models"] == []


async def test_an_embed_response_mapper_of_the_wrong_type_is_a_500_naming_it(
    backend, aiohttp_client, settings_for
):
    toml = '[pipeline]\nresponse = ["dict-embed", "openai-to-ollama"]'
    app = create_app(settings_for(backend, toml), entry_points=[DICT_EMBED])
    client = await aiohttp_client(app)
    async with ollama.AsyncClient(host=str(client.make_url(""))) as api:
        with pytest.raises(ollama.ResponseError) as raised:
            await api.embed(model="gpt-4o", input="x")
    assert raised.value.status_code == 500
    assert raised.value.error == (
        "translator 'dict-embed' failed: returned dict, not EmbedResponse"
    )


async def test_a_transport_whose_body_raises_is_named_on_every_route(
    backend, aiohttp_client, settings_for
):
    # The Ollama routes named it already; the OpenAI route dropped the
    # connection mid-answer and embeddings said "internal server error".
    client = await faulty_gateway(backend, aiohttp_client, settings_for, "body")
    failed = "translator 'faulty' failed: the body broke"
    # The first event comes alone: the client gets it, then an error event.
    first = sse(chat_chunk({"content": "one "}), done=False)
    backend.queue(Script(pieces=[first, first], stall_after=1, stall=30))
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    streamed = await client.post("/v1/chat/completions", json={**body, "stream": True})
    assert streamed.status == 200
    events = (await streamed.text()).split("\n\n")
    assert json.loads(events[-2].removeprefix("data: "))["error"]["message"] == failed
    embedded = await client.post("/api/embed", json={"model": "gpt-4o", "input": "x"})
    assert embedded.status == 500
    assert await embedded.json() == {"error": failed}
    assert len(backend.completions()) == 1


async def test_ready_names_a_transport_that_raises_for_the_model_list(
    backend, aiohttp_client, settings_for
):
    # Was a 500 "internal server error": the backend, never heard from, had
    # no entry in the table /ready reads.
    client = await faulty_gateway(backend, aiohttp_client, settings_for, "always")
    ready = await client.get("/ready")
    assert ready.status == 503
    assert (await ready.json())["backends"] == {
        "openai": "translator 'faulty' failed: cannot send anything"
    }


DROP_EMPTY = ep("drop-empty", "tests.plugins.broken:DropEmptyResponse")
AS_DICTS = ep("as-dicts", "tests.plugins.broken:DictsResponse")


@pytest.mark.parametrize(
    ("plugin", "fault"),
    [
        # Was a 500 "internal server error" (an assertion) on every route.
        (DROP_EMPTY, "close() returned no final chunk (done: true)"),
        # Streamed, the dicts were written as lines (no `done`, no `model`).
        (AS_DICTS, "feed() returned dict, not ollama.ChatResponse"),
    ],
)
async def test_a_session_that_returns_what_it_must_not_is_named(
    backend, aiohttp_client, settings_for, plugin, fault
):
    toml = f'[pipeline]\nresponse = ["{plugin.name}", "openai-to-ollama"]'
    app = create_app(settings_for(backend, toml), entry_points=[plugin])
    client = await aiohttp_client(app)
    failed = f"translator '{plugin.name}' failed: the stream session's {fault}"
    async with ollama.AsyncClient(host=str(client.make_url(""))) as api:
        with pytest.raises(ollama.ResponseError) as raised:
            await api.chat(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        assert (raised.value.status_code, raised.value.error) == (500, failed)
        streamed = await api.chat(
            model="gpt-4o",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
        )
        with pytest.raises(ollama.ResponseError) as raised:
            [chunk async for chunk in streamed]
        assert raised.value.error == failed


async def test_the_pipeline_transport_chain_wraps_the_demo_when_based_on_it(
    aiohttp_client, settings_for
):
    # With no backend, `[pipeline] transport = [..., "demo"]` was ignored:
    # the demo backend always had ["demo"] alone.
    toml = (
        '[pipeline]\ntransport = ["faulty", "demo"]\n'
        '[translators.faulty]\nfault = "raise"\n'
        "[translators.demo]\ntokens_per_second = 0\n"
    )
    app = create_app(settings_for(None, toml), entry_points=[FAULTY])
    assert app[pipeline_key].names["transport:demo"] == ("faulty", "demo")
    client = await aiohttp_client(app)
    body = {"model": "demo", "messages": [{"role": "user", "content": "x"}]}
    response = await client.post("/api/chat", json=body)
    assert response.status == 500
    assert await response.json() == {
        "error": "translator 'faulty' failed: lost the answer"
    }
    # The default chain still leaves the demo to itself.
    plain = create_app(settings_for(None, ""))
    assert plain[pipeline_key].names["transport:demo"] == ("demo",)


def test_a_translator_left_out_by_the_allowlist_is_said_to_be(
    settings_for, tmp_path, monkeypatch
):
    # An installed distribution (its metadata on sys.path, as pip leaves it).
    info = tmp_path / "site" / "shout_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: shout-plugin\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nshout = tests.plugins.shout:ShoutResponse\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    toml = '[pipeline]\nresponse = ["shout", "openai-to-ollama"]'
    app = create_app(settings_for(toml=toml))
    assert app[pipeline_key].names["response"][0] == "shout"
    with pytest.raises(
        PluginLoadError,
        match=r"no translator named 'shout' \(known: .*\); shout-plugin provides "
        "it, but OLLAMA_GATEWAY_PLUGINS does not list that distribution$",
    ):
        create_app(settings_for(toml=toml, OLLAMA_GATEWAY_PLUGINS="other-plugin"))


@pytest.mark.parametrize(
    ("plugin", "failure"),
    [("CloseFailsTransport", RuntimeError), ("CloseHangsTransport", TimeoutError)],
)
async def test_a_transport_that_fails_to_close_does_not_fail_the_shutdown(
    backend, aiohttp_client, settings_for, caplog, monkeypatch, plugin, failure
):
    # It raised out of the app's cleanup: `serve` exited 1 with a traceback
    # on SIGTERM, and the transports after it were left open. One whose
    # close never ended held the exit for good.
    monkeypatch.setattr(upstream, "CLOSE_WAIT", 0.05)
    toml = (
        f'[[backends]]\nname = "first"\nbase_url = "{backend.url}"\n'
        'transport = ["close-fails", "openai-http"]\n'
        f'[[backends]]\nname = "second"\nbase_url = "{backend.url}"\n'
    )
    close_fails = ep("close-fails", f"tests.plugins.broken:{plugin}")
    app = create_app(settings_for(None, toml), entry_points=[close_fails])
    closed: list[str] = []
    second = app[pipeline_key].transports["second"]
    real_aclose = second.aclose

    async def aclose() -> None:
        closed.append("second")
        await real_aclose()

    second.aclose = aclose  # type: ignore[method-assign]
    client = await aiohttp_client(app)
    async with asyncio.timeout(BOUND):
        await client.close()
    assert closed == ["second"]
    failed = [
        r
        for r in caplog.records
        if "closing the transport of backend 'first' failed" in r.getMessage()
    ]
    assert len(failed) == 1 and failed[0].exc_info
    assert failed[0].exc_info[0] is failure


async def test_translators_of_one_module_are_told_apart_in_errors(
    backend, aiohttp_client, settings_for
):
    # One module, several translators (as one plugin package often has):
    # every failure there was put on one of them, whichever came last.
    toml = (
        '[pipeline]\nrequest = ["generate-raises", "ollama-to-openai"]\n'
        'response = ["explode", "openai-to-ollama"]\n'
    )
    generate_raises = ep("generate-raises", "tests.plugins.broken:GenerateRaises")
    app = create_app(
        settings_for(backend, toml), entry_points=[generate_raises, EXPLODE]
    )
    client = await aiohttp_client(app)
    chat = await client.post(
        "/api/chat",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
    )
    assert await chat.json() == {"error": "translator 'explode' failed: kaboom"}
    generate = await client.post(
        "/api/generate", json={"model": "gpt-4o", "prompt": "x"}
    )
    assert await generate.json() == {
        "error": "translator 'generate-raises' failed: no generating here"
    }


async def test_an_answer_that_fails_to_close_is_still_answered(
    backend, aiohttp_client, settings_for, caplog
):
    # The embeddings were read whole, then lost to a 500 "internal server
    # error"; the other routes answered, then logged an unhandled error.
    client = await faulty_gateway(backend, aiohttp_client, settings_for, "close")
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    for stream in (False, True):
        chat = await client.post("/api/chat", json={**body, "stream": stream})
        assert chat.status == 200
        lines = [json.loads(line) for line in (await chat.text()).splitlines()]
        assert lines[-1]["done"] is True
    embedded = await client.post("/api/embed", json={"model": "gpt-4o", "input": "x"})
    assert embedded.status == 200
    assert len((await embedded.json())["embeddings"]) == 1
    # A refusal, read for its message, keeps its status too.
    backend.queue(Script.error(503, "overloaded"))
    refused = await client.post("/api/chat", json=body)
    assert refused.status == 503
    assert await refused.json() == {"error": "overloaded"}
    failures = [r for r in caplog.records if "closing an answer" in r.getMessage()]
    assert len(failures) == 4
    assert not [r for r in caplog.records if "unhandled" in r.getMessage()]


async def test_an_answer_whose_close_never_ends_is_answered_all_the_same(
    backend, aiohttp_client, settings_for, monkeypatch
):
    # The request waited for the close for ever: a non-streamed answer (sent
    # once the handler returns) never reached the client, a stream never
    # ended, and each such request held its upstream slot for good.
    monkeypatch.setattr(upstream, "CLOSE_WAIT", 0.05)
    client = await faulty_gateway(backend, aiohttp_client, settings_for, "hang")
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    failures = _ClosingFailures(4)
    logging.getLogger("ollama_gateway").addHandler(failures)
    try:
        await _four_answers_whose_close_hangs(client, body, failures)
    finally:
        logging.getLogger("ollama_gateway").removeHandler(failures)
    assert all(r.exc_info and r.exc_info[0] is TimeoutError for r in failures.records)
    assert client.app[upstream_key].in_flight == 0


async def _four_answers_whose_close_hangs(
    client: Any, body: dict[str, Any], failures: _ClosingFailures
) -> None:
    async with asyncio.timeout(BOUND):
        for stream in (False, True):
            chat = await client.post("/api/chat", json={**body, "stream": stream})
            lines = [json.loads(line) for line in (await chat.text()).splitlines()]
            assert chat.status == 200 and lines[-1]["done"] is True
        embedded = await client.post(
            "/api/embed", json={"model": "gpt-4o", "input": "x"}
        )
        assert len((await embedded.json())["embeddings"]) == 1
        relayed = await client.post("/v1/chat/completions", json=body)
        assert relayed.status == 200 and (await relayed.text()).strip()
        # A stream's last byte is sent before its close: each close is logged
        # as given up, then its request ends.
        await failures.all_in.wait()


class _ClosingFailures(logging.Handler):
    """The failed closes logged, until `wanted` of them."""

    def __init__(self, wanted: int) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.wanted = wanted
        self.all_in = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "closing an answer" in record.getMessage():
            self.records.append(record)
            if len(self.records) == self.wanted:
                self.all_in.set()
