"""The Kubernetes kinds the mesh reads, and what the source needs to know about each.

The list is open: a kind the model learns to convert joins by adding one `MeshKind` here (and its converter
in `controlplane.model.kube`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from controlplane.sources.kube.resources import ResourceType


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshKind:
    resource: ResourceType
    # A custom resource: its CRD may not be installed. The source then runs without it (and checks again
    # with backoff) instead of holding the other kinds up.
    custom: bool = False
    # The mesh writes this kind's status, so status-only changes (our own writes) are not changes to it.
    status_owned: bool = False


NAMESPACES: Final = ResourceType(
    group="", version="v1", plural="namespaces", kind="Namespace", namespaced=False
)
NODES: Final = ResourceType(group="", version="v1", plural="nodes", kind="Node", namespaced=False)
PODS: Final = ResourceType(group="", version="v1", plural="pods", kind="Pod")
SERVICES: Final = ResourceType(group="", version="v1", plural="services", kind="Service")
ENDPOINT_SLICES: Final = ResourceType(
    group="discovery.k8s.io", version="v1", plural="endpointslices", kind="EndpointSlice"
)
HTTP_ROUTES: Final = ResourceType(
    group="gateway.networking.k8s.io", version="v1", plural="httproutes", kind="HTTPRoute"
)
GRPC_ROUTES: Final = ResourceType(
    group="gateway.networking.k8s.io", version="v1", plural="grpcroutes", kind="GRPCRoute"
)
TRAFFIC_POLICIES: Final = ResourceType(
    group="nodemesh.io", version="v1alpha1", plural="trafficpolicies", kind="TrafficPolicy"
)
AUTHORIZATION_POLICIES: Final = ResourceType(
    group="nodemesh.io", version="v1alpha1", plural="authorizationpolicies", kind="AuthorizationPolicy"
)
PEER_AUTHENTICATIONS: Final = ResourceType(
    group="nodemesh.io", version="v1alpha1", plural="peerauthentications", kind="PeerAuthentication"
)

MESH_KINDS: Final[tuple[MeshKind, ...]] = (
    MeshKind(resource=NAMESPACES),
    MeshKind(resource=NODES),
    MeshKind(resource=PODS),
    MeshKind(resource=SERVICES),
    MeshKind(resource=ENDPOINT_SLICES),
    MeshKind(resource=HTTP_ROUTES, custom=True, status_owned=True),
    MeshKind(resource=GRPC_ROUTES, custom=True, status_owned=True),
    MeshKind(resource=TRAFFIC_POLICIES, custom=True, status_owned=True),
    MeshKind(resource=AUTHORIZATION_POLICIES, custom=True, status_owned=True),
    MeshKind(resource=PEER_AUTHENTICATIONS, custom=True, status_owned=True),
)
