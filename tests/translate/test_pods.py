"""`outbound_pods` and `outbound_pod_nodes`: a meshed pod's own IP (no Service) is tunnelled over HBONE as
the caller, to the pod's node, expecting the pod's identity; other addresses pass through. Listeners for the
mesh, shared by every node, that change only with meshed pods."""

from __future__ import annotations

from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.network.set_filter_state.v3 import set_filter_state_pb2 as net_sfs_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import wrappers_pb2

from controlplane.ca.identity import SpiffeId
from controlplane.model.objects import Delete, MeshObject, Upsert
from controlplane.translate import naming
from controlplane.translate.hbone import (
    LOCAL_IP_STATE,
    REMOTE_IP_STATE,
    SERVER_NAME_STATE,
    SOURCE_IP_STATE,
    SUBJECT_ALT_NAMES_STATE,
    server_name,
)
from controlplane.translate.pods import TUNNEL_ADDRESS_STATE
from controlplane.translate.translator import BuildKind, Translator, translate_node
from tests.translate.builders import mesh, namespace, node, pod, service, tcp_port
from tests.translate.chains import chain_for
from tests.translate.sample import sample_mesh


def _pods(node_name: str = "node-a", listener: str = naming.OUTBOUND_PODS) -> listener_pb2.Listener:
    return translate_node(sample_mesh(), node_name).listeners[listener]


def _by_ip(listener: listener_pb2.Listener) -> dict[str, str]:
    entries = listener.filter_chain_matcher.matcher_tree.exact_match_map.map
    out = {}
    for ip, on_match in entries.items():
        name = wrappers_pb2.StringValue()
        assert on_match.action.typed_config.Unpack(name)
        out[ip] = name.value
    return out


def _state(chain: listener_components_pb2.FilterChain) -> dict[str, str]:
    config = net_sfs_pb2.Config()
    out: dict[str, str] = {}
    for f in chain.filters:
        if f.name == naming.SET_FILTER_STATE_NETWORK and f.typed_config.Unpack(config):
            for value in config.on_new_connection:
                out[value.object_key] = value.format_string.text_format_source.inline_string
    return out


def test_every_meshed_pod_ip_and_nothing_else() -> None:
    identities, nodes = _pods(), _pods(listener=naming.OUTBOUND_POD_NODES)
    for listener in (identities, nodes):
        assert listener.HasField("internal_listener") and not listener.HasField("address")
        assert [f.name for f in listener.listener_filters] == [naming.ORIGINAL_DST_FILTER]
        proxy = tcp_proxy_pb2.TcpProxy()
        (passthrough,) = listener.default_filter_chain.filters
        assert passthrough.typed_config.Unpack(proxy) and proxy.cluster == naming.PASSTHROUGH
    # sample_mesh: seven pods; legacy/old-1 (10.1.0.50) is in a namespace outside the mesh.
    assert _by_ip(identities) == {
        "10.1.0.10": "pods|web/frontend",
        "10.1.0.11": "pods|web/frontend",
        "10.1.0.20": "pods|shop/reviews",
        "10.1.0.21": "pods|shop/reviews",
        "10.1.0.30": "pods|shop/ratings",
        "10.1.0.40": "pods|db/postgres",
    }
    assert _by_ip(nodes) == {
        "10.1.0.10": "pods|10.0.0.1:15008",
        "10.1.0.11": "pods|10.0.0.2:15008",
        "10.1.0.20": "pods|10.0.0.1:15008",
        "10.1.0.21": "pods|10.0.0.2:15008",
        "10.1.0.30": "pods|10.0.0.2:15008",
        "10.1.0.40": "pods|10.0.0.1:15008",
    }
    # One chain per identity and one per node: never one per (node, identity).
    for listener in (identities, nodes):
        assert sorted(c.name for c in listener.filter_chains) == sorted(set(_by_ip(listener).values()))


def test_the_chains_name_the_identity_to_expect_and_the_tunnel() -> None:
    identity = {c.name: c for c in _pods().filter_chains}["pods|shop/ratings"]
    ratings = "spiffe://cluster.local/ns/shop/sa/ratings"
    assert _state(identity) == {
        SERVER_NAME_STATE: server_name(SpiffeId.parse(ratings)),
        SUBJECT_ALT_NAMES_STATE: ratings,
        LOCAL_IP_STATE: "%DOWNSTREAM_LOCAL_ADDRESS%",
        REMOTE_IP_STATE: "%DOWNSTREAM_REMOTE_ADDRESS%",
    }
    node = {c.name: c for c in _pods(listener=naming.OUTBOUND_POD_NODES).filter_chains}["pods|10.0.0.2:15008"]
    assert _state(node) == {
        # The caller's IP picks its identity in hbone_originate; the dialled address is the authority.
        SOURCE_IP_STATE: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
        LOCAL_IP_STATE: "%DOWNSTREAM_LOCAL_ADDRESS%",
        TUNNEL_ADDRESS_STATE: "10.0.0.2:15008",
    }
    proxy = tcp_proxy_pb2.TcpProxy()
    assert identity.filters[-1].typed_config.Unpack(proxy)
    assert proxy.cluster == naming.OUTBOUND_POD_NODES
    assert node.filters[-1].typed_config.Unpack(proxy)
    assert proxy.cluster == naming.HBONE_ORIGINATE_LISTENER
    clusters = translate_node(sample_mesh(), "node-a").clusters
    assert {naming.OUTBOUND_POD_NODES, naming.HBONE_ORIGINATE_LISTENER} <= set(clusters)


