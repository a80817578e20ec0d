"""The control plane's admin HTTP server: health, readiness, Prometheus metrics and JSON debug pages.

- `/healthz`: 200 while the process serves HTTP at all (liveness).
- `/readyz`: 200 once the first snapshot is built, 503 before (a fresh replica gets no proxies too early).
- `/metrics`: the Prometheus text of the registry the composition root built.
- `/debug/<name>`: JSON from the debug pages the composition root registered (`/debug` lists them).
- `/debug/config?node=NODE&type=TYPE`: the config held for a node, as Envoy JSON with keys redacted
  (`meshctl proxy-config`), when the composition root passed a config view.
- `/debug/<name>?key=value...`: JSON from the query pages registered (`/debug/describe?kind=pod&...`); a
  query page raises DebugQueryError for a query it cannot answer (its status and message are returned).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Protocol, Self

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from controlplane.xds.configdump import ConfigQueryError

log = logging.getLogger(__name__)

UNIX_PREFIX = "unix:"

DebugPage = Callable[[], object]
DebugQuery = Callable[[Mapping[str, str]], object]


class AdminError(Exception):
    """The admin server could not start (bad address, port in use)."""


class DebugQueryError(Exception):
    """A query page cannot answer: a bad query (400) or nothing by that name (404)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Readiness(Protocol):
    """Whether the control plane may take proxies; `asyncio.Event` satisfies it."""

    def is_set(self) -> bool: ...


class ConfigView(Protocol):
    """The config held for a node (`controlplane.xds.configdump.ConfigDump` satisfies it); raises
    ConfigQueryError for a query it cannot answer."""

    def query(self, *, node: str, type_name: str) -> dict[str, object]: ...


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
        config: ConfigView | None = None,
        debug_queries: Mapping[str, DebugQuery] | None = None,
    ) -> None:
        self._address = address
        self._registry = registry
        self._readiness = readiness
        self._debug_pages = dict(debug_pages or {})
        self._config = config
        self._debug_queries = dict(debug_queries or {})
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
        app.router.add_get("/debug/config", self._debug_config)  # before the catch-all below
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
        pages = [f"/debug/{name}" for name in (*self._debug_pages, *self._debug_queries)]
        if self._config is not None:
            pages.append("/debug/config")
        return web.json_response({"pages": sorted(pages)})

    async def _debug_config(self, request: web.Request) -> web.Response:
        if self._config is None:
            raise web.HTTPNotFound(text="no config view on this server\n")
        try:
            body = self._config.query(
                node=request.query.get("node", ""), type_name=request.query.get("type", "")
            )
        except ConfigQueryError as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        return web.json_response(body, dumps=lambda obj: json.dumps(obj, indent=2))

    async def _debug(self, request: web.Request) -> web.Response:
        query = self._debug_queries.get(request.match_info["page"])
        if query is not None:
            try:
                body = query(request.query)
            except DebugQueryError as exc:
                return web.json_response({"error": str(exc)}, status=exc.status)
            return web.json_response(body, dumps=lambda obj: json.dumps(obj, indent=2, default=str))
        page = self._debug_pages.get(request.match_info["page"])
        if page is None:
            raise web.HTTPNotFound(text=f"no debug page {request.match_info['page']!r}; see /debug\n")
        return web.json_response(page(), dumps=lambda obj: json.dumps(obj, indent=2, default=str))
