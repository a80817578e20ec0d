"""`outbound_pods`: connections to a meshed pod's own IP (no Service), carried over HBONE as the caller.

A destination that is no Service port falls from `outbound_services` to this internal listener, the same on
every node. A meshed pod's IP picks the chain of its (node, identity): the chain names where to tunnel (the
node's 15008, as the ORIGINAL_DST override address) and whom to expect there (SNI and SAN), as filter state
shared with the next hop, then hands the connection to `hbone_originate`, which picks the caller's identity
by its source IP exactly as for a Service endpoint. Anything else (a pod outside the mesh, an address outside
the cluster) passes through to the original destination.

Without it a pod IP would pass through in plaintext from the node's address, which a STRICT destination must
accept as if it were an HBONE delivery (bypassing its authorization), and which a STRICT destination on
another node refuses (breaking headless Services).

Size: one matcher entry per meshed pod IP and one chain per (node, identity) with meshed pods; it changes only
when meshed pods come, go or move, never with Services or endpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.common.set_filter_state.v3 import value_pb2
from envoy.extensions.filters.network.set_filter_state.v3 import set_filter_state_pb2 as net_sfs_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from controlplane.translate import naming
from controlplane.translate.assignments import Tunnel
from controlplane.translate.hbone import (
    LOCAL_IP_STATE,
    SERVER_NAME_STATE,
    SUBJECT_ALT_NAMES_STATE,
    server_name,
    source_address_filter,
)
from controlplane.translate.listener import (
    action,
    build_passthrough_chain,
    destination_ip_input,
    filter_of,
    format_string,
    original_dst_listener_filter,
)

# Read by ORIGINAL_DST clusters before anything else: the originate cluster connects to the node it names.
TUNNEL_ADDRESS_STATE = "envoy.network.transport_socket.original_dst_address"


@dataclass(frozen=True, slots=True, kw_only=True)
class PodTunnel:
    """A meshed pod's IP and how to reach it."""

    ip: str
    tunnel: Tunnel


def _shared(key: str, text: str) -> value_pb2.FilterStateValue:
    # ONCE: `hbone_originate` (the next hop) reads them; its own upstream, the tunnel, must not carry them on.
    return value_pb2.FilterStateValue(
        object_key=key,
        format_string=format_string(text),
        read_only=True,
        shared_with_upstream=value_pb2.FilterStateValue.ONCE,
    )


def _chain(name: str, tunnel: Tunnel) -> listener_components_pb2.FilterChain:
    state = net_sfs_pb2.Config(
        on_new_connection=[
            # The CONNECT authority: the pod's address and port, as the client dialled them.
            _shared(LOCAL_IP_STATE, "%DOWNSTREAM_LOCAL_ADDRESS%"),
            _shared(TUNNEL_ADDRESS_STATE, f"{tunnel.node_ip}:{tunnel.hbone_port}"),
            _shared(SERVER_NAME_STATE, server_name(tunnel.spiffe_id)),
            _shared(SUBJECT_ALT_NAMES_STATE, str(tunnel.spiffe_id)),
        ]
    )
    proxy = tcp_proxy_pb2.TcpProxy(
        stat_prefix=naming.stat_prefix(name), cluster=naming.HBONE_ORIGINATE_LISTENER
    )
    return listener_components_pb2.FilterChain(
        name=name,
        filters=[
            source_address_filter(),
            filter_of(naming.SET_FILTER_STATE_NETWORK, state),
            filter_of(naming.TCP_PROXY_FILTER, proxy),
        ],
    )


def build_pods_listener(pods: Sequence[PodTunnel]) -> listener_pb2.Listener:
    """`outbound_pods` for these meshed pods (any order; one IP once)."""
    chains: dict[str, listener_components_pb2.FilterChain] = {}
    by_ip: dict[str, str] = {}
    for pod in pods:
        t = pod.tunnel
        name = naming.pods_chain(t.node_ip, t.hbone_port, t.spiffe_id.namespace, t.spiffe_id.service_account)
        if name not in chains:
            chains[name] = _chain(name, t)
        by_ip[pod.ip] = name
    listener = listener_pb2.Listener(
        name=naming.OUTBOUND_PODS,
        internal_listener=listener_pb2.Listener.InternalListenerConfig(),
        listener_filters=[original_dst_listener_filter()],
        filter_chains=[chains[name] for name in sorted(chains)],
        default_filter_chain=build_passthrough_chain(),
    )
    if by_ip:
        tree = listener.filter_chain_matcher.matcher_tree
        tree.input.CopyFrom(destination_ip_input())
        for ip in sorted(by_ip):
            tree.exact_match_map.map[ip].CopyFrom(action(by_ip[ip]))
    return listener
