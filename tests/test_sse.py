"""SSEParser at the unit level: byte pieces split in every awkward place."""

from __future__ import annotations

import json

import pytest

from ollama_gateway.errors import UpstreamProtocolError
from ollama_gateway.sse import SSEParser
from tests.fakebackend import chat_chunk, split_every, sse


def _parse(pieces: list[bytes], **kwargs: int) -> list[bytes]:
    parser = SSEParser(**kwargs)
    out: list[bytes] = []
    for piece in pieces:
        out.extend(parser.feed(piece))
    out.extend(parser.finish())
    return out


def _realistic(eol: str = "\n") -> tuple[bytes, list[bytes]]:
    """An OpenAI-style stream with a comment, `event:`/`id:` lines and an emoji."""
    events = [
        chat_chunk({"role": "assistant", "content": ""}),
        chat_chunk({"content": "Hé 👋🏽 "}),
        chat_chunk({"content": "naïve ✓"}),
        chat_chunk({}, finish="stop"),
        chat_chunk(choices=False, usage={"prompt_tokens": 3, "completion_tokens": 2}),
    ]
    payloads = [json.dumps(e, ensure_ascii=False).encode() for e in events]
    text = f": keep-alive{eol}{eol}"
    text += f"event: message{eol}id: 1{eol}retry: 100{eol}"
    text += "".join(f"data: {p.decode()}{eol}{eol}" for p in payloads)
    text += f"data: [DONE]{eol}{eol}"
    return text.encode(), [*payloads, b"[DONE]"]


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_every_single_split_point(eol):
    data, expected = _realistic(eol)
    assert _parse([data]) == expected
    for cut in range(len(data) + 1):
        assert _parse([data[:cut], data[cut:]]) == expected, cut


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_a_byte_order_mark_at_the_start_is_dropped(eol):
    data, expected = _realistic(eol)
    bom = "\ufeff".encode()
    # The first event right after the mark, and the mark before a comment.
    first = data[data.index(b"data: ") :]
    for stream, want in ((bom + first, expected), (bom + data, expected)):
        for cut in range(len(stream) + 1):
            assert _parse([stream[:cut], stream[cut:]]) == want, cut
    assert _parse([bom + b"data: x"]) == [b"x"]  # ended by EOF, no blank line


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13, 64])
def test_fixed_size_pieces(eol, size):
    data, expected = _realistic(eol)
    assert _parse(split_every(data, size)) == expected


def test_mid_utf8_split_keeps_bytes_intact():
    emoji = "👋".encode()
    data = b'data: {"c":"' + emoji + b'"}\n\n'
    start = data.index(emoji)
    for cut in range(start + 1, start + len(emoji)):
        payloads = _parse([data[:cut], data[cut:]])
        assert payloads == [b'{"c":"' + emoji + b'"}']
        assert json.loads(payloads[0]) == {"c": "👋"}


def test_crlf_with_cr_and_lf_in_different_pieces():
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n\r") == [b"a"]
    assert parser.feed(b"\ndata: b\r\n\r") == [b"b"]
    assert parser.feed(b"\n") == []
    assert parser.feed(b"data: c\r\n\r\n") == [b"c"]
    assert parser.finish() == []


def test_empty_piece_between_cr_and_lf():
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"") == []
    assert parser.feed(b"\n") == []  # the LF of the same CRLF: not a blank line
    assert parser.feed(b"\r\n") == [b"a"]


def test_lone_cr_ends_lines_and_events():
    assert _parse([b"data: a\rdata: b\r\rdata: c\r\r"]) == [b"a\nb", b"c"]
    # A CR at the very end of a piece completes the event without waiting.
    parser = SSEParser()
    assert parser.feed(b"data: x\r\r") == [b"x"]
    assert parser.feed(b"data: y\r") == []
    assert parser.feed(b"\r") == [b"y"]


def test_comments_and_other_fields_are_skipped():
    data = (
        b": OPENROUTER PROCESSING\n\n"
        b":\n\n"
        b"event: ping\nid: 7\nretry: 3000\n\n"
        b"event: message\ndata: {}\nid: 8\n\n"
    )
    assert _parse([data]) == [b"{}"]


def test_multiline_data_is_joined_with_newline():
    data = b'data: {\ndata:  "a": 1\ndata: }\n\n'
    payloads = _parse([data])
    assert payloads == [b'{\n "a": 1\n}']
    assert json.loads(payloads[0]) == {"a": 1}


def test_several_events_in_one_piece():
    data = sse({"n": 1}, {"n": 2}, {"n": 3})
    parser = SSEParser()
    assert parser.feed(data) == [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}', b"[DONE]"]


def test_no_space_after_data_colon():
    assert _parse([b'data:{"a":1}\n\ndata:[DONE]\n\n']) == [b'{"a":1}', b"[DONE]"]
    # Only one leading space is part of the syntax; further ones are data.
    assert _parse([b"data:  x\n\n"]) == [b" x"]


