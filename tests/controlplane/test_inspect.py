"""`controlplane.inspect`: analyze_mesh and describe_pod over small models (table-driven where it helps)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from controlplane.inspect import analyze_mesh, describe_pod, membership, merge_diagnostics
from controlplane.model.authz import AuthorizationAction, AuthorizationPolicy, AuthorizationRule
from controlplane.model.diagnostics import Diagnostic, Location, Reason, Severity
from controlplane.model.endpoints import Endpoint, EndpointPort, EndpointSlice
from controlplane.model.frozenmap import FrozenMap
from controlplane.model.objects import MeshObject
from controlplane.model.peerauth import MtlsMode, PeerAuthentication
from controlplane.model.policy import PolicyTargetRef
from controlplane.model.refs import Kind, ObjectRef
from controlplane.model.service import Service
from controlplane.model.workload import PodPhase, Workload
from tests.translate.builders import (
    backend,
    endpoint_slice,
    http_port,
    http_route,
    mesh,
    namespace,
    node,
    parent,
    pod,
    policy,
    rule,
    service,
)

REVIEWS_LABELS = FrozenMap({"app": "reviews", "version": "v1"})


def reviews_pod(**changes: Any) -> Workload:
    return pod("shop", "reviews-1", "node-a", "10.0.1.5", sa="reviews", labels=REVIEWS_LABELS, **changes)


def selecting(ns: str, name: str, ip: str, selector: dict[str, str], port: int = 9080) -> Service:
    return dataclasses.replace(
        service(ns, name, ip, http_port(port, target=8080)), selector=FrozenMap(selector)
    )


def base(*extra: MeshObject, **pod_changes: Any) -> list[MeshObject]:
    return [
        namespace("shop"),
        namespace("web"),
        node("node-a", "192.168.0.1"),
        reviews_pod(**pod_changes),
        selecting("shop", "reviews", "10.96.0.10", {"app": "reviews"}),
        selecting("shop", "reviews-v1", "10.96.0.11", {"app": "reviews", "version": "v1"}),
        selecting("shop", "reviews-v2", "10.96.0.12", {"app": "reviews", "version": "v2"}),
        *extra,
    ]


def describe(*objects: MeshObject, diagnostics: tuple[Diagnostic, ...] = ()) -> dict[str, Any]:
    document = describe_pod(mesh(*objects), "shop", "reviews-1", diagnostics=diagnostics)
    assert document is not None
    return document


# -- membership ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("objects", "pod_changes", "meshed", "says"),
    [
        pytest.param([namespace("shop")], {}, True, "namespace shop is enrolled", id="enrolled"),
        pytest.param([], {}, False, "namespace shop is not known", id="no-namespace"),
        pytest.param(
            [namespace("shop", enrolled=False)], {}, False, "has no label nodemesh.io/mesh", id="not-enrolled"
        ),
        pytest.param(
            [namespace("shop")],
            {"opted_out": True},
            False,
            "opted out with label nodemesh.io/mesh=disabled",
            id="opted-out",
        ),
        pytest.param([namespace("shop")], {"host_network": True}, False, "host network", id="host-network"),
        pytest.param([namespace("shop")], {"node": ""}, False, "not scheduled", id="unscheduled"),
        pytest.param([namespace("shop")], {"ips": ()}, False, "no IP address", id="no-ip"),
        pytest.param(
            [namespace("shop")],
            {"phase": PodPhase.SUCCEEDED},
            False,
            "the pod is Succeeded: only Pending and Running",
            id="finished",
        ),
        pytest.param([namespace("shop")], {"terminating": True}, True, "terminating", id="terminating"),
    ],
)
def test_membership_says_why(
    objects: list[MeshObject], pod_changes: dict[str, Any], meshed: bool, says: str
) -> None:
    workload = reviews_pod(**pod_changes)
    is_meshed, reasons = membership(mesh(*objects, workload), workload)
    assert is_meshed is meshed
    assert any(says in r for r in reasons), reasons


def test_membership_names_a_wrong_label_value() -> None:
    ns = dataclasses.replace(namespace("shop"), labels=FrozenMap({"nodemesh.io/mesh": "yes"}))
    workload = reviews_pod()
    meshed, reasons = membership(mesh(ns, workload), workload)
    assert not meshed
    assert reasons == (
        "namespace shop is not enrolled: it has nodemesh.io/mesh=yes "
        "(enroll it with nodemesh.io/mesh=enabled)",
    )


# -- describe_pod -------------------------------------------------------------------------------------------


def test_unknown_pod_is_none() -> None:
    assert describe_pod(mesh(*base()), "shop", "nope") is None
    assert describe_pod(mesh(*base()), "web", "reviews-1") is None


def test_identity_node_and_services_by_selector_and_endpoints() -> None:
    # A selector-less Service whose hand-made slice names the pod's IP, and one whose slice targets the pod.
    manual = service("shop", "manual", "10.96.0.20", http_port(80))
    by_ip = endpoint_slice("shop", "manual", Endpoint(addresses=("10.0.1.5",)), ports=(("http", 8080),))
    by_target = dataclasses.replace(
        endpoint_slice("shop", "reviews", Endpoint(addresses=("10.0.1.5",), target=reviews_pod().ref)),
        name="reviews-xyz",
    )
    unrelated = endpoint_slice("shop", "reviews-v2", Endpoint(addresses=("10.0.1.99",)))
    document = describe(*base(manual, by_ip, by_target, unrelated))
    assert document["identity"] == "spiffe://cluster.local/ns/shop/sa/reviews"
    assert document["node"] == {"name": "node-a", "known": True, "internal_ip": "192.168.0.1"}
    assert document["pod"]["ips"] == ["10.0.1.5"] and document["pod"]["phase"] == "Running"
    assert document["mesh"]["meshed"] is True
    services = {s["ref"]: s for s in document["services"]}
    assert list(services) == ["Service/shop/manual", "Service/shop/reviews", "Service/shop/reviews-v1"]
    assert services["Service/shop/manual"]["via"] == ["endpoints"]
    assert services["Service/shop/reviews"]["via"] == ["selector", "endpoints"]
    assert services["Service/shop/reviews"]["endpoint_slices"] == ["reviews-xyz"]
    assert services["Service/shop/reviews-v1"]["via"] == ["selector"]
    assert services["Service/shop/reviews-v1"]["ports"] == [
        {"name": "http", "port": 9080, "target_port": 8080, "protocol": "HTTP"}
    ]


def test_a_slice_naming_a_missing_service() -> None:
    orphan = endpoint_slice("shop", "gone", Endpoint(addresses=("10.0.1.5",)))
    [entry] = [s for s in describe(*base(orphan))["services"] if s["name"] == "gone"]
    assert entry == {
        "ref": "Service/shop/gone",
        "namespace": "shop",
        "name": "gone",
        "via": ["endpoints"],
        "missing": True,
    }


def test_routes_it_sends_through_consumer_routes_override_producer_routes() -> None:
    producer = http_route(
        "shop", "reviews", parent("shop", "reviews", 9080), rule(backend("shop", "reviews-v1"))
    )
    other = http_route("web", "ratings", parent("web", "ratings"), rule(backend("web", "ratings")))
    ratings = selecting("web", "ratings", "10.96.1.1", {"app": "ratings"})
    # A consumer route in the pod's namespace for web/ratings, and one of web's for shop/reviews.
    consumer = http_route(
        "shop", "ratings-from-shop", parent("web", "ratings"), rule(backend("web", "ratings"))
    )
    web_consumer = http_route(
        "web", "reviews-from-web", parent("shop", "reviews"), rule(backend("shop", "reviews"))
    )
    document = describe(*base(producer, other, ratings, consumer, web_consumer))
    assert document["routes"]["outbound"] == [
        {
            "service": "Service/shop/reviews",
            "routes": [
                {
                    "ref": "HTTPRoute/shop/reviews",
                    "kind": "HTTPRoute",
                    "namespace": "shop",
                    "name": "reviews",
                    "role": "producer",
                    "ports": [9080],
                }
            ],
            "overridden": [],
        },
        {
            "service": "Service/web/ratings",
            "routes": [
                {
                    "ref": "HTTPRoute/shop/ratings-from-shop",
                    "kind": "HTTPRoute",
                    "namespace": "shop",
                    "name": "ratings-from-shop",
                    "role": "consumer",
                    "ports": [],
                }
            ],
            "overridden": ["HTTPRoute/web/ratings"],
        },
    ]
    # Traffic it receives: routes whose backends are its Services (reviews-v1 from shop/reviews; reviews
    # from web's consumer route).
    assert document["routes"]["inbound"] == [
        {"service": "Service/shop/reviews", "routes": ["HTTPRoute/web/reviews-from-web"]},
        {"service": "Service/shop/reviews-v1", "routes": ["HTTPRoute/shop/reviews"]},
    ]


def test_traffic_and_authorization_policies() -> None:
    tp = policy("shop", "reviews-lb", "reviews")
    elsewhere = policy("shop", "v2-only", "reviews-v2")
    deny = AuthorizationPolicy(
        namespace="shop",
        name="deny-web",
        action=AuthorizationAction.DENY,
        selector=FrozenMap({"app": "reviews"}),
        rules=(AuthorizationRule(),),
    )
    allow = AuthorizationPolicy(
        namespace="shop", name="by-target", target_refs=(PolicyTargetRef(name="reviews-v1"),), rules=()
    )
    mesh_wide = AuthorizationPolicy(
        namespace="nodemesh-system", name="audit-all", action=AuthorizationAction.AUDIT, rejected=False
    )
    other_pod = AuthorizationPolicy(namespace="shop", name="v2", selector=FrozenMap({"version": "v2"}))
    document = describe(*base(tp, elsewhere, deny, allow, mesh_wide, other_pod))
    assert document["traffic_policies"] == [
        {"service": "Service/shop/reviews", "policies": ["TrafficPolicy/shop/reviews-lb"]}
    ]
    assert document["authorization"] == {
        "deny": [
            {"ref": "AuthorizationPolicy/shop/deny-web", "scope": "selector", "rules": 1, "rejected": False}
        ],
        "allow": [
            {
                "ref": "AuthorizationPolicy/shop/by-target",
                "scope": "targetRefs",
                "rules": 0,
                "rejected": False,
            }
        ],
        "audit": [
            {
                "ref": "AuthorizationPolicy/nodemesh-system/audit-all",
                "scope": "mesh",
                "rules": 0,
                "rejected": False,
            }
        ],
        "default_deny": True,
        # Denied on every port (deny-web has a rule with no fields), so refused in plaintext everywhere.
        "plaintext": {"refused": True, "ports": []},
    }


def test_mtls_per_port_names_the_deciding_policy() -> None:
    strict_ns = PeerAuthentication(namespace="shop", name="strict", mode=MtlsMode.STRICT)
    port_permissive = PeerAuthentication(
        namespace="shop",
        name="metrics-open",
        selector=FrozenMap({"app": "reviews"}),
        port_modes=FrozenMap({9090: MtlsMode.PERMISSIVE}),
    )
    slice_ = EndpointSlice(
        namespace="shop",
        name="reviews-abc",
        service="reviews",
        endpoints=(Endpoint(addresses=("10.0.1.5",)),),
        ports=(EndpointPort(name="http", port=8080),),
    )
    document = describe(*base(strict_ns, port_permissive, slice_))
    assert document["mtls"] == {
        "workload": {"mode": "STRICT", "level": "Namespace", "policy": "PeerAuthentication/shop/strict"},
        "ports": [
            {
                "port": 8080,
                "mode": "STRICT",
                "level": "Namespace",
                "policy": "PeerAuthentication/shop/strict",
            },
            {
                "port": 9090,
                "mode": "PERMISSIVE",
                "level": "Port",
                "policy": "PeerAuthentication/shop/metrics-open",
            },
        ],
    }
    assert describe(*base())["mtls"]["workload"] == {"mode": "PERMISSIVE", "level": "Default", "policy": None}


def test_diagnostics_about_related_objects_only() -> None:
    route = http_route("shop", "reviews", parent("shop", "reviews"), rule(backend("shop", "reviews-v1")))
    about_route = Diagnostic(
        severity=Severity.ERROR,
        reason=Reason.BACKEND_NOT_FOUND,
        message="x",
        ref=route.ref,
        field="spec.rules[0]",
        location=Location(file="routes.yaml", document=0, line=3),
    )
    about_namespace = Diagnostic(
        severity=Severity.WARNING,
        reason=Reason.INVALID_VALUE,
        message="y",
        ref=ObjectRef(kind=Kind.NAMESPACE, name="shop"),
    )
    unrelated = Diagnostic(
        severity=Severity.ERROR,
        reason=Reason.BACKEND_NOT_FOUND,
        message="z",
        ref=ObjectRef(kind=Kind.HTTP_ROUTE, namespace="other", name="r"),
    )
    unnamed = Diagnostic(severity=Severity.ERROR, reason=Reason.INVALID_YAML, message="w")
    document = describe(*base(route), diagnostics=(unrelated, about_route, unnamed, about_namespace))
    assert document["diagnostics"] == [about_namespace.to_document(), about_route.to_document()]
    assert document["diagnostics"][1] == {
        "severity": "Error",
        "reason": "BackendNotFound",
        "object": {"kind": "HTTPRoute", "namespace": "shop", "name": "reviews"},
        "field": "spec.rules[0]",
        "message": "x",
        "location": {"file": "routes.yaml", "document": 0, "line": 3},
    }


# -- analyze_mesh -------------------------------------------------------------------------------------------


def test_analyze_reports_translation_and_security_problems() -> None:
    broken = http_route("shop", "broken", parent("shop", "reviews"), rule(backend("shop", "missing")))
    target_missing = AuthorizationPolicy(
        namespace="shop", name="ghost", target_refs=(PolicyTargetRef(name="ghost"),)
    )
    diagnostics = analyze_mesh(mesh(*base(broken, target_missing)))
    by_ref = {(str(d.ref), d.reason) for d in diagnostics}
    assert ("HTTPRoute/shop/broken", Reason.BACKEND_NOT_FOUND) in by_ref
    assert ("AuthorizationPolicy/shop/ghost", Reason.TARGET_NOT_FOUND) in by_ref
    assert list(diagnostics) == sorted(diagnostics, key=Diagnostic.sort_key)
    assert len(set(diagnostics)) == len(diagnostics)
    assert analyze_mesh(mesh(*base())) == ()


def test_merge_diagnostics_dedupes_and_sorts() -> None:
    a = Diagnostic(severity=Severity.ERROR, reason=Reason.INVALID_YAML, message="a")
    b = Diagnostic(
        severity=Severity.WARNING, reason=Reason.CONFLICT, message="b", ref=ObjectRef.service("x", "y")
    )
    assert merge_diagnostics([b, a], [a]) == tuple(sorted([a, b], key=Diagnostic.sort_key))
