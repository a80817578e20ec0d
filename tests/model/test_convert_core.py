"""Conversion of core kinds from recorded API JSON."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.model.diagnostics import Reason, Severity
from controlplane.model.endpoints import AddressType, EndpointSlice
from controlplane.model.kube import convert
from controlplane.model.namespace import Namespace
from controlplane.model.node import Node
from controlplane.model.refs import Kind, ObjectRef
from controlplane.model.service import L7Protocol, Protocol, Service
from controlplane.model.workload import PodPhase, Workload
from tests.model.builders import fixture, with_path


def test_pod_fixture_becomes_workload() -> None:
    result = convert(fixture("pod.json"))
    assert result.diagnostics == ()
    w = result.obj
    assert isinstance(w, Workload)
    assert w.ref == ObjectRef(kind=Kind.POD, namespace="shop", name="reviews-v1-7d8f9c6b5-x2k4q")
    assert w.uid == "5f0c2a7e-1d3b-4b8e-a0f4-7c9d2e6b1a35"
    assert w.node == "node-b"
    assert w.ips == ("198.18.2.7", "fd00:10:244:2::7")
    assert w.service_account == "bookinfo-reviews"
    assert w.identity == ("shop", "bookinfo-reviews")
    assert w.phase is PodPhase.RUNNING
    assert w.ready and w.meshable and not w.opted_out and not w.host_network and not w.terminating
    assert w.labels["version"] == "v1"


POD_VARIANTS: list[tuple[str, Any, str, object]] = [
    ("spec.hostNetwork", True, "host_network", True),
    ("status.phase", "Succeeded", "phase", PodPhase.SUCCEEDED),
    ("status.conditions", [], "ready", False),
    ("metadata.deletionTimestamp", "2026-11-20T10:00:00Z", "terminating", True),
    ("spec.serviceAccountName", ..., "service_account", "bookinfo-reviews"),  # falls back to serviceAccount
    ("spec.nodeName", ..., "node", ""),
]


@pytest.mark.parametrize(("path", "value", "attr", "expected"), POD_VARIANTS)
def test_pod_variants(path: str, value: Any, attr: str, expected: object) -> None:
    result = convert(with_path(fixture("pod.json"), path, value))
    assert isinstance(result.obj, Workload), result.diagnostics
    assert getattr(result.obj, attr) == expected


def test_pod_opt_out_label_and_meshable() -> None:
    pod = fixture("pod.json")
    pod["metadata"]["labels"]["nodemesh.io/mesh"] = "disabled"
    w = convert(pod).obj
    assert isinstance(w, Workload)
    assert w.opted_out and not w.meshable
    del pod["status"]["podIPs"]
    del pod["status"]["podIP"]
    w = convert(pod).obj
    assert isinstance(w, Workload) and w.ips == () and not w.meshable


def test_pod_ip_falls_back_to_pod_ip_and_bad_ip_is_an_error() -> None:
    pod = with_path(fixture("pod.json"), "status.podIPs", ...)
    w = convert(pod).obj
    assert isinstance(w, Workload) and w.ips == ("198.18.2.7",)
    bad = convert(with_path(fixture("pod.json"), "status.podIPs[1].ip", "not-an-ip"))
    assert bad.obj is None
    assert [(d.field, d.reason) for d in bad.diagnostics] == [("status.podIPs[1].ip", Reason.INVALID_ADDRESS)]


def test_service_fixture_ports_and_protocols() -> None:
    result = convert(fixture("service.json"))
    assert result.diagnostics == ()
    s = result.obj
    assert isinstance(s, Service)
    assert s.cluster_ips == ("198.19.128.10",)
    assert not s.headless
    assert s.selector is not None and dict(s.selector) == {"app": "reviews"}
    by_name = {p.name: p for p in s.ports}
    assert by_name["http"].target_port == "http"
    assert by_name["grpc-api"].target_port == 9090
    assert {name: p.l7_protocol for name, p in by_name.items()} == {
        "http": L7Protocol.HTTP,
        "grpc-api": L7Protocol.GRPC,
        "admin": L7Protocol.TCP,
        "stream": L7Protocol.H2C,
        "dns": L7Protocol.TCP,
    }
    assert by_name["dns"].protocol is Protocol.UDP


def test_headless_service_and_missing_selector() -> None:
    svc = with_path(fixture("service.json"), "spec.clusterIP", "None")
    svc = with_path(svc, "spec.clusterIPs", ["None"])
    svc = with_path(svc, "spec.selector", ...)
    s = convert(svc).obj
    assert isinstance(s, Service)
    assert s.headless and s.cluster_ips == ()
    assert s.selector is None


@pytest.mark.parametrize(
    ("path", "value", "field", "reason"),
    [
        ("spec.ports[0].port", 70000, "spec.ports[0].port", Reason.OUT_OF_RANGE),
        ("spec.ports[0].port", "80", "spec.ports[0].port", Reason.WRONG_TYPE),
        ("spec.ports[0].protocol", "QUIC", "spec.ports[0].protocol", Reason.UNSUPPORTED_VALUE),
        ("spec.clusterIPs", ["10.0.0.300"], "spec.clusterIPs[0]", Reason.INVALID_ADDRESS),
        ("spec.type", "Headless", "spec.type", Reason.UNSUPPORTED_VALUE),
        ("spec.ports[1].port", 9080, "spec.ports[1].port", Reason.INVALID_VALUE),
        ("metadata.name", "Reviews_Svc", "metadata.name", Reason.INVALID_NAME),
        ("metadata", ..., "metadata", Reason.MISSING_FIELD),
    ],
)
def test_service_errors(path: str, value: Any, field: str, reason: Reason) -> None:
    result = convert(with_path(fixture("service.json"), path, value))
    assert result.obj is None
    assert [(d.field, d.reason, d.severity) for d in result.diagnostics] == [(field, reason, Severity.ERROR)]


def test_endpoint_slice_fixture_with_condition_defaults() -> None:
    result = convert(fixture("endpointslice.json"))
    assert result.diagnostics == ()
    es = result.obj
    assert isinstance(es, EndpointSlice)
    assert es.service == "reviews" and es.service_ref == ObjectRef.service("shop", "reviews")
    assert es.address_type is AddressType.IPV4
    ready, draining, bare = es.endpoints
    assert (ready.ready, ready.serving, ready.terminating, ready.node_name, ready.zone) == (
        True,
        True,
        False,
        "node-b",
        "zone-b",
    )
    assert ready.target == ObjectRef(kind=Kind.POD, namespace="shop", name="reviews-v1-7d8f9c6b5-x2k4q")
    assert (draining.ready, draining.serving, draining.terminating) == (False, True, True)
    # Missing conditions take the API's defaults: ready and serving, not terminating.
    assert (bare.ready, bare.serving, bare.terminating, bare.target) == (True, True, False, None)
    assert [(p.name, p.port, p.app_protocol) for p in es.ports] == [
        ("http", 9080, None),
        ("grpc-api", 9090, "grpc"),
    ]


def test_endpoint_slice_bad_address_type() -> None:
    result = convert(with_path(fixture("endpointslice.json"), "addressType", "IPv5"))
    assert result.obj is None
    assert [d.field for d in result.diagnostics] == ["addressType"]


def test_node_and_namespace_fixtures() -> None:
    node = convert(fixture("node.json")).obj
    assert isinstance(node, Node)
    # The InternalIP, not the ExternalIP listed before it.
    assert (node.name, node.internal_ip, node.zone) == ("node-b", "198.19.0.2", "zone-b")
    ns = convert(fixture("namespace.json")).obj
    assert isinstance(ns, Namespace) and ns.mesh_enabled
    ns2 = convert(
        with_path(fixture("namespace.json"), "metadata.labels", {"nodemesh.io/mesh": "disabled"})
    ).obj
    assert isinstance(ns2, Namespace) and not ns2.mesh_enabled


@pytest.mark.parametrize(
    "obj",
    [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
        {"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TCPRoute", "metadata": {"name": "x"}},
    ],
)
def test_other_kinds_are_ignored_quietly(obj: dict[str, Any]) -> None:
    result = convert(obj)
    assert result.ignored and result.obj is None


@pytest.mark.parametrize(
    "obj", [["a list"], "text", 42, {"kind": "Service"}, {"apiVersion": "v1", "kind": ""}]
)
def test_not_an_object(obj: object) -> None:
    result = convert(obj)
    assert result.obj is None
    assert [d.reason for d in result.diagnostics] == [Reason.NOT_AN_OBJECT]


def test_unsupported_version_of_a_known_kind() -> None:
    result = convert({"apiVersion": "nodemesh.io/v1", "kind": "TrafficPolicy", "metadata": {"name": "x"}})
    assert result.ref == ObjectRef(kind=Kind.TRAFFIC_POLICY, namespace="default", name="x")
    assert [d.reason for d in result.diagnostics] == [Reason.UNSUPPORTED_VERSION]


def test_default_namespace_applies_to_namespaced_kinds_only() -> None:
    svc = with_path(fixture("service.json"), "metadata.namespace", ...)
    s = convert(svc, default_namespace="team-a").obj
    assert isinstance(s, Service) and s.namespace == "team-a"
    node = convert(fixture("node.json"), default_namespace="team-a").obj
    assert isinstance(node, Node) and node.ref.namespace == ""


def test_endpoint_port_for_service_port() -> None:
    es = convert(fixture("endpointslice.json")).obj
    svc = convert(fixture("service.json")).obj
    assert isinstance(es, EndpointSlice) and isinstance(svc, Service)
    assert [es.port_for(p) for p in svc.ports] == [9080, 9090, None, None, None]
