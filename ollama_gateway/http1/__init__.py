"""A lean HTTP/1.1 client for talking to backends: keep-alive pool, one
`write()` per request, responses parsed in `data_received`.

Why our own: a backend request through aiohttp's ClientSession cost more CPU
than the rest of a short request put together (a request object, a response
object, a payload writer task, cookie and trace machinery), and held
~10 KiB per open stream. What a backend call needs is small: POST a body we
already have as bytes, read a status, headers and a body that is
Content-Length, chunked or close-delimited. The body is handed over as it
arrives, one piece per socket read (all chunks of a read joined), with flow
control: reading pauses while the consumer is behind.

Errors are the gateway's own (`UpstreamConnectError` and so on), with the texts
the aiohttp transport gave, so either transport fails the same way.

Modules: `response` (parsing one answer), `connection` (the protocol),
`pool` (connections, targets and name lookups).
"""

from ollama_gateway.http1.pool import (
    DNS_TTL,
    KEEPALIVE,
    PLAIN_KEEPALIVE,
    READ_BUFFER,
    Http1Pool,
)
from ollama_gateway.http1.response import (
    BEFORE_ANSWER,
    DRAIN,
    HIGH_WATER,
    UNEXPECTED_EOF,
    Headers,
    Http1Response,
)

__all__ = [
    "BEFORE_ANSWER",
    "DNS_TTL",
    "DRAIN",
    "HIGH_WATER",
    "KEEPALIVE",
    "PLAIN_KEEPALIVE",
    "READ_BUFFER",
    "UNEXPECTED_EOF",
    "Headers",
    "Http1Pool",
    "Http1Response",
]
