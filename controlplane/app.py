"""The composition root: builds every component of the control plane, runs them, and stops them in reverse.

Nothing here is global: `ControlPlane(settings)` owns its cache, registries and servers, so tests run
several in one process. Start order: admin (so /healthz answers at once and /readyz says 503), the xDS server,
then the source; shutdown runs backwards, so the source stops feeding before the xDS server drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from controlplane.admin import AdminServer
from controlplane.ca.authority import load_or_generate_authority
from controlplane.ca.authorization import BootstrapTokenAuthenticator, NodeAuthenticator
from controlplane.ca.clock import SystemClock
from controlplane.ca.issued import IssuedCertificates
from controlplane.ca.service import CertificateService
from controlplane.ca.store import CAStore, FileCAStore
from controlplane.convergence import ConvergenceTracker
from controlplane.debugpages import MeshPages
from controlplane.meshstate import MeshState, PushReason
from controlplane.metrics import ControlPlaneMetrics
from controlplane.model.refs import ObjectRef
from controlplane.model.snapshot import MeshSnapshot
from controlplane.publisher import SnapshotPublisher
from controlplane.settings import Settings, SettingsError, SourceKind, SourceSpec
from controlplane.sources.files import FileSource
from controlplane.sources.kube.castore import SecretCAStore
from controlplane.sources.kube.client import ClientSettings, KubeApi, connect
from controlplane.sources.kube.metrics import WatchMetrics
from controlplane.sources.kube.source import KubeSource, KubeSourceSettings
from controlplane.sources.kube.tokenreview import TokenReviewAuthenticator
from controlplane.sources.kube.writeback import KubeStatusPatcher
from controlplane.sources.rawxds import ChangeReason, RawXdsSource
from controlplane.status.reporter import StatusReporter
from controlplane.translate.settings import TranslateSettings
from controlplane.translate.translator import Translator
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.configdump import ConfigDump
from controlplane.xds.debounce import Debouncer
from controlplane.xds.metrics import XdsMetrics
from controlplane.xds.server import ServerSettings, XdsServer
from controlplane.xds.status import ProxyStatusRegistry, StreamInfo

log = logging.getLogger(__name__)


def _kube_client(spec: SourceSpec) -> ClientSettings:
    return ClientSettings(kubeconfig=spec.path, in_cluster=spec.path is None)


class _InModel:
    """The objects of one model snapshot, as the status reporter asks: "is this ref in the model?"."""

    def __init__(self, snapshot: MeshSnapshot) -> None:
        self._snapshot = snapshot

    def __contains__(self, ref: object) -> bool:
        return isinstance(ref, ObjectRef) and self._snapshot.get(ref) is not None


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
        self.control_metrics = ControlPlaneMetrics(self.metrics_registry)
        # The raw source pushes raw Envoy resources; the model sources push through translation.
        self.raw_source: RawXdsSource | None = None
        self.state: MeshState | None = None
        self.publisher: SnapshotPublisher | None = None
        self.model_source: FileSource | KubeSource | None = None
        # Kubernetes only: writes routes' and policies' status conditions from the diagnostics.
        self.status_reporter: StatusReporter | None = None
        # Model sources only: a push there knows when its change was seen and which nodes it changed.
        self.convergence: ConvergenceTracker | None = None
        if settings.source.kind is SourceKind.DIR:
            raw_debouncer: Debouncer[ChangeReason] = Debouncer(
                quiet=settings.debounce_quiet, max_wait=settings.debounce_max, observer=self.control_metrics
            )
            self.raw_source = RawXdsSource(
                directory=settings.source.directory(),
                cache=self.cache,
                debouncer=raw_debouncer,
                poll_interval=settings.poll_interval,
                ready=self.ready,
            )
        else:
            self.debouncer: Debouncer[PushReason] = Debouncer(
                quiet=settings.debounce_quiet, max_wait=settings.debounce_max, observer=self.control_metrics
            )
            # One clock for "change seen" and "all ACKed".
            clock = time.monotonic
            self.state = MeshState(sources=["mesh"], on_change=self.debouncer.notify, clock=clock)
            self.convergence = ConvergenceTracker(
                registry=self.proxies,
                snapshots=self.cache,
                observer=self.control_metrics,
                timeout=settings.convergence_timeout,
                clock=clock,
            )
            self.proxies.listen(self.convergence)
            self.control_metrics.track_proxies_not_synced(self.convergence.proxies_not_synced)
            if settings.source.kind is SourceKind.FILES:
                self.model_source = FileSource(
                    settings.source.directory(), self.state, poll_interval=settings.poll_interval, name="mesh"
                )
            # A kube source is built in run(): it shares one API connection with the status writer.
            self.publisher = SnapshotPublisher(
                state=self.state,
                translator=Translator(TranslateSettings(trust_domain=settings.trust_domain)),
                cache=self.cache,
                metrics=self.control_metrics,
                convergence=self.convergence,
            )
        self.xds_ports: tuple[int, ...] = ()
        self.admin_port = 0
        # Reported with each proxy by CSDS (`meshctl proxy-status`); in Kubernetes, the pod name.
        self.replica = socket.gethostname()
        # What the CA issued (serials, validity; no keys), when it runs: `meshctl check` and `describe`.
        self.issued: IssuedCertificates | None = (
            IssuedCertificates() if settings.runs_ca and self.state is not None else None
        )

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
        mesh_pages = self._pages()
        admin = AdminServer(
            address=s.admin_listen,
            registry=self.metrics_registry,
            readiness=self.ready,
            debug_pages={
                "source": self._source_diagnostics,
                "proxies": lambda: _proxy_summary(self.proxies.streams()),
                **(mesh_pages.pages() if mesh_pages is not None else {}),
            },
            debug_queries=mesh_pages.queries() if mesh_pages is not None else None,
            config=ConfigDump(snapshots=self.cache),
        )
        async with contextlib.AsyncExitStack() as stack:
            kube: KubeApi | None = None
            if s.source.kind is SourceKind.KUBE:
                kube = await stack.enter_async_context(connect(_kube_client(s.source)))
                self._build_kube_source(kube)
            server = XdsServer(
                self.cache,
                self.proxies,
                self._server_settings(),
                metrics=self.metrics,
                replica=self.replica,
                # After the API connection: in a cluster the CA's root and node tokens go through it.
                extra_servicers=await self._certificate_service(kube),
            )
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
                    if self.raw_source is not None:
                        tasks.create_task(self.raw_source.run(), name="source")
                    if self.model_source is not None:
                        tasks.create_task(self.model_source.run(), name="source")
                        tasks.create_task(self.debouncer.run(self._push), name="debouncer")
                    if self.convergence is not None:
                        tasks.create_task(self.convergence.run(), name="convergence")
                    if self.status_reporter is not None:
                        tasks.create_task(self.status_reporter.run(), name="status")
            finally:
                log.info("control plane stopping")

    def _build_kube_source(self, kube: KubeApi) -> None:
        assert self.state is not None
        reporter: list[StatusReporter] = []
        source = KubeSource(
            KubeSourceSettings(name="mesh", client=_kube_client(self.settings.source)),
            self.state,
            api=kube,
            # A route whose status someone else rewrote gets ours back.
            on_status_object=lambda: reporter[0].refresh() if reporter else None,
        )
        reporter.append(StatusReporter(objects=source, patcher=KubeStatusPatcher(kube)))
        self.metrics_registry.register(WatchMetrics(source.informers.values))
        self.model_source, self.status_reporter = source, reporter[0]

    async def _push(self, reasons: frozenset[PushReason]) -> None:
        assert self.publisher is not None and self.state is not None
        mesh = self.state.snapshot
        await self.publisher.push(reasons)
        if self.status_reporter is not None:
            # Every push: objects that joined the model are known to it even when no diagnostic changed.
            self.status_reporter.update(self.publisher.diagnostics, _InModel(mesh))
        self.ready.set()

    def _source_diagnostics(self) -> list[str]:
        if self.raw_source is not None:
            return list(self.raw_source.diagnostics())
        assert self.publisher is not None
        return [str(d) for d in self.publisher.diagnostics]

    def _pages(self) -> MeshPages | None:
        if self.state is None or self.publisher is None:
            return None  # raw Envoy resources: no model to describe
        state, publisher = self.state, self.publisher
        return MeshPages(
            mesh=lambda: state.snapshot,
            diagnostics=lambda: publisher.diagnostics,
            streams=self.proxies.streams,
            issued=self.issued,
            clock=SystemClock(),
            trust_domain=self.settings.trust_domain,
        )

    async def _certificate_service(self, kube: KubeApi | None) -> list[Callable[[grpc.aio.Server], None]]:
        """The CA's gRPC service, when configured: it needs the model to know which pods run where."""
        s = self.settings
        if not s.runs_ca or self.state is None:
            return []
        clock = SystemClock()
        store: CAStore
        if s.ca_secret is not None:
            if kube is None:
                raise SettingsError("--ca-secret needs the kube source")
            store = SecretCAStore(kube, s.ca_secret.namespace, s.ca_secret.name)
        else:
            assert s.ca_file is not None
            store = FileCAStore(s.ca_file)
        authority = await load_or_generate_authority(store, s.trust_domain, clock)
        authenticator: NodeAuthenticator
        if s.node_tokens is not None:
            authenticator = BootstrapTokenAuthenticator.from_file(s.node_tokens, clock=clock)
        elif kube is not None:
            authenticator = TokenReviewAuthenticator(
                kube,
                clock=clock,
                audiences=(s.token_audience,),
                service_account=s.node_service_account,
            )
        else:
            authenticator = BootstrapTokenAuthenticator({}, clock=clock)
        service = CertificateService(
            signer=authority,
            authenticator=authenticator,
            placement=self.state,
            trust_domain=s.trust_domain,
            registry=self.metrics_registry,
            issued=self.issued,
        )
        return [service.add_to_server]

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
