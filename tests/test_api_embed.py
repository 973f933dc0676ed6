"""`/api/embed` and `/api/embeddings` (spec 2.8, 2.9, 3.13; section 5 cases 77-81)."""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import ollama
import pytest
from aiohttp import web

from tests.conftest import base_url
from tests.fakebackend import FakeBackend, Script


class EmbedBackend(FakeBackend):
    """The fake backend with one distinct vector per input text.

    `vector_for` makes the vector; `base64` answers as OpenAI's base64 encoding
    (little-endian float32). `data` comes back out of index order, as before.
    """

    def __init__(self) -> None:
        super().__init__()
        self.base64 = False

    @staticmethod
    def vector_for(text: str) -> list[float]:
        # Lengths differ per text, so a mix-up of order shows.
        return [float(len(text)), 2.0, 1.0, 0.5, 0.25, 3.0, 1.5, 4.0, 2.5, 6.0]

    async def _embeddings(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        if self.scripts:
            script = self.scripts.pop(0)
            return web.json_response(script.error_body, status=script.status)
        inputs = recorded.body["input"]
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if "" in inputs:
            # OpenAI's answer to an empty text, anywhere in the batch.
            message = "'$.input' is invalid. Please check the API reference."
            error = {"message": message, "type": "invalid_request_error"}
            return web.json_response({"error": error}, status=400)
        data = []
        for i, text in enumerate(inputs):
            vector: Any = self.vector_for(text)
            if self.base64:
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector))
                vector = vector.decode()
            data.append({"object": "embedding", "index": i, "embedding": vector})
        data.reverse()
        usage = {"prompt_tokens": 5 * len(inputs), "total_tokens": 5 * len(inputs)}
        return web.json_response({"object": "list", "data": data, "usage": usage})


@pytest.fixture
async def embedder(aiohttp_server: Any) -> EmbedBackend:
    fake = EmbedBackend()
    server = await aiohttp_server(fake.app)
    fake.url = str(server.make_url("/v1"))
    return fake


MODEL = "text-embedding-3-small"


async def post(client: Any, path: str, body: Any) -> Any:
    return await client.post(path, data=json.dumps(body))


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def unit(vector: list[float]) -> list[float]:
    n = norm(vector)
    return [x / n for x in vector]


def embed_calls(fake: FakeBackend) -> list[Any]:
    return [r.body for r in fake.requests if r.path.endswith("/embeddings")]


async def test_case_77_embed_one_input_gives_one_unit_vector(embedder, gateway):
    client = await gateway(embedder)
    resp = await post(client, "/api/embed", {"model": MODEL, "input": "hi"})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    body = await resp.json()
    assert body["model"] == MODEL
    [vector] = body["embeddings"]
    assert abs(norm(vector) - 1.0) < 1e-6
    assert vector == pytest.approx(unit(EmbedBackend.vector_for("hi")))
    assert body["prompt_eval_count"] == 5
    assert isinstance(body["total_duration"], int) and body["total_duration"] > 0
    [sent] = embed_calls(embedder)
    assert sent == {"model": MODEL, "input": ["hi"], "encoding_format": "float"}


async def test_case_78_embed_output_is_in_input_order(embedder, gateway):
    client = await gateway(embedder)
    texts = ["a", "bbb", "cc"]
    resp = await post(client, "/api/embed", {"model": MODEL, "input": texts})
    body = await resp.json()
    assert len(body["embeddings"]) == 3
    for text, vector in zip(texts, body["embeddings"], strict=True):
        assert vector == pytest.approx(unit(EmbedBackend.vector_for(text)))
    assert body["prompt_eval_count"] == 15
    assert len(embed_calls(embedder)) == 1  # one upstream call for the list


