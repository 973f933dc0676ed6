"""`think` on the way up (per-backend dialect) and reasoning on the way back
(spec 1.8, 3.5; section 5 cases 52-58)."""

from __future__ import annotations

import json
from typing import Any

import ollama
import pytest

from tests.conftest import base_url
from tests.fakebackend import FakeBackend, Script, chat_chunk, sse

THINKER = "qwen3-32b"
PLAIN = "gpt-4o"
MODELS = [{"id": THINKER, "object": "model"}, {"id": PLAIN, "object": "model"}]


def backend_toml(fake: FakeBackend, dialect: str, extra: str = "") -> str:
    return (
        f'[[backends]]\nname = "b1"\nbase_url = "{fake.url}"\n'
        f'dialect = "{dialect}"\n{extra}'
    )


async def post(client: Any, path: str, body: Any) -> Any:
    return await client.post(path, data=json.dumps(body))


def lines(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.decode().split("\n") if line]


def chat(model: str = THINKER, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "why?"}], **fields}


def reasoning_script(field: str = "reasoning_content") -> Script:
    events = [
        chat_chunk({"role": "assistant", "content": ""}),
        chat_chunk({field: "Let me "}),
        chat_chunk({field: "think."}),
        chat_chunk({"content": "Because"}),
        chat_chunk({"content": " physics."}),
        chat_chunk({}, finish="stop"),
        chat_chunk(choices=False, usage={"prompt_tokens": 3, "completion_tokens": 4}),
    ]
    return Script(pieces=[sse(*events)])


@pytest.fixture
def thinker(backend: FakeBackend) -> FakeBackend:
    backend.models = MODELS
    return backend


async def sent_think_fields(
    gateway: Any, fake: FakeBackend, dialect: str, think: Any, extra: str = ""
) -> dict[str, Any]:
    client = await gateway(toml=backend_toml(fake, dialect, extra))
    body = chat(stream=False)
    if think is not None:
        body["think"] = think
    resp = await post(client, "/api/chat", body)
    assert resp.status == 200, await resp.text()
    sent = fake.completions()[-1].body
    return {
        k: sent[k]
        for k in ("reasoning_effort", "chat_template_kwargs", "reasoning")
        if k in sent
    }


@pytest.mark.parametrize(
    ("think", "expected"),
    [
        (None, {}),
        (True, {}),
        (False, {"reasoning_effort": "none"}),
        ("low", {"reasoning_effort": "low"}),
        ("medium", {"reasoning_effort": "medium"}),
        ("high", {"reasoning_effort": "high"}),
        ("max", {"reasoning_effort": "high"}),
    ],
)
async def test_case_54_openai_dialect(thinker, gateway, think, expected):
    assert await sent_think_fields(gateway, thinker, "openai", think) == expected


async def test_openai_dialect_configured_efforts(thinker, gateway):
    extra = 'think_on_effort = "medium"\nthink_off_effort = "minimal"\n'
    on = await sent_think_fields(gateway, thinker, "openai", True, extra)
    assert on == {"reasoning_effort": "medium"}
    off = await sent_think_fields(gateway, thinker, "openai", False, extra)
    assert off == {"reasoning_effort": "minimal"}


async def test_openai_dialect_think_false_can_be_left_out(thinker, gateway):
    extra = 'think_off_effort = ""\n'
    assert await sent_think_fields(gateway, thinker, "openai", False, extra) == {}


# What vLLM (its `reasoning_effort` is low, medium or high) and OpenAI's
# o-series answer to `"reasoning_effort": "none"`.
VLLM_EFFORT_400 = (
    "[{'type': 'literal_error', 'loc': ('body', 'reasoning_effort'), 'msg': "
    "\"Input should be 'low', 'medium' or 'high'\", 'input': 'none'}]"
)
O3_EFFORT_400 = (
    "Unsupported value: 'reasoning_effort' does not support 'none' with this "
    "model. Supported values are: 'low', 'medium', and 'high'."
)


