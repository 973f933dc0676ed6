"""msgspec's refusals reworded as Go's `encoding/json` words them (go_decode.py)."""

from __future__ import annotations

import pytest

from ollama_gateway.go_decode import CHAT_REQUEST, GENERATE_REQUEST, go_decode_error


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Input data was truncated", "unexpected EOF"),
        (
            "Expected `object`, got `array`",
            "json: cannot unmarshal array into Go value of type api.ChatRequest",
        ),
        (
            "Expected `str | null`, got `array` - at `$.messages[0].content`",
            "json: cannot unmarshal array into Go struct field"
            " Message.messages.content of type string",
        ),
        (
            "Expected `array | null`, got `str` - at `$.messages`",
            "json: cannot unmarshal string into Go struct field"
            " ChatRequest.messages of type []api.Message",
        ),
        (
            "Expected `object`, got `int` - at `$.messages[2]`",
            "json: cannot unmarshal number into Go struct field"
            " ChatRequest.messages of type api.Message",
        ),
        (
            "Expected `bool | null`, got `float` - at `$.stream`",
            "json: cannot unmarshal number into Go struct field"
            " ChatRequest.stream of type bool",
        ),
        # Go quotes a number refused for its value: not known here.
        ("Expected `int | null`, got `float` - at `$.top_logprobs`", None),
        ("Expected `int <= 9223372036854775807` - at `$.top_logprobs`", None),
        # A field of no Ollama struct, and what is no type error.
        ("Expected `str`, got `int` - at `$.nope`", None),
        ("Expected `str`, got `null` - at `$.model`", None),
        ("JSON is malformed: invalid character (byte 3)", None),
    ],
)
def test_chat_request_errors(message, expected):
    assert go_decode_error(message, CHAT_REQUEST) == expected


def test_generate_request_errors():
    message = "Expected `array | null`, got `object` - at `$.images`"
    assert go_decode_error(message, GENERATE_REQUEST) == (
        "json: cannot unmarshal object into Go struct field"
        " GenerateRequest.images of type []api.ImageData"
    )
