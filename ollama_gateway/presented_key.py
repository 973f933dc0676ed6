"""The API key a request presents: Bearer, X-API-Key, or Basic's password."""

from __future__ import annotations

import base64

from aiohttp import web

__all__ = ["presented_key"]


def presented_key(request: web.Request) -> str:
    """The key of `Authorization: Bearer <key>`, else of `X-API-Key`, else of
    `Authorization: Basic`: its password, or its user name when the password
    is empty. "" when none is presented."""
    authorization = request.headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        return token
    api_key = request.headers.get("X-API-Key", "").strip()
    if api_key or scheme.lower() != "basic":
        return api_key
    return _basic_key(token)


def _basic_key(token: str) -> str:
    # langchain-ollama (and httpx) turn a base URL's `user:key@` into Basic
    # credentials: the documented way to give LangChain a key. A URL of
    # `key@host` leaves the password empty.
    try:
        decoded = base64.b64decode(token, validate=True)
    except ValueError:  # binascii.Error, or a token that is not ASCII
        return ""
    # Bytes that are not UTF-8 stay lone surrogates, as aiohttp keeps them in
    # headers: never accepted, and refused before a backend could see them.
    user, _, password = decoded.decode("utf-8", "surrogateescape").partition(":")
    return password or user