async def refused_then_answered(
    fake: FakeBackend, gateway: Any, message: str, think: Any, stream: bool
) -> Any:
    """A chat whose first request the backend refuses with a 400 `message`;
    a second one would be answered."""
    fake.queue(Script.error(400, message), reasoning_script())
    client = await gateway(toml=backend_toml(fake, "openai"))
    return await post(client, "/api/chat", chat(think=think, stream=stream))


@pytest.mark.parametrize("message", [VLLM_EFFORT_400, O3_EFFORT_400])
@pytest.mark.parametrize("stream", [True, False])
async def test_think_false_refused_as_an_effort_is_sent_again_without_it(
    thinker, gateway, message, stream
):
    # Ollama takes `think: false` on any model (Home Assistant sends it with
    # every chat): a backend that refuses the effort it became is asked
    # again without it, once, and its reasoning comes back as thinking.
    resp = await refused_then_answered(thinker, gateway, message, False, stream)
    assert resp.status == 200
    answer = lines(await resp.read())
    assert "".join(o["message"]["content"] for o in answer) == "Because physics."
    assert answer[-1]["done"] is True
    first, second = (r.body for r in thinker.completions())
    assert first["reasoning_effort"] == "none"
    assert "reasoning_effort" not in second
    assert {k: v for k, v in first.items() if k != "reasoning_effort"} == second


@pytest.mark.parametrize(
    ("think", "message"),
    [("low", O3_EFFORT_400), (False, "This model's maximum context length is 8")],
)
async def test_other_refusals_are_passed_on_without_asking_again(
    thinker, gateway, think, message
):
    resp = await refused_then_answered(thinker, gateway, message, think, False)
    assert resp.status == 400
    assert await resp.json() == {"error": message}
    assert len(thinker.completions()) == 1


async def test_openai_dialect_think_false_on_a_plain_model_sends_nothing(
    thinker, gateway
):
    client = await gateway(toml=backend_toml(thinker, "openai"))
    resp = await post(client, "/api/chat", chat(PLAIN, think=False, stream=False))
    assert resp.status == 200
    assert "reasoning_effort" not in thinker.completions()[-1].body


@pytest.mark.parametrize(
    ("think", "expected"),
    [
        (None, {}),
        (True, {"chat_template_kwargs": {"enable_thinking": True}}),
        (False, {"chat_template_kwargs": {"enable_thinking": False}}),
        (
            "low",
            {
                "chat_template_kwargs": {
                    "enable_thinking": True,
                    "reasoning_effort": "low",
                }
            },
        ),
        (
            "high",
            {
                "chat_template_kwargs": {
                    "enable_thinking": True,
                    "reasoning_effort": "high",
                }
            },
        ),
        (
            "max",
            {
                "chat_template_kwargs": {
                    "enable_thinking": True,
                    "reasoning_effort": "max",
                }
            },
        ),
    ],
)
async def test_case_54_chat_template_kwargs_dialect(thinker, gateway, think, expected):
    fields = await sent_think_fields(gateway, thinker, "chat_template_kwargs", think)
    assert fields == expected


async def test_case_54_max_is_high_for_gpt_oss_on_chat_template_kwargs(
    backend, gateway
):
    # Spec 1.8 / 3.5: harmony (gpt-oss) models know no "max" level.
    backend.models = [{"id": "openai/gpt-oss-120b", "object": "model"}]
    client = await gateway(toml=backend_toml(backend, "chat_template_kwargs"))
    body = chat(model="openai/gpt-oss-120b", stream=False, think="max")
    resp = await post(client, "/api/chat", body)
    assert resp.status == 200, await resp.text()
    assert backend.completions()[-1].body["chat_template_kwargs"] == {
        "enable_thinking": True,
        "reasoning_effort": "high",
    }