@pytest.mark.parametrize("empty", [[], "", None])
async def test_case_79_empty_input_answers_without_an_upstream_call(
    embedder, gateway, empty
):
    client = await gateway(embedder)
    body: dict[str, Any] = {"model": "Text-Embedding-3-Small"}
    if empty is not None:
        body["input"] = empty
    resp = await post(client, "/api/embed", body)
    assert resp.status == 200
    assert await resp.json() == {"model": "Text-Embedding-3-Small", "embeddings": []}
    assert embed_calls(embedder) == []


async def test_empty_texts_in_a_batch_are_embedded_as_ollama_does(embedder, gateway):
    """Ollama embeds "" in a list (a vector of the model's special tokens);
    OpenAI refuses it with a 400 for the whole batch, so it goes as a blank."""
    client = await gateway(embedder)
    resp = await post(client, "/api/embed", {"model": MODEL, "input": ["a", "", ""]})
    assert resp.status == 200, await resp.text()
    vectors = (await resp.json())["embeddings"]
    assert len(vectors) == 3
    assert vectors[1] == pytest.approx(unit(EmbedBackend.vector_for(" ")))
    [sent] = embed_calls(embedder)
    assert sent["input"] == ["a", " ", " "]


@pytest.mark.parametrize("bad", [[1, 2], ["a", 2], 5, {"text": "a"}])
async def test_case_79_non_string_input_is_400(embedder, gateway, bad):
    client = await gateway(embedder)
    resp = await post(client, "/api/embed", {"model": MODEL, "input": bad})
    assert resp.status == 400
    assert await resp.json() == {"error": "invalid input type"}
    assert embed_calls(embedder) == []


async def test_case_80_dimensions_cut_and_renormalised(embedder, gateway):
    client = await gateway(embedder)
    body = {"model": MODEL, "input": ["hello"], "dimensions": 8}
    resp = await post(client, "/api/embed", body)
    [vector] = (await resp.json())["embeddings"]
    assert len(vector) == 8
    assert abs(norm(vector) - 1.0) < 1e-6
    assert vector == pytest.approx(unit(EmbedBackend.vector_for("hello")[:8]))
    # The backend was asked too; this one ignored it, so the cut was local.
    assert embed_calls(embedder)[0]["dimensions"] == 8


async def test_dimensions_larger_than_the_vector_keeps_it_whole(embedder, gateway):
    client = await gateway(embedder)
    body = {"model": MODEL, "input": "x", "dimensions": 64}
    [vector] = (await (await post(client, "/api/embed", body)).json())["embeddings"]
    assert len(vector) == 10


@pytest.mark.parametrize("dimensions", [0, -1, -8])
async def test_dimensions_not_positive_are_ignored_as_ollama_does(
    embedder, gateway, dimensions
):
    # Ollama cuts only to a positive number; an OpenAI backend refuses a
    # negative one, so it is not sent on.
    client = await gateway(embedder)
    body = {"model": MODEL, "input": ["hello"], "dimensions": dimensions}
    resp = await post(client, "/api/embed", body)
    assert resp.status == 200
    [vector] = (await resp.json())["embeddings"]
    assert vector == pytest.approx(unit(EmbedBackend.vector_for("hello")))
    assert "dimensions" not in embed_calls(embedder)[0]


@pytest.mark.parametrize(
    ("indexes", "fault"),
    [
        ([0, 0, 2], "two embeddings of index 0"),
        ([0, 1, 3], "an embedding of index 3"),
        ([2, 1, -1], "an embedding of index -1"),
        ([0, None, 1], "an embedding without its index"),
    ],
)
async def test_indexes_not_each_inputs_once_are_the_backends_fault(
    embedder, gateway, indexes, fault
):
    data = []
    for index in indexes:
        item: dict[str, Any] = {"embedding": [1.0, 0.0]}
        if index is not None:
            item["index"] = index
        data.append(item)
    embedder.queue(Script(status=200, error_body={"data": data}))
    client = await gateway(embedder)
    body = {"model": MODEL, "input": ["a", "b", "c"]}
    resp = await post(client, "/api/embed", body)
    assert resp.status == 502
    assert await resp.json() == {
        "error": f"upstream sent {fault} for 3 inputs (indexes 0 to 2, each once)"
    }
    assert len(embed_calls(embedder)) == 1


