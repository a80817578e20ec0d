"""Which filter chain Envoy's outbound listeners pick for a connection: an evaluator of the subset of the
xDS unified matcher translation emits (matcher_tree exact maps, matcher_list with single/and/or predicates
on source IP, destination IP and destination port), following the xDS matcher semantics."""

from __future__ import annotations

from collections.abc import Mapping

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.matching.common_inputs.network.v3 import network_inputs_pb2
from google.protobuf import wrappers_pb2
from xds.type.matcher.v3 import matcher_pb2

from controlplane.translate import naming

_INPUTS = {
    network_inputs_pb2.SourceIPInput.DESCRIPTOR.full_name: "src_ip",
    network_inputs_pb2.DestinationIPInput.DESCRIPTOR.full_name: "dst_ip",
    network_inputs_pb2.DestinationPortInput.DESCRIPTOR.full_name: "dst_port",
    # The only filter state a matcher reads: the client's IP (`hbone_originate` picks the identity by it).
    network_inputs_pb2.FilterStateInput.DESCRIPTOR.full_name: "src_ip",
}


def _input(config: object, conn: dict[str, str]) -> str:
    type_name = config.typed_config.TypeName()  # type: ignore[attr-defined]
    return conn[_INPUTS[type_name]]


def _predicate(p: matcher_pb2.Matcher.MatcherList.Predicate, conn: dict[str, str]) -> bool:
    which = p.WhichOneof("match_type")
    if which == "single_predicate":
        assert p.single_predicate.value_match.WhichOneof("match_pattern") == "exact"
        return bool(_input(p.single_predicate.input, conn) == p.single_predicate.value_match.exact)
    if which == "and_matcher":
        return all(_predicate(x, conn) for x in p.and_matcher.predicate)
    if which == "or_matcher":
        return any(_predicate(x, conn) for x in p.or_matcher.predicate)
    raise AssertionError(f"unexpected predicate {which}")


def _on_match(on_match: matcher_pb2.Matcher.OnMatch, conn: dict[str, str]) -> str | None:
    if on_match.HasField("matcher"):
        return _evaluate(on_match.matcher, conn)
    value = wrappers_pb2.StringValue()
    assert on_match.action.typed_config.Unpack(value)
    return value.value


def _evaluate(matcher: matcher_pb2.Matcher, conn: dict[str, str]) -> str | None:
    if matcher.HasField("matcher_tree"):
        tree = matcher.matcher_tree
        key = _input(tree.input, conn)
        if key in tree.exact_match_map.map:
            return _on_match(tree.exact_match_map.map[key], conn)
    else:
        for field_matcher in matcher.matcher_list.matchers:
            if _predicate(field_matcher.predicate, conn):
                return _on_match(field_matcher.on_match, conn)
    if matcher.HasField("on_no_match"):
        return _on_match(matcher.on_no_match, conn)
    return None


def _select(listener: listener_pb2.Listener, conn: dict[str, str]) -> str:
    name = _evaluate(listener.filter_chain_matcher, conn)
    if name is None:
        return str(listener.default_filter_chain.name)
    assert name in {c.name for c in listener.filter_chains}, f"matcher names a missing chain {name!r}"
    return name


def _handoff(
    listener: listener_pb2.Listener, chain: str, listeners: Mapping[str, listener_pb2.Listener]
) -> str:
    """The internal listener `chain` hands its connections to (tcp_proxy to a cluster of the listener's
    name), or "" for a chain that does not."""
    found = [c for c in [*listener.filter_chains, listener.default_filter_chain] if c.name == chain]
    proxy = tcp_proxy_pb2.TcpProxy()
    if not found or not found[0].filters or not found[0].filters[-1].typed_config.Unpack(proxy):
        return ""
    target = listeners.get(proxy.cluster)
    return proxy.cluster if target is not None and target.HasField("internal_listener") else ""


def chain_for(listeners: Mapping[str, listener_pb2.Listener], *, src: str, dst: str, port: int) -> str:
    """The name of the filter chain a connection from `src` to `dst:port` ends in: from the node's
    outbound listener through the internal listeners its chains hand the connection to."""
    conn = {"src_ip": src, "dst_ip": dst, "dst_port": str(port)}
    listener = listeners[naming.OUTBOUND_LISTENER]
    for _ in range(len(listeners)):
        name = _select(listener, conn)
        target = _handoff(listener, name, listeners)
        if not target:
            return name
        listener = listeners[target]
    raise AssertionError("handoff loop")


def action_names(matcher: matcher_pb2.Matcher) -> set[str]:
    """Every filter chain name the matcher can select."""
    out: set[str] = set()

    def on_match(m: matcher_pb2.Matcher.OnMatch) -> None:
        if m.HasField("matcher"):
            walk(m.matcher)
        else:
            value = wrappers_pb2.StringValue()
            m.action.typed_config.Unpack(value)
            out.add(value.value)

    def walk(m: matcher_pb2.Matcher) -> None:
        if m.HasField("matcher_tree"):
            for v in m.matcher_tree.exact_match_map.map.values():
                on_match(v)
        for fm in m.matcher_list.matchers:
            on_match(fm.on_match)
        if m.HasField("on_no_match"):
            on_match(m.on_no_match)

    walk(matcher)
    return out
