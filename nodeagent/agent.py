"""The composition root of the node agent: builds every part, runs them in one TaskGroup.

Start: health endpoints first (so probes answer while bcc compiles), then install or adopt the pinned
programs, open the pinned maps, connect to the control plane and apply each plan. Until the first plan is
applied the maps stay exactly as found, so a restarted agent, or one that cannot reach the control plane,
keeps the traffic flowing as before. Shutdown closes our file descriptors and leaves the pinned programs and
maps in place on purpose; `nodemesh-agent uninstall` removes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from controlplane.ca.identity import SpiffeId
from nodeagent.datapath import DatapathError, InstallReport
from nodeagent.datapath.netns import current_netns_cookie
from nodeagent.errors import UpdateRejectedError
from nodeagent.health import HealthServer
from nodeagent.metrics import AgentCollector, AgentState, HooksView, IdentityCollector, MapsView
from nodeagent.plan import PLAN_TYPES, parse_plan
from nodeagent.podnetns import NetnsDirectory, PodNetnsResolver, ProcCgroupScan
from nodeagent.reconciler import (
    CookieSource,
    MapsPort,
    NetnsCookies,
    NetnsHookPort,
    Reconciler,
    RetrySettings,
)
from nodeagent.settings import AgentSettings
from nodeagent.xdsclient import FileToken, Update, XdsClient

log = logging.getLogger(__name__)


class IdentitySink(Protocol):
    """Told the set of SPIFFE IDs with a pod on this node after every applied plan; keeps a key and a
    certificate for each, served to Envoy over SDS (nodeagent.identity.IdentityManager). Must not block."""

    def set_wanted(self, identities: frozenset[SpiffeId]) -> None: ...


class NoIdentities(IdentitySink):
    """No identity manager wired in: the wanted set is only logged."""

    def __init__(self) -> None:
        self.wanted: frozenset[SpiffeId] = frozenset()

    def set_wanted(self, identities: frozenset[SpiffeId]) -> None:
        if identities != self.wanted:
            log.info(
                "identities wanted on this node (no --sds-socket: no certificates are made): %s",
                sorted(map(str, identities)),
            )
        self.wanted = identities


def pod_netns_resolver(settings: AgentSettings) -> PodNetnsResolver:
    """How pods the plan names only by UID are found: `--netns-dir`, else a scan of /proc cgroups."""
    if settings.netns_dir is not None:
        return NetnsDirectory(settings.netns_dir)
    return ProcCgroupScan(settings.proc_dir)


class AgentMaps(MapsPort, MapsView, Protocol):
    def close(self) -> None: ...


class AgentHooks(NetnsHookPort, HooksView, Protocol):
    pass


class Installer(Protocol):
    """The data path's lifecycle as the agent uses it (nodeagent.datapath.Datapath implements it)."""

    def install(self, *, pods_cgroup: Path, envoy_cgroup: Path) -> InstallReport: ...

    def open_maps(self) -> AgentMaps: ...

    def netns_hooks(self) -> AgentHooks: ...


# Something else to run beside the agent (the identity manager, the SDS server): runs until cancelled.
Component = Callable[[], Coroutine[Any, Any, None]]


