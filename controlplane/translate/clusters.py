"""Clusters: one EDS cluster per Service port (shared by every node) and the passthrough cluster."""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import wrappers_pb2

from controlplane.model.duration import Duration
from controlplane.model.policy import ConnectionPool, LoadBalancerAlgorithm, OutlierDetection
from controlplane.model.service import L7Protocol, ServicePort
from controlplane.translate import naming
from controlplane.translate.hbone import service_transport_socket
from controlplane.translate.messages import ads_source, duration, pack
from controlplane.translate.policies import EffectivePolicy
from controlplane.translate.settings import TranslateSettings

_LB_POLICIES = {
    LoadBalancerAlgorithm.ROUND_ROBIN: cluster_pb2.Cluster.ROUND_ROBIN,
    LoadBalancerAlgorithm.LEAST_REQUEST: cluster_pb2.Cluster.LEAST_REQUEST,
    LoadBalancerAlgorithm.RANDOM: cluster_pb2.Cluster.RANDOM,
    LoadBalancerAlgorithm.RING_HASH: cluster_pb2.Cluster.RING_HASH,
    LoadBalancerAlgorithm.MAGLEV: cluster_pb2.Cluster.MAGLEV,
}


def _u32(value: int | None) -> wrappers_pb2.UInt32Value | None:
    return wrappers_pb2.UInt32Value(value=value) if value is not None else None


def _circuit_breakers(pool: ConnectionPool) -> circuit_breaker_pb2.CircuitBreakers | None:
    limits = {
        "max_connections": _u32(pool.max_connections),
        "max_pending_requests": _u32(pool.max_pending_requests),
        "max_requests": _u32(pool.max_requests),
        "max_retries": _u32(pool.max_retries),
    }
    present = {k: v for k, v in limits.items() if v is not None}
    if not present:
        return None
    return circuit_breaker_pb2.CircuitBreakers(
        thresholds=[circuit_breaker_pb2.CircuitBreakers.Thresholds(**present)]
    )


def _outlier_detection(od: OutlierDetection) -> outlier_detection_pb2.OutlierDetection:
    out = outlier_detection_pb2.OutlierDetection()
    if od.consecutive_5xx is not None:
        out.consecutive_5xx.value = od.consecutive_5xx
    if od.consecutive_gateway_errors is not None:
        out.consecutive_gateway_failure.value = od.consecutive_gateway_errors
        # Envoy counts gateway failures only when this is on.
        out.enforcing_consecutive_gateway_failure.value = 100
    if od.interval is not None:
        out.interval.CopyFrom(duration(od.interval))
    if od.base_ejection_time is not None:
        out.base_ejection_time.CopyFrom(duration(od.base_ejection_time))
    if od.max_ejection_percent is not None:
        out.max_ejection_percent.value = od.max_ejection_percent
    return out


def _http_protocol_options(
    protocol: L7Protocol, pool: ConnectionPool | None, max_connection_age: Duration
) -> http_protocol_options_pb2.HttpProtocolOptions:
    http2 = protocol in (L7Protocol.H2C, L7Protocol.GRPC)
    common = protocol_pb2.HttpProtocolOptions()
    # A pooled connection to a meshed endpoint is a tunnel on an HBONE connection, which presents the
    # certificate current when it opened: retire it in time for renewed certificates to take over.
    common.max_connection_duration.CopyFrom(duration(max_connection_age))
    h2 = protocol_pb2.Http2ProtocolOptions()
    if pool is not None:
        if pool.max_requests_per_connection is not None:
            common.max_requests_per_connection.value = pool.max_requests_per_connection
        if pool.idle_timeout is not None:
            common.idle_timeout.CopyFrom(duration(pool.idle_timeout))
        if http2 and pool.max_concurrent_streams is not None:
            h2.max_concurrent_streams.value = pool.max_concurrent_streams
    options = http_protocol_options_pb2.HttpProtocolOptions()
    options.common_http_protocol_options.CopyFrom(common)
    if http2:
        options.explicit_http_config.http2_protocol_options.CopyFrom(h2)
    else:
        options.explicit_http_config.http_protocol_options.SetInParent()
    return options


def build_cluster(
    name: str, port: ServicePort, policy: EffectivePolicy, settings: TranslateSettings
) -> cluster_pb2.Cluster:
    """The EDS cluster of one Service port; its ClusterLoadAssignment has the same name."""
    pool = policy.connection_pool
    connect_timeout = (pool.connect_timeout if pool is not None else None) or settings.connect_timeout
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        connect_timeout=duration(connect_timeout),
    )
    cluster.eds_cluster_config.eds_config.CopyFrom(ads_source())
    cluster.eds_cluster_config.service_name = name
    # Meshed endpoints are internal addresses into `hbone_originate`: hand it their metadata.
    cluster.transport_socket.CopyFrom(service_transport_socket())
    lb = policy.load_balancer
    if lb is not None:
        cluster.lb_policy = _LB_POLICIES[lb.algorithm]
        if (
            lb.algorithm is LoadBalancerAlgorithm.RING_HASH
            and lb.consistent_hash is not None
            and lb.consistent_hash.minimum_ring_size is not None
        ):
            cluster.ring_hash_lb_config.minimum_ring_size.value = lb.consistent_hash.minimum_ring_size
    if pool is not None and (breakers := _circuit_breakers(pool)) is not None:
        cluster.circuit_breakers.CopyFrom(breakers)
    if policy.outlier_detection is not None:
        cluster.outlier_detection.CopyFrom(_outlier_detection(policy.outlier_detection))
    protocol = port.l7_protocol
    if protocol is not L7Protocol.TCP:
        options = _http_protocol_options(protocol, pool, settings.max_connection_age)
        cluster.typed_extension_protocol_options[naming.HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))
    return cluster


def build_passthrough_cluster(settings: TranslateSettings) -> cluster_pb2.Cluster:
    """Connections to anything but a Service ClusterIP:port go where they were addressed."""
    return cluster_pb2.Cluster(
        name=naming.PASSTHROUGH,
        type=cluster_pb2.Cluster.ORIGINAL_DST,
        lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED,
        connect_timeout=duration(settings.connect_timeout),
    )
