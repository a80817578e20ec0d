"""The control plane's admin HTTP server: health, readiness, Prometheus metrics and JSON debug pages.

- `/healthz`: 200 while the process serves HTTP at all (liveness).
- `/readyz`: 200 once the first snapshot is built, 503 before (a fresh replica gets no proxies too early).
- `/metrics`: the Prometheus text of the registry the composition root built.
- `/debug/<name>`: JSON from the debug pages the composition root registered (`/debug` lists them).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Protocol, Self

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

UNIX_PREFIX = "unix:"

DebugPage = Callable[[], object]


class AdminError(Exception):
    """The admin server could not start (bad address, port in use)."""


class Readiness(Protocol):
    """Whether the control plane may take proxies; `asyncio.Event` satisfies it."""

    def is_set(self) -> bool: ...


def _split_host_port(address: str) -> tuple[str, int]:
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit():
        raise AdminError(f"admin address {address!r}: expected host:port or unix:PATH")
    return host.removeprefix("[").removesuffix("]") or "127.0.0.1", int(port_text)


class AdminServer:
    """An async context manager serving the admin endpoints on `address` (host:port, port 0 allowed)."""

    def __init__(
        self,
        *,
        address: str,
        registry: CollectorRegistry,
        readiness: Readiness,
        debug_pages: Mapping[str, DebugPage] | None = None,
    ) -> None:
        self._address = address
        self._registry = registry
        self._readiness = readiness
        self._debug_pages = dict(debug_pages or {})
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def port(self) -> int:
        """The bound TCP port (useful with port 0); 0 for a unix socket or before start."""
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}" if self._port else ""

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/debug", self._debug_index)
        app.router.add_get("/debug/{page}", self._debug)
        return app

    async def __aenter__(self) -> Self:
        runner = web.AppRunner(self._app(), handle_signals=False, access_log=None)
        await runner.setup()
        self._runner = runner
        try:
            if self._address.startswith(UNIX_PREFIX):
                await web.UnixSite(runner, self._address.removeprefix(UNIX_PREFIX)).start()
            else:
                host, port = _split_host_port(self._address)
                tcp_site = web.TCPSite(runner, host, port)
                await tcp_site.start()
                self._port = tcp_site.port
        except OSError as exc:
            await runner.cleanup()
            self._runner = None
            raise AdminError(f"admin server cannot listen on {self._address}: {exc}") from exc
        except BaseException:
            await runner.cleanup()
            self._runner = None
            raise
        log.info("admin server listening", extra={"address": self._address, "port": self._port})
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self._readiness.is_set():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: no snapshot built yet\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        # CONTENT_TYPE_LATEST carries a charset parameter, which aiohttp wants in its own argument.
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _debug_index(self, request: web.Request) -> web.Response:
        return web.json_response({"pages": sorted(f"/debug/{name}" for name in self._debug_pages)})

    async def _debug(self, request: web.Request) -> web.Response:
        page = self._debug_pages.get(request.match_info["page"])
        if page is None:
            raise web.HTTPNotFound(text=f"no debug page {request.match_info['page']!r}; see /debug\n")
        return web.json_response(page(), dumps=lambda obj: json.dumps(obj, indent=2, default=str))
