"""The outbound side (15001): the node's listener, and the internal listeners every node shares.

A node's listener differs from another's only in its address and its local clients, so it holds just those
and hands each connection on (tcp_proxy into an internal listener; the original destination and client
address travel as filter state that the original_dst listener filter restores there):

    outbound (nodeIP:15001, per node): source IP -> `outbound_consumer|<ns>` for local clients of a
        namespace with consumer routes; anyone else -> `outbound_services`
    outbound_consumer|<ns> (internal, per consumer namespace): dst ip -> dst port -> that namespace's
        consumer-route chains; anything else -> `outbound_services`
    outbound_services (internal, one for the mesh): dst ip -> dst port -> the Service port's chain (GAMMA
        binds by ClusterIP:port); anything else -> `outbound_pods`
    outbound_pods (internal, one for the mesh, controlplane.translate.pods): a meshed pod's IP -> HBONE to
        its node as the caller; anything else -> passthrough to the original destination

So the big part (one chain per Service port) is one resource, identical on every node, and a node's own
listener is O(local clients of consumer namespaces): config grows with services + nodes, not their product.
Every chain behind the hop sees the connection's real addresses, so it works as if it were on 15001.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, substitution_format_string_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.common.set_filter_state.v3 import value_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.set_filter_state.v3 import set_filter_state_pb2 as net_sfs_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.matching.common_inputs.network.v3 import network_inputs_pb2
from envoy.extensions.transport_sockets.internal_upstream.v3 import internal_upstream_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from google.protobuf import duration_pb2, wrappers_pb2
from xds.core.v3 import extension_pb2
from xds.type.matcher.v3 import matcher_pb2

from controlplane.translate import naming
from controlplane.translate.hbone import (
    INTERNAL_UPSTREAM_SOCKET,
    LOCAL_IP_STATE,
    REMOTE_IP_STATE,
    source_address_filter,
)
from controlplane.translate.messages import ads_source, pack


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainTarget:
    """A filter chain and the original destinations (ClusterIPs x one port) that select it."""

    chain: str
    ips: tuple[str, ...]
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerSelector:
    """Clients of one namespace (with consumer routes) on this node: their connections go to that
    namespace's `outbound_consumer|<ns>`."""

    namespace: str
    source_ips: tuple[str, ...]


def _stat_prefix(chain: str) -> str:
    # Envoy splits stat names on "." and treats ":" specially in tags; keep them readable but inert.
    return chain.replace("/", "_").replace(":", "_").replace("@", "_from_")


def filter_of(name: str, config: object) -> listener_components_pb2.Filter:
    return listener_components_pb2.Filter(name=name, typed_config=pack(config))  # type: ignore[arg-type]


def build_http_chain(chain: str, route_config: str) -> listener_components_pb2.FilterChain:
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=_stat_prefix(chain),
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        rds=hcm_pb2.Rds(config_source=ads_source(), route_config_name=route_config),
        http_filters=[
            # No fault by default: each route config's virtual host carries its TrafficPolicy's fault.
            hcm_pb2.HttpFilter(name=naming.FAULT_FILTER, typed_config=pack(fault_pb2.HTTPFault())),
            hcm_pb2.HttpFilter(name=naming.ROUTER_FILTER, typed_config=pack(router_pb2.Router())),
        ],
    )
    return listener_components_pb2.FilterChain(
        name=chain, filters=[source_address_filter(), filter_of(naming.HCM_FILTER, hcm)]
    )


def build_tcp_chain(chain: str, cluster: str) -> listener_components_pb2.FilterChain:
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=_stat_prefix(chain), cluster=cluster)
    return listener_components_pb2.FilterChain(
        name=chain, filters=[source_address_filter(), filter_of(naming.TCP_PROXY_FILTER, proxy)]
    )


def build_passthrough_chain() -> listener_components_pb2.FilterChain:
    """Anything but a Service: to the original destination, as it was addressed."""
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=naming.PASSTHROUGH, cluster=naming.PASSTHROUGH)
    return listener_components_pb2.FilterChain(
        name=naming.PASSTHROUGH, filters=[filter_of(naming.TCP_PROXY_FILTER, proxy)]
    )