def test_the_callers_identity_is_chosen_by_its_source_ip() -> None:
    listeners = translate_node(sample_mesh(), "node-a").listeners
    assert chain_for(listeners, src="10.1.0.20", dst="10.1.0.30", port=9999) == "hbone|shop|reviews"
    assert chain_for(listeners, src="10.1.0.40", dst="10.1.0.30", port=9999) == "hbone|db|postgres"
    # Not a local meshed pod (e.g. an unmeshed one that got here): no originate chain at all.
    assert chain_for(listeners, src="10.1.0.50", dst="10.1.0.30", port=9999) == ""


def test_one_object_for_every_node_kept_while_no_meshed_pod_changes() -> None:
    translator = Translator()
    m = sample_mesh()
    a, b = translator.translate_node(m, "node-a"), translator.translate_node(m, "node-b")
    assert a.listeners[naming.OUTBOUND_PODS] is b.listeners[naming.OUTBOUND_PODS]
    # A Service (no pod) and an unmeshed pod change nothing of it.
    m2 = m.apply(Upsert(obj=service("shop", "extra", "10.96.0.99", tcp_port(7000))))
    m2 = m2.apply(Upsert(obj=pod("legacy", "old-2", "node-a", "10.1.0.51")))
    assert (
        translator.translate_node(m2, "node-a").listeners[naming.OUTBOUND_PODS]
        is (a.listeners[naming.OUTBOUND_PODS])
    )


def test_pods_come_go_and_move() -> None:
    translator = Translator()
    m = sample_mesh()
    translator.translate_node(m, "node-a")
    moved = m.apply(Upsert(obj=pod("shop", "ratings-1", "node-a", "10.1.0.30", sa="ratings")))
    listener = translator.translate_node(moved, "node-a").listeners[naming.OUTBOUND_POD_NODES]
    assert _by_ip(listener)["10.1.0.30"] == "pods|10.0.0.1:15008"
    gone = moved.apply(Delete(ref=next(r for r in moved.workloads if r.name == "ratings-1")))
    listener = translator.translate_node(gone, "node-a").listeners[naming.OUTBOUND_PODS]
    assert "10.1.0.30" not in _by_ip(listener)
    # ratings had no other pod: its chain is gone too.
    assert "pods|shop/ratings" not in {c.name for c in listener.filter_chains}


def test_a_pod_on_a_node_without_an_address_passes_through() -> None:
    m = mesh(namespace("shop"), node("n1", "10.0.0.1"), node("n2"), pod("shop", "p", "n2", "10.1.0.5"))
    listener = translate_node(m, "n1").listeners[naming.OUTBOUND_PODS]
    assert _by_ip(listener) == {}
    assert not listener.HasField("filter_chain_matcher")


def test_incremental_updates_match_a_fresh_translation() -> None:
    """Each step is looked at only through the pods it touched; the result must be what a translator that
    sees the snapshot for the first time builds, and a change that moves no pod in or out rebuilds nothing."""
    translator = Translator()
    m = sample_mesh()
    translator.translate_node(m, "node-a")
    steps: list[tuple[str, MeshObject]] = [
        # Readiness flips: membership unchanged, nothing rebuilt.
        ("flip", pod("shop", "ratings-1", "node-b", "10.1.0.30", sa="ratings", ready=False)),
        ("add", pod("shop", "ratings-2", "node-a", "10.1.0.31", sa="ratings")),
        ("node", node("node-b", "10.0.0.9", zone="z2")),
        ("unenroll", namespace("web", enrolled=False)),
        ("opt-out", pod("db", "postgres-0", "node-a", "10.1.0.40", sa="postgres", opted_out=True)),
    ]
    for label, obj in steps:
        before = translator.builds[BuildKind.LISTENER]
        previous = translator.translate_node(m, "node-a").listeners
        m = m.apply(Upsert(obj=obj))
        listeners = translator.translate_node(m, "node-a").listeners
        fresh = translate_node(m, "node-a").listeners
        for name in (naming.OUTBOUND_PODS, naming.OUTBOUND_POD_NODES):
            assert listeners[name] == fresh[name], (label, name)
        if label == "flip":
            assert listeners[naming.OUTBOUND_PODS] is previous[naming.OUTBOUND_PODS]
            assert translator.builds[BuildKind.LISTENER] == before
    final = _by_ip(translator.translate_node(m, "node-a").listeners[naming.OUTBOUND_POD_NODES])
    assert final == {
        "10.1.0.20": "pods|10.0.0.1:15008",
        "10.1.0.21": "pods|10.0.0.9:15008",
        "10.1.0.30": "pods|10.0.0.9:15008",
        "10.1.0.31": "pods|10.0.0.1:15008",
    }