@pytest.mark.parametrize("think", [None, True, False, "low", "high", "max"])
async def test_none_dialect_sends_nothing(thinker, gateway, think):
    assert await sent_think_fields(gateway, thinker, "none", think) == {}


async def test_case_52_reasoning_content_becomes_thinking_chunks(thinker, gateway):
    thinker.queue(reasoning_script())
    client = await gateway(toml=backend_toml(thinker, "chat_template_kwargs"))
    resp = await post(client, "/api/chat", chat(think=True))
    assert resp.status == 200
    chunks = lines(await resp.read())
    assert thinker.completions()[-1].body["chat_template_kwargs"] == {
        "enable_thinking": True
    }
    thinking = [c for c in chunks if c["message"].get("thinking")]
    assert [c["message"]["thinking"] for c in thinking] == ["Let me ", "think."]
    for chunk in thinking:
        assert chunk["message"]["content"] == ""
        assert chunk["message"]["role"] == "assistant"
        assert chunk["done"] is False
    answer = "".join(c["message"]["content"] for c in chunks)
    assert answer == "Because physics."
    assert chunks[-1]["done"] is True and "thinking" not in chunks[-1]["message"]


async def test_case_53_reasoning_field_is_also_thinking(thinker, gateway):
    thinker.queue(reasoning_script("reasoning"))
    client = await gateway(toml=backend_toml(thinker, "openai"))
    resp = await post(client, "/api/chat", chat(think="high"))
    chunks = lines(await resp.read())
    thinking = "".join(c["message"].get("thinking", "") for c in chunks)
    assert thinking == "Let me think."
    assert "".join(c["message"]["content"] for c in chunks) == "Because physics."


async def test_reasoning_content_wins_when_both_are_sent(thinker, gateway):
    events = [
        chat_chunk({"reasoning_content": "A", "reasoning": "A"}),
        chat_chunk({"content": "ok"}, finish="stop"),
    ]
    thinker.queue(Script(pieces=[sse(*events)]))
    client = await gateway(toml=backend_toml(thinker, "openai"))
    resp = await post(client, "/api/chat", chat(think=True, stream=False))
    message = (await resp.json())["message"]
    assert message["thinking"] == "A"


async def test_case_57_non_stream_thinking_is_concatenated(thinker, gateway):
    thinker.queue(reasoning_script())
    client = await gateway(toml=backend_toml(thinker, "openai"))
    resp = await post(client, "/api/chat", chat(think=True, stream=False))
    assert resp.status == 200
    body = await resp.json()
    assert body["message"] == {
        "role": "assistant",
        "content": "Because physics.",
        "thinking": "Let me think.",
    }
    assert body["done"] is True and body["done_reason"] == "stop"


async def test_case_58_generate_has_top_level_thinking(thinker, gateway):
    thinker.queue(reasoning_script(), reasoning_script("reasoning"))
    client = await gateway(toml=backend_toml(thinker, "openai"))
    body = {"model": THINKER, "prompt": "why?", "think": True}
    streamed = lines(await (await post(client, "/api/generate", body)).read())
    assert "message" not in streamed[0]
    assert "".join(c.get("thinking", "") for c in streamed) == "Let me think."
    assert "".join(c["response"] for c in streamed) == "Because physics."
    whole = await (
        await post(client, "/api/generate", {**body, "stream": False})
    ).json()
    assert whole["thinking"] == "Let me think."
    assert whole["response"] == "Because physics."


async def test_case_58_generate_writes_thinking_before_done(thinker, gateway):
    """Ollama's GenerateResponse has `thinking` right after `response`, before
    `done` (its Go struct's order), in every line and in the whole answer."""
    thinker.queue(reasoning_script(), reasoning_script())
    client = await gateway(toml=backend_toml(thinker, "openai"))
    body = {"model": THINKER, "prompt": "why?", "think": True}
    raw = (await (await post(client, "/api/generate", body)).read()).decode()
    first = json.loads(raw.split("\n")[0])
    assert list(first) == ["model", "created_at", "response", "thinking", "done"]
    whole = await (
        await post(client, "/api/generate", {**body, "stream": False})
    ).read()
    keys = list(json.loads(whole))
    assert keys[:6] == [
        "model",
        "created_at",
        "response",
        "thinking",
        "done",
        "done_reason",
    ]


