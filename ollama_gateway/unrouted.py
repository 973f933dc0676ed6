"""The router's last resource: the 404 or 405 of a request no route takes,
whose `Expect: 100-continue` goes to the gateway's handler of `Expect`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.web_urldispatcher import (
    AbstractResource,
    AbstractRoute,
    MatchInfoError,
    UrlDispatcher,
)
from yarl import URL

from ollama_gateway.middlewares import ExpectHandler

if TYPE_CHECKING:
    from aiohttp.web_urldispatcher import _InfoDict

__all__ = ["UnroutedResource"]


class UnroutedResource(AbstractResource):
    """Matches what no other resource took, as the router's own miss does
    (`http_exception` is the same 404 or 405), with one difference: aiohttp's
    miss sends `100 Continue` before any middleware runs, so a client was told
    to upload a body only to be refused without it.

    Indexed at "/", registered last: the router reaches it only on a miss, so
    a routed request never pays for it."""

    def __init__(self, router: UrlDispatcher, expect_handler: ExpectHandler) -> None:
        super().__init__()
        self._router = router
        self._expect_handler = expect_handler

    @property
    def canonical(self) -> str:
        return "/"

    def url_for(self, **kwargs: str) -> URL:
        raise RuntimeError("the unrouted resource has no URL")

    async def resolve(self, request: web.Request) -> tuple[MatchInfoError, set[str]]:
        # The methods the router gathered on its way here are not passed on:
        # gathered again (a miss only), for the 405 and its `Allow`.
        allowed: set[str] = set()
        for resource in self._router.resources():
            if resource is not self:
                allowed |= (await resource.resolve(request))[1]
        if allowed:
            miss: web.HTTPException = web.HTTPMethodNotAllowed(request.method, allowed)
        else:
            miss = web.HTTPNotFound()
        return _Unrouted(miss, self._expect_handler), set()

    def add_prefix(self, prefix: str) -> None:
        raise RuntimeError("the unrouted resource is not for a sub-application")

    def get_info(self) -> _InfoDict:
        return {}

    def raw_match(self, path: str) -> bool:
        return False

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[AbstractRoute]:
        return iter(())


class _Unrouted(MatchInfoError):
    __slots__ = ("_expect",)

    def __init__(self, miss: web.HTTPException, expect: ExpectHandler) -> None:
        super().__init__(miss)
        self._expect = expect

    @property
    def expect_handler(self) -> ExpectHandler:
        return self._expect
