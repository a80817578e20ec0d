"""nodemesh.io/v1alpha1 TrafficPolicy from its API JSON.

Mirrors manifests/crds/nodemesh.io_trafficpolicies.yaml: the same fields, bounds and cross-field rules, so
objects from files get the errors the API server would give. Unknown fields are errors (our own schema).
"""

from __future__ import annotations

from typing import Final

from controlplane.model.diagnostics import Reason
from controlplane.model.duration import Duration
from controlplane.model.kube.fields import JSON, Reader, sub
from controlplane.model.kube.routes import HEADER_NAME_RE, SECTION_NAME_RE
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

# Every field of the schema, by JSON path (lists as `[]`); tests check the CRD schema has exactly these.
FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "spec": (
        "targetRefs",
        "loadBalancer",
        "connectionPool",
        "outlierDetection",
        "timeout",
        "retries",
        "fault",
    ),
    "spec.targetRefs[]": ("group", "kind", "name", "sectionName", "port"),
    "spec.loadBalancer": ("algorithm", "consistentHash"),
    "spec.loadBalancer.consistentHash": ("header", "cookie", "sourceIP", "minimumRingSize"),
    "spec.loadBalancer.consistentHash.cookie": ("name", "ttl", "path"),
    "spec.connectionPool": (
        "maxConnections",
        "maxPendingRequests",
        "maxRequests",
        "maxRetries",
        "maxRequestsPerConnection",
        "maxConcurrentStreams",
        "connectTimeout",
        "idleTimeout",
    ),
    "spec.outlierDetection": (
        "consecutive5xx",
        "consecutiveGatewayErrors",
        "interval",
        "baseEjectionTime",
        "maxEjectionPercent",
    ),
    "spec.retries": ("attempts", "perTryTimeout", "retryOn"),
    "spec.fault": ("delay", "abort"),
    "spec.fault.delay": ("fixedDelay", "percentage"),
    "spec.fault.abort": ("httpStatus", "percentage"),
}
MAX_TARGET_REFS: Final = 16
_INT32: Final = 2**31 - 1


def _known(path: str) -> tuple[str, ...]:
    return FIELDS[path]


def _target_refs(r: Reader, spec: JSON) -> tuple[PolicyTargetRef, ...]:
    refs = []
    entries = r.mappings(spec, "targetRefs", "spec", known=_known("spec.targetRefs[]"), required=True)
    if not entries and spec.get("targetRefs") is not None:
        r.report("spec.targetRefs", Reason.MISSING_FIELD, "at least one target is required")
    if len(entries) > MAX_TARGET_REFS:
        r.report("spec.targetRefs", Reason.OUT_OF_RANGE, f"at most {MAX_TARGET_REFS} targets allowed")
    for path, t in entries:
        group = r.string(t, "group", path, required=True)
        kind = r.string(t, "kind", path, required=True)
        name = r.string(t, "name", path, required=True, min_length=1, max_length=253)
        section = r.string(t, "sectionName", path, pattern=SECTION_NAME_RE, hint="a valid port name")
        port = r.integer(t, "port", path, minimum=1, maximum=65535)
        if group is not None and group != "":
            r.report(sub(path, "group"), Reason.UNSUPPORTED_VALUE, f'group {group!r} not supported: use ""')
        if kind is not None and kind != "Service":
            r.report(sub(path, "kind"), Reason.UNSUPPORTED_VALUE, f"kind {kind!r} not supported: use Service")
        if section is not None and port is not None:
            r.report(path, Reason.CONFLICTING_FIELDS, "only one of sectionName and port may be set")
        if name is not None:
            refs.append(PolicyTargetRef(name=name, section_name=section, port=port))
    return tuple(refs)


def _load_balancer(r: Reader, spec: JSON) -> LoadBalancer | None:
    path = "spec.loadBalancer"
    m = r.mapping(spec, "loadBalancer", "spec", known=_known(path))
    if m is None:
        return None
    algorithm = r.enum(m, "algorithm", path, LoadBalancerAlgorithm, required=True)
    h = r.mapping(m, "consistentHash", path, known=_known(f"{path}.consistentHash"))
    consistent_hash = None
    if h is not None:
        here = f"{path}.consistentHash"
        source = r.exclusive(h, here, ("header", "cookie", "sourceIP"))
        cookie = None
        c = r.mapping(h, "cookie", here, known=_known(f"{here}.cookie"))
        if c is not None:
            cookie_path = f"{here}.cookie"
            cookie_name = r.string(
                c, "name", cookie_path, required=True, pattern=HEADER_NAME_RE, hint="a cookie name"
            )
            ttl = r.duration(c, "ttl", cookie_path, gateway=False)
            cookie = HashCookie(name=cookie_name or "", ttl=ttl, path=r.string(c, "path", cookie_path))
        source_ip = r.boolean(h, "sourceIP", here)
        if source == "sourceIP" and source_ip is False:
            r.report(
                f"{here}.sourceIP", Reason.INVALID_VALUE, "sourceIP must be true when it is the hash source"
            )
        consistent_hash = ConsistentHash(
            header=r.string(h, "header", here, pattern=HEADER_NAME_RE, hint="a valid header name"),
            cookie=cookie,
            source_ip=bool(source_ip),
            minimum_ring_size=r.integer(h, "minimumRingSize", here, minimum=1, maximum=8_388_608),
        )
    if algorithm is not None:
        if algorithm.consistent and consistent_hash is None:
            r.report(
                f"{path}.consistentHash", Reason.MISSING_FIELD, f"consistentHash is required for {algorithm}"
            )
        if not algorithm.consistent and consistent_hash is not None:
            r.report(
                f"{path}.consistentHash",
                Reason.CONFLICTING_FIELDS,
                f"consistentHash needs algorithm RING_HASH or MAGLEV, not {algorithm}",
            )
    return LoadBalancer(
        algorithm=algorithm or LoadBalancerAlgorithm.ROUND_ROBIN, consistent_hash=consistent_hash
    )