async def test_reasoning_is_forwarded_even_when_think_was_false(thinker, gateway):
    # Some models (gpt-oss) cannot switch reasoning off; Ollama still shows it.
    thinker.queue(reasoning_script())
    client = await gateway(toml=backend_toml(thinker, "openai"))
    resp = await post(client, "/api/chat", chat(think=False, stream=False))
    assert (await resp.json())["message"]["thinking"] == "Let me think."


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
async def test_case_55_invalid_think_values(thinker, gateway, path):
    client = await gateway(thinker)
    body: dict[str, Any] = {"model": THINKER, "prompt": "x", "messages": []}
    bad = await post(client, path, {**body, "think": "extreme"})
    assert bad.status == 400
    assert await bad.json() == {
        "error": 'invalid think value: "extreme" (must be "high", "medium", "low", '
        '"max", true, or false)'
    }
    values: list[Any] = [1, [], {"level": "high"}]
    for value in values:
        wrong = await post(client, path, {**body, "think": value})
        assert wrong.status == 400
        assert await wrong.json() == {
            "error": 'think must be a boolean or string ("high", "medium", "low", '
            '"max", true, or false)'
        }
    assert thinker.completions() == []


@pytest.mark.parametrize("think", [True, "high", "low"])
async def test_case_56_think_on_a_model_without_thinking_is_400(
    thinker, gateway, think
):
    client = await gateway(thinker)
    resp = await post(client, "/api/chat", chat("GPT-4o", think=think))
    assert resp.status == 400
    assert await resp.json() == {"error": '"GPT-4o" does not support thinking'}
    generate = await post(
        client, "/api/generate", {"model": PLAIN, "prompt": "x", "think": think}
    )
    assert generate.status == 400
    assert await generate.json() == {"error": f'"{PLAIN}" does not support thinking'}
    # Load requests check the capability too (spec 3.5).
    load = await post(
        client, "/api/chat", {"model": PLAIN, "messages": [], "think": think}
    )
    assert load.status == 400
    assert thinker.completions() == []


async def test_case_56_think_false_on_a_model_without_thinking_is_fine(
    thinker, gateway
):
    client = await gateway(thinker)
    resp = await post(client, "/api/chat", chat(PLAIN, think=False, stream=False))
    assert resp.status == 200
    assert (await resp.json())["message"]["content"] == "Hello from fake"


async def test_thinking_capability_from_config(thinker, gateway):
    toml = (
        backend_toml(thinker, "openai")
        + '\n[models."gpt-4o"]\ncapabilities = ["completion", "thinking"]\n'
        + f'\n[models."{THINKER}"]\ncapabilities = ["completion"]\n'
    )
    client = await gateway(toml=toml)
    ok = await post(client, "/api/chat", chat(PLAIN, think=True, stream=False))
    assert ok.status == 200
    refused = await post(client, "/api/chat", chat(THINKER, think=True))
    assert refused.status == 400
    show = await post(client, "/api/show", {"model": PLAIN})
    assert "thinking" in (await show.json())["capabilities"]


