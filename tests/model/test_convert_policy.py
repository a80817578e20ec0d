"""TrafficPolicy conversion, and its agreement with the CRD in manifests/crds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.model.diagnostics import Reason, Severity
from controlplane.model.duration import Duration
from controlplane.model.kube import convert
from controlplane.model.kube.policy import FIELDS
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
    TrafficPolicy,
)
from controlplane.model.refs import ObjectRef
from tests.model.builders import traffic_policy, with_path
from tests.model.crdschema import violations

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "manifests/crds/nodemesh.io_trafficpolicies.yaml"


def _crd() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return data


def _schema() -> dict[str, Any]:
    (version,) = _crd()["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


FULL_SPEC: dict[str, Any] = {
    "targetRefs": [
        {"group": "", "kind": "Service", "name": "reviews"},
        {"group": "", "kind": "Service", "name": "ratings", "sectionName": "grpc"},
    ],
    "loadBalancer": {
        "algorithm": "RING_HASH",
        "consistentHash": {"cookie": {"name": "session", "ttl": "1h", "path": "/"}, "minimumRingSize": 1024},
    },
    "connectionPool": {
        "maxConnections": 100,
        "maxPendingRequests": 10,
        "maxRequests": 1000,
        "maxRetries": 3,
        "maxRequestsPerConnection": 0,
        "maxConcurrentStreams": 128,
        "connectTimeout": "250ms",
        "idleTimeout": "1h",
    },
    "outlierDetection": {
        "consecutive5xx": 5,
        "consecutiveGatewayErrors": 3,
        "interval": "10s",
        "baseEjectionTime": "30s",
        "maxEjectionPercent": 50,
    },
    "timeout": "15s",
    "retries": {"attempts": 3, "perTryTimeout": "1.5s", "retryOn": ["5xx", "reset", "unavailable"]},
    "fault": {
        "delay": {"fixedDelay": "5s", "percentage": 0.1},
        "abort": {"httpStatus": 503, "percentage": 5},
    },
}


def test_full_policy() -> None:
    result = convert(traffic_policy(**FULL_SPEC))
    assert [str(d) for d in result.diagnostics] == []
    assert result.obj == TrafficPolicy(
        namespace="shop",
        name="reviews",
        generation=2,
        target_refs=(PolicyTargetRef(name="reviews"), PolicyTargetRef(name="ratings", section_name="grpc")),
        load_balancer=LoadBalancer(
            algorithm=LoadBalancerAlgorithm.RING_HASH,
            consistent_hash=ConsistentHash(
                cookie=HashCookie(name="session", ttl=Duration.of(hours=1), path="/"), minimum_ring_size=1024
            ),
        ),
        connection_pool=ConnectionPool(
            max_connections=100,
            max_pending_requests=10,
            max_requests=1000,
            max_retries=3,
            max_requests_per_connection=0,
            max_concurrent_streams=128,
            connect_timeout=Duration.of(milliseconds=250),
            idle_timeout=Duration.of(hours=1),
        ),
        outlier_detection=OutlierDetection(
            consecutive_5xx=5,
            consecutive_gateway_errors=3,
            interval=Duration.of(seconds=10),
            base_ejection_time=Duration.of(seconds=30),
            max_ejection_percent=50,
        ),
        timeout=Duration.of(seconds=15),
        retries=RetryPolicy(
            attempts=3,
            per_try_timeout=Duration.of(milliseconds=1500),
            retry_on=(RetryOn.FIVE_XX, RetryOn.RESET, RetryOn.UNAVAILABLE),
        ),
        fault=FaultInjection(
            delay=FaultDelay(fixed_delay=Duration.of(seconds=5), percentage=0.1),
            abort=FaultAbort(http_status=503, percentage=5.0),
        ),
    )
    assert isinstance(result.obj, TrafficPolicy)
    assert result.obj.target_services == {
        ObjectRef.service("shop", "reviews"),
        ObjectRef.service("shop", "ratings"),
    }


def test_header_and_source_ip_hashing() -> None:
    header = convert(
        traffic_policy(loadBalancer={"algorithm": "MAGLEV", "consistentHash": {"header": "x-user"}})
    )
    assert isinstance(header.obj, TrafficPolicy) and header.obj.load_balancer is not None
    assert header.obj.load_balancer.consistent_hash == ConsistentHash(header="x-user")
    source = convert(
        traffic_policy(loadBalancer={"algorithm": "RING_HASH", "consistentHash": {"sourceIP": True}})
    )
    assert isinstance(source.obj, TrafficPolicy) and source.obj.load_balancer is not None
    assert source.obj.load_balancer.consistent_hash == ConsistentHash(source_ip=True)


# (case id, path, value, reported field, reason, also rejected by the CRD's structural schema)
INVALID: list[tuple[str, str, Any, str, Reason, bool]] = [
    ("unknown spec field", "spec.loadBalancing", {}, "spec.loadBalancing", Reason.UNKNOWN_FIELD, True),
    (
        "unknown nested field",
        "spec.fault",
        {"delay": {"fixedDelay": "1s", "percent": 5}},
        "spec.fault.delay.percent",
        Reason.UNKNOWN_FIELD,
        True,
    ),
    ("no targets", "spec.targetRefs", ..., "spec.targetRefs", Reason.MISSING_FIELD, True),
    (
        "target kind",
        "spec.targetRefs[0].kind",
        "Deployment",
        "spec.targetRefs[0].kind",
        Reason.UNSUPPORTED_VALUE,
        True,
    ),
    (
        "target group",
        "spec.targetRefs[0].group",
        "apps",
        "spec.targetRefs[0].group",
        Reason.UNSUPPORTED_VALUE,
        True,
    ),
    (
        "algorithm",
        "spec.loadBalancer",
        {"algorithm": "FASTEST"},
        "spec.loadBalancer.algorithm",
        Reason.UNSUPPORTED_VALUE,
        True,
    ),
    (
        "ring hash without key",
        "spec.loadBalancer",
        {"algorithm": "RING_HASH"},
        "spec.loadBalancer.consistentHash",
        Reason.MISSING_FIELD,
        False,
    ),
    (
        "two hash keys",
        "spec.loadBalancer",
        {"algorithm": "MAGLEV", "consistentHash": {"header": "x", "sourceIP": True}},
        "spec.loadBalancer.consistentHash",
        Reason.CONFLICTING_FIELDS,
        False,
    ),
    (
        "hash key with round robin",
        "spec.loadBalancer",
        {"algorithm": "ROUND_ROBIN", "consistentHash": {"header": "x"}},
        "spec.loadBalancer.consistentHash",
        Reason.CONFLICTING_FIELDS,
        False,
    ),
    ("bad duration", "spec.timeout", "15 seconds", "spec.timeout", Reason.INVALID_DURATION, True),
    ("negative duration", "spec.timeout", "-1s", "spec.timeout", Reason.INVALID_DURATION, True),
    (
        "zero connect timeout",
        "spec.connectionPool",
        {"connectTimeout": "0s"},
        "spec.connectionPool.connectTimeout",
        Reason.OUT_OF_RANGE,
        False,
    ),
    (
        "zero max connections",
        "spec.connectionPool",
        {"maxConnections": 0},
        "spec.connectionPool.maxConnections",
        Reason.OUT_OF_RANGE,
        True,
    ),
    (
        "ejection percent",
        "spec.outlierDetection",
        {"maxEjectionPercent": 101},
        "spec.outlierDetection.maxEjectionPercent",
        Reason.OUT_OF_RANGE,
        True,
    ),
    (
        "retries without attempts",
        "spec.retries",
        {"retryOn": ["5xx"]},
        "spec.retries.attempts",
        Reason.MISSING_FIELD,
        True,
    ),
    (
        "retry condition",
        "spec.retries",
        {"attempts": 1, "retryOn": ["sometimes"]},
        "spec.retries.retryOn[0]",
        Reason.UNSUPPORTED_VALUE,
        True,
    ),
    (
        "fault percentage",
        "spec.fault",
        {"abort": {"httpStatus": 503, "percentage": 150}},
        "spec.fault.abort.percentage",
        Reason.OUT_OF_RANGE,
        True,
    ),
    (
        "abort status",
        "spec.fault",
        {"abort": {"httpStatus": 99}},
        "spec.fault.abort.httpStatus",
        Reason.OUT_OF_RANGE,
        True,
    ),
    ("empty fault", "spec.fault", {}, "spec.fault", Reason.MISSING_FIELD, False),
    (
        "string number",
        "spec.connectionPool",
        {"maxRequests": "10"},
        "spec.connectionPool.maxRequests",
        Reason.WRONG_TYPE,
        True,
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "field", "reason", "in_schema"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_policy(path: str, value: Any, field: str, reason: Reason, in_schema: bool) -> None:
    obj = with_path(traffic_policy(), path, value)
    result = convert(obj)
    assert result.obj is None
    assert [(d.field, d.reason, d.severity) for d in result.diagnostics] == [(field, reason, Severity.ERROR)]
    # The CRD rejects the same object: by its structural schema, or (in_schema False) by a CEL rule.
    found = violations(_schema(), obj)
    assert bool(found) == in_schema, found


def test_full_spec_is_valid_for_the_crd_schema() -> None:
    assert violations(_schema(), traffic_policy(**FULL_SPEC)) == []


def _schema_fields(schema: dict[str, Any], path: str, out: dict[str, tuple[str, ...]]) -> None:
    if schema.get("type") == "array":
        _schema_fields(schema["items"], f"{path}[]", out)
        return
    props = schema.get("properties")
    if not props:
        return
    out[path] = tuple(props)
    for key, child in props.items():
        _schema_fields(child, f"{path}.{key}", out)


def test_crd_schema_has_exactly_the_fields_the_converter_reads() -> None:
    found: dict[str, tuple[str, ...]] = {}
    _schema_fields(_schema()["properties"]["spec"], "spec", found)
    assert {k: sorted(v) for k, v in found.items()} == {k: sorted(v) for k, v in FIELDS.items()}


def test_crd_enums_match_the_model() -> None:
    spec = _schema()["properties"]["spec"]["properties"]
    assert spec["loadBalancer"]["properties"]["algorithm"]["enum"] == [a.value for a in LoadBalancerAlgorithm]
    assert spec["retries"]["properties"]["retryOn"]["items"]["enum"] == [r.value for r in RetryOn]


def test_crd_shape() -> None:
    crd = _crd()
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == "trafficpolicies.nodemesh.io"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    assert {c["name"] for c in version["additionalPrinterColumns"]} >= {"Targets", "Accepted", "Age"}
    status = _schema()["properties"]["status"]["properties"]["conditions"]
    assert status["x-kubernetes-list-map-keys"] == ["type"]
    rules = [
        rule["rule"]
        for node in (
            _schema()["properties"]["spec"]["properties"]["fault"],
            _schema()["properties"]["spec"]["properties"]["loadBalancer"],
        )
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert len(rules) == 2
