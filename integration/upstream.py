"""A tiny HTTP upstream on loopback answering with its own name: a test sees where Envoy sent a request."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from aiohttp import web

NAME_HEADER = "x-upstream"


class Upstream:
    """`async with Upstream("v1") as up:` serves `GET /...` -> body "v1" on 127.0.0.1:`up.port`."""

    def __init__(self, name: str, *, host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self.port = 0
        self.requests = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.Response(text=self.name, headers={NAME_HEADER: self.name})

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        self._runner = runner
        try:
            site = web.TCPSite(runner, self.host, 0)
            await site.start()
            self.port = site.port
        except BaseException:
            await runner.cleanup()
            self._runner = None
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
