"""HBONE in translation: meshed endpoints tunnel to their node's 15008, each local identity gets its own
originate chain and cluster (chosen by source IP) and its own inbound chain (chosen by SNI), the inbound
side forwards only to local pods, authorization reaches only the selected pods' node, and a node's config
grows with (services + local identities), not their product."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.http.set_filter_state.v3 import set_filter_state_pb2 as http_sfs_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.set_filter_state.v3 import set_filter_state_pb2 as net_sfs_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.matching.common_inputs.network.v3 import network_inputs_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from controlplane.model.authz import (
    AuthorizationAction,
    AuthorizationPolicy,
    AuthorizationRule,
    Operation,
    Source,
    StringMatch,
)
from controlplane.model.duration import Duration
from controlplane.model.frozenmap import FrozenMap
from controlplane.model.objects import MeshObject, Upsert
from controlplane.translate import naming
from controlplane.translate.config import NodeConfig
from controlplane.translate.settings import TranslateSettings
from controlplane.translate.translator import Translator, translate_node
from tests.translate.builders import (
    as_dict,
    endpoint,
    endpoint_slice,
    http_port,
    mesh,
    namespace,
    node,
    pod,
    service,
)
from tests.translate.sample import sample_mesh

NODES = ("node-a", "node-b")


def _endpoints(config: NodeConfig, cluster: str) -> list[dict[str, Any]]:
    cla = as_dict(config.load_assignments[cluster])
    return [e for group in cla.get("endpoints", []) for e in group["lb_endpoints"]]


def _matcher_keys(listener: listener_pb2.Listener) -> dict[str, str]:
    entries = listener.filter_chain_matcher.matcher_tree.exact_match_map.map
    out = {}
    for key, on_match in entries.items():
        out[key] = on_match.action.name
    return out


def test_meshed_endpoints_tunnel_to_their_node_and_others_stay_plain() -> None:
    m = mesh(
        namespace("shop"),
        namespace("legacy", enrolled=False),
        node("node-a", "10.0.0.1"),
        node("node-b", "10.0.0.2"),
        pod("shop", "api-1", "node-b", "10.1.0.20", sa="api"),
        pod("legacy", "old-1", "node-b", "10.1.0.50"),
        service("shop", "api", "10.96.0.10", http_port(80, target=8080)),
        endpoint_slice(
            "shop",
            "api",
            endpoint("10.1.0.20"),
            endpoint("10.1.0.50"),
            endpoint("192.0.2.7"),
            ports=(("http", 8080),),
        ),
    )
    config = translate_node(m, "node-a")
    by_address = {}
    for e in _endpoints(config, "shop/api:80"):
        address = e["endpoint"]["address"]
        by_address[
            address.get("envoy_internal_address", {}).get("endpoint_id")
            or address["socket_address"]["address"]
        ] = e
    meshed = by_address["10.1.0.20:8080"]
    assert (
        meshed["endpoint"]["address"]["envoy_internal_address"]["server_listener_name"] == "hbone_originate"
    )
    assert meshed["metadata"]["filter_metadata"] == {
        "envoy.filters.listener.original_dst": {"local": "10.1.0.20:8080"},
        "nodemesh.hbone": {
            "node": "10.0.0.2:15008",
            "san": "spiffe://cluster.local/ns/shop/sa/api",
            "sni": "api.shop.cluster.local.hbone.nodemesh",
        },
    }
    # A pod of a namespace outside the mesh, and an address that is no pod: plain, to the address itself.
    assert by_address["10.1.0.50"]["endpoint"]["address"]["socket_address"]["port_value"] == 8080
    assert "metadata" not in by_address["192.0.2.7"]


def test_each_local_identity_gets_one_originate_chain_and_cluster_chosen_by_source_ip() -> None:
    config = translate_node(sample_mesh(), "node-a")
    originate = config.listeners[naming.HBONE_ORIGINATE_LISTENER]
    assert originate.HasField("internal_listener")
    # node-a runs frontend-1 (web/frontend), reviews-v1-1 (shop/reviews), postgres-0 (db/postgres); the
    # legacy pod is not meshed and has no chain: its traffic, were it to get here, matches nothing.
    assert _matcher_keys(originate) == {
        "10.1.0.10": "hbone|web|frontend",
        "10.1.0.20": "hbone|shop|reviews",
        "10.1.0.40": "hbone|db|postgres",
    }
    assert sorted(c.name for c in originate.filter_chains) == sorted(_matcher_keys(originate).values())
    hbone_clusters = sorted(n for n in config.clusters if n.startswith("hbone|"))
    assert hbone_clusters == ["hbone|db|postgres", "hbone|shop|reviews", "hbone|web|frontend"]
    tls = tls_pb2.UpstreamTlsContext()
    assert config.clusters["hbone|web|frontend"].transport_socket.typed_config.Unpack(tls)
    (cert,) = tls.common_tls_context.tls_certificate_sds_secret_configs
    assert cert.name == "spiffe://cluster.local/ns/web/sa/frontend"
    assert tls.common_tls_context.validation_context_sds_secret_config.name == "ROOTCA"
    assert list(tls.common_tls_context.alpn_protocols) == ["h2"]


def _inbound_hcm(listener: listener_pb2.Listener, chain: str) -> hcm_pb2.HttpConnectionManager:
    (found,) = [c for c in listener.filter_chains if c.name == chain]
    hcm = hcm_pb2.HttpConnectionManager()
    assert found.filters[-1].typed_config.Unpack(hcm)
    return hcm


def test_inbound_chains_by_sni_forward_only_to_that_identitys_local_pods() -> None:
    config = translate_node(sample_mesh(), "node-b")
    inbound = config.listeners[naming.HBONE_INBOUND_LISTENER]
    assert inbound.address.socket_address.address == "10.0.0.2"
    assert inbound.address.socket_address.port_value == 15008
    assert _matcher_keys(inbound) == {
        "frontend.web.cluster.local.hbone.nodemesh": "inbound|web|frontend",
        "ratings.shop.cluster.local.hbone.nodemesh": "inbound|shop|ratings",
        "reviews.shop.cluster.local.hbone.nodemesh": "inbound|shop|reviews",
    }
    (reviews,) = [c for c in inbound.filter_chains if c.name == "inbound|shop|reviews"]
    tls = tls_pb2.DownstreamTlsContext()
    assert reviews.transport_socket.typed_config.Unpack(tls)
    assert tls.require_client_certificate.value
    assert tls.common_tls_context.tls_certificate_sds_secret_configs[0].name == (
        "spiffe://cluster.local/ns/shop/sa/reviews"
    )
    # reviews-v2-1 (10.1.0.21) serves HTTP on 8080: that authority goes to the L7 pod listener; any other
    # port of it to the TCP one; no other address is forwarded at all (404): never an open relay.
    hosts = {
        vh.name: (list(vh.domains), vh.routes[0].route.cluster)
        for vh in _inbound_hcm(inbound, "inbound|shop|reviews").route_config.virtual_hosts
    }
    assert hosts == {
        "10.1.0.21/http": (["10.1.0.21:8080"], "inbound_http"),
        "10.1.0.21/tcp": (["10.1.0.21:*"], "inbound_tcp"),
    }


def test_authorization_reaches_only_the_node_of_the_selected_pods() -> None:
    translator = Translator()
    m = sample_mesh()
    deny_all = AuthorizationPolicy(
        namespace="db",
        name="lockdown",
        selector=FrozenMap({"app": "postgres"}),
        action=AuthorizationAction.DENY,
        rules=(AuthorizationRule(),),
    )
    labelled = pod(
        "db", "postgres-0", "node-a", "10.1.0.40", sa="postgres", labels=FrozenMap({"app": "postgres"})
    )
    m2 = m.apply(Upsert(obj=labelled))
    first = {n: translator.translate_node(m2, n) for n in NODES}
    before = Counter(translator.builds)
    m3 = m2.apply(Upsert(obj=deny_all))
    second = {n: translator.translate_node(m3, n) for n in NODES}
    assert second["node-b"] is first["node-b"]
    changes = second["node-a"].changed_since(first["node-a"])
    # postgres speaks TCP: its rules guard the CONNECT at 15008 and the stream behind it; and a rule that
    # matches callers without an identity makes its plan refuse plaintext (the kernel's share of it).
    assert {k.value: sorted(c.changed) for k, c in changes.kinds.items()} == {
        "listener": ["hbone_inbound", "inbound_tcp"],
        "workload": ["uid-db-postgres-0"],
    }
    delta = Counter(translator.builds)
    delta.subtract(before)
    assert +delta == Counter({"hbone": 1, "workload": 1})


def test_a_pod_moving_to_another_node_retargets_its_tunnels() -> None:
    translator = Translator()
    m = sample_mesh()
    translator.translate_node(m, "node-a")
    moved = m.apply(Upsert(obj=pod("shop", "ratings-1", "node-a", "10.1.0.30", sa="ratings")))
    config = translator.translate_node(moved, "node-a")
    (e,) = _endpoints(config, "shop/ratings:9090")
    assert e["metadata"]["filter_metadata"]["nodemesh.hbone"]["node"] == "10.0.0.1:15008"


def _size(services: int, identities: int) -> tuple[int, int, int]:
    """(clusters, listener bytes, listener chains) of node-a with `services` Services whose pods are on
    node-b, and one client pod of each of `identities` identities on node-a."""
    objects: list[MeshObject] = [namespace("shop"), node("node-a", "10.0.0.1"), node("node-b", "10.0.0.2")]
    for i in range(services):
        objects.append(service("shop", f"s{i}", f"10.96.1.{i + 1}", http_port(80)))
        objects.append(pod("shop", f"s{i}-1", "node-b", f"10.1.1.{i + 1}", sa=f"s{i}"))
        objects.append(endpoint_slice("shop", f"s{i}", endpoint(f"10.1.1.{i + 1}")))
    for j in range(identities):
        objects.append(pod("shop", f"c{j}", "node-a", f"10.1.2.{j + 1}", sa=f"client{j}"))
    config = translate_node(mesh(*objects), "node-a")
    listeners = list(config.listeners.values())
    return (
        len(config.clusters),
        sum(
            li.ByteSize()
            for li in listeners
            # The shared outbound listeners grow with the mesh (Services, meshed pods), not with local pods.
            if li.name
            not in (
                naming.OUTBOUND_LISTENER,
                naming.OUTBOUND_SERVICES,
                naming.OUTBOUND_PODS,
                naming.OUTBOUND_POD_NODES,
            )
        ),
        sum(len(li.filter_chains) for li in listeners),
    )


def test_node_config_is_additive_in_services_and_local_identities() -> None:
    s, i = 8, 4
    base = _size(s, i)
    more_services = _size(2 * s, i)
    more_identities = _size(s, 2 * i)
    both = _size(2 * s, 2 * i)
    for k in range(3):
        # No interaction term: adding services costs the same whatever the number of local identities.
        assert both[k] - more_identities[k] == more_services[k] - base[k], k
    # The HBONE listeners do not grow with services at all, and per identity by a constant.
    assert more_services[1] == base[1]
    assert both[0] - more_services[0] == i  # one originate cluster per new local identity


def test_a_pods_traffic_can_only_reach_its_own_identitys_secret() -> None:
    """Isolation: the source IP of each local pod leads to one originate chain, whose cluster presents that
    pod's identity and no other; each inbound chain presents the identity its SNI names."""
    m = sample_mesh()
    config = translate_node(m, "node-a")
    originate = config.listeners[naming.HBONE_ORIGINATE_LISTENER]
    for ip, chain in _matcher_keys(originate).items():
        workload = m.workload_by_ip(ip)
        assert workload is not None
        tls = tls_pb2.UpstreamTlsContext()
        (proxy_chain,) = [c for c in originate.filter_chains if c.name == chain]
        proxy = tcp_proxy_pb2.TcpProxy()
        assert proxy_chain.filters[-1].typed_config.Unpack(proxy)
        assert config.clusters[proxy.cluster].transport_socket.typed_config.Unpack(tls)
        (cert,) = tls.common_tls_context.tls_certificate_sds_secret_configs
        assert cert.name == f"spiffe://cluster.local/ns/{workload.namespace}/sa/{workload.service_account}"
    inbound = config.listeners[naming.HBONE_INBOUND_LISTENER]
    for sni, chain in _matcher_keys(inbound).items():
        sa, ns = sni.split(".")[:2]
        (found,) = [c for c in inbound.filter_chains if c.name == chain]
        downstream = tls_pb2.DownstreamTlsContext()
        assert found.transport_socket.typed_config.Unpack(downstream)
        (cert,) = downstream.common_tls_context.tls_certificate_sds_secret_configs
        assert cert.name == f"spiffe://cluster.local/ns/{ns}/sa/{sa}"