async def test_python_client_reads_thinking(thinker, gateway):
    thinker.queue(reasoning_script(), reasoning_script("reasoning"))
    client = await gateway(toml=backend_toml(thinker, "chat_template_kwargs"))
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await api.chat(
            model=THINKER, messages=[{"role": "user", "content": "why?"}], think=True
        )
        parts = [
            chunk
            async for chunk in await api.chat(
                model=THINKER,
                messages=[{"role": "user", "content": "why?"}],
                think="low",
                stream=True,
            )
        ]
    assert reply.message.thinking == "Let me think."
    assert reply.message.content == "Because physics."
    assert "".join(p.message.thinking or "" for p in parts) == "Let me think."
    assert thinker.completions()[-1].body["chat_template_kwargs"] == {
        "enable_thinking": True,
        "reasoning_effort": "low",
    }


# Current reasoning families as backends list them, and their non-reasoning
# neighbours (spec 3.5, 3.14: the `thinking` capability is guessed by name).
REASONING_IDS = [
    "zai-org/GLM-4.5", "glm-4.6", "glm-4.5v", "deepseek-ai/DeepSeek-V3.1",
    "deepseek/deepseek-chat-v3.1", "deepseek-v3.2-exp",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "gemini-2.5-pro",
    "google/gemini-2.5-flash", "grok-3-mini", "x-ai/grok-4", "Qwen/Qwen3-8B",
    "Qwen/Qwen3-235B-A22B-Thinking-2507", "openai/gpt-oss-20b",
    "magistral-small-2509", "anthropic/claude-sonnet-4",
    "anthropic/claude-3.7-sonnet", "claude-opus-4-1-20250805", "o1", "o3-mini",
    "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5.1", "ibm-granite/granite-3.3-8b-instruct",
]  # fmt: skip
PLAIN_IDS = [
    "gpt-4o", "gpt-4.1-mini", "deepseek-v3", "deepseek-ai/DeepSeek-V3-0324",
    "qwen2.5:7b", "Qwen/Qwen3-235B-A22B-Instruct-2507", "qwen3-coder:30b",
    "gemini-2.0-flash", "gemini-2.5-flash-image-preview", "grok-2", "grok-3",
    "grok-4-fast-non-reasoning", "glm-4-9b-chat", "anthropic/claude-3.5-sonnet",
    "gpt-5-chat-latest", "granite-3.1-8b-instruct", "granite-4.0-h-small",
]  # fmt: skip


async def test_thinking_is_guessed_for_current_reasoning_families_only(
    backend, gateway
):
    """/api/show lists `thinking` for the reasoning families and not for
    their plain neighbours; `think: true` on a plain one is Ollama's 400,
    before any upstream request, and goes up for a reasoning one."""
    backend.models = [{"id": i, "object": "model"} for i in REASONING_IDS + PLAIN_IDS]
    client = await gateway(backend)
    for model in REASONING_IDS + PLAIN_IDS:
        show = await post(client, "/api/show", {"model": model})
        assert show.status == 200
        thinks = "thinking" in (await show.json())["capabilities"]
        assert thinks is (model in REASONING_IDS), model
    for model in PLAIN_IDS:
        refused = await post(client, "/api/chat", chat(model, think=True))
        assert refused.status == 400
        assert await refused.json() == {"error": f'"{model}" does not support thinking'}
    assert backend.completions() == []
    answered = await post(client, "/api/chat", chat("glm-4.6", think=True))
    assert answered.status == 200
    assert len(backend.completions()) == 1


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        # "none" to models that can switch reasoning off,
        ("gpt-5.1", {"reasoning_effort": "none"}),
        ("google/gemini-2.5-flash", {"reasoning_effort": "none"}),
        ("glm-4.6", {"reasoning_effort": "none"}),
        # GPT-5's lowest effort before 5.1,
        ("gpt-5-mini", {"reasoning_effort": "minimal"}),
        # and nothing to those that refuse "none": they keep their default.
        ("o3-mini", {}),
        ("openai/gpt-oss-20b", {}),
        ("gemini-2.5-pro", {}),
        ("x-ai/grok-4", {}),
        ("grok-3-mini", {}),
        ("grok-4.3", {"reasoning_effort": "none"}),
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", {}),
        # A plain model gets nothing at all.
        ("deepseek-v3", {}),
    ],
)
async def test_think_false_is_sent_as_each_family_takes_it(
    backend, gateway, model, expected
):
    backend.models = [{"id": model, "object": "model"}]
    client = await gateway(toml=backend_toml(backend, "openai"))
    resp = await post(client, "/api/chat", chat(model, think=False, stream=False))
    assert resp.status == 200
    (sent,) = (r.body for r in backend.completions())
    assert {k: sent[k] for k in ("reasoning_effort",) if k in sent} == expected


