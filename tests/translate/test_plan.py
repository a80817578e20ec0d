"""The node agent's plan: meshed workloads on the node, Service VIPs, node settings."""

from __future__ import annotations

from controlplane.model.service import Protocol, ServicePort
from controlplane.translate.settings import TranslateSettings
from controlplane.translate.translator import translate_node
from tests.translate.builders import as_dict, http_port, mesh, namespace, node, pod, service, tcp_port
from tests.translate.sample import sample_mesh


def test_workloads_are_the_meshed_pods_on_the_node() -> None:
    config = translate_node(sample_mesh(), "node-a")
    assert [(w.namespace, w.name) for _, w in sorted(config.workloads.items())] == [
        ("db", "postgres-0"),
        ("shop", "reviews-v1-1"),
        ("web", "frontend-1"),
    ]  # sorted by uid; legacy's pod is not enrolled, node-b's pods are elsewhere
    frontend = config.workloads["uid-web-frontend-1"]
    assert as_dict(frontend) == {
        "uid": "uid-web-frontend-1",
        "namespace": "web",
        "name": "frontend-1",
        "ips": ["10.1.0.10"],
        "service_account": "frontend",
        "spiffe_id": "spiffe://cluster.local/ns/web/sa/frontend",
        "mtls_mode": "MTLS_MODE_PERMISSIVE",  # no PeerAuthentication: the default
    }


def test_opted_out_host_network_and_finished_pods_are_not_in_the_plan() -> None:
    m = mesh(
        namespace("shop"),
        node("n", "10.0.0.1"),
        pod("shop", "a", "n", "10.1.0.1"),
        pod("shop", "b", "n", "10.1.0.2", opted_out=True),
        pod("shop", "c", "n", "10.0.0.1", host_network=True),
        pod("shop", "d", "n", "10.1.0.4", phase="Succeeded"),
    )
    assert [w.name for w in translate_node(m, "n").workloads.values()] == ["a"]


def test_service_vips_and_node_settings_with_a_custom_trust_domain() -> None:
    udp = ServicePort(name="dns", port=53, target_port=53, protocol=Protocol.UDP)
    m = mesh(
        namespace("shop"),
        node("n", "10.0.0.1"),
        pod("shop", "a", "n", "10.1.0.1", sa="api"),
        service("shop", "api", "10.96.0.1", http_port(80), tcp_port(9000), udp),
        service("shop", "dns-only", "10.96.0.2", udp),
        service("shop", "headless", None, tcp_port(5432)),
    )
    config = translate_node(m, "n", TranslateSettings(trust_domain="example.org"))
    assert [as_dict(v) for _, v in sorted(config.service_vips.items())] == [
        {"namespace": "shop", "name": "api", "ips": ["10.96.0.1"], "ports": [80, 9000]}
    ]
    assert as_dict(config.node_settings) == {
        "envoy_address": "10.0.0.1",
        "outbound_port": 15001,
        "outbound_ports": 4,
        "hbone_port": 15008,
        "trust_domain": "example.org",
    }
    assert next(iter(config.workloads.values())).spiffe_id == "spiffe://example.org/ns/shop/sa/api"
