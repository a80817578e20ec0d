"""Which parts of the mesh-wide config a change between two snapshots touches.

Translation of a Service (its clusters, load assignments, route configs, filter chains, VIP) reads:
the Service; its EndpointSlices; the TrafficPolicies targeting it; the other Services claiming one of its
ClusterIPs; the routes attached to it (producer and consumer); and, for those routes' backends, the
backend Services and their TrafficPolicies. A route's parent check reads the route and its parent
Services; a TrafficPolicy's target check reads the policy and its target Services. `snapshot_impact`
inverts those reads through the snapshot indexes, looking at both the old and the new version of every
changed object (a route that moves from one Service to another touches both), so its cost is the size of
the change, not of the mesh.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from controlplane.model.refs import ObjectRef
from controlplane.model.routes import Route, parent_services
from controlplane.model.snapshot import Index, MeshSnapshot


@dataclass(frozen=True, slots=True, kw_only=True)
class Impact:
    # Services whose translation may differ (including added and removed ones).
    services: frozenset[ObjectRef]
    # Routes (HTTPRoute and GRPCRoute) whose parent check may differ.
    routes: frozenset[ObjectRef]
    # TrafficPolicies whose target check may differ.
    policies: frozenset[ObjectRef]
    # Nodes that were removed (their per-node state can go).
    removed_nodes: frozenset[str]


T = TypeVar("T")


def _present(versions: Iterable[T | None]) -> Iterator[T]:
    """The old and new version of a changed object, without the side where it does not exist."""
    return (v for v in versions if v is not None)


def _routes_using(meshes: tuple[MeshSnapshot, ...], backend: ObjectRef, services: set[ObjectRef]) -> None:
    """The parents of every route that sends to `backend`: their route configs resolve it."""
    for mesh in meshes:
        for route in mesh.routes_with_backend(backend):
            services.update(parent_services(route))


def snapshot_impact(old: MeshSnapshot, new: MeshSnapshot) -> Impact:
    meshes = (old, new)
    services: set[ObjectRef] = set()
    routes: set[ObjectRef] = set()
    policies: set[ObjectRef] = set()

    for ref, *service_versions in old.services.diff(new.services).entries():
        services.add(ref)
        for service in _present(service_versions):
            for ip in service.cluster_ips:  # the owner of a shared ClusterIP may change
                for mesh in meshes:
                    services.update(mesh.refs(Index.SERVICE_BY_IP, ip))
        _routes_using(meshes, ref, services)
        for mesh in meshes:
            routes.update(mesh.refs(Index.PRODUCER_ROUTES, ref))
            routes.update(mesh.refs(Index.CONSUMER_ROUTES_BY_SERVICE, ref))
            policies.update(mesh.refs(Index.POLICIES_BY_TARGET, ref))

    for _, *slice_versions in old.endpoint_slices.diff(new.endpoint_slices).entries():
        for endpoint_slice in _present(slice_versions):
            if (owner := endpoint_slice.service_ref) is not None:
                services.add(owner)

    route_changes: list[tuple[ObjectRef, Route | None, Route | None]] = [
        *old.http_routes.diff(new.http_routes).entries(),
        *old.grpc_routes.diff(new.grpc_routes).entries(),
    ]
    for ref, old_route, new_route in route_changes:
        routes.add(ref)
        for route in (old_route, new_route):
            if route is not None:
                services.update(parent_services(route))

    for ref, *policy_versions in old.traffic_policies.diff(new.traffic_policies).entries():
        policies.add(ref)
        for policy in _present(policy_versions):
            for target in policy.target_services:
                services.add(target)
                # Route configs that hash to the target read its load-balancing policy.
                _routes_using(meshes, target, services)

    removed_nodes = frozenset(ref.name for ref in old.nodes.diff(new.nodes).removed)
    return Impact(
        services=frozenset(services),
        routes=frozenset(routes),
        policies=frozenset(policies),
        removed_nodes=removed_nodes,
    )
