"""Values in Go's `%#v` form (go_values.py), as Ollama's /api/show
`parameters` shows them; the expected texts are what Go 1.22 prints."""

from __future__ import annotations

import pytest

from ollama_gateway.go_values import go_repr


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (1.0, "1"),
        (0.95, "0.95"),
        (-0.5, "-0.5"),
        (0.0, "0"),
        (-0.0, "-0"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (1e-05, "1e-05"),
        (1.5e300, "1.5e+300"),
        (2.5e-300, "2.5e-300"),
        (float("inf"), "+Inf"),
        (float("nan"), "NaN"),
    ],
)
def test_a_float_is_printed_as_go_prints_a_float64(value, shown):
    assert go_repr(value) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("<|im_end|>", '"<|im_end|>"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a\\b", '"a\\\\b"'),
        ("\n\t\r\a\b\f\v", '"\\n\\t\\r\\a\\b\\f\\v"'),
        ("\x00\x1b\x7f", '"\\x00\\x1b\\x7f"'),
        ("é 日本 😀", '"é 日本 😀"'),
        ("\u00a0\u200b\u2028", '"\\u00a0\\u200b\\u2028"'),
        ("\U000e0001", '"\\U000e0001"'),
    ],
)
def test_a_string_is_quoted_as_strconv_quote_does(value, shown):
    assert go_repr(value) == shown


def test_other_values():
    assert go_repr(True) == "true"
    assert go_repr(False) == "false"
    assert go_repr(None) == "<nil>"
    # An int keeps its digits (Continue parses `num_ctx` as an integer).
    assert go_repr(1048576) == "1048576"
    assert go_repr(["a", 1.0, None]) == '[]interface {}{"a", 1, interface {}(nil)}'
    assert go_repr({"b": 1, "a": "x"}) == 'map[string]interface {}{"a":"x", "b":1}'
