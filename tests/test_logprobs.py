"""Logprobs both ways (spec 3.11): requested upstream, copied back per chunk."""

from __future__ import annotations

import json

from tests.fakebackend import Script, chat_chunk, sse


def logprob(token: str, value: float, tops: int) -> dict[str, object]:
    top = [{"token": token, "logprob": value, "bytes": list(token.encode())}] * tops
    return {"token": token, "logprob": value, "bytes": list(token.encode()),
            "top_logprobs": top}  # fmt: skip


def stream_with_logprobs() -> bytes:
    events = [
        chat_chunk({"content": "Hi"}, logprobs=None),
        chat_chunk({"content": " there"}),
        chat_chunk({}, finish="stop"),
    ]
    events[0]["choices"][0]["logprobs"] = {"content": [logprob("Hi", -0.1, 2)]}
    events[1]["choices"][0]["logprobs"] = {"content": [logprob(" there", -0.3, 2)]}
    return sse(*events)


async def test_logprobs_are_requested_and_copied_per_chunk(backend, gateway):
    backend.queue(Script(pieces=[stream_with_logprobs()]))
    client = await gateway(backend)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}],
            "logprobs": True, "top_logprobs": 2}  # fmt: skip
    response = await client.post("/api/chat", json=body)
    assert response.status == 200
    lines = [json.loads(line) for line in (await response.text()).splitlines()]
    sent = backend.completions()[-1].body
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2
    assert [line["logprobs"][0]["token"] for line in lines[:2]] == ["Hi", " there"]
    assert len(lines[0]["logprobs"][0]["top_logprobs"]) == 2
    assert lines[0]["logprobs"][0]["bytes"] == [72, 105]


async def test_top_logprobs_are_dropped_when_not_asked_and_folded_when_not_streamed(
    backend, gateway
):
    backend.queue(Script(pieces=[stream_with_logprobs()]))
    client = await gateway(backend)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}],
            "logprobs": True, "stream": False}  # fmt: skip
    answer = await (await client.post("/api/chat", json=body)).json()
    assert [item["token"] for item in answer["logprobs"]] == ["Hi", " there"]
    assert all("top_logprobs" not in item for item in answer["logprobs"])
    assert "top_logprobs" not in backend.completions()[-1].body


async def test_logprobs_from_the_backend_are_ignored_when_not_asked(backend, gateway):
    backend.queue(Script(pieces=[stream_with_logprobs()]))
    client = await gateway(backend)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    lines = [
        json.loads(line)
        for line in (
            await (await client.post("/api/chat", json=body)).text()
        ).splitlines()
    ]
    assert "".join(line["message"]["content"] for line in lines) == "Hi there"
    assert all("logprobs" not in line for line in lines)


async def test_legacy_completion_logprobs_become_ollama_elements(backend, gateway):
    def text_chunk(
        text: str, logprob: float, finish: str | None = None
    ) -> dict[str, object]:
        choice = {
            "index": 0,
            "text": text,
            "finish_reason": finish,
            "logprobs": {
                "tokens": [text],
                "token_logprobs": [logprob],
                "top_logprobs": [{text: logprob, "x": -5.0}],
            },
        }
        return {"object": "text_completion", "choices": [choice]}

    backend.queue(
        Script(pieces=[sse(text_chunk("fn", -0.2), text_chunk("()", -0.4, "stop"))])
    )
    client = await gateway(backend)
    body = {"model": "gpt-4o", "prompt": "def ", "raw": True, "logprobs": True,
            "top_logprobs": 2, "stream": False}  # fmt: skip
    response = await client.post("/api/generate", json=body)
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["response"] == "fn()"
    assert backend.completions()[-1].path == "/v1/completions"
    assert backend.completions()[-1].body["logprobs"] == 2
    first = answer["logprobs"][0]
    assert first["token"] == "fn" and first["logprob"] == -0.2
    assert first["bytes"] == [102, 110]
    assert {t["token"] for t in first["top_logprobs"]} == {"fn", "x"}
    assert [item["token"] for item in answer["logprobs"]] == ["fn", "()"]


async def test_legacy_top_logprobs_are_dropped_when_not_asked(backend, gateway):
    # Spec 3.11: top_logprobs is left out when the request's top_logprobs is 0;
    # a legacy backend sends the chosen token's entry even for `logprobs: 0`.
    choice = {
        "index": 0,
        "text": "fn",
        "finish_reason": "stop",
        "logprobs": {
            "tokens": ["fn"],
            "token_logprobs": [-0.2],
            "top_logprobs": [{"fn": -0.2}],
        },
    }
    backend.queue(
        Script(pieces=[sse({"object": "text_completion", "choices": [choice]})])
    )
    client = await gateway(backend)
    body = {"model": "gpt-4o", "prompt": "def ", "raw": True, "logprobs": True}
    lines = [
        json.loads(line)
        for line in (
            await (await client.post("/api/generate", json=body)).text()
        ).splitlines()
    ]
    assert backend.completions()[-1].body["logprobs"] == 0
    (item,) = lines[0]["logprobs"]
    assert item == {"token": "fn", "logprob": -0.2, "bytes": [102, 110]}


async def test_case_69_an_answer_writes_its_keys_in_ollamas_order(backend, gateway):
    """Ollama's Go structs: chat has `logprobs` before the metrics; generate has
    `thinking` before `done`, then the metrics, then `logprobs`. Clients that
    read the JSON do not care, but a byte comparison with Ollama does."""
    chat_body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}],
                 "logprobs": True, "stream": False}  # fmt: skip
    generate_body = {"model": "gpt-4o", "prompt": "x", "logprobs": True,
                     "stream": False}  # fmt: skip
    backend.queue(Script(pieces=[stream_with_logprobs()]))
    backend.queue(Script(pieces=[stream_with_logprobs()]))
    client = await gateway(backend)
    # The backend reports no usage: the prompt's count is estimated.
    metrics = ["total_duration", "load_duration", "prompt_eval_count",
               "prompt_eval_duration", "eval_count", "eval_duration"]  # fmt: skip
    chat = json.loads(await (await client.post("/api/chat", json=chat_body)).read())
    assert list(chat) == ["model", "created_at", "message", "done", "done_reason",
                          "logprobs", *metrics]  # fmt: skip
    generate = json.loads(
        await (await client.post("/api/generate", json=generate_body)).read()
    )
    assert list(generate) == ["model", "created_at", "response", "done",
                              "done_reason", *metrics, "logprobs"]  # fmt: skip
