"""The demo's models: the `GET /models` list, `/embeddings`, and error envelopes.

`model_list()` carries the metadata the catalogue reads to give each model
truthful capabilities: `architecture.input_modalities` (vision),
`supported_parameters` (`tools`, `reasoning`) and `context_length`, as
OpenRouter lists them. Every `demo-error:<tag>` variant is a model of its own,
so the catalogue resolves each one by name.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from typing import Any

from .demo_stream import CREATED, Failure
from .demo_text import embed

__all__ = [
    "EMBED_DIMENSIONS",
    "ERROR_TAGS",
    "FAILURES",
    "MODELS",
    "STATUS_ERRORS",
    "DemoError",
    "DemoModel",
    "embeddings",
    "error_body",
    "model_list",
]

EMBED_DIMENSIONS = 256
MAX_EMBED_DIMENSIONS = 4096


@dataclass(frozen=True, slots=True)
class DemoModel:
    id: str
    description: str
    parameters: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ("text",)
    context_length: int = 8192


_SAMPLING = ("max_tokens", "temperature", "top_p", "seed", "stop", "logprobs",
             "top_logprobs", "response_format", "structured_outputs")  # fmt: skip
_TOOLS = ("tools", "tool_choice", "parallel_tool_calls")
_REASONING = ("reasoning", "include_reasoning", "reasoning_effort")

# name → (status, message, OpenAI error type, code, headers)
STATUS_ERRORS: dict[str, tuple[int, str, str, str | None, dict[str, str]]] = {
    "429": (429, "Rate limit reached for demo-error:429 (simulated). Please try "
            "again in 1s.", "requests", "rate_limit_exceeded", {"Retry-After": "1"}),
    "500": (500, "The server had an error while processing your request "
            "(simulated by demo-error:500).", "server_error", None, {}),
    "503": (503, "The engine is currently overloaded, please try again later "
            "(simulated by demo-error:503).", "server_error", "overloaded", {}),
    "401": (401, "Incorrect API key provided (simulated by demo-error:401).",
            "invalid_request_error", "invalid_api_key", {}),
}  # fmt: skip
FAILURES: dict[str, tuple[Failure, str]] = {
    "drop": ("drop", "the connection breaks after three words, with no finish "
             "and no [DONE]: the gateway then ends with an error line."),
    "midstream": ("midstream", "after three words the backend sends an error "
                  "event, which the gateway turns into an error line."),
    "stall": ("stall", "after one word the backend goes quiet for six minutes, "
              "so the gateway's idle timeout ends the stream."),
    "invalid": ("invalid", "after three words the backend sends an event that is "
                "not JSON, and the gateway reports it as an error line."),
}  # fmt: skip
ERROR_TAGS = (*STATUS_ERRORS, *FAILURES)

MODELS: tuple[DemoModel, ...] = (
    DemoModel("demo", "Echoes your message, word by word.", _SAMPLING),
    DemoModel("demo-long", "About 600 words of Markdown: scrolling, cancelling.",
              _SAMPLING),
    DemoModel("demo-tools", "Calls the tools you offer, then answers from their "
              "results.", _SAMPLING + _TOOLS),
    DemoModel("demo-think", "Reasons first, then answers; honours think=false.",
              _SAMPLING + _REASONING),
    DemoModel("demo-json", "Answers JSON that validates against your format.",
              _SAMPLING),
    DemoModel("demo-vision", "Tells the type and size of the images it gets.",
              _SAMPLING, ("text", "image")),
    DemoModel("demo-code", "Fills in the middle: raw or suffix generate (insert).",
              _SAMPLING + ("suffix",)),
    DemoModel("demo-embed", "Deterministic embeddings of hashed trigrams.",
              ("dimensions",), context_length=2048),
    DemoModel("demo-error", "Fails as its tag says; untagged, lists the tags.",
              _SAMPLING + _TOOLS),
    *(DemoModel(f"demo-error:{tag}", f"Fails with {tag}.", _SAMPLING + _TOOLS)
      for tag in ERROR_TAGS),
)  # fmt: skip


class DemoError(Exception):
    """A request the demo refuses, with the status and body a backend would give."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.code = code
        self.headers = headers or {}


def error_body(exc: DemoError) -> dict[str, Any]:
    """OpenAI's error envelope."""
    return {"error": {"message": str(exc), "type": exc.kind, "param": None,
                      "code": exc.code}}  # fmt: skip


def model_list() -> dict[str, Any]:
    data = [
        {"id": m.id, "object": "model", "created": CREATED, "owned_by": "demo",
         "description": m.description, "context_length": m.context_length,
         "architecture": {"input_modalities": list(m.inputs),
                          "output_modalities": ["embeddings" if m.id == "demo-embed"
                                                else "text"]},
         "supported_parameters": list(m.parameters)}
        for m in MODELS
    ]  # fmt: skip
    return {"object": "list", "data": data}


def _base64(vector: list[float]) -> str:
    """Little-endian float32 bytes in base64, as OpenAI (and Ollama) send them."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    model = str(body.get("model", ""))
    if model != "demo-embed":
        raise DemoError(400, f"The model `{model}` does not support embeddings")
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise DemoError(400, "demo-embed embeds strings only ('input' must be a "
                        "string or a list of strings)")  # fmt: skip
    dimensions = body.get("dimensions") or EMBED_DIMENSIONS
    if not isinstance(dimensions, int) or not 0 < dimensions <= MAX_EMBED_DIMENSIONS:
        raise DemoError(400, f"dimensions must be between 1 and {MAX_EMBED_DIMENSIONS}")
    # OpenAI's SDKs ask for base64 unless told otherwise, and the Node one
    # decodes whatever comes back as base64: float lists read as garbage there.
    # Ollama's own /v1/embeddings honours the format, so the demo does too.
    fmt = body.get("encoding_format") or "float"
    if not isinstance(fmt, str) or fmt.lower() not in ("float", "base64"):
        raise DemoError(400, f"Invalid value for 'encoding_format' = {fmt}. "
                        "Supported values: ['float', 'base64'].")  # fmt: skip
    vectors = [embed(t, dimensions) for t in texts]
    data = [{"object": "embedding", "index": i,
             "embedding": _base64(v) if fmt.lower() == "base64" else v}
            for i, v in enumerate(vectors)]  # fmt: skip
    tokens = sum(len(t.split()) for t in texts)
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip
