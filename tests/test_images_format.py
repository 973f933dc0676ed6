"""Images (base64 rules, MIME sniffing, content parts) and `format` (spec 1.9,
2.6, 3.3, 3.6; section 5 cases 36-39 and 59-62)."""

from __future__ import annotations

import base64
import json
from typing import Any

import ollama
import pytest

from tests.conftest import base_url
from tests.fakebackend import FakeBackend, Script, chat_chunk, sse

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00\x30\x01\x00\x9d\x01*"
OTHER = b"BM\x1e\x00\x00\x00\x00\x00\x00\x00\x1a\x00\x00\x00\x0c\x00\x00\x00"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def post(client: Any, path: str, body: Any) -> Any:
    return await client.post(path, data=json.dumps(body))


def sent(fake: FakeBackend) -> dict[str, Any]:
    body: dict[str, Any] = fake.completions()[-1].body
    return body


def user(content: str | None = "what is this?", **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "user", **fields}
    if content is not None:
        message["content"] = content
    return message


def chat(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": list(messages), "stream": False, **fields}


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (GIF, "image/gif"),
        (WEBP, "image/webp"),
        (OTHER, "image/jpeg"),  # unknown types fall back to JPEG, as Ollama does
    ],
)
async def test_case_36_image_mime_is_sniffed(backend, gateway, data, mime):
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(user(images=[b64(data)])))
    assert resp.status == 200, await resp.text()
    [message] = sent(backend)["messages"]
    assert message == {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this?"},
            {
                "type": "image_url",
                "image_url": {"url": f"data:{mime};base64,{b64(data)}"},
            },
        ],
    }


async def test_images_without_text_and_several_images_keep_order(backend, gateway):
    client = await gateway(backend)
    resp = await post(
        client, "/api/chat", chat(user(None, images=[b64(PNG), b64(GIF), b64(JPEG)]))
    )
    assert resp.status == 200
    [message] = sent(backend)["messages"]
    urls = [part["image_url"]["url"] for part in message["content"]]
    assert all(part["type"] == "image_url" for part in message["content"])
    assert [u.split(";")[0] for u in urls] == [
        "data:image/png",
        "data:image/gif",
        "data:image/jpeg",
    ]


async def test_base64_with_line_breaks_is_accepted_and_joined(backend, gateway):
    client = await gateway(backend)
    text = b64(PNG * 3)
    wrapped = "\n".join(text[i : i + 20] for i in range(0, len(text), 20))
    resp = await post(client, "/api/chat", chat(user(images=[wrapped])))
    assert resp.status == 200
    url = sent(backend)["messages"][0]["content"][1]["image_url"]["url"]
    assert url == f"data:image/png;base64,{text}"


async def test_image_on_an_assistant_message_is_sent_as_parts(backend, gateway):
    client = await gateway(backend)
    body = chat(
        user("hi"),
        {"role": "assistant", "content": "look", "images": [b64(PNG)]},
        user("and?"),
    )
    resp = await post(client, "/api/chat", body)
    assert resp.status == 200
    assistant = sent(backend)["messages"][1]
    assert assistant["role"] == "assistant"
    assert assistant["content"][1]["image_url"]["url"].startswith("data:image/png")


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
async def test_case_37_data_url_prefix_is_400(backend, gateway, path):
    # Ollama-exact: Go's base64 decoder stops at the ':' of "data:".
    client = await gateway(backend)
    image = f"data:image/png;base64,{b64(PNG)}"
    body = chat(user(images=[image])) | {"prompt": "x", "images": [image]}
    resp = await post(client, path, body)
    assert resp.status == 400
    assert resp.headers["Content-Type"].startswith("application/json")
    assert await resp.json() == {"error": "illegal base64 data at input byte 4"}
    assert backend.completions() == []


