"""proxy-config tables from the Envoy JSON the control plane's config dump renders."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from controlplane.xds.cache import SnapshotCache
from controlplane.xds.configdump import ConfigDump
from meshctl.output import Painter
from meshctl.proxyconfig import ConfigKind, render
from tests.xds import builders as b
from tests.xds.test_configdump import key_and_cert, tls_secret

PLAIN = Painter(enabled=False)


def document(kind: ConfigKind, *messages: Any) -> dict[str, Any]:
    cache = SnapshotCache()
    cache.set_snapshot("node-a", b.snapshot(cache.pool, *messages))
    return ConfigDump(snapshots=cache).query(node="node-a", type_name=kind.value)


def table(kind: ConfigKind, *messages: Any) -> list[list[str]]:
    return [line.split("  ") for line in render(kind, document(kind, *messages), PLAIN).splitlines()]


def cells(kind: ConfigKind, *messages: Any) -> list[list[str]]:
    return [[c.strip() for c in line if c.strip()] for line in table(kind, *messages)]


MESH = (
    b.listener("http", "r", port=8080),
    b.route("r", "c1"),
    b.eds_cluster("c1", service_name="c1-eds"),
    b.endpoints("c1-eds", 7001, 7002),
    b.static_cluster("s"),
)


def test_listeners_routes_clusters_endpoints() -> None:
    assert cells(ConfigKind.LISTENERS, *MESH) == [
        ["NAME", "ADDRESS", "FILTER CHAINS"],
        ["http", "127.0.0.1:8080", "1"],
    ]
    [header, route] = cells(ConfigKind.ROUTES, *MESH)
    assert header == ["NAME", "VIRTUAL HOSTS", "ROUTES"] and route[0] == "r" and route[2] == "1"
    assert cells(ConfigKind.CLUSTERS, *MESH) == [
        ["NAME", "TYPE", "LB", "EDS NAME"],
        ["c1", "EDS", "ROUND_ROBIN", "c1-eds"],
        ["s", "STATIC", "ROUND_ROBIN", "-"],
    ]
    assert cells(ConfigKind.ENDPOINTS, *MESH) == [
        ["CLUSTER", "ENDPOINT", "HEALTH", "LOCALITY"],
        ["c1-eds", "127.0.0.1:7001", "UNKNOWN", "-"],
        ["c1-eds", "127.0.0.1:7002", "UNKNOWN", "-"],
    ]


def test_cluster_lb_and_endpoint_health_and_locality() -> None:
    cluster = b.eds_cluster("c1")
    cluster.lb_policy = cluster_pb2.Cluster.LEAST_REQUEST
    assignment = b.endpoints("c1", 7001)
    assignment.endpoints[0].locality.region = "eu"
    assignment.endpoints[0].locality.zone = "eu-1a"
    assignment.endpoints[0].lb_endpoints[0].health_status = health_check_pb2.HEALTHY
    assert cells(ConfigKind.CLUSTERS, cluster, assignment)[1] == ["c1", "EDS", "LEAST_REQUEST", "c1"]
    assert cells(ConfigKind.ENDPOINTS, cluster, assignment)[1] == [
        "c1",
        "127.0.0.1:7001",
        "HEALTHY",
        "eu/eu-1a",
    ]


def test_secrets_show_identity_serial_expiry_and_no_key() -> None:
    key_pem, cert_pem = key_and_cert("spiffe://cluster.local/ns/shop/sa/cart")
    bundle = secret_pb2.Secret(name="ROOTCA")
    bundle.validation_context.trusted_ca.inline_bytes = cert_pem
    doc = document(
        ConfigKind.SECRETS, tls_secret("spiffe://cluster.local/ns/shop/sa/cart", key_pem, cert_pem), bundle
    )
    text = render(ConfigKind.SECRETS, doc, PLAIN)
    rows = [[c.strip() for c in line.split("  ") if c.strip()] for line in text.splitlines()]
    assert rows[0] == ["NAME", "TYPE", "IDENTITY", "SERIAL", "NOT AFTER"]
    assert rows[1][:4] == ["ROOTCA", "trust bundle", "spiffe://cluster.local/ns/shop/sa/cart", "1234abcd"]
    assert rows[2][:4] == [
        "spiffe://cluster.local/ns/shop/sa/cart",
        "certificate",
        "spiffe://cluster.local/ns/shop/sa/cart",
        "1234abcd",
    ]
    assert rows[2][4].endswith("Z") and len(rows[2][4]) == len("2026-01-01T00:00:00Z")
    assert "PRIVATE KEY" not in text


def test_unrenderable_resources_are_listed() -> None:
    doc = {"resources": [{"name": "x", "version": "1", "error": "cannot render: no descriptor"}]}
    assert render(ConfigKind.CLUSTERS, doc, PLAIN).splitlines()[-1] == "x: cannot render: no descriptor"
