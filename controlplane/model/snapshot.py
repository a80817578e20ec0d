"""The immutable mesh snapshot: every object by reference, plus the indexes translation looks things up by.

Changes cost O(log n) per event, not O(mesh size): objects and indexes live in persistent maps (`pmap.py`)
that share everything but the touched paths with the previous snapshot, and an event updates only the index
entries whose keys differ between the old and new version of its object. Every index is a function of the
object set alone (multi-valued, ties broken by sorting on query), so a snapshot does not depend on the order
of the events that built it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import cast

from controlplane.model.authz import AuthorizationPolicy
from controlplane.model.endpoints import EndpointSlice
from controlplane.model.frozenmap import FrozenMap
from controlplane.model.namespace import Namespace
from controlplane.model.node import Node
from controlplane.model.objects import Delete, MeshObject, ModelEvent, Upsert
from controlplane.model.peerauth import PeerAuthentication
from controlplane.model.pmap import PMap
from controlplane.model.policy import TrafficPolicy
from controlplane.model.refs import Kind, ObjectRef
from controlplane.model.routes import GRPCRoute, HTTPRoute, Route, backend_services, parent_services
from controlplane.model.service import Service, ServicePort
from controlplane.model.workload import PodPhase, Workload

_RefSet = PMap[ObjectRef, None]
_Index = PMap[Hashable, _RefSet]
_EMPTY_REFS: _RefSet = PMap()


class Index(StrEnum):
    SERVICE_BY_VIP = "service-by-vip"  # (cluster IP, port)
    SERVICE_BY_IP = "service-by-ip"  # cluster IP
    SLICES_BY_SERVICE = "slices-by-service"  # Service ref
    WORKLOADS_BY_NODE = "workloads-by-node"  # node name
    WORKLOADS_BY_IP = "workloads-by-ip"  # pod IP
    WORKLOADS_BY_IDENTITY = "workloads-by-identity"  # (namespace, service account)
    PRODUCER_ROUTES = "producer-routes"  # parent Service ref, route in the Service's namespace
    CONSUMER_ROUTES = "consumer-routes"  # (route namespace, parent Service ref), route elsewhere
    CONSUMER_ROUTES_BY_SERVICE = "consumer-routes-by-service"  # parent Service ref
    ROUTES_BY_BACKEND = "routes-by-backend"  # backend (or mirror) Service ref
    POLICIES_BY_TARGET = "policies-by-target"  # target Service ref
    ENROLLED_NAMESPACES = "enrolled-namespaces"  # namespace name
    WORKLOADS_BY_NAMESPACE = "workloads-by-namespace"  # namespace name
    AUTHZ_BY_NAMESPACE = "authz-by-namespace"  # AuthorizationPolicy's namespace
    AUTHZ_BY_TARGET = "authz-by-target"  # target Service ref of an AuthorizationPolicy
    PEER_AUTH_BY_NAMESPACE = "peer-auth-by-namespace"  # PeerAuthentication's namespace


_FIELD_BY_KIND: dict[str, str] = {
    Kind.NAMESPACE: "namespaces",
    Kind.NODE: "nodes",
    Kind.POD: "workloads",
    Kind.SERVICE: "services",
    Kind.ENDPOINT_SLICE: "endpoint_slices",
    Kind.HTTP_ROUTE: "http_routes",
    Kind.GRPC_ROUTE: "grpc_routes",
    Kind.TRAFFIC_POLICY: "traffic_policies",
    Kind.AUTHORIZATION_POLICY: "authorization_policies",
    Kind.PEER_AUTHENTICATION: "peer_authentications",
}


def _route_entries(route: Route) -> Iterator[tuple[Index, Hashable]]:
    for service in parent_services(route):
        if service.namespace == route.namespace:
            yield Index.PRODUCER_ROUTES, service
        else:
            yield Index.CONSUMER_ROUTES, (route.namespace, service)
            yield Index.CONSUMER_ROUTES_BY_SERVICE, service
    for backend in backend_services(route):
        yield Index.ROUTES_BY_BACKEND, backend


def _index_entries(obj: MeshObject) -> frozenset[tuple[Index, Hashable]]:
    """Every (index, key) under which `obj` is filed."""
    entries: list[tuple[Index, Hashable]] = []
    match obj:
        case Service():
            for ip in obj.cluster_ips:
                entries.append((Index.SERVICE_BY_IP, ip))
                entries.extend((Index.SERVICE_BY_VIP, (ip, port.port)) for port in obj.ports)
        case EndpointSlice():
            if (service := obj.service_ref) is not None:
                entries.append((Index.SLICES_BY_SERVICE, service))
        case Workload():
            if obj.node:
                entries.append((Index.WORKLOADS_BY_NODE, obj.node))
            entries.extend((Index.WORKLOADS_BY_IP, ip) for ip in obj.ips)
            entries.append((Index.WORKLOADS_BY_IDENTITY, obj.identity))
            entries.append((Index.WORKLOADS_BY_NAMESPACE, obj.namespace))
        case HTTPRoute() | GRPCRoute():
            entries.extend(_route_entries(obj))
        case TrafficPolicy():
            entries.extend((Index.POLICIES_BY_TARGET, target) for target in obj.target_services)
        case AuthorizationPolicy():
            entries.append((Index.AUTHZ_BY_NAMESPACE, obj.namespace))
            entries.extend((Index.AUTHZ_BY_TARGET, target) for target in obj.target_services)
        case PeerAuthentication():
            entries.append((Index.PEER_AUTH_BY_NAMESPACE, obj.namespace))
        case Namespace():
            if obj.mesh_enabled:
                entries.append((Index.ENROLLED_NAMESPACES, obj.name))
        case Node():
            pass
    return frozenset(entries)


def _empty_indexes() -> FrozenMap[Index, _Index]:
    return FrozenMap((index, PMap()) for index in Index)


def _live_first(workload: Workload) -> tuple[bool, ObjectRef]:
    """Sort key: a live pod wins an IP over a finished or terminating one that once held it."""
    live = workload.phase in (PodPhase.PENDING, PodPhase.RUNNING) and not workload.terminating
    return (not live, workload.ref)


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshSnapshot:
    """Every object of the mesh, immutable. Build with `empty()`/`from_objects()`, change with `apply()`.

    Equality compares contents and indexes, not `changed`.
    """

    namespaces: PMap[ObjectRef, Namespace]
    nodes: PMap[ObjectRef, Node]
    workloads: PMap[ObjectRef, Workload]
    services: PMap[ObjectRef, Service]
    endpoint_slices: PMap[ObjectRef, EndpointSlice]
    http_routes: PMap[ObjectRef, HTTPRoute]
    grpc_routes: PMap[ObjectRef, GRPCRoute]
    traffic_policies: PMap[ObjectRef, TrafficPolicy]
    authorization_policies: PMap[ObjectRef, AuthorizationPolicy]
    peer_authentications: PMap[ObjectRef, PeerAuthentication]
    indexes: FrozenMap[Index, _Index]
    # The references whose object was added, changed or removed by the apply() that made this snapshot
    # (every reference for from_objects()): what incremental translation has to look at.
    changed: frozenset[ObjectRef] = field(default=frozenset(), compare=False)

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def empty(cls) -> MeshSnapshot:
        return cls(
            namespaces=PMap(),
            nodes=PMap(),
            workloads=PMap(),
            services=PMap(),
            endpoint_slices=PMap(),
            http_routes=PMap(),
            grpc_routes=PMap(),
            traffic_policies=PMap(),
            authorization_policies=PMap(),
            peer_authentications=PMap(),
            indexes=_empty_indexes(),
        )

    @classmethod
    def from_objects(cls, objects: Iterable[MeshObject]) -> MeshSnapshot:
        """Bulk build in O(n) (the last of several objects with one reference wins)."""
        by_kind: dict[str, dict[ObjectRef, MeshObject]] = {kind: {} for kind in _FIELD_BY_KIND}
        for obj in objects:
            by_kind[obj.ref.kind][obj.ref] = obj
        raw: dict[Index, dict[Hashable, dict[ObjectRef, None]]] = {index: {} for index in Index}
        for objs in by_kind.values():
            for ref, obj in objs.items():
                for index, key in _index_entries(obj):
                    raw[index].setdefault(key, {})[ref] = None
        indexes: FrozenMap[Index, _Index] = FrozenMap(
            (index, PMap((key, PMap(refs)) for key, refs in entries.items()))
            for index, entries in raw.items()
        )
        fields = {_FIELD_BY_KIND[kind]: PMap(objs) for kind, objs in by_kind.items()}
        changed = frozenset(ref for objs in by_kind.values() for ref in objs)
        return cls(**fields, indexes=indexes, changed=changed)  # type: ignore[arg-type]

    def apply(self, event: ModelEvent) -> MeshSnapshot:
        """A new snapshot with the event applied; `changed` names its reference if anything changed."""
        ref = event.ref
        attr = _FIELD_BY_KIND[ref.kind]
        objects = cast("PMap[ObjectRef, MeshObject]", getattr(self, attr))
        old = objects.get(ref)
        if isinstance(event, Upsert):
            new: MeshObject | None = event.obj
            if old == new:
                return dataclasses.replace(self, changed=frozenset())
            objects = objects.set(ref, event.obj)
        else:
            new = None
            if old is None:
                return dataclasses.replace(self, changed=frozenset())
            objects = objects.delete(ref)
        old_entries = _index_entries(old) if old is not None else frozenset()
        new_entries = _index_entries(new) if new is not None else frozenset()
        indexes = self.indexes
        if old_entries != new_entries:
            updated = dict(indexes)
            for index, key in old_entries - new_entries:
                refs = updated[index].get(key, _EMPTY_REFS).delete(ref)
                updated[index] = updated[index].set(key, refs) if refs else updated[index].delete(key)
            for index, key in new_entries - old_entries:
                updated[index] = updated[index].set(key, updated[index].get(key, _EMPTY_REFS).set(ref, None))
            indexes = FrozenMap(updated)
        changes: dict[str, object] = {attr: objects}
        return dataclasses.replace(self, indexes=indexes, changed=frozenset((ref,)), **changes)  # type: ignore[arg-type]

    def apply_all(self, events: Iterable[ModelEvent]) -> MeshSnapshot:
        """Apply in order; `changed` is the union over all events."""
        snapshot = self
        changed: set[ObjectRef] = set()
        for event in events:
            snapshot = snapshot.apply(event)
            changed.update(snapshot.changed)
        return dataclasses.replace(snapshot, changed=frozenset(changed))

    # -- generic lookups ------------------------------------------------------------------------------

    def get(self, ref: ObjectRef) -> MeshObject | None:
        attr = _FIELD_BY_KIND.get(ref.kind)
        if attr is None:
            return None
        return cast("PMap[ObjectRef, MeshObject]", getattr(self, attr)).get(ref)

    def __iter__(self) -> Iterator[MeshObject]:
        for attr in _FIELD_BY_KIND.values():
            yield from cast("PMap[ObjectRef, MeshObject]", getattr(self, attr)).values()

    def __len__(self) -> int:
        return sum(
            len(cast("PMap[ObjectRef, MeshObject]", getattr(self, a))) for a in _FIELD_BY_KIND.values()
        )

    def refs(self, index: Index, key: Hashable) -> tuple[ObjectRef, ...]:
        """The references filed under `key` in `index`, sorted."""
        return tuple(sorted(self.indexes[index].get(key, _EMPTY_REFS)))

    def index_keys(self, index: Index) -> Iterator[Hashable]:
        return iter(self.indexes[index])

    # -- services and endpoints -----------------------------------------------------------------------

    def service(self, namespace: str, name: str) -> Service | None:
        return self.services.get(ObjectRef.service(namespace, name))

    def service_by_ip(self, ip: str) -> Service | None:
        """The Service owning a ClusterIP (the first by reference if, wrongly, several claim it)."""
        refs = self.refs(Index.SERVICE_BY_IP, ip)
        return self.services.get(refs[0]) if refs else None

    def service_at(self, ip: str, port: int) -> tuple[Service, ServicePort] | None:
        """GAMMA binding: the Service and port an original destination `ip:port` addresses, if any."""
        refs = self.refs(Index.SERVICE_BY_VIP, (ip, port))
        if not refs:
            return None
        service = self.services[refs[0]]
        service_port = service.port(port)
        return (service, service_port) if service_port is not None else None

    def endpoint_slices_for(self, service: ObjectRef) -> tuple[EndpointSlice, ...]:
        return tuple(self.endpoint_slices[ref] for ref in self.refs(Index.SLICES_BY_SERVICE, service))

    # -- workloads ------------------------------------------------------------------------------------

    def node(self, name: str) -> Node | None:
        return self.nodes.get(ObjectRef(kind=Kind.NODE, name=name))

    def namespace(self, name: str) -> Namespace | None:
        return self.namespaces.get(ObjectRef(kind=Kind.NAMESPACE, name=name))

    def is_enrolled(self, namespace: str) -> bool:
        return namespace in self.indexes[Index.ENROLLED_NAMESPACES]

    def enrolled_namespaces(self) -> tuple[str, ...]:
        return tuple(sorted(cast("Iterable[str]", self.indexes[Index.ENROLLED_NAMESPACES])))

    def is_meshed(self, workload: Workload) -> bool:
        """In the mesh: its namespace is enrolled and the pod can be captured (`Workload.meshable`)."""
        return workload.meshable and self.is_enrolled(workload.namespace)

    def workloads_on(self, node: str) -> tuple[Workload, ...]:
        return tuple(self.workloads[ref] for ref in self.refs(Index.WORKLOADS_BY_NODE, node))

    def meshed_workloads_on(self, node: str) -> tuple[Workload, ...]:
        return tuple(w for w in self.workloads_on(node) if self.is_meshed(w))

    def workload_by_ip(self, ip: str) -> Workload | None:
        candidates = [self.workloads[ref] for ref in self.refs(Index.WORKLOADS_BY_IP, ip)]
        return min(candidates, key=_live_first) if candidates else None

    def workloads_with_identity(self, namespace: str, service_account: str) -> tuple[Workload, ...]:
        refs = self.refs(Index.WORKLOADS_BY_IDENTITY, (namespace, service_account))
        return tuple(self.workloads[ref] for ref in refs)

    # -- routes and policies --------------------------------------------------------------------------

    def _route(self, ref: ObjectRef) -> Route:
        return self.http_routes[ref] if ref.kind == Kind.HTTP_ROUTE else self.grpc_routes[ref]

    def producer_routes(self, service: ObjectRef) -> tuple[Route, ...]:
        """Routes in the Service's own namespace attached to it: they apply to every client."""
        return tuple(self._route(ref) for ref in self.refs(Index.PRODUCER_ROUTES, service))

    def consumer_routes(self, namespace: str, service: ObjectRef) -> tuple[Route, ...]:
        """Routes in `namespace` attached to a Service elsewhere: for that namespace's clients they replace
        the producer routes."""
        return tuple(self._route(ref) for ref in self.refs(Index.CONSUMER_ROUTES, (namespace, service)))

    def consumer_namespaces(self, service: ObjectRef) -> tuple[str, ...]:
        """Namespaces with consumer routes for the Service (each needs its own route table for it)."""
        refs = self.refs(Index.CONSUMER_ROUTES_BY_SERVICE, service)
        return tuple(sorted({ref.namespace for ref in refs}))

    def routes_with_backend(self, service: ObjectRef) -> tuple[Route, ...]:
        """Routes sending or mirroring traffic to the Service (to revisit when it changes)."""
        return tuple(self._route(ref) for ref in self.refs(Index.ROUTES_BY_BACKEND, service))

    def traffic_policies_for(self, service: ObjectRef) -> tuple[TrafficPolicy, ...]:
        """Sorted by reference; translation decides how several policies on one target combine."""
        return tuple(self.traffic_policies[ref] for ref in self.refs(Index.POLICIES_BY_TARGET, service))

    # -- security (resolution against workloads: `controlplane.model.security`) --------------------------

    def workloads_in(self, namespace: str) -> tuple[Workload, ...]:
        return tuple(self.workloads[ref] for ref in self.refs(Index.WORKLOADS_BY_NAMESPACE, namespace))

    def authorization_policies_in(self, namespace: str) -> tuple[AuthorizationPolicy, ...]:
        """Every AuthorizationPolicy in the namespace, sorted by reference."""
        refs = self.refs(Index.AUTHZ_BY_NAMESPACE, namespace)
        return tuple(self.authorization_policies[ref] for ref in refs)

    def authorization_policies_targeting(self, service: ObjectRef) -> tuple[AuthorizationPolicy, ...]:
        """AuthorizationPolicies with the Service among their targetRefs (to revisit when it changes)."""
        refs = self.refs(Index.AUTHZ_BY_TARGET, service)
        return tuple(self.authorization_policies[ref] for ref in refs)

    def peer_authentications_in(self, namespace: str) -> tuple[PeerAuthentication, ...]:
        """Every PeerAuthentication in the namespace, sorted by reference."""
        refs = self.refs(Index.PEER_AUTH_BY_NAMESPACE, namespace)
        return tuple(self.peer_authentications[ref] for ref in refs)


def apply_events(snapshot: MeshSnapshot, events: Iterable[ModelEvent]) -> MeshSnapshot:
    return snapshot.apply_all(events)


__all__ = ["Delete", "Index", "MeshSnapshot", "Upsert", "apply_events"]
