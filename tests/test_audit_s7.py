"""Differences found by the seventh audit (black-box against a running gateway),
one test per finding; each names the spec section or client it holds us to."""

from __future__ import annotations

import pytest

from tests.ndjson import chat, post

# Options (spec 1.7): the client-only keys Ollama's server no longer knows are
# ignored there, whatever their type, so a wrong type is no 500 here either.


@pytest.mark.parametrize(
    "options",
    [
        {"mirostat": "2"},
        {"mirostat_tau": "x", "mirostat_eta": True},
        {"tfs_z": "high"},
        {"numa": "yes", "low_vram": 1, "f16_kv": 1},
        {"logits_all": 1, "vocab_only": 1, "use_mlock": "no"},
        {"embedding_only": 0, "penalize_newline": "no"},
    ],
)
async def test_client_only_options_of_any_type_are_ignored(gateway, backend, options):
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(stream=False, options=options))
    assert resp.status == 200, await resp.text()
    sent = backend.completions()[-1].body
    assert not set(options) & set(sent)