@pytest.mark.parametrize(
    ("image", "byte"),
    [
        ("not base64!!", 3),
        ("abc", 0),
        ("QUJDR", 4),
        ("QUJD*", 4),
        ("QUJDRA=", 7),
        ("QUJDRA=x", 6),
        ("QUJDRA==x", 8),
        ("Q===", 1),
        ("QUJD\nQU*", 7),
        ("ünï", 0),
    ],
)
async def test_case_38_invalid_base64_is_400(backend, gateway, image, byte):
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(user(images=[image])))
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error.startswith("illegal base64 data at input byte ")
    assert error == f"illegal base64 data at input byte {byte}"
    assert backend.completions() == []


async def test_invalid_image_in_an_earlier_message_is_also_400(backend, gateway):
    client = await gateway(backend)
    body = chat(user(images=["%%%"]), {"role": "assistant", "content": "x"}, user())
    resp = await post(client, "/api/chat", body)
    assert resp.status == 400


async def test_case_39_generate_with_images_goes_to_chat(backend, gateway):
    client = await gateway(backend)
    body = {
        "model": "gpt-4o",
        "prompt": "describe",
        "images": [b64(WEBP)],
        "system": "be brief",
        "stream": False,
    }
    resp = await post(client, "/api/generate", body)
    assert resp.status == 200
    assert (await resp.json())["response"] == "Hello from fake"
    request = backend.completions()[-1]
    assert request.path == "/v1/chat/completions"
    assert request.body["messages"] == [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "describe"},
                {
                    "type": "image_url",
                    "image_url": {"url": f"data:image/webp;base64,{b64(WEBP)}"},
                },
            ],
        },
    ]


async def test_case_39_generate_with_images_and_no_prompt_is_a_load(backend, gateway):
    client = await gateway(backend)
    resp = await post(
        client, "/api/generate", {"model": "gpt-4o", "images": [b64(PNG)]}
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["done_reason"] == "load" and body["response"] == ""
    assert backend.completions() == []


@pytest.mark.parametrize("mode", [{"raw": True}, {"suffix": "tail"}])
async def test_images_with_raw_or_suffix_are_400_not_dropped(backend, gateway, mode):
    toml = '[models."gpt-4o"]\ncapabilities = ["completion", "insert", "vision"]\n'
    client = await gateway(backend, toml)
    body = {"model": "gpt-4o", "prompt": "x", "images": [b64(PNG)], **mode}
    resp = await post(client, "/api/generate", body)
    assert resp.status == 400
    assert "images are not supported with raw or suffix" in (await resp.json())["error"]
    assert backend.completions() == []


async def test_python_client_sends_image_bytes(backend, gateway):
    client = await gateway(backend)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await api.chat(
            model="gpt-4o",
            messages=[{"role": "user", "content": "what?", "images": [GIF]}],
        )
    assert reply.message.content == "Hello from fake"
    url = sent(backend)["messages"][0]["content"][1]["image_url"]["url"]
    assert url == f"data:image/gif;base64,{b64(GIF)}"


# `{}` (any JSON) as JSON mode: OpenAI refuses a json_schema whose root is not
# an object, where Ollama takes it.
@pytest.mark.parametrize("fmt", ["json", {}])
async def test_case_59_format_json(backend, gateway, fmt):
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(user("give JSON"), format=fmt))
    assert resp.status == 200
    assert sent(backend)["response_format"] == {"type": "json_object"}


SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temp": {"type": "number"}},
    "required": ["city", "temp"],
}


async def test_case_60_format_schema_and_content_unchanged(backend, gateway):
    answer = '{"city": "Tokyo",\n "temp": 11.5}'
    events = [chat_chunk({"content": answer[:9]}), chat_chunk({"content": answer[9:]})]
    backend.queue(Script(pieces=[sse(*events, chat_chunk({}, finish="stop"))]))
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(user(), format=SCHEMA))
    assert resp.status == 200
    assert (await resp.json())["message"]["content"] == answer
    assert sent(backend)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "schema", "schema": SCHEMA},
    }


