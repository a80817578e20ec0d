"""Small builders of real Envoy resources for the xDS tests."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2, duration_pb2

from controlplane.xds.resource import Resource, ResourcePool
from controlplane.xds.snapshot import Snapshot

_ADS = config_source_pb2.ConfigSource(ads=config_source_pb2.AggregatedConfigSource())


def eds_cluster(name: str, *, timeout_s: int = 1, service_name: str = "", padding: int = 0) -> Any:
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        connect_timeout=duration_pb2.Duration(seconds=timeout_s),
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=_ADS, service_name=service_name),
    )
    if padding:
        cluster.alt_stat_name = "x" * padding
    return cluster


def static_cluster(name: str) -> Any:
    return cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.STATIC)


def endpoints(cluster_name: str, *ports: int) -> Any:
    lb_endpoints = [
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=port)
                )
            )
        )
        for port in ports
    ]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=cluster_name,
        endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb_endpoints)],
    )


def _hcm_filter(route_name: str) -> Any:
    router = any_pb2.Any()
    router.Pack(router_pb2.Router())
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=route_name,
        rds=hcm_pb2.Rds(route_config_name=route_name, config_source=_ADS),
        http_filters=[hcm_pb2.HttpFilter(name="envoy.filters.http.router", typed_config=router)],
    )
    typed = any_pb2.Any()
    typed.Pack(hcm)
    return listener_components_pb2.Filter(
        name="envoy.filters.network.http_connection_manager", typed_config=typed
    )


def listener(name: str, route_name: str, *, port: int = 10000, default_route: str = "") -> Any:
    result = listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=port)
        ),
        filter_chains=[listener_components_pb2.FilterChain(filters=[_hcm_filter(route_name)])],
    )
    if default_route:
        result.default_filter_chain.CopyFrom(
            listener_components_pb2.FilterChain(filters=[_hcm_filter(default_route)])
        )
    return result


def route(name: str, cluster: str, *, prefix: str = "/") -> Any:
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name=name,
                domains=["*"],
                routes=[
                    route_components_pb2.Route(
                        match=route_components_pb2.RouteMatch(prefix=prefix),
                        route=route_components_pb2.RouteAction(cluster=cluster),
                    )
                ],
            )
        ],
    )


def snapshot(pool: ResourcePool, *messages: Any) -> Snapshot:
    return Snapshot.build(pool.intern(m) for m in messages)


def mesh(
    pool: ResourcePool,
    clusters: dict[str, tuple[int, ...]],
    *,
    routes: dict[str, str] | None = None,
    cluster_timeout: dict[str, int] | None = None,
) -> Snapshot:
    """Clusters with their endpoint ports; `routes` maps a listener/route name to a cluster."""
    messages: list[Any] = []
    for name, ports in clusters.items():
        messages.append(eds_cluster(name, timeout_s=(cluster_timeout or {}).get(name, 1)))
        messages.append(endpoints(name, *ports))
    for index, (route_name, cluster) in enumerate(sorted((routes or {}).items())):
        messages.append(listener(route_name, route_name, port=10000 + index))
        messages.append(route(route_name, cluster))
    return snapshot(pool, *messages)


def by_name(resources: list[Resource]) -> dict[str, Resource]:
    return {r.name: r for r in resources}
