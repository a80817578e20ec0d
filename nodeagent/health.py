"""The agent's local HTTP endpoints: /healthz (the process serves), /readyz (programs attached and the first
plan applied), /metrics (Prometheus)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import Self

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from nodeagent.settings import parse_host_port

log = logging.getLogger(__name__)


class HealthServer:
    """`async with HealthServer("127.0.0.1:15021", ready=..., registry=...) as server: server.port`."""

    def __init__(self, listen: str, *, ready: Callable[[], bool], registry: CollectorRegistry) -> None:
        self._host, self._port = parse_host_port(listen)
        self._ready = ready
        self._registry = registry
        self._runner: web.AppRunner | None = None
        self.port = 0

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self._ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: programs not attached or no plan applied yet\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def __aenter__(self) -> Self:
        runner = web.AppRunner(self._app(), access_log=None)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, self._host, self._port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        addresses = runner.addresses
        self.port = int(addresses[0][1]) if addresses else self._port
        log.info("health and metrics on http://%s:%d (/healthz /readyz /metrics)", self._host, self.port)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
