"""The outbound listener: the original destination picks the Service port's chain (GAMMA binds by
ClusterIP:port), the source IP picks a consumer namespace's chain, and everything else passes through."""

from __future__ import annotations

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.common.set_filter_state.v3 import value_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.set_filter_state.v3 import set_filter_state_pb2 as net_sfs_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from controlplane.model.objects import MeshObject
from controlplane.model.pmap import PMap
from controlplane.translate import naming
from controlplane.translate.translator import Translator, translate_node
from tests.translate.builders import (
    backend,
    http_port,
    http_route,
    mesh,
    namespace,
    node,
    parent,
    pod,
    rule,
    service,
    tcp_port,
)
from tests.translate.chains import action_names, chain_for
from tests.translate.sample import sample_mesh


def _listeners(node_name: str = "node-a") -> PMap[str, listener_pb2.Listener]:
    return translate_node(sample_mesh(), node_name).listeners


def _listener(node_name: str = "node-a") -> listener_pb2.Listener:
    return _listeners(node_name)[naming.OUTBOUND_SERVICES]


def test_listener_basics() -> None:
    listener = _listeners()["outbound"]
    assert listener.name == naming.OUTBOUND_LISTENER
    assert listener.address.socket_address.address == "10.0.0.1"
    assert listener.address.socket_address.port_value == 15001
    # The agent spreads redirected connections over 15001..15004 (an ephemeral port space each).
    assert [a.address.socket_address.port_value for a in listener.additional_addresses] == list(
        range(15002, 15005)
    )
    assert {a.address.socket_address.address for a in listener.additional_addresses} == {"10.0.0.1"}
    assert [f.name for f in listener.listener_filters] == [naming.ORIGINAL_DST_FILTER]
    # Everything but a consumer namespace's own chains goes on to the shared `outbound_services`.
    assert listener.default_filter_chain.name == naming.OUTBOUND_SERVICES
    names = [c.name for c in listener.filter_chains]
    assert len(names) == len(set(names))
    assert action_names(listener.filter_chain_matcher) <= set(names)
    services = _listener()
    assert services.name == naming.OUTBOUND_SERVICES
    assert services.HasField("internal_listener") and not services.HasField("address")
    assert [f.name for f in services.listener_filters] == [naming.ORIGINAL_DST_FILTER]
    assert services.default_filter_chain.name == naming.OUTBOUND_PODS
    names = [c.name for c in services.filter_chains]
    assert len(names) == len(set(names))
    assert action_names(services.filter_chain_matcher) <= set(names)


