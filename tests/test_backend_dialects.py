"""What particular backends really send, through the gateway and the fake backend.

Each test names the backend and the public source of the shape it replays.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.fakebackend import Script, chat_chunk, sse
from tests.ndjson import CHAT, NO_RETRY, chat, ndjson, post


async def test_llamacpp_error_field_mid_stream_is_an_error_line(backend, gateway):
    # llama.cpp server before ggml-org/llama.cpp#16109 (merged 2025-09): a failure
    # after the headers came as an `error:` SSE field, then `data: [DONE]`.
    head = sse(chat_chunk({"content": "Hi"}), done=False)
    tail = (
        b'error: {"code":500,"message":"slot unavailable","type":"server_error"}\n\n'
        b"data: [DONE]\n\n"
    )
    backend.queue(Script(pieces=[head, tail]))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", CHAT)
    assert resp.status == 200
    objs = ndjson(await resp.read())
    assert objs[0]["message"]["content"] == "Hi"
    assert objs[-1] == {"error": "slot unavailable"}
    assert not any(o.get("done") for o in objs)


async def test_llamacpp_error_field_before_output_keeps_its_status(backend, gateway):
    body = (
        b'error: {"code":400,"message":"the request exceeds the available context'
        b' size","type":"invalid_request_error"}\n\ndata: [DONE]\n\n'
    )
    backend.queue(Script(pieces=[body]))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 400
    assert (await resp.json()) == {
        "error": "the request exceeds the available context size"
    }


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        # Gemini's OpenAI-compatible endpoint answers errors as a JSON *list*
        # (seen in bytedance/deer-flow#1515, Simpleyyt/ai-manus#101).
        (
            400,
            [
                {
                    "error": {
                        "code": 400,
                        "message": 'Invalid JSON payload received. Unknown name "top_k"',
                        "status": "INVALID_ARGUMENT",
                    }
                }
            ],
            'Invalid JSON payload received. Unknown name "top_k"',
        ),
        # FastAPI's validation error: a `detail` list of located messages.
        (
            422,
            {
                "detail": [
                    {
                        "loc": ["body", "messages"],
                        "msg": "Field required",
                        "type": "missing",
                    },
                    {"loc": ["body", "top_k"], "msg": "Input should be an integer"},
                ]
            },
            "body.messages: Field required; body.top_k: Input should be an integer",
        ),
        # OpenRouter: its own message says nothing; the provider's error body
        # is in `metadata.raw` (openrouter.ai/docs/api-reference/errors).
        (
            403,
            {
                "error": {
                    "message": "Provider returned error",
                    "code": 403,
                    "metadata": {
                        "raw": '{"error":{"code":"unsupported_country_region_'
                        'territory","message":"Country, region, or territory not '
                        'supported","param":null,"type":"request_forbidden"}}',
                        "provider_name": "OpenAI",
                    },
                },
                "user_id": "user_2",
            },
            "upstream authentication failed: Provider returned error (OpenAI): "
            "Country, region, or territory not supported",
        ),
        (
            400,
            {
                "error": {
                    "message": "Provider returned error",
                    "code": 400,
                    "metadata": {"raw": "supports at most 1 image per prompt"},
                }
            },
            "Provider returned error: supports at most 1 image per prompt",
        ),
    ],
    ids=["gemini-list", "fastapi-detail", "openrouter-raw-json", "openrouter-raw"],
)
async def test_a_json_error_body_of_another_shape_gives_its_message(
    backend, gateway, status, body, message
):
    backend.queue(Script(status=status, error_body=body))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", CHAT)
    assert resp.status == (502 if status == 403 else 400)
    assert await resp.json() == {"error": message}


NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


_HTML_PAGE = (
    b"<!DOCTYPE html><html><head><style>p{color:red}</style></head>"
    b"<body><h1>Service &amp; model unavailable</h1><p>Try later.</p></body></html>"
)


@pytest.mark.parametrize(
    ("status", "body", "content_type", "message"),
    [
        # A reverse proxy in front of vLLM or llama.cpp answers its own page.
        (502, NGINX_502, "text/html", "502 Bad Gateway"),
        (500, _HTML_PAGE, None, "Service & model unavailable Try later."),
        (500, b"Internal Server Error\n", "text/plain", "Internal Server Error"),
    ],
    ids=["html-title", "html-text", "plain-text"],
)
async def test_a_non_json_error_body_gives_its_text(
    backend, gateway, status, body, content_type, message
):
    headers = {"Content-Type": content_type} if content_type else {}
    backend.queue(Script(status=status, error_body=body, headers=headers))
    client = await gateway(backend, NO_RETRY)
    resp = await post(client, "/api/chat", CHAT)
    assert resp.status == status
    assert await resp.json() == {"error": message}


async def test_together_bare_model_list(backend, gateway):
    # Together AI's /v1/models is a bare array (helixml/helix#386).
    backend.models_body = [
        {
            "id": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
            "object": "model",
            "created": 1733443200,
            "type": "chat",
            "display_name": "Meta Llama 3.3 70B Instruct Turbo",
            "organization": "Meta",
            "context_length": 131072,
            "pricing": {"input": 0.88, "output": 0.88},
        }
    ]
    client = await gateway(backend)
    resp = await client.get("/api/tags")
    assert resp.status == 200
    [entry] = (await resp.json())["models"]
    assert entry["name"] == "meta-llama/Llama-3.3-70B-Instruct-Turbo:latest"
    assert entry["modified_at"].startswith("2024-12-06T00:00:00")
    resp = await post(client, "/api/show", {"model": entry["name"]})
    assert resp.status == 200
    assert (await resp.json())["model_info"]["llama.context_length"] == 131072


async def test_model_entries_with_only_an_id_and_no_list_object(backend, gateway):
    # Minimal servers: no top-level `object`, entries with just `id`.
    backend.models_body = {"data": [{"id": "local-model"}, {"id": "nomic-embed"}]}
    client = await gateway(backend)
    resp = await client.get("/api/tags")
    assert resp.status == 200
    models = {m["name"]: m for m in (await resp.json())["models"]}
    assert set(models) == {"local-model:latest", "nomic-embed:latest"}
    assert models["nomic-embed:latest"]["capabilities"] == ["embedding"]


async def test_llamacpp_model_list_with_models_and_meta(backend, gateway):
    # llama.cpp's server answers both an Ollama-like `models` and OpenAI `data`.
    backend.models_body = {
        "models": [{"name": "qwen2.5-7b-instruct-q4_k_m.gguf", "model": "x"}],
        "object": "list",
        "data": [
            {
                "id": "qwen2.5-7b-instruct-q4_k_m.gguf",
                "object": "model",
                "created": 1747400000,
                "owned_by": "llamacpp",
                "meta": {"vocab_type": 2, "n_ctx_train": 32768, "n_params": 7615616512},
            }
        ],
    }
    client = await gateway(backend)
    resp = await client.get("/api/tags")
    assert resp.status == 200
    [entry] = (await resp.json())["models"]
    assert entry["name"] == "qwen2.5-7b-instruct-q4_k_m.gguf:latest"


async def test_openrouter_mid_stream_error_chunk_is_an_error_line(backend, gateway):
    # openrouter.ai/docs/api-reference/streaming: an error after output started
    # is a chunk with a top-level `error` and finish_reason "error".
    failing = chat_chunk(
        {"content": ""},
        finish="error",
        error={"code": "server_error", "message": "Provider disconnected"},
    )
    body = b": OPENROUTER PROCESSING\n\n" + sse(
        chat_chunk({"content": "Par"}), failing, done=False
    )
    backend.queue(Script(pieces=[body]))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", CHAT)
    objs = ndjson(await resp.read())
    assert objs[0]["message"]["content"] == "Par"
    assert objs[-1] == {"error": "Provider disconnected"}
    assert not any(o.get("done") for o in objs)


async def test_openrouter_provider_error_mid_stream_says_the_providers_words(
    backend, gateway
):
    failing = chat_chunk(
        {"content": ""},
        finish="error",
        error={
            "code": 429,
            "message": "Provider returned error",
            "metadata": {
                "raw": "z-ai/glm is temporarily rate-limited upstream",
                "provider_name": "BaseTen",
            },
        },
    )
    backend.queue(Script(pieces=[sse(chat_chunk({"content": "Par"}), failing)]))
    client = await gateway(backend)
    objs = ndjson(await (await post(client, "/api/chat", CHAT)).read())
    assert objs[-1] == {
        "error": "Provider returned error (BaseTen): "
        "z-ai/glm is temporarily rate-limited upstream"
    }


async def test_openrouter_error_in_a_200_json_body(backend, gateway):
    # openrouter.ai/docs/errors: once the model started, errors come in the
    # body of a 200 answer.
    body = b'{"error":{"code":502,"message":"Upstream model error"}}'
    backend.queue(Script(pieces=[body], content_type="application/json"))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 502
    assert await resp.json() == {"error": "Upstream model error"}


# The LiteLLM proxy (1.108.7, seen here behind a backend that failed after its
# role chunk): the headers and a role-only chunk are already sent, so the error
# comes in band, with the HTTP status as a *string* `code` (ProxyException).
_LITELLM_ROLE = (
    b'data: {"id":"chatcmpl-up","object":"chat.completion.chunk","created":'
    b'1795985896,"model":"up-role-then-429","choices":[{"index":0,"delta":'
    b'{"role":"assistant","content":""}}]}\n\n'
)


def _litellm_error(code: str, message: str) -> bytes:
    return (
        b'data: {"error": {"message": "' + message.encode() + b'", "type": '
        b'"throttling_error", "param": null, "code": "' + code.encode() + b'"}}\n\n'
    )


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(
    ("code", "status", "message"),
    [
        (
            "429",
            429,
            "litellm.RateLimitError: RateLimitError: OpenAIException - "
            "Rate limit reached for requests",
        ),
        ("400", 400, "litellm.ContextWindowExceededError: too long"),
        ("401", 502, "upstream authentication failed: litellm.AuthenticationError"),
        ("503", 503, "litellm.ServiceUnavailableError: overloaded"),
    ],
)
async def test_litellm_error_event_with_a_string_status_code_keeps_it(
    backend, gateway, stream, code, status, message
):
    raw = message.removeprefix("upstream authentication failed: ")
    data = _LITELLM_ROLE + _litellm_error(code, raw)
    # Cut inside the role chunk and inside the error's `code` value.
    cut = data.index(b'"code": "') + 11
    backend.queue(Script(pieces=[data[:57], data[57:cut], data[cut:]], delay=0.01))
    client = await gateway(backend, NO_RETRY)
    resp = await post(client, "/api/chat", chat(stream=stream))
    assert resp.status == status
    assert await resp.json() == {"error": message}
    assert len(backend.completions()) == 1


async def test_an_error_code_that_is_a_word_is_a_500(backend, gateway):
    # OpenAI-style codes ("server_error", "rate_limit_exceeded") are no status.
    data = _LITELLM_ROLE + _litellm_error("server_error", "boom")
    backend.queue(Script(pieces=[data]))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 500
    assert await resp.json() == {"error": "boom"}


_MISTRAL_ID = re.compile(r"[a-zA-Z0-9]{9}")


async def test_history_calls_without_ids_get_ids_mistral_accepts(backend, gateway):
    # Mistral's API (and the Mistral chat templates vLLM and mlx serve) refuses
    # any other tool-call id: 400 "Tool call id was call_1_0 but must be a-z,
    # A-Z, 0-9, with a length of 9." (mistral-common's tool-calling docs;
    # reported in anomalyco/opencode#1680, nearai/ironclaw#1241). The official
    # Python client drops the ids it was given, so the gateway makes them up.
    call = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather?"}]
    for turn in range(12):
        messages += [
            {"role": "assistant", "content": "", "tool_calls": [call, call]},
            {"role": "tool", "tool_name": "get_weather", "content": f"{turn}C"},
            {"role": "tool", "tool_name": "get_weather", "content": f"{turn}F"},
        ]
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(messages=messages, stream=False))
    assert resp.status == 200
    upstream = backend.completions()[-1].body["messages"]
    ids = [c["id"] for m in upstream for c in m.get("tool_calls", ())]
    assert len(ids) == 24 and len(set(ids)) == 24
    assert all(_MISTRAL_ID.fullmatch(i) for i in ids), ids
    answered = [m["tool_call_id"] for m in upstream if m["role"] == "tool"]
    assert answered == ids


# llama-server gives a tool call's `arguments` as a JSON *object* when started
# with `--tool-args-object`, and did so by default for a while in March 2026
# (ggml-org/llama.cpp#20198, reverted to strings by #20202).
_LLAMACPP_OBJECT_ARGS_JSON = (
    b'{"choices":[{"finish_reason":"tool_calls","index":0,"message":{"role":'
    b'"assistant","content":null,"tool_calls":[{"type":"function","function":'
    b'{"name":"get_weather","arguments":{"city":"Paris","days":2}},"id":'
    b'"e6Yx1CZRqU3ZfGnvsOaWmBJZ3cyBeeAM"}]}}],"created":1773000000,"model":'
    b'"qwen3","system_fingerprint":"b8200-1a2b3c4d","object":"chat.completion",'
    b'"usage":{"completion_tokens":21,"prompt_tokens":180,"total_tokens":201},'
    b'"id":"chatcmpl-Xo1","timings":{"prompt_n":180,"prompt_ms":95.1,'
    b'"predicted_n":21,"predicted_ms":310.4}}'
)
_OBJECT_CALL = {
    "id": "e6Yx1CZRqU3ZfGnvsOaWmBJZ3cyBeeAM",
    "function": {
        "index": 0,
        "name": "get_weather",
        "arguments": {"city": "Paris", "days": 2},
    },
}


@pytest.mark.parametrize("extra", ["", 'stream_upstream = "as-client"\n'])
async def test_llamacpp_object_arguments_in_a_json_answer(backend, gateway, extra):
    data = _LLAMACPP_OBJECT_ARGS_JSON
    pieces = [data[:101], data[101:150], data[150:]]  # cut inside the object
    backend.queue(Script(pieces=pieces, content_type="application/json"))
    client = await gateway(
        toml=f'[[backends]]\nname = "l"\nbase_url = "{backend.url}"\n{extra}'
    )
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["message"]["tool_calls"] == [_OBJECT_CALL]
    assert body["prompt_eval_count"] == 180 and body["eval_count"] == 21


@pytest.mark.parametrize("stream", [True, False])
async def test_llamacpp_object_arguments_in_a_stream(backend, gateway, stream):
    call = {
        "index": 0,
        "id": "e6Yx1CZRqU3ZfGnvsOaWmBJZ3cyBeeAM",
        "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}},
    }
    data = sse(
        chat_chunk({"role": "assistant", "content": None}),
        chat_chunk({"tool_calls": [call]}),
        chat_chunk({}, finish="tool_calls"),
    )
    cut = data.index(b'"days"')
    backend.queue(Script(pieces=[data[:cut], data[cut:]], delay=0.01))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=stream))
    assert resp.status == 200
    objs = ndjson(await resp.read()) if stream else [await resp.json()]
    calls = [c for o in objs for c in o.get("message", {}).get("tool_calls", ())]
    assert calls == [_OBJECT_CALL]
    assert objs[-1]["done"] is True


# Mistral's reasoning models (magistral-*-2507 and later, mistral-small and
# mistral-medium-3-5 with reasoning_effort) give `content` as a list of typed
# chunks: the thinking as `{"type": "thinking", "thinking": [text chunks]}`,
# the answer as `{"type": "text"}` chunks, or as plain strings once a stream's
# thinking is over (docs.mistral.ai/capabilities/reasoning; the ThinkChunk and
# TextChunk of mistralai/client-python).
def _mistral_chunk(content: object, finish: str | None = None, **extra: object) -> str:
    chunk = {
        "id": "8c1f2a3b4c5d4e6f8a9b0c1d2e3f4a5b",
        "object": "chat.completion.chunk",
        "created": 1777985814,
        "model": "magistral-medium-2509",
        "choices": [
            {"index": 0, "delta": {"content": content}, "finish_reason": finish}
        ],
        **extra,
    }
    return json.dumps(chunk, separators=(",", ":"))


def _thinking(text: str) -> list[dict[str, object]]:
    return [{"type": "thinking", "thinking": [{"type": "text", "text": text}]}]


_MISTRAL_USAGE = {"prompt_tokens": 10, "total_tokens": 50, "completion_tokens": 40}
_MISTRAL_STREAM = sse(
    _mistral_chunk(""),
    _mistral_chunk(_thinking("Okay, ")),
    _mistral_chunk(_thinking("2+2 is 4.")),
    _mistral_chunk([{"type": "text", "text": "The answer"}]),
    _mistral_chunk(" is 4.", "stop", usage=_MISTRAL_USAGE),
)


@pytest.mark.parametrize("stream", [True, False])
async def test_mistral_thinking_chunks_in_a_stream(backend, gateway, stream):
    data = _MISTRAL_STREAM
    cut = data.index(b"2+2")
    backend.queue(Script(pieces=[data[:cut], data[cut:]], delay=0.01))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=stream))
    assert resp.status == 200, await resp.text()
    objs = ndjson(await resp.read()) if stream else [await resp.json()]
    thinking = "".join(o["message"].get("thinking", "") for o in objs)
    content = "".join(o["message"]["content"] for o in objs)
    assert (thinking, content) == ("Okay, 2+2 is 4.", "The answer is 4.")
    assert objs[-1]["done_reason"] == "stop" and objs[-1]["eval_count"] == 40


async def test_mistral_thinking_chunks_in_a_json_answer(backend, gateway):
    answer = {
        "id": "d3564afe820340acba2a282db61ed58c",
        "object": "chat.completion",
        "model": "magistral-medium-latest",
        "usage": _MISTRAL_USAGE,
        "created": 1777985814,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": [
                        {**_thinking("Dolphins are mammals.")[0], "closed": True},
                        {"type": "text", "text": "Dolphins are smart."},
                    ],
                    "tool_calls": None,
                    "prefix": False,
                },
            }
        ],
    }
    body = json.dumps(answer).encode()
    backend.queue(Script(pieces=[body], content_type="application/json"))
    client = await gateway(
        toml=f'[[backends]]\nname = "m"\nbase_url = "{backend.url}"\n'
        'stream_upstream = "as-client"\n'
    )
    resp = await post(client, "/api/chat", chat(stream=False))
    assert resp.status == 200, await resp.text()
    message = (await resp.json())["message"]
    assert message == {
        "role": "assistant",
        "content": "Dolphins are smart.",
        "thinking": "Dolphins are mammals.",
    }


async def test_llama_cpp_python_logprobs_without_bytes_get_them(backend, gateway):
    # llama-cpp-python's server (0.3.36) sends `"bytes": null` in chat
    # logprobs; Ollama's elements carry the token's UTF-8 bytes (spec 3.11).
    data = (
        b'data: {"id": "chatcmpl-cac6", "model": "tiny-llama", "created": '
        b'1795986353, "object": "chat.completion.chunk", "choices": [{"index": 0,'
        b' "delta": {"role": "assistant"}, "logprobs": null, "finish_reason": null'
        b'}]}\n\ndata: {"id": "chatcmpl-cac6", "model": "tiny-llama", "created": '
        b'1795986353, "object": "chat.completion.chunk", "choices": [{"index": 0,'
        b' "delta": {"content": " gr\\u00f6w"}, "logprobs": {"content": [{"token":'
        b' " gr\\u00f6w", "bytes": null, "logprob": -0.03, "top_logprobs": [{'
        b'"token": " gr\\u00f6w", "logprob": -0.03, "bytes": null}, {"token": "", '
        b'"logprob": -5.0, "bytes": null}]}], "refusal": null}, "finish_reason": '
        b'null}]}\n\ndata: {"id": "chatcmpl-cac6", "model": "tiny-llama", '
        b'"created": 1795986353, "object": "chat.completion.chunk", "choices": '
        b'[{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "length"}'
        b"]}\n\ndata: [DONE]\n\n"
    )
    backend.queue(Script(pieces=[data[:300], data[300:]]))
    client = await gateway(backend)
    body = chat(stream=False, logprobs=True, top_logprobs=2)
    resp = await post(client, "/api/chat", body)
    assert resp.status == 200
    grow = list(" gröw".encode())
    assert (await resp.json())["logprobs"] == [
        {
            "token": " gröw",
            "logprob": -0.03,
            "bytes": grow,
            "top_logprobs": [
                {"token": " gröw", "logprob": -0.03, "bytes": grow},
                {"token": "", "logprob": -5.0},
            ],
        }
    ]
