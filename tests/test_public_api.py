"""The plugin-facing surface: `ollama_gateway.__all__` is complete, sorted and
importable, and the example plugin of every stage satisfies its Protocol."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import ollama_gateway
from ollama_gateway import RequestMapper, ResponseMapper, Transport
from ollama_gateway.app import create_app
from tests.typing import plugin_example

EXPECTED = {
    "GatewayError", "MemoryResponse", "NoConfig", "PluginConfigError", "PluginError",
    "PluginLoadError", "RequestContext", "RequestMapper", "RequestMapperWrapper",
    "ResponseMapper", "ResponseMapperWrapper", "Stage", "StreamSession",
    "StreamSessionWrapper", "TranslationError", "Transport", "TransportWrapper",
    "UpstreamError", "UpstreamRequest", "UpstreamResponse", "WholeAnswerSession",
    "ollama", "openai",
}  # fmt: skip


def test_all_is_pinned_sorted_and_importable():
    assert set(ollama_gateway.__all__) == EXPECTED
    assert list(ollama_gateway.__all__) == sorted(ollama_gateway.__all__)
    for name in ollama_gateway.__all__:
        assert getattr(ollama_gateway, name) is not None


def test_every_public_item_has_a_docstring():
    for name in ollama_gateway.__all__:
        item = getattr(ollama_gateway, name)
        if isinstance(item, type):
            assert item.__doc__, name


def test_example_plugins_implement_their_protocols_at_runtime():
    none = ollama_gateway.NoConfig()
    inner_request = _builtin("ollama-to-openai")
    inner_transport = _builtin("openai-http")
    inner_response = _builtin("openai-to-ollama")
    config = plugin_example.TemperatureConfig()
    assert isinstance(
        plugin_example.FixedTemperature(config, inner_request), RequestMapper
    )
    assert isinstance(plugin_example.HeaderTransport(none, inner_transport), Transport)
    assert isinstance(
        plugin_example.CountingResponse(none, inner_response), ResponseMapper
    )


async def test_example_plugins_run_in_a_gateway(backend, aiohttp_client, settings_for):
    group = "ollama_gateway.translators"
    eps = [
        EntryPoint(
            "fixed-temperature", "tests.typing.plugin_example:FixedTemperature", group
        ),
        EntryPoint("team-header", "tests.typing.plugin_example:HeaderTransport", group),
    ]
    toml = """
[pipeline]
request = ["fixed-temperature", "ollama-to-openai"]
transport = ["team-header", "openai-http"]
[translators.fixed-temperature]
temperature = 0.7
"""
    client = await aiohttp_client(
        create_app(settings_for(backend, toml), entry_points=eps)
    )
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "x"}],
        "stream": False,
    }
    assert (await client.post("/api/chat", json=body)).status == 200
    sent = backend.completions()[-1]
    assert sent.body["temperature"] == 0.7
    assert sent.headers["X-Team"] == "blue"


def _builtin(name: str) -> Any:
    from ollama_gateway.plugins import load_translators

    spec = load_translators([])[name]
    return spec.cls(spec.cls.Config(), None)
