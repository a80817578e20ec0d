"""nodemesh.io/v1alpha1 TrafficPolicy: how clients reach a Service (balancing, limits, resilience, faults).

The security policies live next to this one: `authz.py` (AuthorizationPolicy), `peerauth.py`
(PeerAuthentication), and `security.py` (resolving them for a workload).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from controlplane.model.duration import Duration
from controlplane.model.refs import Kind, ObjectRef

NODEMESH_GROUP: Final = "nodemesh.io"
TRAFFIC_POLICY_VERSION: Final = "v1alpha1"


class LoadBalancerAlgorithm(StrEnum):
    ROUND_ROBIN = "ROUND_ROBIN"
    LEAST_REQUEST = "LEAST_REQUEST"
    RANDOM = "RANDOM"
    RING_HASH = "RING_HASH"
    MAGLEV = "MAGLEV"

    @property
    def consistent(self) -> bool:
        return self in (LoadBalancerAlgorithm.RING_HASH, LoadBalancerAlgorithm.MAGLEV)


class RetryOn(StrEnum):
    """Envoy's `x-envoy-retry-on` / `x-envoy-retry-grpc-on` conditions."""

    FIVE_XX = "5xx"
    GATEWAY_ERROR = "gateway-error"
    RESET = "reset"
    CONNECT_FAILURE = "connect-failure"
    RETRIABLE_4XX = "retriable-4xx"
    REFUSED_STREAM = "refused-stream"
    RETRIABLE_STATUS_CODES = "retriable-status-codes"
    CANCELLED = "cancelled"
    DEADLINE_EXCEEDED = "deadline-exceeded"
    INTERNAL = "internal"
    RESOURCE_EXHAUSTED = "resource-exhausted"
    UNAVAILABLE = "unavailable"

    @property
    def grpc(self) -> bool:
        return self in _GRPC_RETRY_ON


_GRPC_RETRY_ON = frozenset(
    {
        RetryOn.CANCELLED,
        RetryOn.DEADLINE_EXCEEDED,
        RetryOn.INTERNAL,
        RetryOn.RESOURCE_EXHAUSTED,
        RetryOn.UNAVAILABLE,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyTargetRef:
    """A local Service (policies attach in their own namespace), optionally one port of it."""

    group: str = ""
    kind: str = "Service"
    name: str
    section_name: str | None = None
    port: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HashCookie:
    name: str
    # Envoy generates the cookie when ttl is set and the request has none.
    ttl: Duration | None = None
    path: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsistentHash:
    """Exactly one source of the hash key is set."""

    header: str | None = None
    cookie: HashCookie | None = None
    source_ip: bool = False
    minimum_ring_size: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadBalancer:
    algorithm: LoadBalancerAlgorithm = LoadBalancerAlgorithm.ROUND_ROBIN
    # Set exactly when the algorithm is RING_HASH or MAGLEV.
    consistent_hash: ConsistentHash | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionPool:
    """Envoy circuit-breaker thresholds and connection settings; None leaves Envoy's default."""

    max_connections: int | None = None
    max_pending_requests: int | None = None
    max_requests: int | None = None
    max_retries: int | None = None
    max_requests_per_connection: int | None = None
    max_concurrent_streams: int | None = None
    connect_timeout: Duration | None = None
    idle_timeout: Duration | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutlierDetection:
    consecutive_5xx: int | None = None
    consecutive_gateway_errors: int | None = None
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    attempts: int
    per_try_timeout: Duration | None = None
    retry_on: tuple[RetryOn, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultDelay:
    fixed_delay: Duration
    # 0-100, fractions allowed (0.1 = one request in a thousand).
    percentage: float = 100.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultAbort:
    http_status: int
    percentage: float = 100.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultInjection:
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TrafficPolicy:
    namespace: str
    name: str
    generation: int = 0
    target_refs: tuple[PolicyTargetRef, ...] = ()
    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    # Default for routes to the target that set no timeout of their own.
    timeout: Duration | None = None
    retries: RetryPolicy | None = None
    fault: FaultInjection | None = None

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(kind=Kind.TRAFFIC_POLICY, namespace=self.namespace, name=self.name)

    @property
    def target_services(self) -> frozenset[ObjectRef]:
        return frozenset(
            ObjectRef.service(self.namespace, t.name)
            for t in self.target_refs
            if t.group == "" and t.kind == "Service"
        )
