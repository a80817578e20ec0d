"""Small builders of model objects for translation tests (model values, not Kubernetes JSON)."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from controlplane.model.duration import Duration
from controlplane.model.endpoints import Endpoint, EndpointPort, EndpointSlice
from controlplane.model.frozenmap import FrozenMap
from controlplane.model.namespace import Namespace
from controlplane.model.node import Node
from controlplane.model.objects import MeshObject
from controlplane.model.policy import PolicyTargetRef, TrafficPolicy
from controlplane.model.routes import (
    BackendRef,
    GRPCBackendRef,
    GRPCRoute,
    GRPCRouteMatch,
    GRPCRouteRule,
    HTTPRoute,
    HTTPRouteFilter,
    HTTPRouteMatch,
    HTTPRouteRule,
    ParentRef,
    PathMatch,
    PathMatchType,
    RouteRetry,
    RouteTimeouts,
)
from controlplane.model.service import Service, ServicePort
from controlplane.model.snapshot import MeshSnapshot
from controlplane.model.workload import PodPhase, Workload

ENROLLED = FrozenMap({"nodemesh.io/mesh": "enabled"})


def namespace(name: str, *, enrolled: bool = True) -> Namespace:
    return Namespace(name=name, labels=ENROLLED if enrolled else FrozenMap())


def node(name: str, ip: str = "", zone: str = "") -> Node:
    return Node(name=name, internal_ip=ip, zone=zone)


def http_port(
    port: int, name: str = "http", target: int | str | None = None, app: str | None = None
) -> ServicePort:
    return ServicePort(
        name=name, port=port, target_port=target if target is not None else port, app_protocol=app
    )


def tcp_port(port: int, name: str = "tcp", target: int | str | None = None) -> ServicePort:
    return ServicePort(name=name, port=port, target_port=target if target is not None else port)


def grpc_port(port: int, name: str = "grpc") -> ServicePort:
    return ServicePort(name=name, port=port, target_port=port)


def service(ns: str, name: str, ip: str | None, *ports: ServicePort) -> Service:
    return Service(namespace=ns, name=name, cluster_ips=(ip,) if ip else (), ports=ports)


def pod(ns: str, name: str, node_name: str, ip: str, sa: str = "default", **changes: Any) -> Workload:
    values: dict[str, Any] = {
        "uid": f"uid-{ns}-{name}",
        "namespace": ns,
        "name": name,
        "node": node_name,
        "ips": (ip,),
        "service_account": sa,
        "phase": PodPhase.RUNNING,
        "ready": True,
    }
    values.update(changes)
    return Workload(**values)


def endpoint(
    ip: str, *, ready: bool = True, serving: bool | None = None, zone: str = "", node_name: str = ""
) -> Endpoint:
    return Endpoint(
        addresses=(ip,),
        ready=ready,
        serving=ready if serving is None else serving,
        terminating=not ready and bool(serving),
        zone=zone,
        node_name=node_name,
    )


def endpoint_slice(
    ns: str,
    svc: str,
    *endpoints: Endpoint,
    ports: tuple[tuple[str, int], ...] = (("http", 8080),),
    name: str = "",
) -> EndpointSlice:
    return EndpointSlice(
        namespace=ns,
        name=name or f"{svc}-abc",
        service=svc,
        endpoints=endpoints,
        ports=tuple(EndpointPort(name=n, port=p) for n, p in ports),
    )


def parent(ns: str, name: str, port: int | None = None, section: str | None = None) -> ParentRef:
    return ParentRef(group="", kind="Service", namespace=ns, name=name, port=port, section_name=section)


def backend(ns: str, name: str, port: int | None = 80, weight: int = 1, **changes: Any) -> BackendRef:
    return BackendRef(namespace=ns, name=name, port=port, weight=weight, **changes)


def prefix(value: str, **changes: Any) -> HTTPRouteMatch:
    return HTTPRouteMatch(path=PathMatch(type=PathMatchType.PATH_PREFIX, value=value), **changes)


def exact(value: str, **changes: Any) -> HTTPRouteMatch:
    return HTTPRouteMatch(path=PathMatch(type=PathMatchType.EXACT, value=value), **changes)


def regex(value: str, **changes: Any) -> HTTPRouteMatch:
    return HTTPRouteMatch(path=PathMatch(type=PathMatchType.REGULAR_EXPRESSION, value=value), **changes)


def rule(
    *backends: BackendRef,
    matches: tuple[HTTPRouteMatch, ...] = (HTTPRouteMatch(),),
    filters: tuple[HTTPRouteFilter, ...] = (),
    timeouts: RouteTimeouts | None = None,
    retry: RouteRetry | None = None,
) -> HTTPRouteRule:
    return HTTPRouteRule(
        matches=matches, backend_refs=backends, filters=filters, timeouts=timeouts, retry=retry
    )


def http_route(
    ns: str, name: str, parents: ParentRef | tuple[ParentRef, ...], *rules: HTTPRouteRule, created: str = ""
) -> HTTPRoute:
    return HTTPRoute(
        namespace=ns,
        name=name,
        parent_refs=parents if isinstance(parents, tuple) else (parents,),
        rules=rules,
        creation_timestamp=created,
    )


def grpc_route(
    ns: str,
    name: str,
    parents: ParentRef,
    *rules: GRPCRouteRule,
    created: str = "",
) -> GRPCRoute:
    return GRPCRoute(namespace=ns, name=name, parent_refs=(parents,), rules=rules, creation_timestamp=created)


def grpc_rule(*backends: GRPCBackendRef, matches: tuple[GRPCRouteMatch, ...] = ()) -> GRPCRouteRule:
    return GRPCRouteRule(matches=matches, backend_refs=backends)


def grpc_backend(ns: str, name: str, port: int = 9090, weight: int = 1) -> GRPCBackendRef:
    return GRPCBackendRef(namespace=ns, name=name, port=port, weight=weight)


def policy(ns: str, name: str, *targets: str | PolicyTargetRef, **spec: Any) -> TrafficPolicy:
    refs = tuple(t if isinstance(t, PolicyTargetRef) else PolicyTargetRef(name=t) for t in targets)
    return TrafficPolicy(namespace=ns, name=name, target_refs=refs, **spec)


def seconds(value: float) -> Duration:
    return Duration(nanoseconds=int(value * 1e9))


def mesh(*objects: MeshObject) -> MeshSnapshot:
    return MeshSnapshot.from_objects(objects)


def as_dict(message: Message) -> dict[str, Any]:
    """A message as proto3 JSON (the names Envoy's docs use), for readable assertions."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)
