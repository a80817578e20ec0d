"""The composition root: builds every component of the control plane, runs them, and stops them in reverse.

Nothing here is global: `ControlPlane(settings)` owns its cache, registries and servers, so tests run
several in one process. Start order: admin (so /healthz answers at once and /readyz says 503), the xDS server,
then the source; shutdown runs backwards, so the source stops feeding before the xDS server drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CollectorRegistry

from controlplane.admin import AdminServer
from controlplane.settings import Settings, SourceKind
from controlplane.sources.rawxds import ChangeReason, RawXdsSource
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.debounce import Debouncer
from controlplane.xds.metrics import XdsMetrics
from controlplane.xds.server import ServerSettings, XdsServer
from controlplane.xds.status import ProxyStatusRegistry, StreamInfo

log = logging.getLogger(__name__)


def _proxy_summary(streams: tuple[StreamInfo, ...]) -> list[dict[str, Any]]:
    return [
        {
            "node": s.node_id,
            "variant": s.variant.value,
            "peer": s.peer,
            "types": {
                type_url: {
                    "status": t.status.value,
                    "sent_version": t.sent_version,
                    "acked_version": t.acked_version,
                    "responses_sent": t.responses_sent,
                    "last_nack": t.last_nack.message if t.last_nack is not None else None,
                }
                for type_url, t in sorted(s.types.items())
            },
        }
        for s in streams
    ]


class ControlPlane:
    """`await ControlPlane(settings).run()` serves until cancelled; `running()` wraps that for tests."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics_registry = CollectorRegistry(auto_describe=True)
        self.metrics = XdsMetrics(self.metrics_registry)
        self.cache = SnapshotCache()
        self.proxies = ProxyStatusRegistry()
        self.ready = asyncio.Event()
        self.started = asyncio.Event()
        self.debouncer: Debouncer[ChangeReason] = Debouncer(
            quiet=settings.debounce_quiet, max_wait=settings.debounce_max
        )
        if settings.source.kind is not SourceKind.DIR:
            raise NotImplementedError(f"source kind {settings.source.kind}")
        self.source = RawXdsSource(
            directory=settings.source.path,
            cache=self.cache,
            debouncer=self.debouncer,
            poll_interval=settings.poll_interval,
            ready=self.ready,
        )
        self.xds_ports: tuple[int, ...] = ()
        self.admin_port = 0

    def _server_settings(self) -> ServerSettings:
        s = self.settings
        return ServerSettings(
            keepalive_time=s.keepalive_time,
            keepalive_timeout=s.keepalive_timeout,
            max_connection_age=s.max_connection_age,
            max_connection_age_grace=s.max_connection_age_grace,
            stop_grace=s.shutdown_grace,
        )

    async def run(self) -> None:
        s = self.settings
        admin = AdminServer(
            address=s.admin_listen,
            registry=self.metrics_registry,
            readiness=self.ready,
            debug_pages={
                "source": self.source.diagnostics,
                "proxies": lambda: _proxy_summary(self.proxies.streams()),
            },
        )
        server = XdsServer(self.cache, self.proxies, self._server_settings(), metrics=self.metrics)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(admin)
            self.admin_port = admin.port
            await stack.enter_async_context(server)
            self.xds_ports = tuple(await server.listen(s.xds_listen))
            log.info(
                "control plane serving",
                extra={
                    "xds": ",".join(s.xds_listen),
                    "xds_ports": ",".join(map(str, self.xds_ports)),
                    "admin": s.admin_listen,
                    "admin_port": self.admin_port,
                    "source": str(s.source),
                },
            )
            self.started.set()
            try:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self.source.run(), name="source")
            finally:
                log.info("control plane stopping")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ControlPlane]:
        """Run in a background task until the block exits; yields once the servers listen."""
        task = asyncio.create_task(self.run(), name="controlplane")
        started = asyncio.create_task(self.started.wait())
        try:
            await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # raises the startup error itself
                raise RuntimeError("control plane exited during startup")
            yield self
        finally:
            started.cancel()
            task.cancel()
            # asyncio.wait, unlike awaiting the task, never mistakes the task's cancellation for ours.
            await asyncio.wait({task, started})
        failure = None if task.cancelled() else task.exception()
        if failure is not None:
            raise RuntimeError("control plane failed while running") from failure