async def test_the_one_legacy_vector_must_be_index_0(embedder, gateway):
    answer = {"data": [{"index": 1, "embedding": [1.0, 2.0]}]}
    embedder.queue(Script(status=200, error_body=answer))
    client = await gateway(embedder)
    resp = await post(client, "/api/embeddings", {"model": MODEL, "prompt": "a"})
    assert resp.status == 502
    assert await resp.json() == {
        "error": "upstream sent an embedding of index 1 for 1 inputs "
        "(indexes 0 to 0, each once)"
    }


async def test_vectors_numbered_by_none_are_taken_in_arrival_order(embedder, gateway):
    vectors = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
    embedder.queue(
        Script(status=200, error_body={"data": [{"embedding": v} for v in vectors]})
    )
    client = await gateway(embedder)
    body = {"model": MODEL, "input": ["a", "b", "c"]}
    resp = await post(client, "/api/embed", body)
    assert resp.status == 200
    assert (await resp.json())["embeddings"] == [pytest.approx(v) for v in vectors]


async def test_case_81_legacy_embeddings_are_not_normalised(embedder, gateway):
    client = await gateway(embedder)
    body = {"model": MODEL, "prompt": "hi"}
    resp = await post(client, "/api/embeddings", body)
    assert resp.status == 200
    assert await resp.json() == {"embedding": EmbedBackend.vector_for("hi")}
    assert embed_calls(embedder)[0]["input"] == "hi"


async def test_case_81_legacy_empty_prompt_is_an_empty_vector(embedder, gateway):
    client = await gateway(embedder)
    resp = await post(client, "/api/embeddings", {"model": MODEL, "prompt": ""})
    assert resp.status == 200
    assert await resp.json() == {"embedding": []}
    assert embed_calls(embedder) == []


async def test_base64_embeddings_from_the_backend_are_decoded(embedder, gateway):
    embedder.base64 = True
    client = await gateway(embedder)
    resp = await post(client, "/api/embed", {"model": MODEL, "input": ["ab", "c"]})
    vectors = (await resp.json())["embeddings"]
    assert vectors[0] == pytest.approx(unit(EmbedBackend.vector_for("ab")), rel=1e-6)
    assert vectors[1] == pytest.approx(unit(EmbedBackend.vector_for("c")), rel=1e-6)
    legacy = await post(client, "/api/embeddings", {"model": MODEL, "prompt": "xyz"})
    assert (await legacy.json())["embedding"] == EmbedBackend.vector_for("xyz")


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        ("!!not base64", "upstream sent an embedding that is not base64: "),
        ("AAAAAAA=", "upstream sent a base64 embedding of 5 bytes, not a whole"),
    ],
)
async def test_a_broken_base64_embedding_is_the_backends_fault(
    embedder, gateway, vector, message
):
    answer = {"data": [{"index": 0, "embedding": vector}]}
    client = await gateway(embedder)
    for path, body in (
        ("/api/embed", {"input": "x"}),
        ("/api/embeddings", {"prompt": "x"}),
    ):
        embedder.queue(Script(status=200, error_body=answer))
        resp = await post(client, path, {"model": MODEL, **body})
        assert resp.status == 502
        assert (await resp.json())["error"].startswith(message)


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        ([[1.0, 2.0], [1.0, 2.0, 3.0]], "embeddings of different lengths (2 to 3)"),
        ([[1.0, 2.0], []], "an empty embedding"),
    ],
)
async def test_vectors_of_different_or_no_length_are_the_backends_fault(
    embedder, gateway, vectors, message
):
    data = [{"index": i, "embedding": v} for i, v in enumerate(vectors)]
    embedder.queue(Script(status=200, error_body={"data": data}))
    client = await gateway(embedder)
    resp = await post(client, "/api/embed", {"model": MODEL, "input": ["a", "b"]})
    assert resp.status == 502
    assert await resp.json() == {"error": f"upstream sent {message}"}