def test_empty_data_line_is_an_empty_payload():
    assert _parse([b"data:\n\n"]) == [b""]


def test_extra_blank_lines_between_events():
    assert _parse([b"\n\ndata: a\n\n\n\n\ndata: b\n\n\n"]) == [b"a", b"b"]


def test_one_mib_event_in_64_kib_pieces():
    content = "x" * (1 << 20)
    event = json.dumps(chat_chunk({"content": content})).encode()
    data = b"data: " + event + b"\n\ndata: [DONE]\n\n"
    parser = SSEParser(max_event_bytes=2 << 20)
    out: list[bytes] = []
    pieces = split_every(data, 64 * 1024)
    for piece in pieces[:-1]:
        out.extend(parser.feed(piece))
    assert out == []  # nothing before the blank line arrives
    out.extend(parser.feed(pieces[-1]))
    assert out == [event, b"[DONE]"]
    assert json.loads(out[0])["choices"][0]["delta"]["content"] == content


def test_max_event_bytes_caps_an_unfinished_event():
    parser = SSEParser(max_event_bytes=1000)
    assert parser.feed(b"data: " + b"a" * 900) == []
    with pytest.raises(UpstreamProtocolError, match="larger than 1000 bytes"):
        parser.feed(b"a" * 200)


def test_max_event_bytes_caps_the_rest_after_complete_events():
    parser = SSEParser(max_event_bytes=100)
    with pytest.raises(UpstreamProtocolError):
        parser.feed(b"data: ok\n\ndata: " + b"b" * 200)


def test_events_under_the_cap_pass():
    parser = SSEParser(max_event_bytes=100)
    for _ in range(50):
        assert parser.feed(b"data: " + b"c" * 80 + b"\n\n") == [b"c" * 80]


def test_finish_returns_an_event_without_its_blank_line():
    parser = SSEParser()
    assert parser.feed(b'data: {"a":1}\n\ndata: {"b":2}') == [b'{"a":1}']
    assert parser.finish() == [b'{"b":2}']
    parser = SSEParser()
    assert parser.feed(b"data: [DONE]\r\n") == []
    assert parser.finish() == [b"[DONE]"]


def test_finish_with_nothing_pending_or_only_a_comment():
    parser = SSEParser()
    assert parser.feed(b"data: a\n\n") == [b"a"]
    assert parser.finish() == []
    parser = SSEParser()
    parser.feed(b": still thinking\n")
    assert parser.finish() == []


@pytest.mark.parametrize(
    "burst",
    [
        sse({"n": 1}, {"n": 2}, {"n": 3}),  # whole one-line events: the C split
        b"data: a\n\ndata: \n\ndata: c\n\n",  # an empty payload among them
        b"data: a\n\n\n\ndata: b\n\n",  # extra blank lines
        b"data: a\ndata: b\n\ndata: c\n\n",  # a multi-line event
        b"data: a\n\n: comment\n\ndata: b\n\n",  # a comment
        b"data: a\n\nevent: x\ndata: b\n\n",  # another field
        b"data: a\n\ndata:b\n\n",  # no space after the colon
        b'data: {"s": "data: x"}\n\ndata: [DONE]\n\n',  # the prefix inside a payload
    ],
)
def test_a_burst_of_events_in_one_read_is_split_as_piece_by_piece(burst):
    # Whole in one read (the shortcut, when it applies) and in 3-byte pieces
    # (never the shortcut) give the same payloads.
    assert SSEParser().feed(burst) == _parse(split_every(burst, 3))


def test_llamacpp_error_field_becomes_an_error_payload():
    # llama.cpp's server before ggml-org/llama.cpp#16109: `error:` instead of `data:`.
    error = b'{"code":400,"message":"too long","type":"invalid_request_error"}'
    stream = b'data: {"a":1}\n\nerror: ' + error + b"\n\ndata: [DONE]\n\n"
    for size in (1, 5, len(stream)):
        out = _parse(split_every(stream, size))
        assert out == [b'{"a":1}', b'{"error":' + error + b"}", b"[DONE]"]
        assert json.loads(out[1])["error"]["message"] == "too long"


@pytest.mark.parametrize("value", [b"server overloaded", b"null", b""])
def test_error_field_that_is_not_a_json_value_becomes_a_string(value):
    [payload] = _parse([b"error: " + value + b"\n\n"])
    assert json.loads(payload) == {"error": value.decode()}


def test_data_wins_over_an_error_field_in_the_same_event():
    assert _parse([b'error: x\ndata: {"b":2}\n\n']) == [b'{"b":2}']


def test_error_field_at_eof_without_its_blank_line():
    assert json.loads(_parse([b'error: {"message":"m"}'])[0]) == {
        "error": {"message": "m"}
    }