def test_handoff_passes_the_original_addresses_to_outbound_services() -> None:
    config = translate_node(sample_mesh(), "node-a")
    state_filter, proxy_filter = config.listeners["outbound"].default_filter_chain.filters
    state = net_sfs_pb2.Config()
    assert state_filter.typed_config.Unpack(state)
    assert {
        (v.object_key, v.format_string.text_format_source.inline_string) for v in state.on_new_connection
    } == {
        ("envoy.filters.listener.original_dst.local_ip", "%DOWNSTREAM_LOCAL_ADDRESS%"),
        ("envoy.filters.listener.original_dst.remote_ip", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    }
    assert all(v.shared_with_upstream == value_pb2.FilterStateValue.ONCE for v in state.on_new_connection)
    proxy = tcp_proxy_pb2.TcpProxy()
    assert proxy_filter.typed_config.Unpack(proxy)
    assert proxy.cluster == naming.OUTBOUND_SERVICES
    for target in (naming.OUTBOUND_SERVICES, naming.outbound_consumer("web")):
        (endpoint,) = config.clusters[target].load_assignment.endpoints[0].lb_endpoints
        assert endpoint.endpoint.address.envoy_internal_address.server_listener_name == target
        assert config.listeners[target].HasField("internal_listener")
    # web's clients (10.1.0.10 on node-a) go to web's consumer listener, which hands other destinations on.
    outbound = config.listeners["outbound"]
    assert [c.name for c in outbound.filter_chains] == [naming.outbound_consumer("web")]
    assert outbound.filter_chain_matcher.matcher_tree.exact_match_map.map["10.1.0.10"].HasField("action")
    consumer = config.listeners[naming.outbound_consumer("web")]
    assert consumer.default_filter_chain.name == naming.OUTBOUND_SERVICES
    assert consumer.default_filter_chain == outbound.default_filter_chain


def test_outbound_services_is_one_object_for_every_node() -> None:
    """The Service chains are node-independent: every node's config holds the same listener object (one
    resource for the xDS cache), and only the small per-node listener differs."""
    m = sample_mesh()
    translator = Translator()
    a, b = translator.translate_node(m, "node-a"), translator.translate_node(m, "node-b")
    assert a.listeners[naming.OUTBOUND_SERVICES] is b.listeners[naming.OUTBOUND_SERVICES]
    assert a.listeners["outbound"] != b.listeners["outbound"]
    assert a.listeners["outbound"].ByteSize() < a.listeners[naming.OUTBOUND_SERVICES].ByteSize() // 2


@pytest.mark.parametrize(
    ("src", "dst", "port", "chain"),
    [
        # HTTP and TCP Service ports by ClusterIP:port.
        ("10.1.0.20", "10.96.0.10", 80, "shop/reviews:80"),
        ("10.1.0.20", "10.96.0.40", 5432, "db/postgres:5432"),
        ("10.1.0.20", "10.96.0.50", 9000, "web/frontend:9000"),
        ("10.1.0.20", "10.96.0.20", 9090, "shop/ratings:9090"),
        # A ClusterIP on a port the Service does not have, a pod outside the mesh, anything else: passthrough.
        ("10.1.0.20", "10.96.0.10", 8080, naming.PASSTHROUGH),
        ("10.1.0.20", "10.1.0.50", 8080, naming.PASSTHROUGH),
        ("10.1.0.20", "192.0.2.1", 443, naming.PASSTHROUGH),
        # A meshed pod's own IP, on any port: HBONE with the caller's identity (outbound_pods).
        ("10.1.0.20", "10.1.0.21", 8080, "hbone|shop|reviews"),
        ("10.1.0.20", "10.1.0.40", 1234, "hbone|shop|reviews"),
        # A client in web (consumer routes for shop/reviews) gets web's chain for that port only.
        ("10.1.0.10", "10.96.0.10", 80, "shop/reviews:80@web"),
        ("10.1.0.10", "10.96.0.11", 80, "shop/reviews-v1:80"),
        ("10.1.0.10", "10.1.0.20", 8080, "hbone|web|frontend"),
        # A pod calling a Service that selects itself goes through that Service's chain too.
        ("10.1.0.20", "10.96.0.11", 80, "shop/reviews-v1:80"),
    ],
)
def test_chain_selection(src: str, dst: str, port: int, chain: str) -> None:
    assert chain_for(_listeners(), src=src, dst=dst, port=port) == chain


def test_consumer_chain_only_on_nodes_with_clients_of_that_namespace() -> None:
    objects: list[MeshObject] = [
        namespace("shop"),
        namespace("web"),
        node("node-a", "10.0.0.1"),
        node("node-b", "10.0.0.2"),
        pod("web", "client", "node-a", "10.1.0.10"),
        pod("shop", "server", "node-b", "10.1.0.20"),
        service("shop", "api", "10.96.0.1", http_port(80)),
        http_route("web", "api-for-web", parent("shop", "api"), rule(backend("shop", "api"))),
    ]
    m = mesh(*objects)
    translator = Translator()
    a = translator.translate_node(m, "node-a")
    b = translator.translate_node(m, "node-b")
    # The producer chain lives in the shared `outbound_services`, web's consumer chain in the shared
    # `outbound_consumer|web`, which only node-a (with web's clients) hands connections to and receives.
    assert [c.name for c in a.listeners["outbound"].filter_chains] == ["outbound_consumer|web"]
    assert [c.name for c in b.listeners["outbound"].filter_chains] == []
    assert [c.name for c in a.listeners[naming.OUTBOUND_SERVICES].filter_chains] == ["shop/api:80"]
    assert [c.name for c in a.listeners["outbound_consumer|web"].filter_chains] == ["shop/api:80@web"]
    assert "outbound_consumer|web" not in b.listeners
    assert a.listeners[naming.OUTBOUND_SERVICES] is b.listeners[naming.OUTBOUND_SERVICES]
    assert "outbound_consumer|web" in a.clusters
    assert sorted(a.route_configs) == ["shop/api:80", "shop/api:80@web"]
    assert sorted(b.route_configs) == ["shop/api:80"]
    # The consumer's chain applies to its own clients; others on the node keep the producer chain.
    assert chain_for(a.listeners, src="10.1.0.10", dst="10.96.0.1", port=80) == "shop/api:80@web"
    assert chain_for(a.listeners, src="10.1.0.99", dst="10.96.0.1", port=80) == "shop/api:80"


def test_http_chain_uses_rds_and_tcp_chain_proxies_to_the_cluster() -> None:
    chains = {c.name: c for c in _listener().filter_chains}
    # Every Service chain first hands the client's address on (hbone_originate picks its identity by it).
    source, http_filter = chains["shop/reviews:80"].filters
    assert source.name == naming.SET_FILTER_STATE_NETWORK
    hcm = hcm_pb2.HttpConnectionManager()
    assert http_filter.typed_config.Unpack(hcm)
    assert hcm.rds.route_config_name == "shop/reviews:80"
    assert hcm.rds.config_source.HasField("ads")
    assert [f.name for f in hcm.http_filters] == [naming.FAULT_FILTER, naming.ROUTER_FILTER]
    source, tcp_filter = chains["db/postgres:5432"].filters
    assert source.name == naming.SET_FILTER_STATE_NETWORK
    proxy = tcp_proxy_pb2.TcpProxy()
    assert tcp_filter.typed_config.Unpack(proxy)
    assert proxy.cluster == "db/postgres:5432"
    # No Service port: on to `outbound_pods` (meshed pod IPs), whose own default passes through.
    _, handoff = _listener().default_filter_chain.filters
    assert handoff.typed_config.Unpack(proxy)
    assert proxy.cluster == naming.OUTBOUND_PODS
    (passthrough,) = _listeners()[naming.OUTBOUND_PODS].default_filter_chain.filters
    assert passthrough.typed_config.Unpack(proxy)
    assert proxy.cluster == naming.PASSTHROUGH


def test_headless_service_gets_cluster_but_no_chain() -> None:
    m = mesh(namespace("shop"), node("n", "10.0.0.1"), service("shop", "db", None, tcp_port(5432)))
    config = translate_node(m, "n")
    assert sorted(config.clusters) == [
        "hbone_originate",
        "inbound_http",
        "inbound_pod",
        "inbound_tcp",
        "outbound_pod_nodes",
        "outbound_pods",
        "outbound_services",
        "passthrough",
        "shop/db:5432",
    ]
    assert list(config.listeners["outbound"].filter_chains) == []
    assert list(config.listeners[naming.OUTBOUND_SERVICES].filter_chains) == []
    assert not config.service_vips


def test_dual_stack_service_selects_one_chain_from_both_ips() -> None:
    svc = service("shop", "api", None, http_port(80))
    svc = type(svc)(namespace="shop", name="api", cluster_ips=("10.96.0.1", "fd00::1"), ports=svc.ports)
    listeners = translate_node(mesh(namespace("shop"), node("n", "10.0.0.1"), svc), "n").listeners
    assert [c.name for c in listeners[naming.OUTBOUND_SERVICES].filter_chains] == ["shop/api:80"]
    assert chain_for(listeners, src="10.1.0.1", dst="fd00::1", port=80) == "shop/api:80"
    assert chain_for(listeners, src="10.1.0.1", dst="10.96.0.1", port=80) == "shop/api:80"


def test_node_without_internal_ip_binds_every_address() -> None:
    config = translate_node(sample_mesh(), "node-unknown")
    assert config.listeners["outbound"].address.socket_address.address == "0.0.0.0"
    assert any(
        d.reason == "InvalidAddress" and d.ref is not None and d.ref.name == "node-unknown"
        for d in config.diagnostics
    )


def test_two_services_claiming_one_cluster_ip_first_keeps_it() -> None:
    m = mesh(
        namespace("shop"),
        node("n", "10.0.0.1"),
        service("shop", "a", "10.96.0.1", tcp_port(80)),
        service("shop", "b", "10.96.0.1", tcp_port(80)),
    )
    config = translate_node(m, "n")
    assert chain_for(config.listeners, src="10.1.0.1", dst="10.96.0.1", port=80) == "shop/a:80"
    assert [(str(d.ref), d.field, d.reason.value) for d in config.diagnostics] == [
        ("Service/shop/b", "spec.clusterIPs", "Conflict")
    ]
