"""The demo models through the official JavaScript client (`ollama` on npm).

One Node.js script runs every scenario against a gateway on a loopback socket
and prints what it saw as JSON; the assertions are made here. The package is
installed in tests/js by `make js-deps` (the `pytest` target does it).
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from tests.conftest import FAST_DEMO, base_url
from tests.media import png as make_png

CLIENT = Path(__file__).parent / "js" / "node_modules" / "ollama" / "dist" / "index.mjs"

SCRIPT = r"""
import { Ollama } from %(client)s;

const ollama = new Ollama({ host: process.argv[2] });
const png = process.argv[3];
const user = [{ role: 'user', content: 'hello there' }];
const out = {};

async function text(stream) {
  let content = '', thinking = '', last = null, calls = [];
  for await (const part of stream) {
    content += part.message.content;
    thinking += part.message.thinking ?? '';
    calls.push(...(part.message.tool_calls ?? []));
    last = part;
  }
  return { content, thinking, done: last?.done ?? false, calls };
}

async function failure(run) {
  const seen = [];
  try {
    await run(seen);
    return { error: null, seen };
  } catch (err) {
    return { error: String(err.message ?? err), status: err.status_code ?? null, seen };
  }
}

out.tags = (await ollama.list()).models.map((m) => m.name);
out.show = (await ollama.show({ model: 'demo-tools' })).capabilities;
out.echo = await text(await ollama.chat({ model: 'demo', messages: user, stream: true }));

const tool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, days: { type: 'integer', minimum: 1, maximum: 2 } },
      required: ['city'],
    },
  },
};
const first = await text(await ollama.chat({ model: 'demo-tools', messages: user, tools: [tool], stream: true }));
const call = first.calls[0];
const history = [
  ...user,
  { role: 'assistant', content: '', tool_calls: first.calls },
  { role: 'tool', tool_name: call.function.name, content: `Sunny in ${call.function.arguments.city}` },
];
const final = await ollama.chat({ model: 'demo-tools', messages: history, tools: [tool] });
out.tools = { calls: first.calls, final: final.message.content };

out.think = {
  on: (await ollama.chat({ model: 'demo-think', messages: user })).message.thinking ?? null,
  off: (await ollama.chat({ model: 'demo-think', messages: user, think: false })).message.thinking ?? null,
};
const schema = { type: 'object', properties: { n: { type: 'integer', minimum: 5 } }, required: ['n'] };
out.json = (await ollama.chat({ model: 'demo-json', messages: user, format: schema })).message.content;
out.vision = (await ollama.chat({
  model: 'demo-vision', messages: [{ role: 'user', content: 'see', images: [png] }],
})).message.content;
out.embed = (await ollama.embed({ model: 'demo-embed', input: ['a cat', 'a cat'] })).embeddings;

out.rate = await failure(async () => {
  await ollama.chat({ model: 'demo-error:429', messages: user, stream: true });
});
out.drop = await failure(async (seen) => {
  for await (const part of await ollama.chat({ model: 'demo-error:drop', messages: user, stream: true })) {
    seen.push(part.message.content);
  }
});
out.abort = await failure(async (seen) => {
  const stream = await ollama.chat({
    model: 'demo-long',
    stream: true,
    messages: [{ role: 'system', content: 'demo:tokens_per_second=50' }, ...user],
  });
  for await (const part of stream) {
    seen.push(part.message.content);
    if (seen.length === 5) stream.abort();
  }
});
out.after_abort = (await ollama.chat({ model: 'demo', messages: user })).message.content;

console.log(JSON.stringify(out));
"""


async def _run_script(host: str, png: bytes, tmp_path: Path) -> dict[str, Any]:
    script = tmp_path / "demo_client.mjs"
    script.write_text(SCRIPT % {"client": json.dumps(CLIENT.as_uri())})
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(script),
        host,
        base64.b64encode(png).decode(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    result: dict[str, Any] = json.loads(stdout)
    return result


async def test_demo_models_through_the_js_client(gateway, tmp_path):
    client = await gateway(toml=FAST_DEMO)
    png = make_png(4, 3)
    out = await _run_script(base_url(client), png, tmp_path)

    assert {"demo:latest", "demo-tools:latest", "demo-error:drop"} <= set(out["tags"])
    assert out["show"] == ["completion", "tools"]
    assert out["echo"] == {
        "content": "Hello! This is the ollama-gateway demo backend. You said: hello there",
        "thinking": "",
        "done": True,
        "calls": [],
    }
    (call,) = out["tools"]["calls"]
    assert call["function"]["name"] == "get_weather"
    assert call["function"]["arguments"] == {"city": "Paris", "days": 2}
    assert "get_weather returned Sunny in Paris" in out["tools"]["final"]
    assert out["think"]["on"] and out["think"]["off"] is None
    assert json.loads(out["json"])["n"] >= 5
    assert f"image/png, {len(png)} bytes, PNG 4×3 pixels" in out["vision"]
    first, second = out["embed"]
    assert first == second and len(first) == 256

    assert out["rate"]["status"] == 429 and "Rate limit" in out["rate"]["error"]
    assert "unexpected EOF" in out["drop"]["error"]
    assert len(out["drop"]["seen"]) == 3
    assert out["abort"]["error"] and len(out["abort"]["seen"]) == 5
    assert out["after_abort"].endswith("You said: hello there")
