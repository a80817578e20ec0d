"""The translator: a MeshSnapshot to per-node Envoy config and agent plans, incrementally.

Two stages. `translate_mesh` computes what is the same for every node (clusters, load assignments, route
configs, filter chains, service VIPs); `translate_node` adds a node's outbound listener and plan.

Work is proportional to the change, not to the mesh. The translator keeps the last snapshot it translated
and one result per Service; the next snapshot is compared with it (`PMap.diff` skips the subtrees the two
share) and `impact.snapshot_impact` names the Services, routes and policies whose translation may differ.
Only those are translated again, and inside each, every build is reused when its inputs are equal (the very
same message object), so an endpoint-only change rebuilds one ClusterLoadAssignment and nothing else. The
output maps are persistent (`PMap`): the new MeshConfig shares every untouched entry with the previous one,
which `MeshConfig.changed_since` exploits. Per node, the listener, route map and plan are reused while
their inputs (the shared parts, the node's local workloads, their namespaces' consumer chains) are the same.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from itertools import chain
from typing import Generic, TypeVar, cast

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_pb2

from controlplane.ca.identity import SpiffeId
from controlplane.model.diagnostics import Diagnostic, Reason, Severity
from controlplane.model.node import Node
from controlplane.model.pmap import PMap
from controlplane.model.refs import Kind, ObjectRef
from controlplane.model.routes import Route, backend_services
from controlplane.model.service import L7Protocol, Protocol, Service, ServicePort, ServiceType
from controlplane.model.snapshot import Index, MeshSnapshot
from controlplane.model.workload import Workload
from controlplane.translate import naming
from controlplane.translate.assignments import Tunnel, build_load_assignment
from controlplane.translate.binding import attached, parent_diagnostics
from controlplane.translate.clusters import build_cluster, build_passthrough_cluster
from controlplane.translate.config import ConsumerChain, MeshConfig, NodeConfig, OutboundParts
from controlplane.translate.impact import Impact, snapshot_impact
from controlplane.translate.listener import (
    ChainTarget,
    ConsumerSelector,
    build_consumer_listener,
    build_handoff_cluster,
    build_http_chain,
    build_outbound_listener,
    build_services_listener,
    build_tcp_chain,
    destination_tree,
)
from controlplane.translate.messages import duration
from controlplane.translate.nodehbone import NodeHbone, build_node_hbone, local_inputs, mesh_clusters
from controlplane.translate.plan import (
    WorkloadMtls,
    build_node_settings,
    build_service_vip,
    build_workload,
    workload_mtls,
)
from controlplane.translate.pods import PodTunnel, build_pods_listeners
from controlplane.translate.policies import EffectivePolicy, effective_policy, target_diagnostics
from controlplane.translate.routing import RouteInputs, build_route_config
from controlplane.translate.settings import TranslateSettings
from protos.nodemesh.v1alpha1 import plan_pb2

logger = logging.getLogger(__name__)

V = TypeVar("V")
R = TypeVar("R")


class BuildKind(StrEnum):
    """What the translator builds; `Translator.builds` counts each real build (not reuses)."""

    CLUSTER = "cluster"
    LOAD_ASSIGNMENT = "load_assignment"
    ROUTE_CONFIG = "route_config"
    FILTER_CHAIN = "filter_chain"
    LISTENER = "listener"
    POLICY = "policy"
    SERVICE_VIP = "service_vip"
    WORKLOAD = "workload"
    CHECK = "check"
    HBONE = "hbone"


class _BuildKey:
    """A build's kind and inputs, hashed once: inputs are deep frozen values (a Service, its slices, its
    routes) whose hash Python would otherwise recompute on every dict lookup."""

    __slots__ = ("_hash", "inputs", "kind")

    def __init__(self, kind: BuildKind, inputs: Hashable) -> None:
        self.kind = kind
        self.inputs = inputs
        self._hash = hash((kind, inputs))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _BuildKey)
            and self._hash == other._hash
            and self.kind == other.kind
            and self.inputs == other.inputs
        )


class _Reuse:
    """The builds of one unit's translation (a Service's), reusing what its previous translation built
    from equal inputs: an unchanged input keeps the very same message object."""

    __slots__ = ("_builds", "_previous", "used")

    def __init__(self, previous: Mapping[_BuildKey, object], builds: Counter[BuildKind]) -> None:
        self._previous = previous
        self._builds = builds
        self.used: dict[_BuildKey, object] = {}

    def get(self, kind: BuildKind, inputs: Hashable, build: Callable[[], R]) -> R:
        key = _BuildKey(kind, inputs)
        value = self.used.get(key, _MISSING)
        if value is _MISSING:
            value = self._previous.get(key, _MISSING) if self._previous else _MISSING
            if value is _MISSING:
                value = build()
                self._builds[kind] += 1
            self.used[key] = value
        return cast("R", value)


_MISSING: object = object()


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class _ServiceResult:
    """Everything one Service contributes to the MeshConfig, and the builds to reuse next time."""

    vip: plan_pb2.ServiceVip | None = None
    clusters: tuple[cluster_pb2.Cluster, ...] = ()
    assignments: tuple[endpoint_pb2.ClusterLoadAssignment, ...] = ()
    route_configs: tuple[route_pb2.RouteConfiguration, ...] = ()
    chains: tuple[listener_components_pb2.FilterChain, ...] = ()
    targets: tuple[ChainTarget, ...] = ()
    # (consumer namespace, chain) pairs.
    consumers: tuple[tuple[str, ConsumerChain], ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    builds: Mapping[_BuildKey, object] = field(default_factory=dict)


_NO_RESULT = _ServiceResult()


@dataclass(slots=True)
class _ServiceParts:
    """What translating one Service collects."""

    clusters: list[cluster_pb2.Cluster] = field(default_factory=list)
    assignments: list[endpoint_pb2.ClusterLoadAssignment] = field(default_factory=list)
    route_configs: list[route_pb2.RouteConfiguration] = field(default_factory=list)
    chains: list[listener_components_pb2.FilterChain] = field(default_factory=list)
    targets: list[ChainTarget] = field(default_factory=list)
    consumers: list[tuple[str, ConsumerChain]] = field(default_factory=list)
    diagnostics: set[Diagnostic] = field(default_factory=set)


@dataclass(frozen=True, slots=True, kw_only=True)
class _PortContext:
    service: Service
    port: ServicePort
    policy: EffectivePolicy


class _MapEdits(Generic[V]):
    """Sets and deletes against a PMap, applied at once: one path copy per edit, or a bulk rebuild when
    the edits touch a large share of the map (the first translation)."""

    __slots__ = ("_base", "_deletes", "_sets")

    def __init__(self, base: PMap[str, V]) -> None:
        self._base = base
        self._sets: dict[str, V] = {}
        self._deletes: set[str] = set()

    def replace(self, old: Iterable[tuple[str, V]], new: Iterable[tuple[str, V]]) -> None:
        """One unit's entries went from `old` to `new` (names unique to the unit)."""
        previous = dict(old)
        for name, value in new:
            if previous.pop(name, None) is not value:
                self._sets[name] = value
        for name in previous:
            self._deletes.add(name)

    def result(self) -> PMap[str, V]:
        if not self._sets and not self._deletes:
            return self._base
        if len(self._sets) + len(self._deletes) > len(self._base) // 4 + 64:
            data = dict(self._base.items())
            for name in self._deletes:
                data.pop(name, None)
            data.update(self._sets)
            return PMap(data)
        out = self._base
        for name in self._deletes:
            out = out.delete(name)
        for name, value in self._sets.items():
            out = out.set(name, value)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class _ListenerKey:
    address: str
    port: int
    consumers: tuple[ConsumerSelector, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class _NodeListener:
    key: _ListenerKey
    # The node's own listener, and the shared internal listeners it hands connections to:
    # `outbound_services` and the `outbound_consumer|<ns>` of its local consumer namespaces.
    listener: listener_pb2.Listener
    services: listener_pb2.Listener
    consumers: tuple[listener_pb2.Listener, ...]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class _NodeSources:
    """The snapshot maps a node's own inputs come from, compared by identity: while all three are the
    same objects, no node, pod or enrollment changed, so a node need not look its workloads up again."""

    nodes: PMap[ObjectRef, Node]
    workloads: PMap[ObjectRef, Workload]
    enrolled: object

    @classmethod
    def of(cls, mesh: MeshSnapshot) -> _NodeSources:
        return cls(
            nodes=mesh.nodes, workloads=mesh.workloads, enrolled=mesh.indexes[Index.ENROLLED_NAMESPACES]
        )

    def same(self, other: _NodeSources) -> bool:
        return (
            self.nodes is other.nodes
            and self.workloads is other.workloads
            and self.enrolled is other.enrolled
        )


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class _NodeState:
    """What the last `translate_node` of one node read and built."""

    sources: _NodeSources
    mesh_config: MeshConfig
    node_obj: Node | None
    workloads: tuple[Workload, ...]
    # The consumer-chain tuples of the local namespaces, in namespace order (compared by identity).
    consumer_parts: tuple[tuple[ConsumerChain, ...], ...]
    listener: _NodeListener
    listeners: PMap[str, listener_pb2.Listener]
    route_configs: PMap[str, route_pb2.RouteConfiguration]
    plans: PMap[str, plan_pb2.Workload]
    # Keyed by the workload and its inbound mTLS (PeerAuthentications change the plan, not the workload).
    plan_builds: Mapping[tuple[Workload, WorkloadMtls], plan_pb2.Workload]
    node_settings: plan_pb2.NodeSettings
    # HBONE: what it was built from (security sources compared by identity, the Services at each local
    # pod IP by value) and what it built.
    security: tuple[object, object, object]
    endpoints_at: tuple[frozenset[ObjectRef], ...]
    hbone: NodeHbone
    config: NodeConfig


_Listeners = tuple[listener_pb2.Listener, ...]


def _changed_ips(old: MeshSnapshot, new: MeshSnapshot) -> frozenset[str]:
    """The IPs of pods whose mesh membership, identity or node (address) may differ between two snapshots."""
    ips: set[str] = set()
    for _, *workloads in old.workloads.diff(new.workloads).entries():
        for w in workloads:
            if w is not None:
                ips.update(w.ips)
    for mesh in (old, new):
        for _, *nodes in old.nodes.diff(new.nodes).entries():
            for n in nodes:
                if n is not None:
                    ips.update(chain.from_iterable(w.ips for w in mesh.workloads_on(n.name)))
        for _, *namespaces in old.namespaces.diff(new.namespaces).entries():
            for ns in namespaces:
                if ns is not None:
                    ips.update(chain.from_iterable(w.ips for w in mesh.workloads_in(ns.name)))
    return frozenset(ips)


def _security_sources(mesh: MeshSnapshot) -> tuple[object, object, object]:
    """The snapshot maps a node's authorization, HTTP ports and plan's mTLS modes read (besides its
    workloads)."""
    return (mesh.authorization_policies, mesh.services, mesh.peer_authentications)


def _same_node_config(a: NodeConfig, b: NodeConfig) -> bool:
    return (
        a.mesh is b.mesh
        and a.listeners is b.listeners
        and a.clusters is b.clusters
        and a.load_assignments is b.load_assignments
        and a.route_configs is b.route_configs
        and a.workloads is b.workloads
        and a.service_vips is b.service_vips
        and a.node_settings is b.node_settings
        and a.diagnostics == b.diagnostics
    )


def _same_plans(a: PMap[str, plan_pb2.Workload], b: PMap[str, plan_pb2.Workload]) -> bool:
    return len(a) == len(b) and all(a.get(uid) is message for uid, message in b.items())


def _same_objects(a: Iterable[object], b: Iterable[object]) -> bool:
    a, b = tuple(a), tuple(b)
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def _same_consumer(a: ConsumerChain, b: ConsumerChain) -> bool:
    return a.chain is b.chain and a.route_config is b.route_config and a.target == b.target


def _same_node_inputs(a: MeshConfig, b: MeshConfig) -> bool:
    """Whether the parts of a MeshConfig that a node builds on (listener parts, consumer chains, route
    configs it adds to, diagnostics it merges into) are the same objects."""
    return (
        a.outbound is b.outbound
        and a.consumer_chains is b.consumer_chains
        and a.route_configs is b.route_configs
        and a.pods is b.pods
        and a.diagnostics is b.diagnostics
    )


def _same_mesh_config(a: MeshConfig, b: MeshConfig) -> bool:
    return (
        a.clusters is b.clusters
        and a.load_assignments is b.load_assignments
        and a.route_configs is b.route_configs
        and a.consumer_chains is b.consumer_chains
        and a.outbound is b.outbound
        and a.pods is b.pods
        and a.service_vips is b.service_vips
        and a.diagnostics is b.diagnostics
    )


class Translator:
    """Call `translate_mesh` once per snapshot, then `translate_node` for each node.

    `builds` counts real builds per kind (reuses are free), which tests and benchmarks read.
    """

    def __init__(self, settings: TranslateSettings | None = None) -> None:
        self.settings = settings or TranslateSettings()
        self.builds: Counter[BuildKind] = Counter()
        self._passthrough = build_passthrough_cluster(self.settings)
        # The ways into the internal listeners every node has (never rebuilt).
        self._handoffs = tuple(
            build_handoff_cluster(name, duration(self.settings.connect_timeout))
            for name in (
                naming.OUTBOUND_SERVICES,
                naming.OUTBOUND_PODS,
                naming.OUTBOUND_POD_NODES,
                naming.HBONE_ORIGINATE_LISTENER,
            )
        )
        self._reset()

    def _reset(self) -> None:
        """Forget every previous result: the next translation starts from scratch."""
        self._last: tuple[MeshSnapshot, MeshConfig] | None = None
        self._results: dict[ObjectRef, _ServiceResult] = {}
        # Services with filter chains, sorted: the order of the outbound listener's chains.
        self._chain_order: list[ObjectRef] = []
        # Consumer namespace -> Service -> its consumer chains there.
        self._consumers: dict[str, dict[ObjectRef, tuple[ConsumerChain, ...]]] = {}
        # Diagnostics by the unit that produced them (only non-empty entries).
        self._service_diagnostics: dict[ObjectRef, tuple[Diagnostic, ...]] = {}
        self._check_diagnostics: dict[ObjectRef, tuple[Diagnostic, ...]] = {}
        # Per route and policy: the inputs of its last check, and what it found.
        self._checks: dict[ObjectRef, tuple[Hashable, tuple[Diagnostic, ...]]] = {}
        self._nodes: dict[str, _NodeState] = {}
        # Endpoint addresses by Service and back: a pod's mesh membership or node decides how its Services'
        # endpoints are reached (HBONE or plain), so a change to it re-translates those Services.
        self._service_ips: dict[ObjectRef, frozenset[str]] = {}
        self._services_by_ip: dict[str, set[ObjectRef]] = {}
        self._template: tuple[OutboundParts, listener_pb2.Listener] | None = None
        # The pod listeners, the snapshot maps they were read from (by identity), and the pods they hold.
        self._pods: tuple[_NodeSources, _Listeners] | None = None
        self._pod_tunnels: dict[str, Tunnel] = {}
        # Per consumer namespace: its `outbound_consumer|<ns>` and the chains tuple it was built from.
        self._consumer_listeners: dict[str, tuple[tuple[ConsumerChain, ...], listener_pb2.Listener]] = {}

    # -- mesh-wide stage ----------------------------------------------------------------------------

    def translate_mesh(self, mesh: MeshSnapshot) -> MeshConfig:
        """The node-independent config of `mesh` (the same object again for the same snapshot)."""
        if self._last is not None and self._last[0] is mesh:
            return self._last[1]
        if self._last is None:
            impact = Impact(
                services=frozenset(mesh.services),
                routes=frozenset(chain(mesh.http_routes, mesh.grpc_routes)),
                policies=frozenset(mesh.traffic_policies),
                removed_nodes=frozenset(),
            )
            previous, changed_ips = None, None
        else:
            impact = snapshot_impact(self._last[0], mesh)
            changed_ips = _changed_ips(self._last[0], mesh)
            tunnels = frozenset(chain.from_iterable(self._services_by_ip.get(ip, ()) for ip in changed_ips))
            if not tunnels <= impact.services:
                impact = dataclasses.replace(impact, services=impact.services | tunnels)
            previous = self._last[1]
        try:
            config = self._assemble(mesh, impact, previous, changed_ips)
        except BaseException:
            # The per-Service state may be half updated: never diff against it.
            self._reset()
            raise
        self._last = (mesh, config)
        for name in impact.removed_nodes:
            self._nodes.pop(name, None)
        return config

    def _assemble(
        self,
        mesh: MeshSnapshot,
        impact: Impact,
        previous: MeshConfig | None,
        changed_ips: frozenset[str] | None,
    ) -> MeshConfig:
        empty: PMap[str, cluster_pb2.Cluster] = PMap()
        if previous is None:
            empty = empty.set(naming.PASSTHROUGH, self._passthrough)
            for handoff in self._handoffs:
                empty = empty.set(str(handoff.name), handoff)
            for c in mesh_clusters(self.settings):
                empty = empty.set(str(c.name), c)
        clusters = _MapEdits(previous.clusters if previous is not None else empty)
        assignments = _MapEdits(previous.load_assignments if previous is not None else PMap())
        route_configs = _MapEdits(previous.route_configs if previous is not None else PMap())
        vips = _MapEdits(previous.service_vips if previous is not None else PMap())
        outbound_dirty = previous is None
        dirty_namespaces: set[str] = set()
        diagnostics_dirty = previous is None

        for ref in impact.services:
            old = self._results.get(ref, _NO_RESULT)
            service = mesh.services.get(ref)
            new = self._translate_service(mesh, service, old) if service is not None else _NO_RESULT
            if service is None:
                self._index_addresses(ref, frozenset())
            if new is _NO_RESULT:
                self._results.pop(ref, None)
            else:
                self._results[ref] = new
            clusters.replace(
                ((str(c.name), c) for c in old.clusters), ((str(c.name), c) for c in new.clusters)
            )
            assignments.replace(
                ((str(a.cluster_name), a) for a in old.assignments),
                ((str(a.cluster_name), a) for a in new.assignments),
            )
            route_configs.replace(
                ((str(r.name), r) for r in old.route_configs), ((str(r.name), r) for r in new.route_configs)
            )
            vips.replace(
                ((naming.service_vip(v.namespace, v.name), v) for v in (old.vip,) if v is not None),
                ((naming.service_vip(v.namespace, v.name), v) for v in (new.vip,) if v is not None),
            )
            if not (_same_objects(old.chains, new.chains) and old.targets == new.targets):
                outbound_dirty = True
                self._place_chains(ref, bool(new.chains))
            dirty_namespaces.update(self._place_consumers(ref, old, new))
            if old.diagnostics != new.diagnostics:
                diagnostics_dirty = True
                if new.diagnostics:
                    self._service_diagnostics[ref] = new.diagnostics
                else:
                    self._service_diagnostics.pop(ref, None)

        diagnostics_dirty |= self._check(mesh, impact)

        outbound = previous.outbound if previous is not None else None
        if outbound is None or outbound_dirty:
            outbound = self._outbound(outbound)
        consumer_chains = previous.consumer_chains if previous is not None else PMap()
        for ns in sorted(dirty_namespaces):
            by_service = self._consumers.get(ns)
            # The way into the namespace's `outbound_consumer|<ns>`, while it has consumer chains.
            handoff = naming.outbound_consumer(ns)
            held = previous.clusters.get(handoff) if previous is not None else None
            if not by_service:
                consumer_chains = consumer_chains.delete(ns)
                clusters.replace(((handoff, c) for c in (held,) if c is not None), ())
                self._consumer_listeners.pop(ns, None)
                continue
            if held is None:
                clusters.replace(
                    (), ((handoff, build_handoff_cluster(handoff, duration(self.settings.connect_timeout))),)
                )
            chains = tuple(sorted(chain.from_iterable(by_service.values()), key=lambda c: str(c.chain.name)))
            consumer_chains = consumer_chains.set(ns, chains)
        diagnostics = previous.diagnostics if previous is not None else ()
        if diagnostics_dirty:
            everything = set(chain.from_iterable(self._service_diagnostics.values()))
            everything.update(chain.from_iterable(self._check_diagnostics.values()))
            diagnostics = tuple(sorted(everything, key=Diagnostic.sort_key))
            if previous is not None and diagnostics == previous.diagnostics:
                diagnostics = previous.diagnostics
        config = MeshConfig(
            clusters=clusters.result(),
            load_assignments=assignments.result(),
            route_configs=route_configs.result(),
            consumer_chains=consumer_chains,
            outbound=outbound,
            pods=self._pods_listeners(mesh, changed_ips),
            service_vips=vips.result(),
            diagnostics=diagnostics,
        )
        if previous is not None and _same_mesh_config(previous, config):
            return previous  # nothing mesh-wide changed: nodes can keep their whole NodeConfig
        return config

    def _pods_listeners(self, mesh: MeshSnapshot, changed_ips: frozenset[str] | None) -> _Listeners:
        """`outbound_pods` and `outbound_pod_nodes`. Only the pods at `changed_ips` (all when None) are looked
        at again, and the listeners are rebuilt only when one of them entered, left or moved in the mesh: a
        readiness flip or a label change costs a lookup per changed pod, not a pass over the mesh."""
        sources = _NodeSources.of(mesh)
        if self._pods is not None and self._pods[0].same(sources):
            return self._pods[1]
        tunnels = self._pod_tunnels
        if changed_ips is None or self._pods is None:
            ips = frozenset(ip for w in mesh.workloads.values() for ip in w.ips)
            tunnels.clear()
        else:
            ips = changed_ips
        changed = False
        found = dict(self._tunnels(mesh, ips))
        for ip in ips:
            tunnel = found.get(ip)
            if tunnels.get(ip) == tunnel:
                continue
            changed = True
            if tunnel is None:
                del tunnels[ip]
            else:
                tunnels[ip] = tunnel
        if self._pods is not None and not changed:
            listeners = self._pods[1]
        else:
            pods = [PodTunnel(ip=ip, tunnel=t) for ip, t in tunnels.items()]
            listeners = build_pods_listeners(pods)
            self.builds[BuildKind.LISTENER] += 1
        self._pods = (sources, listeners)
        return listeners

    def _index_addresses(self, ref: ObjectRef, addresses: frozenset[str]) -> None:
        old = self._service_ips.get(ref, frozenset())
        if old == addresses:
            return
        for ip in old - addresses:
            refs = self._services_by_ip[ip]
            refs.discard(ref)
            if not refs:
                del self._services_by_ip[ip]
        for ip in addresses - old:
            self._services_by_ip.setdefault(ip, set()).add(ref)
        if addresses:
            self._service_ips[ref] = addresses
        else:
            self._service_ips.pop(ref, None)

    def _tunnels(self, mesh: MeshSnapshot, addresses: frozenset[str]) -> tuple[tuple[str, Tunnel], ...]:
        """The meshed pods among `addresses` and how to reach them, sorted by IP."""
        out = []
        for ip in sorted(addresses):
            workload = mesh.workload_by_ip(ip)
            if workload is None or not mesh.is_meshed(workload):
                continue
            node = mesh.node(workload.node)
            if node is None or not node.internal_ip:
                continue  # no tunnel destination known: plain, as outside the mesh
            spiffe_id = SpiffeId.for_workload(
                self.settings.trust_domain, workload.namespace, workload.service_account
            )
            out.append(
                (
                    ip,
                    Tunnel(
                        node_ip=node.internal_ip, hbone_port=self.settings.hbone_port, spiffe_id=spiffe_id
                    ),
                )
            )
        return tuple(out)

    def _place_chains(self, ref: ObjectRef, present: bool) -> None:
        order = self._chain_order
        at = bisect.bisect_left(order, ref)
        found = at < len(order) and order[at] == ref
        if present and not found:
            order.insert(at, ref)
        elif found and not present:
            del order[at]

    def _outbound(self, previous: OutboundParts | None) -> OutboundParts:
        chains: list[listener_components_pb2.FilterChain] = []
        targets: list[ChainTarget] = []
        for ref in self._chain_order:
            result = self._results[ref]
            chains.extend(result.chains)
            targets.extend(result.targets)
        outbound = OutboundParts(chains=tuple(chains), targets=tuple(targets))
        if (
            previous is not None
            and previous.targets == outbound.targets
            and _same_objects(previous.chains, chains)
        ):
            return previous
        return outbound

    def _place_consumers(self, ref: ObjectRef, old: _ServiceResult, new: _ServiceResult) -> set[str]:
        """File the Service's consumer chains by namespace; the namespaces whose chains changed."""
        before: dict[str, list[ConsumerChain]] = {}
        for ns, c in old.consumers:
            before.setdefault(ns, []).append(c)
        after: dict[str, list[ConsumerChain]] = {}
        for ns, c in new.consumers:
            after.setdefault(ns, []).append(c)
        dirty: set[str] = set()
        for ns in before.keys() | after.keys():
            a, b = before.get(ns, []), after.get(ns, [])
            if len(a) == len(b) and all(_same_consumer(x, y) for x, y in zip(a, b, strict=True)):
                continue
            dirty.add(ns)
            by_service = self._consumers.setdefault(ns, {})
            if b:
                by_service[ref] = tuple(b)
            else:
                by_service.pop(ref, None)
                if not by_service:
                    del self._consumers[ns]
        return dirty

    def _check(self, mesh: MeshSnapshot, impact: Impact) -> bool:
        """Re-check the touched routes' parents and policies' targets; whether any diagnostic changed."""
        changed = False
        for ref in chain(impact.routes, impact.policies):
            old = self._checks.get(ref)
            inputs = self._check_inputs(mesh, ref)
            if inputs is None:
                self._checks.pop(ref, None)
                found: tuple[Diagnostic, ...] = ()
            elif old is not None and old[0] == inputs[0]:
                continue
            else:
                found = inputs[1]()
                self.builds[BuildKind.CHECK] += 1
                self._checks[ref] = (inputs[0], found)
            if found != self._check_diagnostics.get(ref, ()):
                changed = True
                if found:
                    self._check_diagnostics[ref] = found
                else:
                    del self._check_diagnostics[ref]
        return changed

    def _check_inputs(
        self, mesh: MeshSnapshot, ref: ObjectRef
    ) -> tuple[Hashable, Callable[[], tuple[Diagnostic, ...]]] | None:
        if ref.kind == Kind.TRAFFIC_POLICY:
            policy = mesh.traffic_policies.get(ref)
            if policy is None:
                return None
            targets = {
                t.name: mesh.service(policy.namespace, t.name)
                for t in policy.target_refs
                if t.group == "" and t.kind == "Service"
            }
            key = (policy, tuple(sorted(targets.items(), key=lambda kv: kv[0])))
            return key, partial(target_diagnostics, policy, targets)
        route: Route | None = (
            mesh.http_routes.get(ref) if ref.kind == Kind.HTTP_ROUTE else mesh.grpc_routes.get(ref)
        )
        if route is None:
            return None
        parents = tuple(mesh.service(p.namespace, p.name) for p in route.parent_refs if p.is_service)
        return (route, parents), partial(parent_diagnostics, route, mesh.service)

    # -- one Service ----------------------------------------------------------------------------------

    def _translate_service(
        self, mesh: MeshSnapshot, service: Service, previous: _ServiceResult
    ) -> _ServiceResult:
        if service.type is ServiceType.EXTERNAL_NAME:
            return _NO_RESULT
        reuse = _Reuse(previous.builds, self.builds)
        parts = _ServiceParts()
        vip = reuse.get(BuildKind.SERVICE_VIP, service, partial(build_service_vip, service))
        slices = mesh.endpoint_slices_for(service.ref)
        addresses = frozenset(a for s in slices for e in s.endpoints for a in e.addresses)
        self._index_addresses(service.ref, addresses)
        tunnels = self._tunnels(mesh, addresses)
        owned_ips = self._owned_ips(mesh, service, parts)
        for port in service.ports:
            if port.protocol is not Protocol.TCP:
                continue
            name = naming.cluster(service.namespace, service.name, port.port)
            policy, policy_diagnostics = self._policy(mesh, reuse, service, port)
            parts.diagnostics.update(policy_diagnostics)
            parts.clusters.append(
                reuse.get(
                    BuildKind.CLUSTER,
                    (name, port, policy),
                    partial(build_cluster, name, port, policy, self.settings),
                )
            )
            parts.assignments.append(
                reuse.get(
                    BuildKind.LOAD_ASSIGNMENT,
                    (name, port, slices, tunnels),
                    partial(build_load_assignment, name, port, slices, dict(tunnels)),
                )
            )
            if owned_ips:
                ctx = _PortContext(service=service, port=port, policy=policy)
                self._service_port_chains(mesh, reuse, ctx, owned_ips, parts)
        consumers = tuple(parts.consumers)
        # Keep the previous ConsumerChain objects when equal, so namespaces' chain tuples stay the same.
        if len(consumers) == len(previous.consumers) and all(
            a[0] == b[0] and _same_consumer(a[1], b[1])
            for a, b in zip(consumers, previous.consumers, strict=True)
        ):
            consumers = previous.consumers
        return _ServiceResult(
            vip=vip,
            clusters=tuple(parts.clusters),
            assignments=tuple(parts.assignments),
            route_configs=tuple(parts.route_configs),
            chains=tuple(parts.chains),
            targets=tuple(parts.targets),
            consumers=consumers,
            diagnostics=tuple(sorted(parts.diagnostics, key=Diagnostic.sort_key)),
            builds=reuse.used,
        )

    def _policy(
        self, mesh: MeshSnapshot, reuse: _Reuse, service: Service, port: ServicePort
    ) -> tuple[EffectivePolicy, tuple[Diagnostic, ...]]:
        policies = mesh.traffic_policies_for(service.ref)
        return reuse.get(
            BuildKind.POLICY,
            (service.ref, port, policies),
            partial(effective_policy, service, port, policies),
        )

    def _service_port_chains(
        self,
        mesh: MeshSnapshot,
        reuse: _Reuse,
        ctx: _PortContext,
        owned_ips: tuple[str, ...],
        parts: _ServiceParts,
    ) -> None:
        service, port = ctx.service, ctx.port
        chain_name = naming.filter_chain(service.namespace, service.name, port.port)
        cluster_name = naming.cluster(service.namespace, service.name, port.port)
        parts.targets.append(ChainTarget(chain=chain_name, ips=owned_ips, port=port.port))
        if port.l7_protocol is L7Protocol.TCP:
            parts.chains.append(
                reuse.get(
                    BuildKind.FILTER_CHAIN,
                    ("tcp", chain_name, cluster_name),
                    partial(build_tcp_chain, chain_name, cluster_name),
                )
            )
            return
        producer = self._route_config(
            mesh, reuse, ctx, mesh.producer_routes(service.ref), consumer_namespace=None, parts=parts
        )
        assert producer is not None  # a producer config always exists (default route without routes)
        parts.route_configs.append(producer)
        parts.chains.append(self._http_chain(reuse, chain_name, str(producer.name)))
        for ns in mesh.consumer_namespaces(service.ref):
            consumer = self._route_config(
                mesh, reuse, ctx, mesh.consumer_routes(ns, service.ref), consumer_namespace=ns, parts=parts
            )
            if consumer is None:
                continue
            consumer_chain = naming.filter_chain(service.namespace, service.name, port.port, ns)
            parts.consumers.append(
                (
                    ns,
                    ConsumerChain(
                        chain=self._http_chain(reuse, consumer_chain, str(consumer.name)),
                        target=ChainTarget(chain=consumer_chain, ips=owned_ips, port=port.port),
                        route_config=consumer,
                    ),
                )
            )

    def _owned_ips(self, mesh: MeshSnapshot, service: Service, parts: _ServiceParts) -> tuple[str, ...]:
        """The Service's ClusterIPs that no other Service (first by reference) claims too."""
        owned = []
        for ip in service.cluster_ips:
            refs = mesh.refs(Index.SERVICE_BY_IP, ip)
            if refs and refs[0] != service.ref:
                parts.diagnostics.add(
                    Diagnostic(
                        severity=Severity.ERROR,
                        reason=Reason.CONFLICT,
                        ref=service.ref,
                        field="spec.clusterIPs",
                        message=f"ClusterIP {ip} is also claimed by {refs[0]}, which keeps it",
                    )
                )
                continue
            owned.append(ip)
        return tuple(sorted(owned))

    def _http_chain(
        self, reuse: _Reuse, chain_name: str, route_config: str
    ) -> listener_components_pb2.FilterChain:
        return reuse.get(
            BuildKind.FILTER_CHAIN,
            ("http", chain_name, route_config),
            partial(build_http_chain, chain_name, route_config),
        )

    def _route_config(
        self,
        mesh: MeshSnapshot,
        reuse: _Reuse,
        ctx: _PortContext,
        routes: tuple[Route, ...],
        *,
        consumer_namespace: str | None,
        parts: _ServiceParts,
    ) -> route_pb2.RouteConfiguration | None:
        """The port's route config for producers (`consumer_namespace` None) or for one consumer namespace
        (None when none of its routes binds this port)."""
        service, port = ctx.service, ctx.port
        bound, conflicts = attached(routes, service, port)
        parts.diagnostics.update(conflicts)
        if consumer_namespace is not None and not bound:
            return None
        backend_refs: set[ObjectRef] = set()
        for route in bound:
            backend_refs.update(backend_services(route))
        backends = tuple((ref, mesh.services.get(ref)) for ref in sorted(backend_refs))
        if not bound:
            backends = ((service.ref, service),)
        backend_policies: list[tuple[str, EffectivePolicy]] = []
        for _, backend in backends:
            if backend is None:
                continue
            for p in backend.ports:
                backend_policy, _ = self._policy(mesh, reuse, backend, p)
                lb = backend_policy.load_balancer
                if lb is not None and lb.algorithm.consistent:
                    backend_policies.append(
                        (naming.cluster(backend.namespace, backend.name, p.port), backend_policy)
                    )
        inputs = RouteInputs(
            name=naming.route_config(service.namespace, service.name, port.port, consumer_namespace),
            service=service,
            port=port,
            routes=bound,
            backends=backends,
            backend_policies=tuple(backend_policies),
            policy=ctx.policy,
            settings=self.settings,
        )
        config, diagnostics = reuse.get(BuildKind.ROUTE_CONFIG, inputs, partial(build_route_config, inputs))
        parts.diagnostics.update(diagnostics)
        return config

    # -- per-node stage -----------------------------------------------------------------------------

    def translate_node(
        self, mesh: MeshSnapshot, node: str, mesh_config: MeshConfig | None = None
    ) -> NodeConfig:
        """One node's config: the mesh-wide maps (shared objects) plus its listener and plan. The previous
        NodeConfig object itself when neither the MeshConfig nor the node's own inputs changed."""
        config = mesh_config if mesh_config is not None else self.translate_mesh(mesh)
        state = self._nodes.get(node)
        sources = _NodeSources.of(mesh)
        if state is not None and state.sources.same(sources):
            # No node, pod or namespace enrollment changed anywhere: the node's own inputs are as before.
            node_obj, workloads = state.node_obj, state.workloads
        else:
            node_obj, workloads = mesh.node(node), mesh.meshed_workloads_on(node)
        security = _security_sources(mesh)
        endpoints_at = self._endpoints_at(workloads)
        if (
            state is not None
            and state.node_obj is node_obj
            and _same_objects(state.workloads, workloads)
            and all(a is b for a, b in zip(state.security, security, strict=True))
            and state.endpoints_at == endpoints_at
        ):
            if state.mesh_config is config:
                if not state.sources.same(sources):
                    self._nodes[node] = dataclasses.replace(state, sources=sources)
                return state.config
            if _same_node_inputs(state.mesh_config, config):
                # Only shared maps the node does not build on changed (an endpoint change): point to them.
                node_config = dataclasses.replace(
                    state.config,
                    mesh=config,
                    clusters=self._node_clusters(config, state.hbone, state),
                    load_assignments=config.load_assignments,
                    service_vips=config.service_vips,
                )
                self._nodes[node] = dataclasses.replace(
                    state, sources=sources, mesh_config=config, config=node_config
                )
                return node_config
        diagnostics: set[Diagnostic] = set()
        address = node_obj.internal_ip if node_obj is not None else ""
        if not address:
            address = self.settings.fallback_envoy_address
            diagnostics.add(
                Diagnostic(
                    severity=Severity.WARNING,
                    reason=Reason.INVALID_ADDRESS,
                    ref=ObjectRef(kind=Kind.NODE, name=node),
                    field="status.addresses",
                    message=f"no InternalIP known: the outbound listener binds {address}",
                )
            )
        local_ips: dict[str, set[str]] = {}
        for w in workloads:
            local_ips.setdefault(w.namespace, set()).update(w.ips)
        selectors: list[ConsumerSelector] = []
        consumer_parts: list[tuple[ConsumerChain, ...]] = []
        for ns in sorted(local_ips):
            chains = config.consumer_chains.get(ns)
            if not chains:
                continue
            selectors.append(ConsumerSelector(namespace=ns, source_ips=tuple(sorted(local_ips[ns]))))
            consumer_parts.append(chains)
        consumer_chains = tuple(chain.from_iterable(consumer_parts))
        node_listener = self._listener(state, address, config.outbound, tuple(selectors), consumer_parts)
        hbone = self._hbone(state, mesh, address, workloads)
        if (
            state is not None
            and state.listener is node_listener
            and state.hbone is hbone
            and state.mesh_config.pods is config.pods
        ):
            listeners = state.listeners
        else:
            listeners = (
                PMap[str, listener_pb2.Listener]()
                .set(naming.OUTBOUND_LISTENER, node_listener.listener)
                .set(naming.OUTBOUND_SERVICES, node_listener.services)
            )
            for shared in config.pods:
                listeners = listeners.set(str(shared.name), shared)
            for shared in node_listener.consumers:
                listeners = listeners.set(str(shared.name), shared)
            for extra in hbone.listeners:
                listeners = listeners.set(str(extra.name), extra)

        if not consumer_chains:
            route_configs = config.route_configs
        elif (
            state is not None
            and state.mesh_config.route_configs is config.route_configs
            and _same_objects(state.consumer_parts, consumer_parts)
        ):
            route_configs = state.route_configs
        else:
            route_configs = config.route_configs
            for c in consumer_chains:
                route_configs = route_configs.set(str(c.route_config.name), c.route_config)

        plan_builds: Mapping[tuple[Workload, WorkloadMtls], plan_pb2.Workload]
        if (
            state is not None
            and _same_objects(state.workloads, workloads)
            # A plan's inbound enforcement reads PeerAuthentications, and AuthorizationPolicies and Services
            # too (which ports may take plaintext): any of them may change it.
            and all(a is b for a, b in zip(state.security, security, strict=True))
        ):
            plans, plan_builds = state.plans, state.plan_builds
        else:
            plans, plan_builds = self._plans(mesh, workloads, state.plan_builds if state is not None else {})
            if state is not None and _same_plans(state.plans, plans):
                plans = state.plans  # e.g. a policy for pods elsewhere: this node's plans are the same

        if state is not None and state.node_settings.envoy_address == address:
            node_settings = state.node_settings
        else:
            node_settings = build_node_settings(address, self.settings)

        node_diagnostics = config.diagnostics
        if diagnostics:
            node_diagnostics = tuple(sorted(diagnostics.union(config.diagnostics), key=Diagnostic.sort_key))
        node_config = NodeConfig(
            node=node,
            mesh=config,
            listeners=listeners,
            clusters=self._node_clusters(config, hbone, state),
            load_assignments=config.load_assignments,
            route_configs=route_configs,
            workloads=plans,
            service_vips=config.service_vips,
            node_settings=node_settings,
            diagnostics=node_diagnostics,
        )
        if state is not None and _same_node_config(state.config, node_config):
            node_config = state.config  # e.g. a policy for pods elsewhere: nothing of this node changed
        self._nodes[node] = _NodeState(
            sources=sources,
            mesh_config=config,
            node_obj=node_obj,
            workloads=workloads,
            consumer_parts=tuple(consumer_parts),
            listener=node_listener,
            listeners=listeners,
            route_configs=route_configs,
            plans=plans,
            plan_builds=plan_builds,
            node_settings=node_settings,
            security=security,
            endpoints_at=endpoints_at,
            hbone=hbone,
            config=node_config,
        )
        return node_config

    def _endpoints_at(self, workloads: tuple[Workload, ...]) -> tuple[frozenset[ObjectRef], ...]:
        return tuple(frozenset(self._services_by_ip.get(ip, ())) for w in workloads for ip in w.ips)

    def _hbone(
        self, state: _NodeState | None, mesh: MeshSnapshot, address: str, workloads: tuple[Workload, ...]
    ) -> NodeHbone:
        """The node's HBONE resources; the previous object while their inputs are equal."""
        identities, pods = local_inputs(
            mesh, workloads, lambda ip: self._services_by_ip.get(ip, ()), self.settings
        )
        if (
            state is not None
            and state.hbone.address == address
            and state.hbone.identities == identities
            and state.hbone.pods == pods
        ):
            return state.hbone
        self.builds[BuildKind.HBONE] += 1
        return build_node_hbone(
            address, identities, pods, self.settings, state.hbone if state is not None else None
        )

    @staticmethod
    def _node_clusters(
        config: MeshConfig, hbone: NodeHbone, state: _NodeState | None
    ) -> PMap[str, cluster_pb2.Cluster]:
        """The mesh's clusters plus the node's originate clusters (one per local identity); the previous
        map while both are the same."""
        if state is not None and state.mesh_config.clusters is config.clusters and state.hbone is hbone:
            return state.config.clusters
        clusters = config.clusters
        for c in hbone.clusters:
            clusters = clusters.set(str(c.name), c)
        return clusters

    def _plans(
        self,
        mesh: MeshSnapshot,
        workloads: tuple[Workload, ...],
        previous: Mapping[tuple[Workload, WorkloadMtls], plan_pb2.Workload],
    ) -> tuple[PMap[str, plan_pb2.Workload], dict[tuple[Workload, WorkloadMtls], plan_pb2.Workload]]:
        built: dict[tuple[Workload, WorkloadMtls], plan_pb2.Workload] = {}
        for w in workloads:
            key = (w, workload_mtls(mesh, w, self.settings.root_namespace))
            message = previous.get(key)
            if message is None:
                message = build_workload(w, self.settings.trust_domain, key[1])
                self.builds[BuildKind.WORKLOAD] += 1
            built[key] = message
        return PMap((w.uid, message) for (w, _), message in built.items()), built

    def _listener(
        self,
        state: _NodeState | None,
        address: str,
        parts: OutboundParts,
        selectors: tuple[ConsumerSelector, ...],
        consumer_parts: list[tuple[ConsumerChain, ...]],
    ) -> _NodeListener:
        """The node's own listener (rebuilt only when its address or local consumer clients change) and
        the shared internal listeners it hands to (the same objects on every node)."""
        key = _ListenerKey(address=address, port=self.settings.outbound_port, consumers=selectors)
        services = self._services_listener(parts)
        consumers = tuple(
            self._consumer_listener(s.namespace, chains)
            for s, chains in zip(selectors, consumer_parts, strict=True)
        )
        cached = state.listener if state is not None else None
        if cached is not None and cached.key == key:
            if cached.services is services and _same_objects(cached.consumers, consumers):
                return cached
            return dataclasses.replace(cached, services=services, consumers=consumers)
        listener = build_outbound_listener(
            address=address,
            port=self.settings.outbound_port,
            ports=self.settings.outbound_ports,
            consumers=selectors,
        )
        self.builds[BuildKind.LISTENER] += 1
        return _NodeListener(key=key, listener=listener, services=services, consumers=consumers)

    def _consumer_listener(self, namespace: str, chains: tuple[ConsumerChain, ...]) -> listener_pb2.Listener:
        """`outbound_consumer|<ns>` for the namespace's consumer chains: built once per chains tuple."""
        cached = self._consumer_listeners.get(namespace)
        if cached is not None and cached[0] is chains:
            return cached[1]
        listener = build_consumer_listener(namespace, [c.chain for c in chains], [c.target for c in chains])
        self.builds[BuildKind.LISTENER] += 1
        self._consumer_listeners[namespace] = (chains, listener)
        return listener

    def _services_listener(self, parts: OutboundParts) -> listener_pb2.Listener:
        """`outbound_services` for `parts`: built once, the same object for every node."""
        if self._template is not None and self._template[0] is parts:
            return self._template[1]
        listener = build_services_listener(parts.chains, destination_tree(parts.targets))
        self.builds[BuildKind.LISTENER] += 1
        self._template = (parts, listener)
        return listener


def translate_mesh(mesh: MeshSnapshot, settings: TranslateSettings | None = None) -> MeshConfig:
    """One-shot mesh-wide stage (no state kept): for tools and tests."""
    return Translator(settings).translate_mesh(mesh)


def translate_node(mesh: MeshSnapshot, node: str, settings: TranslateSettings | None = None) -> NodeConfig:
    """One-shot translation of one node (no state kept): for tools and tests."""
    return Translator(settings).translate_node(mesh, node)
