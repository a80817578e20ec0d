"""ClusterLoadAssignments: a Service port's endpoints from its EndpointSlices.

An endpoint that is a meshed pod becomes an HBONE endpoint (`hbone.hbone_endpoint`): an internal address
whose metadata names the pod, its node's HBONE address and its identity. Others stay plain addresses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from envoy.config.core.v3 import address_pb2, base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from controlplane.ca.identity import SpiffeId
from controlplane.model.endpoints import AddressType, Endpoint, EndpointSlice
from controlplane.model.service import ServicePort
from controlplane.translate.hbone import hbone_endpoint


@dataclass(frozen=True, slots=True, kw_only=True)
class Tunnel:
    """How to reach a meshed pod: HBONE to its node, expecting its identity."""

    node_ip: str
    hbone_port: int
    spiffe_id: SpiffeId


def _usable(slices: tuple[EndpointSlice, ...]) -> list[tuple[EndpointSlice, Endpoint]]:
    """Ready endpoints; while none is ready, the ones still serving (terminating pods finishing their work,
    as kube-proxy's terminating-endpoint fallback does)."""
    candidates = [
        (s, e) for s in slices if s.address_type in (AddressType.IPV4, AddressType.IPV6) for e in s.endpoints
    ]
    ready = [(s, e) for s, e in candidates if e.ready]
    if ready:
        return ready
    return [(s, e) for s, e in candidates if e.serving]


def build_load_assignment(
    name: str,
    port: ServicePort,
    slices: tuple[EndpointSlice, ...],
    tunnels: Mapping[str, Tunnel] | None = None,
) -> endpoint_pb2.ClusterLoadAssignment:
    """Endpoints grouped by zone (the locality), sorted; an address listed by two slices appears once.
    Named target ports are already resolved per pod by the slices' own ports. `tunnels`: the meshed pods
    among the addresses, by IP."""
    tunnels = tunnels or {}
    by_zone: dict[str, set[tuple[str, int]]] = {}
    for slice_, endpoint in _usable(slices):
        number = slice_.port_for(port)
        if number is None:
            continue
        for address in endpoint.addresses:
            by_zone.setdefault(endpoint.zone, set()).add((address, number))
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    for zone in sorted(by_zone):
        group = endpoint_components_pb2.LocalityLbEndpoints(locality=base_pb2.Locality(zone=zone))
        for address, number in sorted(by_zone[zone]):
            tunnel = tunnels.get(address)
            if tunnel is not None:
                group.lb_endpoints.append(
                    hbone_endpoint(
                        pod_ip=address,
                        port=number,
                        node_ip=tunnel.node_ip,
                        hbone_port=tunnel.hbone_port,
                        destination=tunnel.spiffe_id,
                    )
                )
                continue
            group.lb_endpoints.append(
                endpoint_components_pb2.LbEndpoint(
                    endpoint=endpoint_components_pb2.Endpoint(
                        address=address_pb2.Address(
                            socket_address=address_pb2.SocketAddress(address=address, port_value=number)
                        )
                    ),
                    # Serving-but-not-ready endpoints are only here when nothing is ready: they must
                    # take the traffic, so they are not marked DRAINING (Envoy would avoid them).
                    health_status=health_check_pb2.HEALTHY,
                )
            )
        cla.endpoints.append(group)
    return cla