class Agent:
    """`await Agent(settings, datapath=..., registry=...).run()` until cancelled."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        datapath: Installer,
        registry: CollectorRegistry,
        identity: IdentitySink | None = None,
        components: Sequence[Component] = (),
        cookies: CookieSource | None = None,
    ) -> None:
        self.settings = settings
        self.state = AgentState(node=settings.node)
        self._datapath = datapath
        self._identity = identity or NoIdentities()
        self._components = tuple(components)
        self._cookies = cookies or NetnsCookies(resolver=pod_netns_resolver(settings))
        self._collector = AgentCollector(self.state)
        registry.register(self._collector)
        self._registry = registry
        self.reconciler: Reconciler | None = None
        self.client: XdsClient | None = None
        self.health: HealthServer | None = None
        self.install_report: InstallReport | None = None

    @property
    def ready(self) -> bool:
        return self.state.ready

    async def run(self) -> None:
        s = self.settings
        async with HealthServer(
            s.health_listen, ready=lambda: self.state.ready, registry=self._registry
        ) as health:
            self.health = health
            self.install_report = await asyncio.to_thread(
                self._datapath.install, pods_cgroup=s.pods_cgroup, envoy_cgroup=s.envoy_cgroup
            )
            report = self.install_report
            self.state.programs = {
                **{str(hook): "attached" for hook in report.attached},
                **{str(hook): "adopted" for hook in report.adopted},
                **{str(hook): "replaced" for hook in report.replaced},
            }
            self.state.programs_attached = True
            maps = self._datapath.open_maps()
            try:
                await self._serve(maps)
            finally:
                self._collector.maps = None
                maps.close()
                log.info("agent stopped; the data path stays pinned at %s", s.bpffs)

    async def _serve(self, maps: AgentMaps) -> None:
        s = self.settings
        hooks = self._datapath.netns_hooks()
        self.reconciler = reconciler = Reconciler(
            maps,
            self._cookies,
            retry=RetrySettings(initial=s.netns_retry_initial, maximum=s.netns_retry_max),
            forbidden={current_netns_cookie(): "it is the node's own network namespace (where Envoy runs)"},
            hooks=hooks,
        )
        self._collector.maps = maps
        self._collector.hooks = hooks
        self._collector.pods = reconciler
        self.client = XdsClient(
            target=s.controlplane,
            node_id=s.node,
            apply=self._apply,
            type_urls=PLAN_TYPES,
            settings=s.xds,
            token=FileToken(s.token_file) if s.token_file is not None else None,
            observer=self,
        )
        async with asyncio.TaskGroup() as group:
            group.create_task(reconciler.run(), name="reconciler")
            group.create_task(self.client.run(), name="xds-client")
            for index, component in enumerate(self._components):
                group.create_task(component(), name=f"component-{index}")

    async def _apply(self, update: Update) -> None:
        assert self.reconciler is not None
        plan = parse_plan(update.resources)
        try:
            report = await self.reconciler.apply(plan)
        except DatapathError as exc:
            raise UpdateRejectedError(f"cannot program the data path maps: {exc}") from exc
        self._identity.set_wanted(plan.spiffe_ids)
        self.state.plan_version = plan.version
        self.state.plans_applied += 1
        pending = self.reconciler.pending
        log.info(
            "plan %s applied: workloads=%d meshed=%d pending=%d services=%d changed=%s",
            plan.version,
            len(plan.workloads),
            self.reconciler.meshed,
            len(pending),
            len(plan.services),
            report.changed,
        )

    # ConnectionObserver.

    def connection_changed(self, connected: bool) -> None:
        self.state.xds_connected = connected

    def response_rejected(self, type_url: str, message: str) -> None:
        self.state.plans_rejected += 1


class UtcClock:
    """The identity manager's clock: aware UTC wall time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


async def run_node_agent(settings: AgentSettings) -> None:
    """Builds the agent with the real data path (and, with an SDS socket, the identity manager and the SDS
    server) and runs it until cancelled."""
    from nodeagent.datapath import Datapath, Libbpf

    datapath = Datapath(pin_dir=settings.bpffs, lib=Libbpf.load())
    registry = CollectorRegistry()
    if settings.sds_socket is None or settings.token_file is None:
        await Agent(settings, datapath=datapath, registry=registry).run()
        return
    from nodeagent.identity.client import GrpcCertificateClient, TokenFile
    from nodeagent.identity.manager import IdentityManager
    from nodeagent.sds import SdsServer

    # The certificate service is served beside xDS, on the same control plane address.
    async with GrpcCertificateClient(
        target=settings.controlplane, token=TokenFile(settings.token_file)
    ) as ca:
        sds = SdsServer(settings.sds_socket)
        manager = IdentityManager(node=settings.node, client=ca, clock=UtcClock(), listeners=[sds])
        registry.register(IdentityCollector(manager))
        agent = Agent(
            settings,
            datapath=datapath,
            registry=registry,
            identity=manager,
            components=(sds.run, manager.run),
        )
        await agent.run()
