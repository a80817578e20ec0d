"""Connections to a meshed pod's own IP (no Service), carried over HBONE as the caller.

A destination that is no Service port falls from `outbound_services` into two internal listeners, the same
on every node, then into `hbone_originate`:

    outbound_pods: a meshed pod's IP -> the chain of its identity, which names whom to expect at the other
        end (SNI and SAN, filter state that travels with the connection to the tunnel); anything else (a pod
        outside the mesh, an address outside the cluster) -> passthrough to the original destination
    outbound_pod_nodes: the pod's IP -> the chain of its node, which names where to tunnel (the node's
        15008, the ORIGINAL_DST override address) and the caller's IP
    hbone_originate: the caller's IP -> its identity's chain, as for a Service endpoint

Split in two so the chains are O(identities + nodes) rather than one per (node, identity): a Deployment's
replicas spread over nodes would make that as many as pods.

Without it a pod IP would pass through in plaintext from the node's address, which a STRICT destination must
accept as if it were an HBONE delivery (bypassing its authorization), and which a STRICT destination on
another node refuses (breaking headless Services).

Size: one matcher entry per meshed pod IP in each; they change only when meshed pods come, go or move, never
with Services or endpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.common.set_filter_state.v3 import value_pb2
from envoy.extensions.filters.network.set_filter_state.v3 import set_filter_state_pb2 as net_sfs_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from controlplane.ca.identity import SpiffeId
from controlplane.translate import naming
from controlplane.translate.assignments import Tunnel
from controlplane.translate.hbone import (
    LOCAL_IP_STATE,
    REMOTE_IP_STATE,
    SERVER_NAME_STATE,
    SUBJECT_ALT_NAMES_STATE,
    build_ip_listener,
    server_name,
    source_address_filter,
)
from controlplane.translate.listener import build_passthrough_chain, filter_of, shared_state

# Read by ORIGINAL_DST clusters before anything else: the originate cluster connects to the node it names.
TUNNEL_ADDRESS_STATE = "envoy.network.transport_socket.original_dst_address"


@dataclass(frozen=True, slots=True, kw_only=True)
class PodTunnel:
    """A meshed pod's IP and how to reach it."""

    ip: str
    tunnel: Tunnel


def _identity_chain(name: str, identity: SpiffeId) -> listener_components_pb2.FilterChain:
    # TRANSITIVE: the tunnel itself (two hops on, from `hbone_originate`) presents this SNI and checks
    # this SAN.
    transitive = value_pb2.FilterStateValue.TRANSITIVE
    once = value_pb2.FilterStateValue.ONCE
    state = net_sfs_pb2.Config(
        on_new_connection=[
            shared_state(SERVER_NAME_STATE, server_name(identity), transitive),
            shared_state(SUBJECT_ALT_NAMES_STATE, str(identity), transitive),
            # The connection's addresses, for `outbound_pod_nodes` to restore.
            shared_state(LOCAL_IP_STATE, "%DOWNSTREAM_LOCAL_ADDRESS%", once),
            shared_state(REMOTE_IP_STATE, "%DOWNSTREAM_REMOTE_ADDRESS%", once),
        ]
    )
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=naming.stat_prefix(name), cluster=naming.OUTBOUND_POD_NODES)
    return listener_components_pb2.FilterChain(
        name=name,
        filters=[
            filter_of(naming.SET_FILTER_STATE_NETWORK, state),
            filter_of(naming.TCP_PROXY_FILTER, proxy),
        ],
    )


def _node_chain(name: str, tunnel: Tunnel) -> listener_components_pb2.FilterChain:
    once = value_pb2.FilterStateValue.ONCE
    state = net_sfs_pb2.Config(
        on_new_connection=[
            # The CONNECT authority: the pod's address and port, as the client dialled them.
            shared_state(LOCAL_IP_STATE, "%DOWNSTREAM_LOCAL_ADDRESS%", once),
            shared_state(TUNNEL_ADDRESS_STATE, f"{tunnel.node_ip}:{tunnel.hbone_port}", once),
        ]
    )
    proxy = tcp_proxy_pb2.TcpProxy(
        stat_prefix=naming.stat_prefix(name), cluster=naming.HBONE_ORIGINATE_LISTENER
    )
    return listener_components_pb2.FilterChain(
        name=name,
        filters=[
            # The caller's IP: `hbone_originate` picks the caller's identity (and pool) by it.
            source_address_filter(),
            filter_of(naming.SET_FILTER_STATE_NETWORK, state),
            filter_of(naming.TCP_PROXY_FILTER, proxy),
        ],
    )


def build_pods_listeners(pods: Sequence[PodTunnel]) -> tuple[listener_pb2.Listener, listener_pb2.Listener]:
    """`outbound_pods` (pod IP -> its identity) and `outbound_pod_nodes` (pod IP -> its node) for these
    meshed pods (any order; one IP once)."""
    identities: dict[str, listener_components_pb2.FilterChain] = {}
    nodes: dict[str, listener_components_pb2.FilterChain] = {}
    identity_of: dict[str, str] = {}
    node_of: dict[str, str] = {}
    for pod in pods:
        t = pod.tunnel
        identity = naming.pods_identity_chain(t.spiffe_id.namespace, t.spiffe_id.service_account)
        node = naming.pods_node_chain(t.node_ip, t.hbone_port)
        if identity not in identities:
            identities[identity] = _identity_chain(identity, t.spiffe_id)
        if node not in nodes:
            nodes[node] = _node_chain(node, t)
        identity_of[pod.ip], node_of[pod.ip] = identity, node
    return (
        build_ip_listener(naming.OUTBOUND_PODS, identities.values(), identity_of, build_passthrough_chain()),
        build_ip_listener(naming.OUTBOUND_POD_NODES, nodes.values(), node_of, build_passthrough_chain()),
    )
