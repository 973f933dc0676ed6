"""The route table, nothing else."""

from __future__ import annotations

from functools import partial

from aiohttp import web
from aiohttp.typedefs import Handler

from ollama_gateway.handlers import (
    anthropic,
    chat,
    embed,
    generate,
    manage,
    meta,
    models,
    openai_proxy,
    responses,
)
from ollama_gateway.middlewares import ExpectHandler
from ollama_gateway.unrouted import UnroutedResource

__all__ = ["setup_routes"]


def setup_routes(
    app: web.Application, *, metrics_handler: Handler, expect_handler: ExpectHandler
) -> None:
    add = partial(app.router.add_route, expect_handler=expect_handler)
    add_get = partial(app.router.add_get, expect_handler=expect_handler)
    add_get("/", meta.handle_root)
    add_get("/api/version", meta.handle_version)
    add_get("/api/tags", models.handle_tags)
    # Ollama serves HEAD only where it says so (`/`, version, tags): a HEAD of
    # /api/ps is its 405, not the 200 aiohttp's `add_get` would add.
    add_get("/api/ps", models.handle_ps, allow_head=False)
    add_get("/health", meta.handle_health)
    add_get("/ready", meta.handle_ready)
    add_get("/metrics", metrics_handler)
    add("POST", "/api/chat", chat.handle_chat)
    add("POST", "/api/generate", generate.handle_generate)
    add("POST", "/api/show", models.handle_show)
    add("POST", "/api/embed", embed.handle_embed)
    add("POST", "/api/embeddings", embed.handle_embeddings)
    add("POST", "/api/pull", manage.handle_pull)
    add("POST", "/api/push", manage.handle_push)
    add("POST", "/api/create", manage.handle_create)
    add("POST", "/api/copy", manage.handle_copy)
    add("DELETE", "/api/delete", manage.handle_delete)
    add("HEAD", "/api/blobs/{digest}", manage.handle_blob_head)
    add("POST", "/api/blobs/{digest}", manage.handle_blob_post)
    for prefix in ("/v1", ""):
        add("POST", f"{prefix}/chat/completions", openai_proxy.handle_completions)
        add("POST", f"{prefix}/completions", openai_proxy.handle_completions)
        add("POST", f"{prefix}/embeddings", openai_proxy.handle_embeddings)
    add("POST", "/v1/responses", responses.handle_responses)
    add("POST", "/v1/messages", anthropic.handle_messages)
    add("POST", "/v1/messages/count_tokens", anthropic.handle_count_tokens)
    add("GET", "/v1/models", openai_proxy.handle_models)
    add("GET", "/v1/models/{model:.+}", openai_proxy.handle_model)
    # Last: reached only by a request no route above takes.
    app.router.register_resource(UnroutedResource(app.router, expect_handler))
