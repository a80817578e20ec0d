"""MeshSnapshot: indexes answer what translation asks, and any event order ends in the same snapshot."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.model.endpoints import Endpoint, EndpointSlice
from controlplane.model.frozenmap import FrozenMap
from controlplane.model.namespace import Namespace
from controlplane.model.node import Node
from controlplane.model.objects import Delete, MeshObject, ModelEvent, Upsert
from controlplane.model.policy import PolicyTargetRef, TrafficPolicy
from controlplane.model.refs import Kind, ObjectRef
from controlplane.model.routes import (
    BackendObjectRef,
    BackendRef,
    GRPCBackendRef,
    GRPCRoute,
    GRPCRouteRule,
    HTTPRoute,
    HTTPRouteRule,
    ParentRef,
    RequestMirrorFilter,
)
from controlplane.model.service import Service, ServicePort
from controlplane.model.snapshot import Index, MeshSnapshot
from controlplane.model.workload import PodPhase, Workload

ENROLLED = FrozenMap({"nodemesh.io/mesh": "enabled"})


def svc(ns: str, name: str, ip: str, *ports: int) -> Service:
    return Service(
        namespace=ns,
        name=name,
        cluster_ips=(ip,),
        ports=tuple(ServicePort(name=f"p{p}", port=p, target_port=p) for p in ports),
    )


def pod(ns: str, name: str, node: str, ip: str, sa: str = "default", **kw: Any) -> Workload:
    base = Workload(
        uid=f"uid-{name}",
        namespace=ns,
        name=name,
        node=node,
        ips=(ip,),
        service_account=sa,
        phase=PodPhase.RUNNING,
        ready=True,
    )
    return dataclasses.replace(base, **kw)


def service_parent(ns: str, name: str, port: int | None = None) -> ParentRef:
    return ParentRef(group="", kind="Service", namespace=ns, name=name, port=port)


def route(ns: str, name: str, parent: ParentRef, *backends: tuple[str, str]) -> HTTPRoute:
    return HTTPRoute(
        namespace=ns,
        name=name,
        parent_refs=(parent,),
        rules=(
            HTTPRouteRule(
                backend_refs=tuple(BackendRef(namespace=b_ns, name=b, port=80) for b_ns, b in backends)
            ),
        ),
    )


def sample() -> MeshSnapshot:
    return MeshSnapshot.from_objects(
        [
            Namespace(name="shop", labels=ENROLLED),
            Namespace(name="web", labels=ENROLLED),
            Namespace(name="legacy"),
            Node(name="node-a", internal_ip="198.19.0.1"),
            Node(name="node-b", internal_ip="198.19.0.2"),
            svc("shop", "reviews", "198.19.128.10", 80, 8080),
            svc("shop", "reviews-v1", "198.19.128.11", 80),
            pod("shop", "reviews-1", "node-a", "198.18.1.2", "reviews"),
            pod("shop", "reviews-2", "node-b", "198.18.2.2", "reviews"),
            pod("web", "front-1", "node-a", "198.18.1.3"),
            pod("legacy", "old-1", "node-a", "198.18.1.4"),
            pod(
                "web",
                "opted-out",
                "node-a",
                "198.18.1.5",
                labels=FrozenMap({"nodemesh.io/mesh": "disabled"}),
                opted_out=True,
            ),
            EndpointSlice(
                namespace="shop",
                name="reviews-abc",
                service="reviews",
                endpoints=(Endpoint(addresses=("198.18.1.2",), node_name="node-a"),),
            ),
            EndpointSlice(namespace="shop", name="reviews-def", service="reviews"),
            route("shop", "reviews", service_parent("shop", "reviews", 80), ("shop", "reviews-v1")),
            route("web", "reviews-web", service_parent("shop", "reviews"), ("shop", "reviews-v1")),
            TrafficPolicy(namespace="shop", name="tp", target_refs=(PolicyTargetRef(name="reviews-v1"),)),
        ]
    )


def test_service_lookups() -> None:
    s = sample()
    found = s.service_at("198.19.128.10", 8080)
    assert found is not None and found[0].name == "reviews" and found[1].port == 8080
    assert s.service_at("198.19.128.10", 81) is None
    assert s.service_at("198.18.1.2", 80) is None  # a pod IP is not a Service
    by_ip = s.service_by_ip("198.19.128.11")
    assert by_ip is not None and by_ip.name == "reviews-v1"
    assert s.service("shop", "reviews") is not None and s.service("shop", "nope") is None
    reviews = ObjectRef.service("shop", "reviews")
    assert [e.name for e in s.endpoint_slices_for(reviews)] == ["reviews-abc", "reviews-def"]


def test_workload_lookups_and_enrollment() -> None:
    s = sample()
    assert [w.name for w in s.workloads_on("node-a")] == ["old-1", "reviews-1", "front-1", "opted-out"]
    assert [w.name for w in s.meshed_workloads_on("node-a")] == ["reviews-1", "front-1"]
    assert s.enrolled_namespaces() == ("shop", "web")
    w = s.workload_by_ip("198.18.2.2")
    assert w is not None and w.name == "reviews-2"
    assert [w.node for w in s.workloads_with_identity("shop", "reviews")] == ["node-a", "node-b"]
    n = s.node("node-b")
    assert n is not None and n.internal_ip == "198.19.0.2"


def test_ip_reused_by_a_new_pod_prefers_the_live_one() -> None:
    s = sample().apply(
        Upsert(obj=pod("shop", "a-finished", "node-b", "198.18.2.2", phase=PodPhase.SUCCEEDED))
    )
    w = s.workload_by_ip("198.18.2.2")
    assert w is not None and w.name == "reviews-2"


def test_producer_and_consumer_routes() -> None:
    s = sample()
    reviews = ObjectRef.service("shop", "reviews")
    assert [r.name for r in s.producer_routes(reviews)] == ["reviews"]
    assert [r.name for r in s.consumer_routes("web", reviews)] == ["reviews-web"]
    assert s.consumer_routes("shop", reviews) == ()
    assert s.consumer_namespaces(reviews) == ("web",)
    v1 = ObjectRef.service("shop", "reviews-v1")
    assert [r.ref for r in s.routes_with_backend(v1)] == [
        ObjectRef(kind=Kind.HTTP_ROUTE, namespace="shop", name="reviews"),
        ObjectRef(kind=Kind.HTTP_ROUTE, namespace="web", name="reviews-web"),
    ]
    assert [p.name for p in s.traffic_policies_for(v1)] == ["tp"]
    assert s.traffic_policies_for(reviews) == ()


def test_apply_updates_indexes_and_reports_changes() -> None:
    s = sample()
    moved = svc("shop", "reviews", "198.19.128.99", 80)
    s2 = s.apply(Upsert(obj=moved))
    assert s2.changed == {moved.ref}
    assert s2.service_at("198.19.128.10", 80) is None
    assert s2.service_at("198.19.128.99", 80) is not None
    assert s.service_at("198.19.128.10", 80) is not None  # the old snapshot is untouched
    same = s2.apply(Upsert(obj=moved))
    assert same.changed == frozenset() and same == s2
    s3 = s2.apply(Delete(ref=ObjectRef(kind=Kind.NAMESPACE, name="web")))
    assert s3.enrolled_namespaces() == ("shop",)
    assert s3.apply(Delete(ref=ObjectRef(kind=Kind.NAMESPACE, name="web"))).changed == frozenset()
    batch = s.apply_all([Upsert(obj=moved), Delete(ref=ObjectRef(kind=Kind.NODE, name="node-a"))])
    assert batch.changed == {moved.ref, ObjectRef(kind=Kind.NODE, name="node-a")}
    # Unchanged kinds are shared, not copied.
    assert batch.workloads is s.workloads


def test_from_objects_equals_applying_upserts() -> None:
    s = sample()
    built = MeshSnapshot.empty().apply_all(Upsert(obj=o) for o in s)
    assert built == s
    assert len(built) == len(s) == 17


# -- property: any event sequence ends where building from the final state does -------------------

NAMESPACES = ("a", "b")
NAMES = ("x", "y", "z")
IPS = ("10.0.0.1", "10.0.0.2", "10.0.0.3")
NODES = ("n1", "n2")

names = st.sampled_from(NAMES)
nss = st.sampled_from(NAMESPACES)
ips = st.sampled_from(IPS)


@st.composite
def services(draw: st.DrawFn) -> Service:
    ports = draw(st.lists(st.sampled_from((80, 443, 8080)), max_size=2, unique=True))
    return Service(
        namespace=draw(nss),
        name=draw(names),
        cluster_ips=tuple(draw(st.lists(ips, max_size=2, unique=True))),
        ports=tuple(ServicePort(port=p, target_port=p) for p in ports),
    )


@st.composite
def workloads(draw: st.DrawFn) -> Workload:
    return Workload(
        uid=draw(st.sampled_from(("u1", "u2"))),
        namespace=draw(nss),
        name=draw(names),
        node=draw(st.sampled_from((*NODES, ""))),
        ips=tuple(draw(st.lists(ips, max_size=2, unique=True))),
        service_account=draw(st.sampled_from(("default", "sa"))),
        phase=draw(st.sampled_from(PodPhase)),
    )


@st.composite
def slices(draw: st.DrawFn) -> EndpointSlice:
    return EndpointSlice(namespace=draw(nss), name=draw(names), service=draw(st.sampled_from((*NAMES, ""))))


@st.composite
def http_routes(draw: st.DrawFn) -> HTTPRoute:
    parents = draw(st.lists(st.builds(service_parent, nss, names), max_size=2))
    backends = draw(
        st.lists(st.builds(lambda ns, n: BackendRef(namespace=ns, name=n, port=80), nss, names), max_size=2)
    )
    mirror = draw(st.booleans())
    filters = (
        (RequestMirrorFilter(backend=BackendObjectRef(namespace="a", name="z", port=80)),) if mirror else ()
    )
    return HTTPRoute(
        namespace=draw(nss),
        name=draw(names),
        parent_refs=tuple(parents),
        rules=(HTTPRouteRule(backend_refs=tuple(backends), filters=filters),),
    )


@st.composite
def grpc_routes(draw: st.DrawFn) -> GRPCRoute:
    return GRPCRoute(
        namespace=draw(nss),
        name=draw(names),
        parent_refs=(service_parent(draw(nss), draw(names)),),
        rules=(GRPCRouteRule(backend_refs=(GRPCBackendRef(namespace=draw(nss), name=draw(names), port=1),)),),
    )


mesh_objects: st.SearchStrategy[MeshObject] = st.one_of(
    st.builds(lambda n, on: Namespace(name=n, labels=ENROLLED if on else FrozenMap()), nss, st.booleans()),
    st.builds(lambda n, ip: Node(name=n, internal_ip=ip), st.sampled_from(NODES), ips),
    services(),
    workloads(),
    slices(),
    http_routes(),
    grpc_routes(),
    st.builds(
        lambda ns, n, t: TrafficPolicy(namespace=ns, name=n, target_refs=(PolicyTargetRef(name=t),)),
        nss,
        names,
        names,
    ),
)


def _deletes(objs: list[MeshObject]) -> st.SearchStrategy[ModelEvent]:
    return st.sampled_from([Delete(ref=o.ref) for o in objs])


events = st.lists(mesh_objects, min_size=1, max_size=8).flatmap(
    lambda pool: st.lists(
        st.one_of(st.builds(lambda o: Upsert(obj=o), st.sampled_from(pool)), _deletes(pool)), max_size=40
    )
)


@settings(max_examples=150, deadline=None)
@given(events)
def test_any_event_sequence_equals_building_from_the_final_state(sequence: list[ModelEvent]) -> None:
    snapshot = MeshSnapshot.empty()
    state: dict[ObjectRef, MeshObject] = {}
    for event in sequence:
        before = dict(state)
        snapshot = snapshot.apply(event)
        if isinstance(event, Upsert):
            state[event.ref] = event.obj
        else:
            state.pop(event.ref, None)
        assert snapshot.changed == ({event.ref} if before != state else set())
    final = MeshSnapshot.from_objects(state.values())
    assert snapshot == final
    assert dict(snapshot.indexes) == dict(final.indexes)
    # Empty index entries are removed, not left behind.
    for index in Index:
        assert all(len(refs) > 0 for refs in snapshot.indexes[index].values())
