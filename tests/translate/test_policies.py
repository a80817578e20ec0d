"""TrafficPolicy onto clusters and routes: balancing, hashing, limits, outlier detection, timeouts,
retries, fault injection; combining several policies; targets that do not exist."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from controlplane.model.objects import MeshObject
from controlplane.model.policy import (
    ConnectionPool,
    ConsistentHash,
    FaultAbort,
    FaultDelay,
    FaultInjection,
    HashCookie,
    LoadBalancer,
    LoadBalancerAlgorithm,
    OutlierDetection,
    PolicyTargetRef,
    RetryOn,
    RetryPolicy,
)
from controlplane.model.routes import RouteTimeouts
from controlplane.translate import naming
from controlplane.translate.config import NodeConfig
from controlplane.translate.translator import translate_node
from tests.translate.builders import (
    as_dict,
    backend,
    grpc_port,
    http_port,
    http_route,
    mesh,
    namespace,
    node,
    parent,
    policy,
    rule,
    seconds,
    service,
    tcp_port,
)

BASE: tuple[MeshObject, ...] = (
    namespace("shop"),
    node("n", "10.0.0.1"),
    service("shop", "api", "10.96.0.1", http_port(80), http_port(81, name="http-admin")),
    service("shop", "v1", "10.96.0.2", http_port(80)),
    service("shop", "db", "10.96.0.4", tcp_port(5432)),
    service("shop", "grpc", "10.96.0.5", grpc_port(9090)),
)


def _translate(*objects: MeshObject) -> NodeConfig:
    return translate_node(mesh(*BASE, *objects), "n")


def _cluster(config: NodeConfig, name: str) -> cluster_pb2.Cluster:
    return config.clusters[name]


def test_cluster_defaults() -> None:
    config = _translate()
    cluster = as_dict(_cluster(config, "shop/db:5432"))
    # Meshed endpoints go through hbone_originate with their HBONE metadata (tests/translate/test_hbone.py).
    assert cluster.pop("transport_socket")["name"] == "envoy.transport_sockets.internal_upstream"
    assert cluster == {
        "name": "shop/db:5432",
        "type": "EDS",
        "eds_cluster_config": {
            "eds_config": {"ads": {}, "resource_api_version": "V3"},
            "service_name": "shop/db:5432",
        },
        "connect_timeout": "10s",
    }
    passthrough = as_dict(_cluster(config, naming.PASSTHROUGH))
    assert (passthrough["type"], passthrough["lb_policy"]) == ("ORIGINAL_DST", "CLUSTER_PROVIDED")


def test_h2c_and_grpc_clusters_speak_http2_upstream() -> None:
    config = _translate()
    options = http_protocol_options_pb2.HttpProtocolOptions()
    grpc = _cluster(config, "shop/grpc:9090")
    assert grpc.typed_extension_protocol_options[naming.HTTP_PROTOCOL_OPTIONS].Unpack(options)
    assert options.explicit_http_config.HasField("http2_protocol_options")
    http1 = http_protocol_options_pb2.HttpProtocolOptions()
    assert (
        _cluster(config, "shop/api:80")
        .typed_extension_protocol_options[naming.HTTP_PROTOCOL_OPTIONS]
        .Unpack(http1)
    )
    assert http1.explicit_http_config.HasField("http_protocol_options")


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        (LoadBalancerAlgorithm.ROUND_ROBIN, None),  # the enum's zero value
        (LoadBalancerAlgorithm.LEAST_REQUEST, "LEAST_REQUEST"),
        (LoadBalancerAlgorithm.RANDOM, "RANDOM"),
        (LoadBalancerAlgorithm.MAGLEV, "MAGLEV"),
    ],
)
def test_lb_policy(algorithm: LoadBalancerAlgorithm, expected: str | None) -> None:
    config = _translate(policy("shop", "p", "db", load_balancer=LoadBalancer(algorithm=algorithm)))
    assert as_dict(_cluster(config, "shop/db:5432")).get("lb_policy") == expected


@pytest.mark.parametrize(
    ("consistent_hash", "hash_policy"),
    [
        (ConsistentHash(header="x-user"), {"header": {"header_name": "x-user"}}),
        (
            ConsistentHash(cookie=HashCookie(name="sticky", ttl=seconds(60), path="/")),
            {"cookie": {"name": "sticky", "ttl": "60s", "path": "/"}},
        ),
        (ConsistentHash(source_ip=True), {"connection_properties": {"source_ip": True}}),
    ],
)
def test_consistent_hashing_sets_the_cluster_lb_and_the_route_hash_policy(
    consistent_hash: ConsistentHash, hash_policy: dict[str, object]
) -> None:
    lb = LoadBalancer(
        algorithm=LoadBalancerAlgorithm.RING_HASH,
        consistent_hash=ConsistentHash(
            header=consistent_hash.header,
            cookie=consistent_hash.cookie,
            source_ip=consistent_hash.source_ip,
            minimum_ring_size=2048,
        ),
    )
    route = http_route("shop", "r", parent("shop", "api"), rule(backend("shop", "v1")))
    config = _translate(policy("shop", "p", "v1", load_balancer=lb), route)
    cluster = as_dict(_cluster(config, "shop/v1:80"))
    assert cluster["lb_policy"] == "RING_HASH"
    assert cluster["ring_hash_lb_config"] == {"minimum_ring_size": "2048"}
    api = config.route_configs["shop/api:80"]
    assert [as_dict(h) for h in api.virtual_hosts[0].routes[0].route.hash_policy] == [hash_policy]
    # The default route of the hashed Service itself hashes too.
    own = config.route_configs["shop/v1:80"]
    assert [as_dict(h) for h in own.virtual_hosts[0].routes[0].route.hash_policy] == [hash_policy]


def test_connection_pool_and_outlier_detection() -> None:
    pool = ConnectionPool(
        max_connections=10,
        max_pending_requests=20,
        max_requests=30,
        max_retries=4,
        max_requests_per_connection=100,
        max_concurrent_streams=50,
        connect_timeout=seconds(1),
        idle_timeout=seconds(300),
    )
    outlier = OutlierDetection(
        consecutive_5xx=5,
        consecutive_gateway_errors=3,
        interval=seconds(10),
        base_ejection_time=seconds(30),
        max_ejection_percent=50,
    )
    config = _translate(policy("shop", "p", "grpc", connection_pool=pool, outlier_detection=outlier))
    cluster = _cluster(config, "shop/grpc:9090")
    got = as_dict(cluster)
    assert got["connect_timeout"] == "1s"
    assert got["circuit_breakers"] == {
        "thresholds": [
            {"max_connections": 10, "max_pending_requests": 20, "max_requests": 30, "max_retries": 4}
        ]
    }
    assert got["outlier_detection"] == {
        "consecutive_5xx": 5,
        "interval": "10s",
        "base_ejection_time": "30s",
        "max_ejection_percent": 50,
        "consecutive_gateway_failure": 3,
        "enforcing_consecutive_gateway_failure": 100,
    }
    options = http_protocol_options_pb2.HttpProtocolOptions()
    cluster.typed_extension_protocol_options[naming.HTTP_PROTOCOL_OPTIONS].Unpack(options)
    assert as_dict(options) == {
        "common_http_protocol_options": {
            "idle_timeout": "300s",
            "max_requests_per_connection": 100,
            "max_connection_duration": "600s",
        },
        "explicit_http_config": {"http2_protocol_options": {"max_concurrent_streams": 50}},
    }


def test_policy_timeout_and_retries_are_defaults_for_routes() -> None:
    retries = RetryPolicy(attempts=2, per_try_timeout=seconds(1), retry_on=(RetryOn.FIVE_XX, RetryOn.RESET))
    p = policy("shop", "p", "api", timeout=seconds(7), retries=retries)
    config = _translate(p)
    (default,) = config.route_configs["shop/api:80"].virtual_hosts[0].routes
    assert as_dict(default.route) == {
        "cluster": "shop/api:80",
        "timeout": "7s",
        "retry_policy": {"retry_on": "5xx,reset", "num_retries": 2, "per_try_timeout": "1s"},
    }
    own = http_route(
        "shop",
        "r",
        parent("shop", "api"),
        rule(backend("shop", "v1"), timeouts=RouteTimeouts(request=seconds(3))),
    )
    config = _translate(p, own)
    first = config.route_configs["shop/api:80"].virtual_hosts[0].routes[0]
    assert first.route.timeout.seconds == 3  # the route's own timeout wins
    assert first.route.retry_policy.num_retries.value == 2  # no retry of its own: the policy's


def test_fault_injection_goes_on_the_virtual_host_for_the_fault_filter() -> None:
    fault = FaultInjection(
        delay=FaultDelay(fixed_delay=seconds(0.5), percentage=10),
        abort=FaultAbort(http_status=503, percentage=0.1),
    )
    config = _translate(policy("shop", "p", "api", fault=fault))
    host = config.route_configs["shop/api:80"].virtual_hosts[0]
    parsed = fault_pb2.HTTPFault()
    assert host.typed_per_filter_config[naming.FAULT_FILTER].Unpack(parsed)
    assert as_dict(parsed) == {
        "delay": {"fixed_delay": "0.500s", "percentage": {"numerator": 100000, "denominator": "MILLION"}},
        "abort": {"http_status": 503, "percentage": {"numerator": 1000, "denominator": "MILLION"}},
    }
    other = config.route_configs["shop/v1:80"].virtual_hosts[0]
    assert naming.FAULT_FILTER not in other.typed_per_filter_config


def test_port_scoped_policy_beats_whole_service_and_conflicts_are_reported() -> None:
    whole = policy("shop", "a-whole", "api", timeout=seconds(1))
    scoped = policy("shop", "b-port", PolicyTargetRef(name="api", port=81), timeout=seconds(2))
    also_whole = policy("shop", "c-whole", "api", timeout=seconds(3))
    config = _translate(whole, scoped, also_whole)
    timeouts = {
        r.name: r.virtual_hosts[0].routes[0].route.timeout.seconds
        for r in config.route_configs.values()
        if r.name.startswith("shop/api")
    }
    assert timeouts == {"shop/api:80": 1, "shop/api:81": 2}
    conflicts = {(str(d.ref), d.field) for d in config.diagnostics if d.reason == "Conflict"}
    # a-whole yields to b-port on port 81 by scope (no conflict); c-whole loses to a-whole on equal terms.
    assert conflicts == {("TrafficPolicy/shop/c-whole", "spec.timeout")}


@pytest.mark.parametrize(
    ("target", "field"),
    [
        (PolicyTargetRef(name="nope"), "spec.targetRefs[0]"),
        (PolicyTargetRef(name="api", port=9999), "spec.targetRefs[0].port"),
        (PolicyTargetRef(name="api", section_name="nope"), "spec.targetRefs[0].sectionName"),
    ],
)
def test_policy_targets_that_do_not_exist(target: PolicyTargetRef, field: str) -> None:
    config = _translate(policy("shop", "p", target, timeout=seconds(1)))
    assert [(str(d.ref), d.field, d.reason.value) for d in config.diagnostics] == [
        ("TrafficPolicy/shop/p", field, "TargetNotFound")
    ]
