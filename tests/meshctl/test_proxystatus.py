"""proxy-status rows and table from CSDS responses the real CSDS code builds over a status registry."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.status.v3 import csds_pb2
from google.protobuf import struct_pb2

from controlplane.xds import typeurls as t
from controlplane.xds.csds import build_status_response
from controlplane.xds.status import ProxyStatusRegistry, Variant
from meshctl.output import Painter
from meshctl.proxystatus import ProxyKind, SyncState, proxy_kind, render, rows_from_csds, to_document

NOW = 1_700_000_000.0


def node(node_id: str, cluster: str, *, user_agent: str = "", kind: str = "") -> base_pb2.Node:
    metadata = struct_pb2.Struct()
    if kind:
        metadata.update({"nodemesh.io/kind": kind})
    return base_pb2.Node(id=node_id, cluster=cluster, user_agent_name=user_agent, metadata=metadata)


def registry_with_two_nodes() -> ProxyStatusRegistry:
    """node-a's Envoy (SotW): CDS ACKed, LDS NACKed; node-a's agent (delta): workloads sent, not ACKed."""
    clock = [NOW - 300]
    registry = ProxyStatusRegistry(clock=lambda: clock[0])
    envoy = registry.open_stream(
        node_id="node-a",
        cluster="nodemesh-envoy",
        node_bytes=node("node-a", "nodemesh-envoy", user_agent="envoy").SerializeToString(),
        peer="ipv4:127.0.0.1:1",
        variant=Variant.SOTW,
    )
    clock[0] = NOW - 10
    envoy.record_sent(t.CLUSTER, version="c0ffee1234567890", nonce="1", resources={"c1": "v1"}, size=10)
    envoy.record_ack(t.CLUSTER, nonce="1", version="c0ffee1234567890")
    envoy.record_sent(t.LISTENER, version="badbadbad0000000", nonce="2", resources={"l": "v"}, size=10)
    envoy.record_nack(
        t.LISTENER, nonce="2", version="", message="Error adding/updating listener(s) l: bad\nline 2"
    )
    agent = registry.open_stream(
        node_id="node-a",
        cluster="nodemesh-agent",
        node_bytes=node("node-a", "nodemesh-agent").SerializeToString(),
        peer="ipv4:127.0.0.1:2",
        variant=Variant.DELTA,
    )
    agent.record_sent(
        t.WORKLOAD, version="abc", nonce="3", resources={"w": "1"}, size=1, delta_changes={"w": "1"}
    )
    return registry


def test_rows_carry_kind_variant_replica_states_and_nacks() -> None:
    response = build_status_response(registry_with_two_nodes(), csds_pb2.ClientStatusRequest(), "cp-1")
    rows = rows_from_csds(response)
    assert [(r.node, r.kind, r.variant, r.replica) for r in rows] == [
        ("node-a", ProxyKind.AGENT, "delta", "cp-1"),
        ("node-a", ProxyKind.ENVOY, "sotw", "cp-1"),
    ]
    agent, envoy = rows
    assert envoy.connected_since == NOW - 300
    assert [(s.label, s.state) for s in envoy.types] == [("CDS", SyncState.SYNCED), ("LDS", SyncState.ERROR)]
    lds = envoy.types[1]
    assert lds.nack is not None and lds.nack.message.startswith("Error adding/updating listener(s) l")
    assert lds.version == "badbadbad0000000"
    assert [(s.label, s.state) for s in agent.types] == [("WORKLOADS", SyncState.STALE)]
    assert agent.problems == agent.types


def test_table_has_a_column_per_type_and_lists_nacks() -> None:
    rows = rows_from_csds(
        build_status_response(registry_with_two_nodes(), csds_pb2.ClientStatusRequest(), "cp-1")
    )
    text = render(rows, painter=Painter(enabled=False), now=NOW)
    lines = text.splitlines()
    assert lines[0].split() == ["NODE", "KIND", "VARIANT", "REPLICA", "CDS", "LDS", "WORKLOADS", "CONNECTED"]
    agent_line, envoy_line = lines[1].split(), lines[2].split()
    assert agent_line == ["node-a", "agent", "delta", "cp-1", "-", "-", "STALE", "abc", "10s", "ago"]
    assert envoy_line == [
        "node-a",
        "envoy",
        "sotw",
        "cp-1",
        "SYNCED",
        "c0ffee12",
        "ERROR",
        "badbadba",
        "-",
        "5m0s",
        "ago",
    ]
    assert "Rejected (NACK):" in text
    assert "node-a (envoy) LDS version " in text
    assert "Error adding/updating listener(s) l: bad\n      line 2" in text
    assert "\x1b[" not in text
    assert "\x1b[31m" in render(rows, painter=Painter(enabled=True), now=NOW)


def test_document_has_full_versions_and_messages() -> None:
    rows = rows_from_csds(
        build_status_response(registry_with_two_nodes(), csds_pb2.ClientStatusRequest(), "")
    )
    envoy: dict[str, Any] = to_document(rows)[1]
    assert envoy["kind"] == "envoy" and envoy["replica"] == ""
    assert envoy["types"]["cds"] == {
        "type_url": t.CLUSTER,
        "status": "SYNCED",
        "version": "c0ffee1234567890",
        "sent_at": envoy["types"]["cds"]["sent_at"],
        "nack": None,
    }
    assert envoy["types"]["lds"]["nack"]["message"].endswith("bad\nline 2")
    assert envoy["connected_since"] is not None


def test_kind_from_metadata_then_cluster_then_user_agent() -> None:
    assert proxy_kind(node("n", "custom", kind="agent")) is ProxyKind.AGENT
    assert proxy_kind(node("n", "nodemesh-agent")) is ProxyKind.AGENT
    assert proxy_kind(node("n", "nodemesh-envoy")) is ProxyKind.ENVOY
    assert proxy_kind(node("n", "blue", user_agent="envoy")) is ProxyKind.ENVOY
    assert proxy_kind(node("n", "blue")) is ProxyKind.UNKNOWN


def test_a_response_from_a_server_without_stream_facts_still_renders() -> None:
    config = csds_pb2.ClientConfig(node=node("n", "nodemesh-envoy"))
    rows = rows_from_csds(csds_pb2.ClientStatusResponse(config=[config]))
    assert rows[0].variant == "" and rows[0].connected_since is None
    assert render(rows, painter=Painter(enabled=False), now=NOW).splitlines()[1].split() == [
        "n",
        "envoy",
        "-",
        "-",
        "-",
    ]
