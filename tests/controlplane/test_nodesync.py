"""Whether a node's agent and Envoy are connected and synced, from the proxy status registry."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

from controlplane.nodesync import ProxyKind, node_sync, proxy_kind
from controlplane.xds import typeurls as t
from controlplane.xds.status import ProxyStatusRegistry, StreamInfo, StreamStatus, Variant


def node_bytes(node: str, *, kind: str = "", user_agent: str = "") -> bytes:
    message = base_pb2.Node(id=node, user_agent_name=user_agent)
    if kind:
        message.metadata.CopyFrom(
            struct_pb2.Struct(fields={"nodemesh.io/kind": struct_pb2.Value(string_value=kind)})
        )
    serialized: bytes = message.SerializeToString()
    return serialized


def open_stream(
    registry: ProxyStatusRegistry, node: str, cluster: str, *, kind: str = "", user_agent: str = ""
) -> StreamStatus:
    return registry.open_stream(
        node_id=node,
        cluster=cluster,
        node_bytes=node_bytes(node, kind=kind, user_agent=user_agent),
        peer="ipv4:127.0.0.1:1",
        variant=Variant.SOTW,
    )


def sync(stream: StreamStatus, type_url: str, *, ack: bool = True) -> None:
    stream.record_sent(type_url, version="v1", nonce=f"n-{type_url}", resources={}, size=1)
    if ack:
        stream.record_ack(type_url, nonce=f"n-{type_url}", version="v1")


def info(stream: StreamStatus) -> StreamInfo:
    return stream.snapshot()


def test_proxy_kind() -> None:
    registry = ProxyStatusRegistry(clock=lambda: 1.0)
    assert proxy_kind(info(open_stream(registry, "n", "nodemesh-agent"))) is ProxyKind.AGENT
    assert proxy_kind(info(open_stream(registry, "n", "x", kind="envoy"))) is ProxyKind.ENVOY
    assert proxy_kind(info(open_stream(registry, "n", "x", kind="agent"))) is ProxyKind.AGENT
    assert proxy_kind(info(open_stream(registry, "n", "nodemesh-envoy"))) is ProxyKind.ENVOY
    assert proxy_kind(info(open_stream(registry, "n", "", user_agent="envoy"))) is ProxyKind.ENVOY
    assert proxy_kind(info(open_stream(registry, "n", "something"))) is ProxyKind.UNKNOWN


def test_node_sync_per_kind_and_type() -> None:
    registry = ProxyStatusRegistry(clock=lambda: 100.0)
    agent = open_stream(registry, "node-a", "nodemesh-agent")
    for type_url in (t.NODE_SETTINGS, t.SERVICE_VIP, t.WORKLOAD):
        sync(agent, type_url)
    envoy = open_stream(registry, "node-a", "nodemesh-envoy", kind="envoy")
    for type_url in (t.CLUSTER, t.ENDPOINT, t.LISTENER):
        sync(envoy, type_url)
    sync(envoy, t.ROUTE, ack=False)
    open_stream(registry, "node-b", "nodemesh-agent")  # another node's
    state = node_sync(registry.streams(), "node-a")
    assert state["agent"] == {
        "connected": True,
        "synced": True,
        "streams": 1,
        "variant": "sotw",
        "peer": "ipv4:127.0.0.1:1",
        "connected_since": 100.0,
        "types": {"node_settings": "synced", "service_vip": "synced", "workload": "synced"},
    }
    envoy_state = state["envoy"]
    assert isinstance(envoy_state, dict)
    assert envoy_state["synced"] is False
    assert envoy_state["types"] == {"cds": "synced", "eds": "synced", "lds": "synced", "rds": "stale"}
    # Nothing sent for a subscribed type yet: not synced.
    assert node_sync(registry.streams(), "node-b")["agent"] == {
        "connected": True,
        "synced": False,
        "streams": 1,
        "variant": "sotw",
        "peer": "ipv4:127.0.0.1:1",
        "connected_since": 100.0,
        "types": {"node_settings": "not_sent", "service_vip": "not_sent", "workload": "not_sent"},
    }
    assert node_sync(registry.streams(), "node-c") == {
        "agent": {"connected": False, "synced": False, "streams": 0, "types": {}},
        "envoy": {"connected": False, "synced": False, "streams": 0, "types": {}},
    }
