"""Requests captured from the real agent CLIs, replayed against a gateway in
front of the fake OpenAI backend on loopback.

Each fixture under `tests/fixtures/agents/` is one request a CLI sent through a
logging proxy (trimmed: long prompts and tool descriptions cut, most tools
left out, ids zeroed), with its path, query string and headers. The tests send
it as the CLI did and check what the CLI reads from the answer and what the
backend was asked. No CLI, npm or network is needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fakebackend import FakeBackend, Script, chat_chunk, sse

FIXTURES = Path(__file__).parent / "fixtures" / "agents"
# The model the captures name: a thinking model with tools.
MODEL = "fake-think"


def captured(name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return found


def events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    """SSE text as (event name, data) pairs."""
    out = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((lines["event"], json.loads(lines["data"])))
    return out


async def replay(gateway: Any, backend: FakeBackend, request: dict[str, Any]) -> Any:
    backend.models = [{"id": MODEL, "object": "model"}, *backend.models]
    client = await gateway(backend)
    return await client.request(
        request["method"],
        request["path"],
        data=json.dumps(request["body"]),
        headers=request["headers"],
    )


def bash_call_script() -> Script:
    """Thinking, then a Bash call whose arguments come in two pieces."""
    start = {"index": 0, "id": "call_fake1", "type": "function"}
    start["function"] = {"name": "Bash", "arguments": ""}
    arguments = '{"command":"echo gateway-tool-ok","description":"Print a marker"}'
    half = len(arguments) // 2
    return Script(
        pieces=[
            sse(
                chat_chunk({"role": "assistant", "content": ""}),
                chat_chunk({"reasoning_content": "Let me think it over."}),
                chat_chunk({"tool_calls": [start]}),
                *(
                    chat_chunk(
                        {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                    )
                    for piece in (arguments[:half], arguments[half:])
                ),
                chat_chunk({}, finish="tool_calls"),
                chat_chunk(
                    choices=False, usage={"prompt_tokens": 42, "completion_tokens": 7}
                ),
            )
        ]
    )


# Claude Code ----------------------------------------------------------------


async def test_claude_code_turn_after_a_tool_call(gateway, backend):
    request = captured("claude_code_tool_result.json")
    backend.queue(Script.text("The tool said: gateway-tool-ok"))
    response = await replay(gateway, backend, request)
    assert response.status == 200
    assert response.content_type == "text/event-stream"
    answer = events(await response.text())
    names = [name for name, _ in answer]
    assert names[0] == "message_start" and names[-2:] == [
        "message_delta",
        "message_stop",
    ]
    text = "".join(
        data["delta"]["text"]
        for name, data in answer
        if name == "content_block_delta" and data["delta"]["type"] == "text_delta"
    )
    assert text == "The tool said: gateway-tool-ok"
    assert answer[-2][1]["delta"]["stop_reason"] == "end_turn"
    [sent] = backend.completions()
    messages = sent.body["messages"]
    # Claude Code's `role: "system"` turn (its agent types) stays where it is,
    # a reminder in the user turn before it: a Mistral-style template refuses
    # a system message after a user's, and joined to the system prompt it
    # would change the head of the prompt (see test_anthropic_front.py).
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    assert "Available agent types" not in messages[0]["content"]
    assert "\n\n<system-reminder>\nAvailable agent types" in messages[1]["content"]
    assert messages[2]["tool_calls"] == [
        {
            "id": "call_fake1",
            "type": "function",
            "function": {
                "name": "Bash",
                "arguments": '{"command":"echo gateway-tool-ok",'
                '"description":"Print a marker"}',
            },
        }
    ]
    assert messages[3] == {
        "role": "tool",
        "content": "gateway-tool-ok",
        "tool_call_id": "call_fake1",
    }
    assert [t["function"]["name"] for t in sent.body["tools"]] == ["Bash", "Read"]


async def test_claude_code_billing_header_is_not_sent_to_the_model(gateway, backend):
    """Claude Code's first system block changes from request to request; sent
    on, it would head the prompt and defeat the backend's prefix cache."""
    request = captured("claude_code_tool_result.json")
    assert request["body"]["system"][0]["text"].startswith(
        "x-anthropic-billing-header:"
    )
    response = await replay(gateway, backend, request)
    assert response.status == 200
    await response.read()
    [sent] = backend.completions()
    system = sent.body["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("You are a Claude agent")
    assert "x-anthropic-billing-header" not in json.dumps(sent.body)


async def test_billing_header_line_of_a_string_system_prompt_is_dropped(
    gateway, backend
):
    body = {
        "model": MODEL,
        "max_tokens": 50,
        "system": "x-anthropic-billing-header: cc_version=2.1.197.563; cch=0aaa9;\n"
        "You are a helpful agent.",
        "messages": [{"role": "user", "content": "hi"}],
    }
    request = {"method": "POST", "path": "/v1/messages", "headers": {}, "body": body}
    response = await replay(gateway, backend, request)
    assert response.status == 200
    await response.read()
    [sent] = backend.completions()
    assert sent.body["messages"][0] == {
        "role": "system",
        "content": "You are a helpful agent.",
    }


async def test_claude_code_gets_a_tool_use_block_it_can_run(gateway, backend):
    """The first turn of the capture: the model's call must come back as one
    `tool_use` block whose input deltas add up to the arguments."""
    request = captured("claude_code_tool_result.json")
    request["body"]["messages"] = request["body"]["messages"][:2]
    backend.queue(bash_call_script())
    response = await replay(gateway, backend, request)
    answer = events(await response.text())
    starts = [data for name, data in answer if name == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts] == ["thinking", "tool_use"]
    tool = starts[1]
    assert tool["content_block"] == {
        "type": "tool_use",
        "id": "call_fake1",
        "name": "Bash",
        "input": {},
    }
    partial = "".join(
        data["delta"]["partial_json"]
        for name, data in answer
        if name == "content_block_delta" and data["index"] == tool["index"]
    )
    assert json.loads(partial) == {
        "command": "echo gateway-tool-ok",
        "description": "Print a marker",
    }
    assert answer[-2][1]["delta"]["stop_reason"] == "tool_use"


# Responses API clients -----------------------------------------------------------


@pytest.mark.parametrize(
    "fixture", ["codex_tool_result.json", "copilot_tool_result.json"]
)
async def test_responses_turn_after_a_tool_call(gateway, backend, fixture):
    request = captured(fixture)
    backend.queue(Script.text("The tool said: gateway-tool-ok"))
    response = await replay(gateway, backend, request)
    assert response.status == 200
    answer = events(await response.text())
    names = [name for name, _ in answer]
    assert names[:2] == ["response.created", "response.in_progress"]
    assert names[-1] == "response.completed"
    final = answer[-1][1]["response"]
    assert final["status"] == "completed"
    [message] = final["output"]
    assert message["content"][0]["text"] == "The tool said: gateway-tool-ok"
    [sent] = backend.completions()
    messages = sent.body["messages"]
    call, output = messages[-2:]
    assert call["role"] == "assistant"
    assert call["tool_calls"][0]["id"] == "call_fake1"
    assert output["role"] == "tool" and output["tool_call_id"] == "call_fake1"
    assert "gateway-tool-ok" in output["content"]
    functions = [t["name"] for t in request["body"]["tools"] if t["type"] == "function"]
    # The function tools first, as sent (Codex's namespaced ones follow).
    names = [t["function"]["name"] for t in sent.body["tools"]]
    assert names[: len(functions)] == functions


def call_script(name: str, arguments: str) -> Script:
    call = {"index": 0, "id": "call_ns", "type": "function"}
    call["function"] = {"name": name, "arguments": arguments}
    return Script(
        pieces=[
            sse(
                chat_chunk({"role": "assistant", "content": None}),
                chat_chunk({"tool_calls": [call]}),
                chat_chunk({}, finish="tool_calls"),
            )
        ]
    )


async def test_codex_namespaced_tools_reach_the_model_and_come_back_named(
    gateway, backend
):
    """Codex sends its sub-agent tools as a `namespace` group, and runs a call
    of one only when the call names the namespace ("unsupported call:
    close_agent" without)."""
    request = captured("codex_tool_result.json")
    request["body"]["input"] = request["body"]["input"][:4]
    backend.queue(call_script("close_agent", '{"target":"agent-1"}'))
    response = await replay(gateway, backend, request)
    answer = events(await response.text())
    [sent] = backend.completions()
    assert [t["function"]["name"] for t in sent.body["tools"]] == [
        "exec_command",
        "view_image",
        "close_agent",
        "resume_agent",
    ]
    items = [
        data["item"]
        for name, data in answer
        if name in ("response.output_item.added", "response.output_item.done")
    ]
    [final] = answer[-1][1]["response"]["output"]
    for item in [*items, final]:
        assert item["type"] == "function_call"
        assert item["name"] == "close_agent"
        assert item["namespace"] == "multi_agent_v1"
    assert final["arguments"] == '{"target":"agent-1"}'


async def test_codex_top_level_call_has_no_namespace_and_namespaced_history_is_read(
    gateway, backend
):
    request = captured("codex_tool_result.json")
    history = request["body"]["input"]
    # What Codex sends back after a namespaced call: the item keeps its namespace.
    history[-2] = {**history[-2], "name": "close_agent", "namespace": "multi_agent_v1"}
    backend.queue(call_script("exec_command", '{"cmd":"ls"}'))
    response = await replay(gateway, backend, request)
    assert response.status == 200
    final = events(await response.text())[-1][1]["response"]
    [call] = final["output"]
    assert call["name"] == "exec_command"
    assert "namespace" not in call
    [sent] = backend.completions()
    assert sent.body["messages"][-2]["tool_calls"][0]["function"]["name"] == (
        "close_agent"
    )


async def test_codex_turns_reach_the_backend_as_strict_templates_want(gateway, backend):
    # Codex sends two developer messages, then two user messages in a row;
    # Mistral's templates take one system message, first, then alternating
    # roles, and refuse anything else.
    request = captured("codex_tool_result.json")
    response = await replay(gateway, backend, request)
    assert response.status == 200
    await response.read()
    [sent] = backend.completions()
    roles = [m["role"] for m in sent.body["messages"]]
    assert roles == ["system", "user", "assistant", "tool"]