async def test_an_empty_legacy_embedding_is_the_backends_fault(embedder, gateway):
    answer = {"data": [{"index": 0, "embedding": []}]}
    embedder.queue(Script(status=200, error_body=answer))
    client = await gateway(embedder)
    resp = await post(client, "/api/embeddings", {"model": MODEL, "prompt": "a"})
    assert resp.status == 502
    assert await resp.json() == {"error": "upstream sent an empty embedding"}


async def test_zero_vector_stays_zero(embedder, gateway):
    embedder.vector_for = lambda text: [0.0, 0.0, 0.0]
    client = await gateway(embedder)
    resp = await post(client, "/api/embed", {"model": MODEL, "input": "z"})
    assert (await resp.json())["embeddings"] == [[0.0, 0.0, 0.0]]


async def test_embed_model_errors(embedder, gateway):
    client = await gateway(embedder)
    unknown = await post(client, "/api/embed", {"model": "nope", "input": "x"})
    assert unknown.status == 404
    assert await unknown.json() == {
        "error": 'model "nope" not found, try pulling it first'
    }
    empty = await post(client, "/api/embed", {"model": "", "input": "x"})
    assert empty.status == 404
    assert await empty.json() == {"error": "model '' not found"}
    legacy_empty = await post(client, "/api/embeddings", {"model": "", "prompt": "x"})
    assert legacy_empty.status == 400
    assert await legacy_empty.json() == {"error": "model is required"}
    legacy_unknown = await post(
        client, "/api/embeddings", {"model": "nope", "prompt": "x"}
    )
    assert legacy_unknown.status == 404
    assert embed_calls(embedder) == []


async def test_embed_upstream_error_keeps_a_real_status(embedder, gateway):
    embedder.queue(Script.error(400, "input is too long for this model"))
    client = await gateway(embedder)
    resp = await post(client, "/api/embed", {"model": MODEL, "input": "x"})
    assert resp.status == 400
    assert await resp.json() == {"error": "input is too long for this model"}


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        ({"message": "input is too long", "code": 400}, 400, "input is too long"),
        ({"message": "slow down", "code": "429"}, 429, "slow down"),
        ({"message": "overloaded", "type": "server_error"}, 500, "overloaded"),
        ("bad gateway upstream", 500, "bad gateway upstream"),
    ],
)
async def test_embed_error_object_with_a_200_keeps_its_message(
    embedder, gateway, error, status, message
):
    """Some proxies answer an error as a 200 whose body is `{"error": ...}`:
    the client gets that error, mapped by its code, not 'invalid answer'."""
    embedder.queue(Script(status=200, error_body={"error": error}))
    client = await gateway(embedder)
    for path, body in (
        ("/api/embed", {"input": "x"}),
        ("/api/embeddings", {"prompt": "x"}),
    ):
        if path == "/api/embeddings":
            embedder.queue(Script(status=200, error_body={"error": error}))
        resp = await post(client, path, {"model": MODEL, **body})
        assert resp.status == status
        assert await resp.json() == {"error": message}


async def test_embed_nan_from_the_backend_is_an_error(embedder, gateway):
    embedder.base64 = True  # JSON has no NaN; float32 bytes do
    embedder.vector_for = lambda text: [1.0, math.nan]
    client = await gateway(embedder)
    resp = await client.post(
        "/api/embed", data=json.dumps({"model": MODEL, "input": "x"})
    )
    assert resp.status == 500
    assert await resp.json() == {"error": "embedding contains NaN or Inf values"}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(
    ("path", "body"),
    [("/api/embed", {"input": "x"}), ("/api/embeddings", {"prompt": "x"})],
)
async def test_embed_nan_written_as_a_json_literal_is_named_too(
    embedder, gateway, bad, path, body
):
    """Python servers write NaN and Infinity as bare literals (json.dumps
    does, as this backend's json_response does): not strict JSON, but the
    client gets Ollama's error, not 'invalid embeddings answer'."""
    answer = {"data": [{"index": 0, "embedding": [1.0, bad]}]}
    embedder.queue(Script(status=200, error_body=answer))
    client = await gateway(embedder)
    resp = await post(client, path, {"model": MODEL, **body})
    assert resp.status == 500
    assert await resp.json() == {"error": "embedding contains NaN or Inf values"}
    assert len(embed_calls(embedder)) == 1


