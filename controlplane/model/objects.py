"""The union of every model value, and the events that change a snapshot."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.model.authz import AuthorizationPolicy
from controlplane.model.endpoints import EndpointSlice
from controlplane.model.namespace import Namespace
from controlplane.model.node import Node
from controlplane.model.peerauth import PeerAuthentication
from controlplane.model.policy import TrafficPolicy
from controlplane.model.refs import ObjectRef
from controlplane.model.routes import GRPCRoute, HTTPRoute
from controlplane.model.service import Service
from controlplane.model.workload import Workload

MeshObject = (
    Namespace
    | Node
    | Workload
    | Service
    | EndpointSlice
    | HTTPRoute
    | GRPCRoute
    | TrafficPolicy
    | AuthorizationPolicy
    | PeerAuthentication
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Upsert:
    """The object now looks like this (added or changed)."""

    obj: MeshObject

    @property
    def ref(self) -> ObjectRef:
        return self.obj.ref


@dataclass(frozen=True, slots=True, kw_only=True)
class Delete:
    ref: ObjectRef


ModelEvent = Upsert | Delete
