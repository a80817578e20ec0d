"""What translation produces: the mesh-wide stage (`MeshConfig`) and one node's config (`NodeConfig`).

Resources are persistent maps by resource name (`PMap`), so a new config shares every unchanged entry (the
very same message objects) with the previous one, and `changed_since` finds what differs in O(changes x
log n) by skipping the shared subtrees. A consumer (the xDS cache) updates its per-node snapshots from
`changed_since` instead of re-reading every resource.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final, TypeVar, cast

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message

from controlplane.model.diagnostics import Diagnostic
from controlplane.model.pmap import PMap
from controlplane.translate import naming
from controlplane.translate.listener import ChainTarget
from protos.nodemesh.v1alpha1 import plan_pb2

M = TypeVar("M", bound=Message)


class ResourceKind(StrEnum):
    """The resource types a NodeConfig holds (the app maps each to its xDS type URL)."""

    LISTENER = "listener"
    CLUSTER = "cluster"
    LOAD_ASSIGNMENT = "load_assignment"
    ROUTE_CONFIG = "route_config"
    WORKLOAD = "workload"
    SERVICE_VIP = "service_vip"
    NODE_SETTINGS = "node_settings"


@dataclass(frozen=True, slots=True, kw_only=True)
class KindChanges:
    """Names of one resource kind that are new or rebuilt (`changed`), and names that are gone.

    A rebuilt resource may serialize to the same bytes as before (its inputs changed in a way that did not
    show); the consumer's version hash settles that.
    """

    changed: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.changed or self.removed)


_NO_CHANGES = KindChanges()


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigChanges:
    """What differs from a previous config, per resource kind; kinds without changes are absent."""

    kinds: Mapping[ResourceKind, KindChanges]

    def of(self, kind: ResourceKind) -> KindChanges:
        return self.kinds.get(kind, _NO_CHANGES)

    def __bool__(self) -> bool:
        return bool(self.kinds)


def _kind_changes(previous: PMap[str, M] | None, current: PMap[str, M]) -> KindChanges:
    if previous is current:
        return _NO_CHANGES
    diff = (previous if previous is not None else PMap[str, M]()).diff(current)
    return KindChanges(changed=frozenset((*diff.added, *diff.changed)), removed=frozenset(diff.removed))


def _config_changes(pairs: Iterable[tuple[ResourceKind, KindChanges]]) -> ConfigChanges:
    return ConfigChanges(kinds=MappingProxyType({kind: c for kind, c in pairs if c}))


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class OutboundParts:
    """The node-independent part of the outbound listener: producer chains and their matcher. Kept as the
    same object while its content is unchanged, so nodes' listeners are rebuilt only when it changes."""

    chains: tuple[listener_components_pb2.FilterChain, ...]
    targets: tuple[ChainTarget, ...]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ConsumerChain:
    chain: listener_components_pb2.FilterChain
    target: ChainTarget
    route_config: route_pb2.RouteConfiguration


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class MeshConfig:
    """Everything that is the same for every node, each resource map keyed by resource name."""

    clusters: PMap[str, cluster_pb2.Cluster]
    load_assignments: PMap[str, endpoint_pb2.ClusterLoadAssignment]
    # Producer route configs (every client outside a consumer namespace uses them).
    route_configs: PMap[str, route_pb2.RouteConfiguration]
    # Per consumer namespace: the chains and route configs its clients get instead, sorted by chain name.
    # A namespace's tuple stays the same object while its content is unchanged.
    consumer_chains: PMap[str, tuple[ConsumerChain, ...]]
    outbound: OutboundParts
    # `outbound_pods` and `outbound_pod_nodes`: the meshed pods' IPs and how to tunnel to each (the same
    # listeners on every node).
    pods: tuple[listener_pb2.Listener, ...]
    service_vips: PMap[str, plan_pb2.ServiceVip]
    diagnostics: tuple[Diagnostic, ...]
    # The last changed_since answer: every node asks the same question after a change.
    _memo: dict[str, tuple[MeshConfig | None, ConfigChanges]] = field(
        default_factory=dict, init=False, repr=False
    )

    def changed_since(self, previous: MeshConfig | None) -> ConfigChanges:
        """The mesh-wide resources (clusters, load assignments, producer route configs, service VIPs) that
        differ from `previous` (every one when None). Listeners are per node: see NodeConfig."""
        memo = self._memo.get("last")
        if memo is not None and memo[0] is previous:
            return memo[1]
        changes = _changes(previous, self, _MESH_MAPS)
        self._memo["last"] = (previous, changes)
        return changes


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NodeConfig:
    """One node's Envoy resources and agent plan, each keyed by resource name.

    The mesh-wide maps are the MeshConfig's own objects (shared by every node), so building a NodeConfig
    copies nothing; `route_configs` adds the node's consumer route configs to the producer map.
    """

    node: str
    # The MeshConfig this node's config was made from (its maps are shared with it).
    mesh: MeshConfig
    listeners: PMap[str, listener_pb2.Listener]
    clusters: PMap[str, cluster_pb2.Cluster]
    load_assignments: PMap[str, endpoint_pb2.ClusterLoadAssignment]
    route_configs: PMap[str, route_pb2.RouteConfiguration]
    # By pod uid (the plan's resource name).
    workloads: PMap[str, plan_pb2.Workload]
    service_vips: PMap[str, plan_pb2.ServiceVip]
    node_settings: plan_pb2.NodeSettings
    # The mesh's diagnostics plus this node's own.
    diagnostics: tuple[Diagnostic, ...]

    def resources(self, kind: ResourceKind) -> Mapping[str, Message]:
        """The node's resources of one kind by name (node settings: one resource, `naming.NODE_SETTINGS`)."""
        match kind:
            case ResourceKind.LISTENER:
                return self.listeners
            case ResourceKind.CLUSTER:
                return self.clusters
            case ResourceKind.LOAD_ASSIGNMENT:
                return self.load_assignments
            case ResourceKind.ROUTE_CONFIG:
                return self.route_configs
            case ResourceKind.WORKLOAD:
                return self.workloads
            case ResourceKind.SERVICE_VIP:
                return self.service_vips
            case ResourceKind.NODE_SETTINGS:
                return MappingProxyType({naming.NODE_SETTINGS: self.node_settings})

    def changed_since(self, previous: NodeConfig | None) -> ConfigChanges:
        """What differs from `previous` (every resource when None), per kind."""
        if previous is self:
            return _config_changes(())
        own = dict(_NODE_MAPS)
        shared: list[tuple[ResourceKind, KindChanges]] = []
        if previous is not None:
            # Maps that are both nodes' MeshConfig maps: the MeshConfig's (memoized) answer holds for them.
            for kind, attr in _MESH_MAPS.items():
                if getattr(self, attr) is getattr(self.mesh, attr) and getattr(previous, attr) is getattr(
                    previous.mesh, attr
                ):
                    shared.append((kind, self.mesh.changed_since(previous.mesh).of(kind)))
                    del own[kind]
        changes = [*shared, *_changes(previous, self, own).kinds.items()]
        if previous is None or previous.node_settings is not self.node_settings:
            changes.append(
                (ResourceKind.NODE_SETTINGS, KindChanges(changed=frozenset((naming.NODE_SETTINGS,))))
            )
        return _config_changes(changes)


# The resource maps of each config type, by kind (attribute names).
_MESH_MAPS: Final = {
    ResourceKind.CLUSTER: "clusters",
    ResourceKind.LOAD_ASSIGNMENT: "load_assignments",
    ResourceKind.ROUTE_CONFIG: "route_configs",
    ResourceKind.SERVICE_VIP: "service_vips",
}
_NODE_MAPS: Final = {
    ResourceKind.LISTENER: "listeners",
    **_MESH_MAPS,
    ResourceKind.WORKLOAD: "workloads",
}


def _changes(
    previous: MeshConfig | NodeConfig | None,
    current: MeshConfig | NodeConfig,
    maps: Mapping[ResourceKind, str],
) -> ConfigChanges:
    def resource_map(config: MeshConfig | NodeConfig, attr: str) -> PMap[str, Message]:
        return cast("PMap[str, Message]", getattr(config, attr))

    return _config_changes(
        (
            kind,
            _kind_changes(
                resource_map(previous, attr) if previous is not None else None, resource_map(current, attr)
            ),
        )
        for kind, attr in maps.items()
    )