TRUNCATE_TOML = """
[[backends]]
name = "vllm"
base_url = "{url}"
extensions = true

[models."text-embedding-3-small"]
context_length = 512
"""


async def test_truncate_maps_to_vllm_truncate_prompt_tokens(embedder, gateway):
    client = await gateway(toml=TRUNCATE_TOML.format(url=embedder.url))
    await post(client, "/api/embed", {"model": MODEL, "input": "x"})
    await post(client, "/api/embed", {"model": MODEL, "input": "x", "truncate": True})
    await post(client, "/api/embed", {"model": MODEL, "input": "x", "truncate": False})
    await post(client, "/api/embeddings", {"model": MODEL, "prompt": "x"})
    calls = embed_calls(embedder)
    # truncate defaults to true: cut each input to the context length.
    assert calls[0]["truncate_prompt_tokens"] == 512
    assert calls[1]["truncate_prompt_tokens"] == 512
    assert "truncate_prompt_tokens" not in calls[2]
    assert calls[3]["truncate_prompt_tokens"] == 512


async def test_truncate_is_not_sent_to_strict_backends(embedder, gateway):
    toml = '[models."text-embedding-3-small"]\ncontext_length = 512\n'
    client = await gateway(embedder, toml)
    await post(client, "/api/embed", {"model": MODEL, "input": "x"})
    assert "truncate_prompt_tokens" not in embed_calls(embedder)[0]


async def test_truncate_false_too_long_is_ollamas_400(embedder, gateway):
    embedder.queue(
        Script.error(
            400,
            "This model's maximum context length is 512 tokens. However, you "
            "requested 900 tokens in the input for embedding generation.",
        )
    )
    client = await gateway(toml=TRUNCATE_TOML.format(url=embedder.url))
    body = {"model": MODEL, "input": "x", "truncate": False}
    resp = await post(client, "/api/embed", body)
    assert resp.status == 400
    assert await resp.json() == {"error": "the input length exceeds the context length"}


TEI_TOO_LONG = (
    "Input validation error: `inputs` must have less than 512 tokens. Given: 900"
)


@pytest.mark.parametrize(
    ("truncate", "message"),
    [(False, "the input length exceeds the context length"), (None, TEI_TOO_LONG)],
)
async def test_text_embeddings_inference_413_for_a_long_input(
    embedder, gateway, truncate, message
):
    """TEI refuses an input over its limit with a 413 (its validation errors'
    status) whose message names tokens, not the context length."""
    error = {"message": TEI_TOO_LONG, "code": 413, "type": "Validation"}
    embedder.queue(Script(status=413, error_body=error))
    client = await gateway(embedder)
    body: dict[str, Any] = {"model": MODEL, "input": ["x"]}
    if truncate is not None:
        body["truncate"] = truncate
    resp = await post(client, "/api/embed", body)
    assert resp.status == 400
    assert await resp.json() == {"error": message}
    assert len(embed_calls(embedder)) == 1


async def test_python_client_embed_and_embeddings(embedder, gateway):
    client = await gateway(embedder)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        embedded = await api.embed(model=MODEL, input=["one", "three"], dimensions=4)
        legacy = await api.embeddings(model=MODEL, prompt="one")
    assert [len(v) for v in embedded.embeddings] == [4, 4]
    assert embedded.embeddings[1] == pytest.approx(
        unit(EmbedBackend.vector_for("three")[:4])
    )
    assert list(legacy.embedding) == EmbedBackend.vector_for("one")