def _action(chain: str) -> matcher_pb2.Matcher.OnMatch:
    return matcher_pb2.Matcher.OnMatch(
        action=extension_pb2.TypedExtensionConfig(
            name=chain, typed_config=pack(wrappers_pb2.StringValue(value=chain))
        )
    )


def _input(name: str, message: object) -> extension_pb2.TypedExtensionConfig:
    return extension_pb2.TypedExtensionConfig(name=name, typed_config=pack(message))  # type: ignore[arg-type]


def _dst_ip() -> extension_pb2.TypedExtensionConfig:
    return _input("destination-ip", network_inputs_pb2.DestinationIPInput())


def _dst_port() -> extension_pb2.TypedExtensionConfig:
    return _input("destination-port", network_inputs_pb2.DestinationPortInput())


def _src_ip() -> extension_pb2.TypedExtensionConfig:
    return _input("source-ip", network_inputs_pb2.SourceIPInput())


def destination_tree(targets: Sequence[ChainTarget]) -> matcher_pb2.Matcher:
    """dst ip -> dst port -> chain; misses fall to the listener's default chain."""
    by_ip: dict[str, dict[int, str]] = {}
    for t in targets:
        for ip in t.ips:
            by_ip.setdefault(ip, {})[t.port] = t.chain
    tree = matcher_pb2.Matcher()
    if not by_ip:
        # Envoy rejects a tree without a map: with no destinations, no matcher at all (the default chain).
        return tree
    tree.matcher_tree.input.CopyFrom(_dst_ip())
    for ip in sorted(by_ip):
        ports = matcher_pb2.Matcher()
        ports.matcher_tree.input.CopyFrom(_dst_port())
        for port in sorted(by_ip[ip]):
            ports.matcher_tree.exact_match_map.map[str(port)].CopyFrom(_action(by_ip[ip][port]))
        tree.matcher_tree.exact_match_map.map[ip].matcher.CopyFrom(ports)
    return tree


def build_services_listener(
    chains: Sequence[listener_components_pb2.FilterChain], tree: matcher_pb2.Matcher
) -> listener_pb2.Listener:
    """`outbound_services`: the producer chains and their destination tree as an internal listener, the
    same on every node (so every node shares one resource). The original_dst listener filter restores the
    client's addresses the node's handoff chain passed on, so the chains see the real connection."""
    listener = listener_pb2.Listener(
        name=naming.OUTBOUND_SERVICES,
        internal_listener=listener_pb2.Listener.InternalListenerConfig(),
        listener_filters=[_original_dst_filter()],
        filter_chains=chains,
        # Not a Service port: perhaps a meshed pod's own IP (`outbound_pods` tunnels those), else passthrough.
        default_filter_chain=build_handoff_chain(naming.OUTBOUND_PODS),
    )
    if tree.ByteSize():
        listener.filter_chain_matcher.CopyFrom(tree)
    return listener


def _format_string(text: str) -> substitution_format_string_pb2.SubstitutionFormatString:
    return substitution_format_string_pb2.SubstitutionFormatString(
        text_format_source=base_pb2.DataSource(inline_string=text)
    )


def _original_dst_filter() -> listener_components_pb2.ListenerFilter:
    """Restores, on an internal listener, the addresses a handoff passed along (filter state, metadata)."""
    return listener_components_pb2.ListenerFilter(
        name=naming.ORIGINAL_DST_FILTER, typed_config=pack(original_dst_pb2.OriginalDst())
    )


def shared_state(
    key: str, text: str, shared: int = value_pb2.FilterStateValue.ONCE
) -> value_pb2.FilterStateValue:
    """Read-only filter state `key` formatted from `text`, shared with the upstream as `shared` (a
    FilterStateValue.SharedWithUpstream value: ONCE reaches the next hop only)."""
    return value_pb2.FilterStateValue(
        object_key=key, format_string=_format_string(text), read_only=True, shared_with_upstream=shared
    )


