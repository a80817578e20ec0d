"""The agent's composition with fakes of its data path seams and a real XdsServer: readiness, the plan
reaching the maps and the identity sink, NACKs counted, and the pinned data path left alone on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry

from controlplane.ca.identity import SpiffeId
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.server import ServerSettings, XdsServer
from controlplane.xds.status import ProxyStatusRegistry
from nodeagent.agent import Agent
from nodeagent.datapath import (
    Counter,
    DesiredState,
    Exclusions,
    Hook,
    InboundCounter,
    InboundKey,
    InboundMode,
    InstallReport,
    NetnsSyncReport,
    PodSettings,
    ReconcileReport,
    ServicePort,
)
from nodeagent.plan import NetnsRef
from nodeagent.reconciler import PodNetns
from nodeagent.settings import AgentSettings
from nodeagent.xdsclient import ClientSettings
from tests.nodeagent.planbuilders import node_settings, service, snapshot, workload

NODE = "node-a"


@dataclass
class FakeMaps:
    desired: DesiredState | None = None
    closed: bool = False

    def reconcile(self, desired: DesiredState) -> ReconcileReport:
        self.desired = desired
        return ReconcileReport()

    def counters(self) -> Mapping[Counter, int]:
        return {counter: 0 for counter in Counter}

    def meshed(self) -> dict[int, PodSettings]:
        return dict(self.desired.meshed) if self.desired else {}

    def services(self) -> frozenset[ServicePort]:
        return self.desired.services if self.desired else frozenset()

    def exclusions(self) -> Exclusions:
        return self.desired.exclusions if self.desired else Exclusions()

    def inbound_counters(self) -> Mapping[InboundCounter, int]:
        return {counter: 0 for counter in InboundCounter}

    def inbound(self) -> dict[InboundKey, InboundMode]:
        return dict(self.desired.inbound) if self.desired else {}

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeHooks:
    wanted: dict[int, Path] = field(default_factory=dict)

    def sync(self, wanted: Mapping[int, Path]) -> NetnsSyncReport:
        self.wanted = dict(wanted)
        return NetnsSyncReport(attached=frozenset(wanted))

    def attached(self) -> frozenset[int]:
        return frozenset(self.wanted)


@dataclass
class FakeDatapath:
    maps: FakeMaps = field(default_factory=FakeMaps)
    hooks: FakeHooks = field(default_factory=FakeHooks)
    installs: list[tuple[Path, Path]] = field(default_factory=list)

    def install(self, *, pods_cgroup: Path, envoy_cgroup: Path) -> InstallReport:
        self.installs.append((pods_cgroup, envoy_cgroup))
        return InstallReport(attached=frozenset(), adopted=frozenset(Hook), replaced=frozenset())

    def open_maps(self) -> FakeMaps:
        return self.maps

    def netns_hooks(self) -> FakeHooks:
        return self.hooks


@dataclass
class FakeCookies:
    async def resolve(self, ref: NetnsRef) -> PodNetns:
        assert ref.pid is not None
        return PodNetns(cookie=1000 + ref.pid, path=Path(f"/proc/{ref.pid}/ns/net"))


@dataclass
class RecordingIdentities:
    wanted: list[frozenset[SpiffeId]] = field(default_factory=list)

    def set_wanted(self, identities: frozenset[SpiffeId]) -> None:
        self.wanted.append(identities)


async def eventually(predicate: object, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_the_agent_applies_the_plan_and_leaves_the_data_path_on_shutdown() -> None:
    cache = SnapshotCache()
    cache.set_snapshot(
        NODE,
        snapshot(
            node_settings(),
            service("web", ["198.19.128.10"], [80]),
            workload("u1", pid=1, sa="api"),
            workload("u2", pid=2, sa="web"),
        ),
    )
    datapath, identities = FakeDatapath(), RecordingIdentities()
    async with XdsServer(cache, ProxyStatusRegistry(), ServerSettings(stop_grace=0.2)) as server:
        (port,) = await server.listen(["127.0.0.1:0"])
        settings = AgentSettings(
            node=NODE,
            controlplane=f"127.0.0.1:{port}",
            pods_cgroup=Path("/cg/pods"),
            envoy_cgroup=Path("/cg/envoy"),
            health_listen="127.0.0.1:0",
            xds=ClientSettings(backoff_initial=0.01, backoff_max=0.05),
        )
        registry = CollectorRegistry()
        agent = Agent(
            settings, datapath=datapath, registry=registry, identity=identities, cookies=FakeCookies()
        )
        task = asyncio.create_task(agent.run())
        try:
            await eventually(lambda: agent.ready)
            assert datapath.installs == [(Path("/cg/pods"), Path("/cg/envoy"))]
            assert datapath.maps.desired is not None and set(datapath.maps.desired.meshed) == {1001, 1002}
            assert {str(i) for i in identities.wanted[-1]} == {
                "spiffe://cluster.local/ns/default/sa/api",
                "spiffe://cluster.local/ns/default/sa/web",
            }
            assert registry.get_sample_value("nodemesh_agent_meshed_pods") == 2
            assert registry.get_sample_value("nodemesh_agent_xds_connected") == 1

            cache.set_snapshot(NODE, snapshot(node_settings(), workload("u1", pid=1), workload("bad")))
            await eventually(lambda: agent.state.plans_rejected == 1)
            assert set(datapath.maps.desired.meshed) == {1001, 1002}  # the last good plan stays
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert datapath.maps.closed  # our handles closed; nothing uninstalled (FakeDatapath has no uninstall)
