// Runs the official ollama-js client against a gateway and prints what it saw
// as one JSON object. Usage: node client.mjs <gateway-url> <model>
// tests/test_js_client.py asserts on the output.
import { Ollama } from 'ollama'

const [host, model] = process.argv.slice(2)
if (!host || !model) {
  console.error('usage: node client.mjs <gateway-url> <model>')
  process.exit(2)
}
const api = new Ollama({ host })

async function failure(run) {
  try {
    await run()
    return null
  } catch (err) {
    return { name: err.name, message: err.message, status: err.status_code ?? null }
  }
}

const out = {}
out.version = await api.version()
out.list = await api.list()
out.show = await api.show({ model })

out.chat = []
const stream = await api.chat({
  model,
  messages: [{ role: 'user', content: 'hello' }],
  stream: true,
})
for await (const part of stream) out.chat.push(part)

out.chatWhole = await api.chat({ model, messages: [{ role: 'user', content: 'hello' }] })

out.pull = await api.pull({ model })
out.pullStream = []
for await (const part of await api.pull({ model, stream: true })) out.pullStream.push(part)
out.pullMissing = await failure(() => api.pull({ model: 'no-such-model' }))
out.pullMissingStream = await failure(async () => {
  for await (const part of await api.pull({ model: 'no-such-model', stream: true })) {
    void part
  }
})

out.copy = await api.copy({ source: model, destination: 'js-alias' })
out.listAfterCopy = (await api.list()).models.map((m) => m.name)
out.delete = await api.delete({ model: 'js-alias' })
out.deleteMissing = await failure(() => api.delete({ model: 'js-alias' }))
out.showMissing = await failure(() => api.show({ model: 'no-such-model' }))

process.stdout.write(JSON.stringify(out))