def build_handoff_chain(target: str) -> listener_components_pb2.FilterChain:
    """A chain into internal listener `target` (through the cluster of the same name): the connection's
    original destination and client address go along as filter state, which the original_dst listener
    filter there restores."""
    state = net_sfs_pb2.Config(
        on_new_connection=[
            shared_state(LOCAL_IP_STATE, "%DOWNSTREAM_LOCAL_ADDRESS%"),
            shared_state(REMOTE_IP_STATE, "%DOWNSTREAM_REMOTE_ADDRESS%"),
        ]
    )
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=naming.stat_prefix(target), cluster=target)
    return listener_components_pb2.FilterChain(
        name=target,
        filters=[
            filter_of(naming.SET_FILTER_STATE_NETWORK, state),
            filter_of(naming.TCP_PROXY_FILTER, proxy),
        ],
    )


def build_handoff_cluster(target: str, connect_timeout: duration_pb2.Duration) -> cluster_pb2.Cluster:
    """The way into internal listener `target`."""
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(
                envoy_internal_address=address_pb2.EnvoyInternalAddress(server_listener_name=target)
            )
        )
    )
    return cluster_pb2.Cluster(
        name=target,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=connect_timeout,
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=target,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
        ),
        transport_socket=base_pb2.TransportSocket(
            name=INTERNAL_UPSTREAM_SOCKET,
            typed_config=pack(
                internal_upstream_pb2.InternalUpstreamTransport(
                    transport_socket=base_pb2.TransportSocket(
                        name="envoy.transport_sockets.raw_buffer",
                        typed_config=pack(raw_buffer_pb2.RawBuffer()),
                    )
                )
            ),
        ),
    )


def build_consumer_listener(
    namespace: str, chains: Sequence[listener_components_pb2.FilterChain], targets: Sequence[ChainTarget]
) -> listener_pb2.Listener:
    """`outbound_consumer|<ns>`: the consumer-route chains of one namespace's clients, chosen by the
    original destination, the same on every node with such clients. Any other destination goes on to
    `outbound_services` (a second internal hop, only for those clients)."""
    listener = listener_pb2.Listener(
        name=naming.outbound_consumer(namespace),
        internal_listener=listener_pb2.Listener.InternalListenerConfig(),
        listener_filters=[_original_dst_filter()],
        filter_chains=chains,
        default_filter_chain=build_handoff_chain(naming.OUTBOUND_SERVICES),
    )
    tree = destination_tree(targets)
    if tree.ByteSize():
        listener.filter_chain_matcher.CopyFrom(tree)
    return listener


def build_outbound_listener(
    *, address: str, port: int, ports: int = 1, consumers: Sequence[ConsumerSelector]
) -> listener_pb2.Listener:
    """One node's listener on `address:port`: hands each connection to an internal listener shared by
    nodes, by the client's IP: clients of a namespace with consumer routes to its `outbound_consumer|<ns>`,
    everyone else to `outbound_services`. O(local clients of consumer namespaces), whatever the Services."""
    used = sorted((c for c in consumers if c.source_ips), key=lambda c: c.namespace)
    listener = listener_pb2.Listener(
        name=naming.OUTBOUND_LISTENER,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=address, port_value=port)
        ),
        listener_filters=[_original_dst_filter()],
        filter_chains=[build_handoff_chain(naming.outbound_consumer(c.namespace)) for c in used],
        default_filter_chain=build_handoff_chain(naming.OUTBOUND_SERVICES),
        # The node agent spreads redirected connections over `ports` consecutive ports (one ephemeral port
        # space each for a pod's connections); every one leads to the same chains.
        additional_addresses=[
            listener_pb2.AdditionalAddress(
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address=address, port_value=port + offset)
                )
            )
            for offset in range(1, ports)
        ],
    )
    if used:
        tree = listener.filter_chain_matcher.matcher_tree
        tree.input.CopyFrom(_src_ip())
        for selector in used:
            for ip in selector.source_ips:
                tree.exact_match_map.map[ip].CopyFrom(_action(naming.outbound_consumer(selector.namespace)))
    return listener
