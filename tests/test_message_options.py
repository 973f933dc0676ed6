"""Per-backend message options of spec 3.3: the system role's name, `name` on
tool results, and sending the assistant's earlier thinking back."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ndjson import chat, post

HISTORY: list[dict[str, Any]] = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "weather?"},
    {
        "role": "assistant",
        "content": "",
        "thinking": "I should call the tool.",
        "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
        ],
    },
    {"role": "tool", "content": "sunny"},  # as the Python client sends it: no name
    {"role": "assistant", "content": "Sunny.", "thinking": "Easy."},
    {"role": "user", "content": "thanks"},
]


async def _sent(gateway, backend, extra: str = "") -> list[dict[str, Any]]:
    toml = f'[[backends]]\nname = "o"\nbase_url = "{backend.url}"\n{extra}'
    client = await gateway(toml=toml)
    resp = await post(client, "/api/chat", chat(messages=HISTORY, stream=False))
    assert resp.status == 200, await resp.text()
    messages: list[dict[str, Any]] = backend.completions()[0].body["messages"]
    return messages


async def test_defaults_send_plain_openai_messages(gateway, backend):
    messages = await _sent(gateway, backend)
    assert [m["role"] for m in messages] == [
        "system", "user", "assistant", "tool", "assistant", "user"
    ]  # fmt: skip
    assert "name" not in messages[3]
    assert messages[3]["tool_call_id"] == messages[2]["tool_calls"][0]["id"]
    for message in messages:
        assert "reasoning_content" not in message and "reasoning" not in message


async def test_system_role_can_be_developer(gateway, backend):
    messages = await _sent(gateway, backend, 'system_role = "developer"\n')
    assert messages[0] == {"role": "developer", "content": "be brief"}


async def test_tool_results_can_carry_the_function_name(gateway, backend):
    messages = await _sent(gateway, backend, "tool_result_name = true\n")
    # The name comes from the call the result answers.
    assert messages[3]["name"] == "get_weather"
    assert messages[3]["content"] == "sunny"


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_earlier_thinking_can_be_sent_back(gateway, backend, field):
    messages = await _sent(gateway, backend, f'history_thinking = "{field}"\n')
    assert messages[2][field] == "I should call the tool."
    assert messages[4][field] == "Easy."
    assert all(field not in m for m in messages if m["role"] != "assistant")


async def test_alternating_roles_joins_system_and_runs_of_one_role(gateway, backend):
    # What Mistral's templates take: one system message, first, then user and
    # assistant alternating ("Conversation roles must alternate" otherwise).
    history: list[dict[str, Any]] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "in French"},
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Soleil."},
        {"role": "assistant", "content": "Beau temps."},
        {"role": "user", "content": "merci"},
    ]
    toml = f'[[backends]]\nname = "o"\nbase_url = "{backend.url}"\n'
    client = await gateway(toml=toml + "alternating_roles = true\n")
    resp = await post(client, "/api/chat", chat(messages=history, stream=False))
    assert resp.status == 200, await resp.text()
    assert backend.completions()[0].body["messages"] == [
        {"role": "system", "content": "be brief\n\nin French"},
        {"role": "user", "content": "hi\n\nweather?"},
        {"role": "assistant", "content": "Soleil.\n\nBeau temps."},
        {"role": "user", "content": "merci"},
    ]


async def test_alternating_roles_keeps_tool_results_apart(gateway, backend):
    messages = await _sent(gateway, backend, "alternating_roles = true\n")
    assert [m["role"] for m in messages] == [
        "system", "user", "assistant", "tool", "assistant", "user"
    ]  # fmt: skip
