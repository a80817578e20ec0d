"""The outbound listener (15001): one filter chain per Service port, chosen by the original destination.

Chains are picked by Envoy's unified `filter_chain_matcher`, so the listener stays O(service ports +
consumer-route chains used on the node) whatever the number of local workloads:

    matcher_list (first match wins), one entry per consumer namespace with workloads on this node:
        source IP in <that namespace's local pod IPs> AND (dst ip, dst port) in <its consumer-routed ports>
            -> destination tree of that namespace's consumer chains
    on_no_match -> destination tree of every Service port (dst ip -> dst port -> chain)
    no match at all -> default chain: passthrough to the original destination

Pod IPs appear once per namespace (not once per service), and each consumer-routed port once per namespace,
so the matcher grows with (local workloads + consumer routes), never with their product.

Later per-identity upstream TLS (HBONE) fits the same shape: the source-IP layer already classifies the
local workloads; it would classify by identity (namespace, service account) instead and the chains it leads
to would tunnel through per-identity internal listeners, while clusters and route configs stay shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.matching.common_inputs.network.v3 import network_inputs_pb2
from google.protobuf import wrappers_pb2
from xds.core.v3 import extension_pb2
from xds.type.matcher.v3 import matcher_pb2

from controlplane.translate import naming
from controlplane.translate.hbone import source_address_filter
from controlplane.translate.messages import ads_source, pack

_Predicate = matcher_pb2.Matcher.MatcherList.Predicate


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainTarget:
    """A filter chain and the original destinations (ClusterIPs x one port) that select it."""

    chain: str
    ips: tuple[str, ...]
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerSelector:
    """Clients of one namespace on this node and the consumer-route chains they get."""

    namespace: str
    source_ips: tuple[str, ...]
    targets: tuple[ChainTarget, ...]


def _stat_prefix(chain: str) -> str:
    # Envoy splits stat names on "." and treats ":" specially in tags; keep them readable but inert.
    return chain.replace("/", "_").replace(":", "_").replace("@", "_from_")


def _filter(name: str, config: object) -> listener_components_pb2.Filter:
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
        name=chain, filters=[source_address_filter(), _filter(naming.HCM_FILTER, hcm)]
    )


def build_tcp_chain(chain: str, cluster: str) -> listener_components_pb2.FilterChain:
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=_stat_prefix(chain), cluster=cluster)
    return listener_components_pb2.FilterChain(
        name=chain, filters=[source_address_filter(), _filter(naming.TCP_PROXY_FILTER, proxy)]
    )


def build_passthrough_chain() -> listener_components_pb2.FilterChain:
    """Anything but a Service: to the original destination, as it was addressed."""
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=naming.PASSTHROUGH, cluster=naming.PASSTHROUGH)
    return listener_components_pb2.FilterChain(
        name=naming.PASSTHROUGH, filters=[_filter(naming.TCP_PROXY_FILTER, proxy)]
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


def _exact(
    input_config: extension_pb2.TypedExtensionConfig, value: str
) -> matcher_pb2.Matcher.MatcherList.Predicate:
    p = _Predicate()
    p.single_predicate.input.CopyFrom(input_config)
    p.single_predicate.value_match.exact = value
    return p


def _any_of(
    predicates: list[matcher_pb2.Matcher.MatcherList.Predicate],
) -> matcher_pb2.Matcher.MatcherList.Predicate:
    if len(predicates) == 1:
        return predicates[0]
    p = _Predicate()
    p.or_matcher.predicate.extend(predicates)
    return p


def _all_of(
    predicates: list[matcher_pb2.Matcher.MatcherList.Predicate],
) -> matcher_pb2.Matcher.MatcherList.Predicate:
    p = _Predicate()
    p.and_matcher.predicate.extend(predicates)
    return p


def _consumer_predicate(selector: ConsumerSelector) -> matcher_pb2.Matcher.MatcherList.Predicate:
    sources = _any_of([_exact(_src_ip(), ip) for ip in sorted(selector.source_ips)])
    destinations = _any_of(
        [
            _all_of([_exact(_dst_ip(), ip), _exact(_dst_port(), str(t.port))])
            for t in selector.targets
            for ip in t.ips
        ]
    )
    return _all_of([sources, destinations])


def build_filter_chain_matcher(
    producer: Sequence[ChainTarget], consumers: Sequence[ConsumerSelector]
) -> matcher_pb2.Matcher:
    matcher = matcher_pb2.Matcher()
    fill_filter_chain_matcher(matcher, destination_tree(producer), consumers)
    return matcher


def fill_filter_chain_matcher(
    out: matcher_pb2.Matcher, tree: matcher_pb2.Matcher, consumers: Sequence[ConsumerSelector]
) -> None:
    """Write the listener's matcher into `out`: the producer destination `tree`, behind one entry per
    consumer namespace with clients here. The (large) tree is copied once."""
    used = [c for c in consumers if c.source_ips and c.targets]
    if not used:
        out.CopyFrom(tree)
        return
    for selector in sorted(used, key=lambda c: c.namespace):
        entry = out.matcher_list.matchers.add()
        entry.predicate.CopyFrom(_consumer_predicate(selector))
        entry.on_match.matcher.CopyFrom(destination_tree(selector.targets))
    if tree.ByteSize():
        out.on_no_match.matcher.CopyFrom(tree)


def build_outbound_listener(
    *,
    address: str,
    port: int,
    chains: Sequence[listener_components_pb2.FilterChain],
    matcher: matcher_pb2.Matcher | None,
) -> listener_pb2.Listener:
    listener = listener_pb2.Listener(
        name=naming.OUTBOUND_LISTENER,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=address, port_value=port)
        ),
        listener_filters=[
            listener_components_pb2.ListenerFilter(
                name=naming.ORIGINAL_DST_FILTER, typed_config=pack(original_dst_pb2.OriginalDst())
            )
        ],
        filter_chains=chains,
        default_filter_chain=build_passthrough_chain(),
    )
    if matcher is not None and matcher.ByteSize():
        listener.filter_chain_matcher.CopyFrom(matcher)
    return listener


def bind_outbound_listener(
    template: listener_pb2.Listener,
    tree: matcher_pb2.Matcher,
    *,
    address: str,
    consumer_chains: Sequence[listener_components_pb2.FilterChain],
    consumers: Sequence[ConsumerSelector],
) -> listener_pb2.Listener:
    """One node's listener from the node-independent parts: `template` (`build_outbound_listener` over the
    producer chains, any address, no matcher) and the producer destination `tree`. Copies of prebuilt
    messages (C-level) instead of rebuilding every chain and matcher entry for every node."""
    listener = listener_pb2.Listener()
    listener.CopyFrom(template)
    listener.address.socket_address.address = address
    if consumer_chains:
        listener.filter_chains.extend(consumer_chains)
    fill_filter_chain_matcher(listener.filter_chain_matcher, tree, consumers)
    if not listener.filter_chain_matcher.ByteSize():
        listener.ClearField("filter_chain_matcher")
    return listener
