"""The backends' refusals of a prompt over the context, read (overflow.py)."""

from __future__ import annotations

import pytest

from ollama_gateway.overflow import Overflow, read_overflow


@pytest.mark.parametrize(
    ("message", "wanted"),
    [
        (  # vLLM 0.10 on: the prompt fits, `max_tokens` does not
            "'max_tokens' or 'max_completion_tokens' is too large: 32000. This "
            "model's maximum context length is 32768 tokens and your request has "
            "10694 input tokens (32000 > 32768 - 10694).",
            Overflow(32768, 10694, 32000),
        ),
        (  # vLLM 0.10 on: the prompt does not fit
            "This model's maximum context length is 32768 tokens. However, your "
            "request has 40000 input tokens. Please reduce the length of the input "
            "messages.",
            Overflow(32768, 40000, None),
        ),
        (  # vLLM before 0.10, DeepSeek
            "This model's maximum context length is 65536 tokens. However, you "
            "requested 70000 tokens (62000 in the messages, 8000 in the "
            "completion). Please reduce the length of the messages or completion.",
            Overflow(65536, 62000, 8000),
        ),
        (  # OpenAI
            "This model's maximum context length is 128000 tokens. However, your "
            "messages resulted in 130234 tokens. Please reduce the length of the "
            "messages.",
            Overflow(128000, 130234, None),
        ),
        (  # OpenRouter
            "This endpoint's maximum context length is 8192 tokens. However, you "
            "requested about 12000 tokens (10000 of text input, 2000 in the "
            "output). Please reduce the length of either one.",
            Overflow(8192, 10000, 2000),
        ),
        (  # SGLang
            "Requested token count exceeds the model's maximum context length of "
            "32768 tokens. You requested a total of 40000 tokens: 8000 tokens from "
            "the input messages and 32000 tokens for the completion. Please reduce "
            "the number of tokens in the input messages or the completion to fit "
            "within the limit.",
            Overflow(32768, 8000, 32000),
        ),
        (  # llama.cpp's server
            "the request exceeds the available context size, try increasing it",
            Overflow(None, None, None),
        ),
        ("Context length exceeded", Overflow(None, None, None)),  # LM Studio
    ],
)
def test_the_backends_wordings_are_read(message, wanted):
    assert read_overflow(message) == wanted


@pytest.mark.parametrize(
    "message",
    ["messages: roles must alternate", "max_tokens must be at least 1", ""],
)
def test_other_errors_are_no_overflow(message):
    assert read_overflow(message) is None
