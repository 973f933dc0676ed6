"""Ollama's generate `context`, emulated (spec 3.12; on with
`server.generate_context`, off by default).

Ollama ends a generate answer with `context`: the token ids of the prompt and
the answer, which a client sends back to go on with the conversation. A
gateway has no tokenizer to make ids with. Instead it keeps the turns
themselves, in the store that keeps `/v1/responses` conversations (bounded,
for 30 minutes, scoped to the client's key; with `--workers N` shared by
the workers as files), and ends the answer with `context: [<id>]`, one
opaque number. The turns are kept before that last line is sent: the client
may send the id back at once, and to another worker. A request that sends
that back gets the turns between its system prompt and its prompt; its own
`system`, if it has one, takes the place of the kept one.

Off, `context` is ignored with a warning and answers carry none (spec case
42): no official client needs it. Some others do, such as the AI SDK's
`ollama-ai-provider-v2`, whose completion model refuses an answer without it.
"""

from __future__ import annotations

import secrets

import msgspec

from ollama_gateway.inference import to_generate
from ollama_gateway.response_store import ResponseStore
from ollama_gateway.schemas import ollama

__all__ = ["Transcript", "earlier_turns"]

_decode_turns = msgspec.json.Decoder(list[ollama.Message]).decode
_encoder = msgspec.json.Encoder()
# Ids stay below 2**53, the integers JavaScript clients read exactly.
_ID_BITS = 52


def _key(number: int) -> str:
    return f"ctx_{number}"


async def earlier_turns(
    store: ResponseStore, owner: str, context: list[int]
) -> list[ollama.Message] | None:
    """The turns kept under `context`, when it is one id this gateway gave
    `owner` and still holds (this worker or, shared, another); else None."""
    if len(context) != 1:
        return None
    key = _key(context[0])
    kept = store.get(key, owner)
    if kept is None:
        kept = await store.read(key, owner)
    return None if kept is None else _decode_turns(kept)


class Transcript:
    """Renders generate lines as `inference.to_generate` does, collecting the
    answer's text; the last line carries the id the conversation is kept
    under, and is held back until `keep` has kept it.
    """

    __slots__ = ("_end", "_kept", "_owner", "_store", "_text", "_turns")

    def __init__(
        self, store: ResponseStore, owner: str, turns: list[ollama.Message]
    ) -> None:
        self._store = store
        self._owner = owner
        self._turns = turns  # the system prompt, earlier turns, the prompt
        self._text: list[str] = []
        self._kept: tuple[str, bytes] | None = None  # key and turns, to keep
        self._end = b""  # a stream's last line, written by `ending`

    def encode_line(self, chunk: ollama.ChatResponse, buffer: bytearray) -> None:
        line = self._line(chunk)
        if chunk.done:
            self._end = _encoder.encode(line) + b"\n"
            return
        _encoder.encode_into(line, buffer, -1)
        buffer.extend(b"\n")

    def render(self, chunk: ollama.ChatResponse) -> bytes:
        return _encoder.encode(self._line(chunk))

    async def keep(self) -> None:
        """Keep the conversation the last line names (written to the shared
        files, with workers, by the time this returns)."""
        if self._kept is not None:
            key, turns = self._kept
            await self._store.save(key, self._owner, turns)

    async def ending(self) -> bytes:
        """A stream's ending (`completion.relay`): the conversation kept,
        then its last line."""
        await self.keep()
        return self._end

    def _line(self, chunk: ollama.ChatResponse) -> ollama.GenerateResponse:
        line = to_generate(chunk)
        if line.response:
            self._text.append(line.response)
        if chunk.done:
            line.context = self._name()
        return line

    def _name(self) -> list[int] | None:
        answer = ollama.Message(role="assistant", content="".join(self._text))
        turns = _encoder.encode([*self._turns, answer])
        if len(turns) > self._store.max_bytes:
            return None  # larger than the whole store: nothing to go on with
        number = secrets.randbits(_ID_BITS) + 1
        self._kept = (_key(number), turns)
        return [number]