def _positive(r: Reader, m: JSON, key: str, path: str) -> Duration | None:
    value = r.duration(m, key, path, gateway=False)
    if value is not None and not value:
        r.report(sub(path, key), Reason.OUT_OF_RANGE, f"{key} must be greater than zero")
        return None
    return value


def _connection_pool(r: Reader, spec: JSON) -> ConnectionPool | None:
    path = "spec.connectionPool"
    m = r.mapping(spec, "connectionPool", "spec", known=_known(path))
    if m is None:
        return None
    return ConnectionPool(
        max_connections=r.integer(m, "maxConnections", path, minimum=1, maximum=_INT32),
        max_pending_requests=r.integer(m, "maxPendingRequests", path, minimum=1, maximum=_INT32),
        max_requests=r.integer(m, "maxRequests", path, minimum=1, maximum=_INT32),
        max_retries=r.integer(m, "maxRetries", path, minimum=0, maximum=_INT32),
        max_requests_per_connection=r.integer(m, "maxRequestsPerConnection", path, minimum=0, maximum=_INT32),
        max_concurrent_streams=r.integer(m, "maxConcurrentStreams", path, minimum=1, maximum=_INT32),
        connect_timeout=_positive(r, m, "connectTimeout", path),
        idle_timeout=r.duration(m, "idleTimeout", path, gateway=False),
    )


def _outlier_detection(r: Reader, spec: JSON) -> OutlierDetection | None:
    path = "spec.outlierDetection"
    m = r.mapping(spec, "outlierDetection", "spec", known=_known(path))
    if m is None:
        return None
    return OutlierDetection(
        consecutive_5xx=r.integer(m, "consecutive5xx", path, minimum=0, maximum=_INT32),
        consecutive_gateway_errors=r.integer(m, "consecutiveGatewayErrors", path, minimum=0, maximum=_INT32),
        interval=_positive(r, m, "interval", path),
        base_ejection_time=_positive(r, m, "baseEjectionTime", path),
        max_ejection_percent=r.integer(m, "maxEjectionPercent", path, minimum=0, maximum=100),
    )


def _retries(r: Reader, spec: JSON) -> RetryPolicy | None:
    path = "spec.retries"
    m = r.mapping(spec, "retries", "spec", known=_known(path))
    if m is None:
        return None
    retry_on = []
    for item_path, item in r.items(m, "retryOn", path):
        try:
            retry_on.append(RetryOn(item))  # type: ignore[arg-type]
        except ValueError:
            allowed = ", ".join(v.value for v in RetryOn)
            r.report(
                item_path,
                Reason.UNSUPPORTED_VALUE,
                f"unsupported retryOn {item!r}: expected one of {allowed}",
            )
    attempts = r.integer(m, "attempts", path, required=True, minimum=0, maximum=100)
    return RetryPolicy(
        attempts=attempts or 0,
        per_try_timeout=_positive(r, m, "perTryTimeout", path),
        retry_on=tuple(dict.fromkeys(retry_on)),
    )


def _fault(r: Reader, spec: JSON) -> FaultInjection | None:
    path = "spec.fault"
    m = r.mapping(spec, "fault", "spec", known=_known(path))
    if m is None:
        return None
    if m.get("delay") is None and m.get("abort") is None:
        r.report(path, Reason.MISSING_FIELD, "at least one of delay and abort is required")
    delay = None
    d = r.mapping(m, "delay", path, known=_known(f"{path}.delay"))
    if d is not None:
        here = f"{path}.delay"
        fixed = r.duration(d, "fixedDelay", here, gateway=False, required=True)
        percentage = r.number(d, "percentage", here, minimum=0, maximum=100)
        if fixed is not None:
            delay = FaultDelay(fixed_delay=fixed, percentage=percentage if percentage is not None else 100.0)
    abort = None
    a = r.mapping(m, "abort", path, known=_known(f"{path}.abort"))
    if a is not None:
        here = f"{path}.abort"
        status = r.integer(a, "httpStatus", here, required=True, minimum=200, maximum=599)
        percentage = r.number(a, "percentage", here, minimum=0, maximum=100)
        if status is not None:
            abort = FaultAbort(http_status=status, percentage=percentage if percentage is not None else 100.0)
    return FaultInjection(delay=delay, abort=abort)


def convert_traffic_policy(r: Reader, obj: JSON, meta: JSON, namespace: str, name: str) -> TrafficPolicy:
    spec = r.mapping(obj, "spec", "", required=True, known=_known("spec")) or {}
    generation = meta.get("generation")
    return TrafficPolicy(
        namespace=namespace,
        name=name,
        generation=generation if isinstance(generation, int) and not isinstance(generation, bool) else 0,
        target_refs=_target_refs(r, spec),
        load_balancer=_load_balancer(r, spec),
        connection_pool=_connection_pool(r, spec),
        outlier_detection=_outlier_detection(r, spec),
        timeout=r.duration(spec, "timeout", "spec", gateway=False),
        retries=_retries(r, spec),
        fault=_fault(r, spec),
    )