@pytest.mark.parametrize(
    ("model", "sent"), [("x-ai/grok-4", False), ("grok-code-fast-1", False),
                        ("grok-3-mini", True), ("grok-4.3", True)]
)  # fmt: skip
async def test_grok_models_that_refuse_an_effort_get_none(
    backend, gateway, model, sent
):
    """Grok 4, its fast reasoning models and grok-code-fast refuse any
    `reasoning_effort`; grok-3-mini (low, high) and later Grok take one."""
    backend.models = [{"id": model, "object": "model"}]
    client = await gateway(toml=backend_toml(backend, "openai"))
    resp = await post(client, "/api/chat", chat(model, think="low", stream=False))
    assert resp.status == 200
    assert ("reasoning_effort" in backend.completions()[0].body) is sent


async def test_a_configured_think_off_effort_is_sent_as_it_is(backend, gateway):
    backend.models = [{"id": "o3-mini", "object": "model"}]
    extra = 'think_off_effort = "low"\n'
    client = await gateway(toml=backend_toml(backend, "openai", extra))
    resp = await post(client, "/api/chat", chat("o3-mini", think=False, stream=False))
    assert resp.status == 200
    assert backend.completions()[0].body["reasoning_effort"] == "low"


@pytest.mark.parametrize("model", ["deepseek-ai/DeepSeek-V3.1", "granite-3.2-8b"])
@pytest.mark.parametrize("think", [True, False, "high"])
async def test_chat_template_kwargs_say_thinking_to_templates_that_read_it(
    backend, gateway, model, think
):
    """DeepSeek-V3.1's and Granite 3.2's templates switch on `thinking`
    (vLLM, SGLang); `enable_thinking` stays for the others."""
    backend.models = [{"id": model, "object": "model"}]
    client = await gateway(toml=backend_toml(backend, "chat_template_kwargs"))
    resp = await post(client, "/api/chat", chat(model, think=think, stream=False))
    assert resp.status == 200, await resp.text()
    kwargs = backend.completions()[-1].body["chat_template_kwargs"]
    assert kwargs["thinking"] is (think is not False)
    assert kwargs["enable_thinking"] is (think is not False)


@pytest.mark.parametrize(
    ("think", "on_effort", "expected"),
    [
        ("medium", "", {}),
        (True, "medium", {}),
        (True, "high", {"reasoning_effort": "high"}),
        ("low", "", {"reasoning_effort": "low"}),
        ("high", "", {"reasoning_effort": "high"}),
        ("max", "", {"reasoning_effort": "high"}),
    ],
)
@pytest.mark.parametrize("model", ["grok-3-mini", "x-ai/grok-3-mini-fast"])
async def test_grok_3_mini_gets_low_or_high_only(
    backend, gateway, model, think, on_effort, expected
):
    """xAI's grok-3-mini refuses a "medium" effort with a 400: Ollama's
    medium (what `think: true` stands for) goes as the model's default."""
    backend.models = [{"id": model, "object": "model"}]
    extra = f'think_on_effort = "{on_effort}"\n'
    client = await gateway(toml=backend_toml(backend, "openai", extra))
    resp = await post(client, "/api/chat", chat(model, think=think, stream=False))
    assert resp.status == 200
    (sent,) = (r.body for r in backend.completions())
    assert {k: sent[k] for k in ("reasoning_effort",) if k in sent} == expected