def _states(chain_filter: Any) -> dict[str, Any]:
    """A set_filter_state filter's values by object key (network or HTTP flavour)."""
    out = {}
    for field in ("on_new_connection", "on_request_headers"):
        for value in as_dict(chain_filter).get(field, []):
            out[value["object_key"]] = value
    return out


def test_outbound_chains_key_upstream_pools_by_the_client_ip_alone() -> None:
    """Pooling: the client's IP (no port, hashable) goes with its connections to `hbone_originate`, so a
    client's connections share pooled tunnels and two clients never do; the identity chain is picked by it."""
    config = translate_node(sample_mesh(), "node-a")
    # The Service chains (producer and consumer) behind the node listener's handoff.
    chains = [
        *config.listeners[naming.OUTBOUND_SERVICES].filter_chains,
        *config.listeners[naming.outbound_consumer("web")].filter_chains,
    ]
    assert len(chains) > 2
    for chain in chains:
        if chain.name == naming.PASSTHROUGH:
            continue
        first = net_sfs_pb2.Config()
        assert chain.filters[0].typed_config.Unpack(first), chain.name
        (state,) = _states(first).values()
        assert state == {
            "object_key": "nodemesh.source_ip",
            "factory_key": "envoy.hashable_string",
            "format_string": {
                "text_format_source": {"inline_string": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"},
                "omit_empty_values": True,
            },
            "read_only": True,
            "skip_if_empty": True,
            "shared_with_upstream": "ONCE",
        }
    originate = config.listeners[naming.HBONE_ORIGINATE_LISTENER]
    source = network_inputs_pb2.FilterStateInput()
    assert originate.filter_chain_matcher.matcher_tree.input.typed_config.Unpack(source)
    assert source.key == "nodemesh.source_ip"


def test_the_callers_identity_and_certificate_reach_the_pod_as_hashable_state_and_xfcc() -> None:
    """Hashable: the pool behind the tunnel is keyed by them, so no pooled connection mixes two callers."""
    config = translate_node(sample_mesh(), "node-b")
    hcm = _inbound_hcm(config.listeners[naming.HBONE_INBOUND_LISTENER], "inbound|shop|reviews")
    handoff = http_sfs_pb2.Config()
    assert hcm.http_filters[0].typed_config.Unpack(handoff)
    states = _states(handoff)
    for key, text in (
        ("nodemesh.peer_principal", "%DOWNSTREAM_PEER_URI_SAN%"),
        ("nodemesh.peer_certificate_hash", "%DOWNSTREAM_PEER_FINGERPRINT_256%"),
    ):
        assert states[key]["factory_key"] == "envoy.hashable_string"
        assert states[key]["format_string"]["text_format_source"]["inline_string"] == text
        assert states[key]["shared_with_upstream"] == "ONCE"
    (chain,) = [
        c for c in config.listeners[naming.INBOUND_HTTP].filter_chains if c.name == "inbound|10.1.0.21"
    ]
    pod_hcm = hcm_pb2.HttpConnectionManager()
    assert chain.filters[-1].typed_config.Unpack(pod_hcm)
    (xfcc,) = pod_hcm.route_config.request_headers_to_add
    assert (xfcc.header.key, xfcc.header.value) == (
        "x-forwarded-client-cert",
        "By=spiffe://cluster.local/ns/shop/sa/reviews;Hash=%FILTER_STATE(nodemesh.peer_certificate_hash:PLAIN)%;"
        "URI=%FILTER_STATE(nodemesh.peer_principal:PLAIN)%",
    )


def _max_duration(cluster: cluster_pb2.Cluster) -> str | None:
    options = http_protocol_options_pb2.HttpProtocolOptions()
    if naming.HTTP_PROTOCOL_OPTIONS not in cluster.typed_extension_protocol_options:
        return None
    assert cluster.typed_extension_protocol_options[naming.HTTP_PROTOCOL_OPTIONS].Unpack(options)
    common = options.common_http_protocol_options
    return (
        f"{common.max_connection_duration.seconds}s" if common.HasField("max_connection_duration") else None
    )


def test_pooled_connections_retire_in_time_for_renewed_certificates() -> None:
    """Envoy keeps using a pooled connection after its certificate is renewed: the HBONE connections and
    the HTTP Service clusters' pooled tunnels take new streams for `max_connection_age` only."""
    settings = TranslateSettings(max_connection_age=Duration.of(minutes=3))
    config = Translator(settings).translate_node(sample_mesh(), "node-a")
    assert _max_duration(config.clusters["hbone|web|frontend"]) == "180s"
    assert _max_duration(config.clusters["shop/reviews:80"]) == "180s"  # HTTP
    assert _max_duration(config.clusters["shop/ratings:9090"]) == "180s"  # gRPC
    assert _max_duration(config.clusters["db/postgres:5432"]) is None  # TCP: one tunnel per connection
    with pytest.raises(ValueError, match="max_connection_age"):
        TranslateSettings(max_connection_age=Duration(nanoseconds=0))


def test_tcp_rules_guard_the_connect_before_anything_reaches_the_pod() -> None:
    """A TCP stream is authorized at its CONNECT (403 there), not only on its first bytes behind a proxy
    that has already connected to the pod (a server speaking first would greet a denied caller)."""
    labelled = pod(
        "db", "postgres-0", "node-a", "10.1.0.40", sa="postgres", labels=FrozenMap({"app": "postgres"})
    )
    deny_others = AuthorizationPolicy(
        namespace="db",
        name="only-reviews",
        selector=FrozenMap({"app": "postgres"}),
        action=AuthorizationAction.DENY,
        rules=(
            AuthorizationRule(
                sources=(Source(not_principals=(StringMatch.parse("cluster.local/ns/shop/sa/reviews"),)),),
                operations=(Operation(ports=(5432,)),),
            ),
        ),
    )
    config = translate_node(
        sample_mesh().apply(Upsert(obj=labelled)).apply(Upsert(obj=deny_others)), "node-a"
    )
    inbound = config.listeners[naming.HBONE_INBOUND_LISTENER]
    hcm = _inbound_hcm(inbound, "inbound|db|postgres")
    assert [f.name for f in hcm.http_filters] == [
        naming.SET_FILTER_STATE_HTTP,
        naming.CONNECT_RBAC_DENY,
        naming.ROUTER_FILTER,
    ]
    (tcp,) = [vh for vh in hcm.route_config.virtual_hosts if vh.name == "10.1.0.40/tcp"]
    per_route = http_rbac_pb2.RBACPerRoute()
    assert tcp.typed_per_filter_config[naming.CONNECT_RBAC_DENY].Unpack(per_route)
    (rule_,) = per_route.rbac.rules.policies.values()
    # The port is the CONNECT authority's (the connection itself is to 15008).
    assert as_dict(rule_.permissions[0]) == {
        "header": {"name": ":authority", "string_match": {"suffix": ":5432"}}
    }
    # The base filter enforces nothing: only the virtual host of a pod with rules does.
    base = http_rbac_pb2.RBAC()
    assert hcm.http_filters[1].typed_config.Unpack(base)
    assert not base.HasField("rules")
    # Identities without rules get no such filter at all.
    other = _inbound_hcm(inbound, "inbound|web|frontend")
    assert [f.name for f in other.http_filters] == [naming.SET_FILTER_STATE_HTTP, naming.ROUTER_FILTER]
