"""What a real llama.cpp server sent, replayed through the gateway.

The bytes were captured from `llama-server` built from the llama.cpp that
llama-cpp-python 0.3.16 vendors (build `b1-4227c9b`), serving a tiny random
Qwen-vocabulary model with `--jinja` and the Qwen3 or QwQ chat template. The
bodies are verbatim: short ones here, streams and whole answers in
`fixtures/llamacpp/` (the body as it came, headers left out); the golden files
`fixtures/llamacpp_run_*.sse` are from the same run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ollama_gateway.handlers.embed import TOO_LONG
from tests.fakebackend import FakeBackend, Script, chat_chunk, split_every, sse
from tests.ndjson import NO_RETRY, chat, ndjson, post

CAPTURES = Path(__file__).parent / "fixtures" / "llamacpp"


def capture(name: str) -> bytes:
    return (CAPTURES / name).read_bytes()


# `GET /v1/models` of `llama-server -m /tmp/s9/llama/models/tiny-qwen3.gguf`: the
# id is the model file's path (no `--alias`), `created` is the time of the
# request, and `meta` has what the GGUF file says.
MODELS = (
    b'{"models":[{"name":"/tmp/s9/llama/models/tiny-qwen3.gguf","model":"/tmp/s9/'
    b'llama/models/tiny-qwen3.gguf","modified_at":"","size":"","digest":"","type":'
    b'"model","description":"","tags":[""],"capabilities":["completion"],"paramete'
    b'rs":"","details":{"parent_model":"","format":"gguf","family":"","families":['
    b'""],"parameter_size":"","quantization_level":""}}],"object":"list","data":[{'
    b'"id":"/tmp/s9/llama/models/tiny-qwen3.gguf","object":"model","created":1796'
    b'001188,"owned_by":"llamacpp","meta":{"vocab_type":2,"n_vocab":151936,"n_ctx_'
    b'train":4096,"n_embd":64,"n_params":19521856,"size":78087424}}]}'
)
MODEL = "/tmp/s9/llama/models/tiny-qwen3.gguf:latest"

# The same while the server still loads the model (its /health answers 503):
# `meta` is null.
MODELS_LOADING = (
    b'{"models":[{"name":"tiny-endless","model":"tiny-endless","modified_at":"",'
    b'"size":"","digest":"","type":"model","description":"","tags":[""],"capabil'
    b'ities":["completion"],"parameters":"","details":{"parent_model":"","format"'
    b':"gguf","family":"","families":[""],"parameter_size":"","quantization_level'
    b'":""}}],"object":"list","data":[{"id":"tiny-endless","object":"model","crea'
    b'ted":1796001353,"owned_by":"llamacpp","meta":null}]}'
)


async def test_model_meta_gives_context_embedding_and_parameter_sizes(
    backend: FakeBackend, gateway
):
    backend.models_body = MODELS
    client = await gateway(backend)
    [entry] = (await (await client.get("/api/tags")).json())["models"]
    assert entry["name"] == MODEL
    assert entry["size"] == 78087424
    assert entry["details"]["parameter_size"] == "19.52M"
    show = await (await post(client, "/api/show", {"model": MODEL})).json()
    info = show["model_info"]
    arch = info["general.architecture"]
    # Clients size their prompts by it: VS Code Copilot reads
    # `<arch>.context_length`, Continue the `num_ctx` parameter.
    assert info[f"{arch}.context_length"] == 4096
    assert info[f"{arch}.embedding_length"] == 64
    assert "num_ctx                        4096" in show["parameters"]


async def test_model_meta_null_while_loading_is_no_metadata(
    backend: FakeBackend, gateway
):
    backend.models_body = MODELS_LOADING
    client = await gateway(backend)
    [entry] = (await (await client.get("/api/tags")).json())["models"]
    assert entry["name"] == "tiny-endless:latest"
    assert entry["size"] == 0 and entry["details"]["parameter_size"] == ""
    show = await (await post(client, "/api/show", {"model": "tiny-endless"})).json()
    assert set(show["model_info"]) == {"general.architecture", "general.basename"}


@pytest.mark.parametrize("stream", [True, False])
async def test_raw_generate_logprobs_in_the_chat_shape(
    backend: FakeBackend, gateway, stream
):
    # llama.cpp answers `/v1/completions` with `logprobs: N` in the chat shape
    # (`logprobs.content[]` with `top_logprobs`), not OpenAI's parallel arrays.
    data = capture("completions_logprobs.sse")
    backend.queue(Script(pieces=split_every(data, 97)))
    client = await gateway(backend)
    body = {"model": "gpt-4o", "prompt": "hi", "raw": True, "stream": stream,
            "logprobs": True, "top_logprobs": 2}  # fmt: skip
    resp = await post(client, "/api/generate", body)
    assert resp.status == 200
    assert backend.completions()[-1].body["logprobs"] == 2
    objs = ndjson(await resp.read()) if stream else [await resp.json()]
    logprobs = [item for obj in objs for item in obj.get("logprobs") or ()]
    assert [item["token"] for item in logprobs] == [" encoding", " dam"]
    first = logprobs[0]
    assert first["logprob"] == -6.528229236602783
    assert first["bytes"] == list(b" encoding")
    assert first["top_logprobs"] == [
        {"token": " syn", "logprob": -5.408588409423828, "bytes": list(b" syn")},
        {
            "token": "</think>",
            "logprob": -5.552343845367432,
            "bytes": list(b"</think>"),
        },
    ]


# What llama-server answered to a tool without `description` (and the same for
# one without `type` or `parameters`), which Ollama and OpenAI both accept.
TOOL_REFUSED = (
    b'{"error":{"code":500,"message":"Failed to parse tools: [json.exception.out_of'
    b"_range.403] key 'description' not found; tools = [\\n  {\\n    \\\"type\\\":"
    b' \\"function\\",\\n    \\"function\\": {\\n      \\"name\\": \\"f\\",\\n'
    b'      \\"parameters\\": {\\n        \\"type\\": \\"object\\",\\n        '
    b'\\"properties\\": {}\\n      }\\n    }\\n  }\\n]","type":"server_error"}}'
)


class ToolCheckingBackend(FakeBackend):
    """Refuses, as llama-server does, a tool short of a key it reads."""

    async def _completion(self, request):
        body = await request.json()
        for tool in body.get("tools", ()):
            function = tool.get("function", {})
            if "type" not in tool or not {"description", "parameters"} <= set(function):
                self.queue(Script(status=500, error_body=TOOL_REFUSED))
        return await super()._completion(request)


EMPTY = {"type": "object", "properties": {}}


@pytest.mark.parametrize(
    ("function", "description", "parameters"),
    [
        # OpenAI refuses an object schema without properties.
        ({"name": "f", "parameters": {"type": "object"}}, "", EMPTY),
        ({"name": "f", "description": "d"}, "d", EMPTY),
        ({"name": "f", "description": None, "parameters": None}, "", EMPTY),
    ],
    ids=["no-description", "no-parameters", "nulls"],
)
@pytest.mark.parametrize("typed", [True, False], ids=["typed", "no-type"])
async def test_tools_get_the_keys_llamacpp_requires(
    aiohttp_server, gateway, function, description, parameters, typed
):
    backend = ToolCheckingBackend()
    backend.url = str((await aiohttp_server(backend.app)).make_url("/v1"))
    client = await gateway(backend)
    tool = (
        {"type": "function", "function": function} if typed else {"function": function}
    )
    resp = await post(client, "/api/chat", chat(stream=False, tools=[tool]))
    assert resp.status == 200, await resp.text()
    [sent] = backend.completions()[-1].body["tools"]
    assert sent == {
        "type": "function",
        "function": {"name": "f", "description": description, "parameters": parameters},
    }


async def test_a_whole_tool_is_sent_as_the_client_wrote_it(backend, gateway):
    tool = {"function": {"parameters": {"properties": {}, "type": "object"},
            "description": "Weather", "name": "w"}, "type": "function"}  # fmt: skip
    client = await gateway(backend)
    await post(client, "/api/chat", chat(stream=False, tools=[tool]))
    [sent] = backend.completions()[-1].body["tools"]
    assert list(sent) == ["function", "type"]  # the key order kept
    assert sent == tool


EXTENSIONS = """
[[backends]]
name = "llamacpp"
base_url = "{url}"
extensions = true
"""
OK_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}}


@pytest.mark.parametrize(
    ("fmt", "sent"), [(OK_SCHEMA, OK_SCHEMA), ("json", {"type": "object"})]
)
async def test_raw_generate_format_is_sent_as_llamacpps_json_schema(
    backend: FakeBackend, gateway, fmt, sent
):
    # llama-server ignores `response_format` on /v1/completions: with it alone
    # the captured answer was " encoding dam incred whatever ...", with its own
    # `json_schema` the stream replayed here.
    backend.queue(Script(pieces=[capture("completions_json_schema.sse")]))
    client = await gateway(toml=EXTENSIONS.format(url=backend.url))
    body = {"model": "gpt-4o", "prompt": "hi", "raw": True, "stream": False}
    resp = await post(client, "/api/generate", {**body, "format": fmt})
    assert resp.status == 200
    assert backend.completions()[-1].body["json_schema"] == sent
    assert json.loads((await resp.json())["response"]) == {"ok": True}


async def test_raw_generate_format_stays_openais_without_extensions(
    backend: FakeBackend, gateway
):
    client = await gateway(backend)
    body = {"model": "gpt-4o", "prompt": "hi", "raw": True, "format": OK_SCHEMA}
    await post(client, "/api/generate", body)
    sent = backend.completions()[-1].body
    assert "json_schema" not in sent
    assert sent["response_format"]["json_schema"]["schema"] == OK_SCHEMA


# llama-server --embeddings, asked for an input longer than its batch.
EMBED_TOO_LONG = (
    b'{"error":{"code":500,"message":"input is too large to process. increase the'
    b' physical batch size","type":"server_error"}}'
)
LLAMACPP_JSON = {"Content-Type": "application/json; charset=utf-8"}


@pytest.mark.parametrize(
    ("path", "extra", "message"),
    [
        ("/api/embed", {"truncate": False}, TOO_LONG),
        ("/api/embed", {}, "input is too large to process. increase the physical"
         " batch size"),
        ("/api/embeddings", {}, "input is too large to process. increase the"
         " physical batch size"),
    ],
    ids=["truncate-false", "truncate-default", "legacy"],
)  # fmt: skip
async def test_an_embedding_input_too_long_is_a_400(
    backend: FakeBackend, gateway, path, extra, message
):
    # Not a server fault to retry: the same input fails again (Home Assistant
    # and others retry a 5xx).
    backend.queue(Script(status=500, error_body=EMBED_TOO_LONG, headers=LLAMACPP_JSON))
    client = await gateway(backend, NO_RETRY)
    key = "input" if path == "/api/embed" else "prompt"
    body = {"model": "text-embedding-3-small", key: "hello world " * 400, **extra}
    resp = await post(client, path, body)
    assert resp.status == 400
    assert await resp.json() == {"error": message}
    assert len(backend.requests) == 2  # the model list, then one try


async def test_other_embedding_failures_keep_their_status(
    backend: FakeBackend, gateway
):
    # llama-server without --embeddings
    refused = (
        b'{"error":{"code":501,"message":"This server does not support embeddings.'
        b' Start it with `--embeddings`","type":"not_supported_error"}}'
    )
    backend.queue(Script(status=501, error_body=refused, headers=LLAMACPP_JSON))
    client = await gateway(backend)
    body = {"model": "text-embedding-3-small", "input": "hi", "truncate": False}
    resp = await post(client, "/api/embed", body)
    assert resp.status == 501
    assert (await resp.json())["error"].startswith("This server does not support")


AS_CLIENT = EXTENSIONS + 'stream_upstream = "as-client"\n'


@pytest.mark.parametrize(
    ("name", "toml", "prompt_ms", "predicted_ms"),
    [("chat.sse", EXTENSIONS, 2.996, 19.0), ("chat.json", AS_CLIENT, 2.463, 22.041)],
    ids=["streamed", "whole"],
)
async def test_durations_are_the_servers_timings(
    backend: FakeBackend, gateway, name, toml, prompt_ms, predicted_ms
):
    # A whole answer arrives at once: measured, its eval_duration would be 1 ns
    # and clients would show billions of tokens per second.
    kind = "application/json" if name.endswith(".json") else "text/event-stream"
    backend.queue(Script(pieces=[capture(name)], content_type=kind))
    client = await gateway(toml=toml.format(url=backend.url))
    resp = await post(client, "/api/chat", chat(stream=False))
    answer = await resp.json()
    assert answer["message"]["content"] == (
        " var smoke friend last<tool_call> cent tell where former truck going exciting"
    )
    assert (answer["prompt_eval_count"], answer["eval_count"]) == (9, 12)
    assert answer["prompt_eval_duration"] == round(prompt_ms * 1e6)
    assert answer["eval_duration"] == round(predicted_ms * 1e6)
    assert answer["total_duration"] >= answer["load_duration"]


async def test_a_timings_field_of_another_shape_is_ignored(
    backend: FakeBackend, gateway
):
    usage = {"prompt_tokens": 3, "completion_tokens": 2}
    data = sse(
        chat_chunk({"content": "Hi"}),
        chat_chunk({}, finish="stop", usage=usage, timings="fast"),
    )
    backend.queue(Script(pieces=[data]))
    client = await gateway(backend)
    answer = await (await post(client, "/api/chat", chat(stream=False))).json()
    assert answer["message"]["content"] == "Hi" and answer["eval_count"] == 2
    assert answer["eval_duration"] >= 1