async def test_format_schema_keeps_key_order(backend, gateway):
    schema = {"type": "object", "properties": {"z": {}, "a": {}, "m": {}}}
    client = await gateway(backend)
    await post(client, "/api/chat", chat(user(), format=schema))
    raw = json.dumps(sent(backend)["response_format"]["json_schema"]["schema"])
    assert raw.index('"z"') < raw.index('"a"') < raw.index('"m"')


@pytest.mark.parametrize("fmt", ["", None])
async def test_case_61_empty_format_sends_nothing(backend, gateway, fmt):
    client = await gateway(backend)
    resp = await post(client, "/api/chat", chat(user(), format=fmt))
    assert resp.status == 200
    assert "response_format" not in sent(backend)


@pytest.mark.parametrize(
    ("fmt", "shown"),
    [("yaml", '"\\"yaml\\""'), (["json"], '"[\\"json\\"]"'), (3, '"3"')],
)
@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
async def test_case_62_other_formats_are_a_500_before_any_upstream_call(
    backend, gateway, fmt, shown, path
):
    client = await gateway(backend)
    body = chat(user(), format=fmt, stream=True) | {"prompt": "x"}
    resp = await post(client, path, body)
    assert resp.status == 500
    assert resp.headers["Content-Type"].startswith("application/json")
    assert await resp.json() == {
        "error": f'invalid format: {shown}; expected "json" or a valid JSON Schema object'
    }
    assert backend.completions() == []


async def test_generate_format_on_both_upstream_paths(backend, gateway):
    client = await gateway(backend)
    body = {"model": "gpt-4o", "prompt": "x", "format": "json", "stream": False}
    await post(client, "/api/generate", body)
    assert sent(backend)["response_format"] == {"type": "json_object"}
    backend.queue(
        Script(pieces=[sse({"choices": [{"text": "{}", "finish_reason": "stop"}]})])
    )
    await post(client, "/api/generate", {**body, "raw": True, "format": SCHEMA})
    request = backend.completions()[-1]
    assert request.path == "/v1/completions"
    assert request.body["response_format"]["json_schema"]["schema"] == SCHEMA


async def test_python_client_format_schema(backend, gateway):
    backend.queue(Script.text('{"city": "Tokyo", "temp": 11}'))
    client = await gateway(backend)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        reply = await api.chat(
            model="gpt-4o",
            messages=[{"role": "user", "content": "weather as JSON"}],
            format=SCHEMA,
        )
    assert json.loads(reply.message.content or "") == {"city": "Tokyo", "temp": 11}
    assert sent(backend)["response_format"]["json_schema"]["schema"] == SCHEMA


async def test_images_of_a_tool_result_reach_the_model(backend, gateway):
    """VS Code's Ollama provider puts a tool's screenshots on the `role:"tool"`
    message. OpenAI tool messages take text only, so the images follow the tool
    results as a user message instead of being dropped."""
    client = await gateway(backend)
    async with ollama.AsyncClient(host=base_url(client)) as api:
        await api.chat(
            model="gpt-4o",
            messages=[
                {"role": "user", "content": "look at the page"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"function": {"name": "screenshot", "arguments": {}}},
                        {"function": {"name": "title", "arguments": {}}},
                    ],
                },
                {
                    "role": "tool",
                    "content": "done",
                    "tool_name": "screenshot",
                    "images": [PNG],
                },
                {"role": "tool", "content": "Home", "tool_name": "title"},
            ],
        )
    messages = sent(backend)["messages"]
    assert [m["role"] for m in messages] == [
        "user",
        "assistant",
        "tool",
        "tool",
        "user",
    ]
    assert messages[2]["content"] == "done"
    assert messages[3]["content"] == "Home"
    parts = messages[4]["content"]
    assert parts[0]["type"] == "text"
    assert "screenshot" in parts[0]["text"]
    assert parts[1]["image_url"]["url"] == f"data:image/png;base64,{b64(PNG)}"
