"""A synthetic mesh config for the xDS benchmarks: EDS clusters with endpoints, one listener and route.

`MeshConfig.build` interns every resource in the server's pool; `with_endpoint_changed` returns the config
after one endpoint of one cluster moved, sharing every other resource.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2, duration_pb2

from controlplane.xds import typeurls
from controlplane.xds.resource import Resource, ResourcePool
from controlplane.xds.snapshot import Snapshot

_ADS = config_source_pb2.ConfigSource(
    ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
)
LISTENER_NAME = "bench-http"
ROUTE_NAME = "bench-routes"
SERVED_TYPES = (typeurls.CLUSTER, typeurls.ENDPOINT, typeurls.LISTENER, typeurls.ROUTE)


def cluster_name(index: int) -> str:
    return f"outbound|8080||svc-{index:05d}.bench.svc.cluster.local"


def eds_cluster(name: str) -> Any:
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        connect_timeout=duration_pb2.Duration(seconds=1),
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=_ADS),
    )


def endpoint_address(cluster: int, endpoint: int) -> str:
    return f"10.{(cluster >> 8) & 0xFF}.{cluster & 0xFF}.{endpoint + 1}"


def load_assignment(name: str, cluster: int, endpoints: int) -> Any:
    lb_endpoints = [
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(
                        address=endpoint_address(cluster, j), port_value=8080
                    )
                )
            ),
            health_status=health_check_pb2.HEALTHY,
        )
        for j in range(endpoints)
    ]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                locality=base_pb2.Locality(region="bench", zone="bench-a"), lb_endpoints=lb_endpoints
            )
        ],
    )


def http_listener(route_cluster: str) -> tuple[Any, Any]:
    """A listener whose HTTP connection manager takes its routes over RDS, and that route."""
    router = any_pb2.Any()
    router.Pack(router_pb2.Router())
    hcm = any_pb2.Any()
    hcm.Pack(
        hcm_pb2.HttpConnectionManager(
            stat_prefix="bench",
            rds=hcm_pb2.Rds(route_config_name=ROUTE_NAME, config_source=_ADS),
            http_filters=[hcm_pb2.HttpFilter(name="envoy.filters.http.router", typed_config=router)],
        )
    )
    listener = listener_pb2.Listener(
        name=LISTENER_NAME,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="0.0.0.0", port_value=15001)
        ),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager", typed_config=hcm
                    )
                ]
            )
        ],
    )
    route = route_pb2.RouteConfiguration(
        name=ROUTE_NAME,
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name="bench",
                domains=["*"],
                routes=[
                    route_components_pb2.Route(
                        match=route_components_pb2.RouteMatch(prefix="/"),
                        route=route_components_pb2.RouteAction(cluster=route_cluster),
                    )
                ],
            )
        ],
    )
    return listener, route


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshConfig:
    pool: ResourcePool
    endpoints_per_cluster: int
    # Cluster names in order, and each one's current ClusterLoadAssignment message.
    cluster_names: tuple[str, ...]
    assignments: Mapping[str, Any]
    resources: tuple[Resource, ...]
    changes: int = 0

    @classmethod
    def build(cls, pool: ResourcePool, *, clusters: int, endpoints_per_cluster: int) -> MeshConfig:
        names = tuple(cluster_name(i) for i in range(clusters))
        assignments = {name: load_assignment(name, i, endpoints_per_cluster) for i, name in enumerate(names)}
        listener, route = http_listener(names[0])
        resources = [pool.intern(eds_cluster(name)) for name in names]
        resources += [pool.intern(message) for message in assignments.values()]
        resources += [pool.intern(listener), pool.intern(route)]
        return cls(
            pool=pool,
            endpoints_per_cluster=endpoints_per_cluster,
            cluster_names=names,
            assignments=MappingProxyType(assignments),
            resources=tuple(resources),
        )

    def snapshot(self) -> Snapshot:
        """A new Snapshot object of this config (equal content, its own memos)."""
        return Snapshot.build(self.resources)

    def with_endpoint_changed(self) -> MeshConfig:
        """The config after one endpoint of one cluster moved to a new port (a different one each time)."""
        count = self.changes + 1
        # A stride coprime with typical sizes spreads the changes over the clusters.
        name = self.cluster_names[(count * 7919) % len(self.cluster_names)]
        assignment = endpoint_pb2.ClusterLoadAssignment()
        assignment.CopyFrom(self.assignments[name])
        lb_endpoint = assignment.endpoints[0].lb_endpoints[count % self.endpoints_per_cluster]
        lb_endpoint.endpoint.address.socket_address.port_value = 10_000 + count
        changed = self.pool.intern(assignment)
        resources = tuple(
            changed if r.type_url == typeurls.ENDPOINT and r.name == name else r for r in self.resources
        )
        assignments = dict(self.assignments)
        assignments[name] = assignment
        return replace(self, assignments=MappingProxyType(assignments), resources=resources, changes=count)


def type_versions(snapshot: Snapshot) -> dict[str, str]:
    """The version every client ACKs per served type once it holds this snapshot (each subscribes to all)."""
    return {type_url: snapshot.type_version(type_url) for type_url in SERVED_TYPES}
