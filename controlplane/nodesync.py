"""Is a node's agent and its Envoy connected and in sync? From the proxy status registry's streams.

A node runs one agent (node cluster `nodemesh-agent`, subscribed to the plan types) and one Envoy (node
metadata `nodemesh.io/kind: envoy` from `meshctl bootstrap`, or cluster `nodemesh-envoy`, or Envoy's own
user agent). Pure over `StreamInfo` values.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Final

from envoy.config.core.v3 import base_pb2
from google.protobuf.message import DecodeError

from controlplane.xds import typeurls
from controlplane.xds.status import ConfigStatus, StreamInfo

AGENT_CLUSTER: Final = "nodemesh-agent"
ENVOY_CLUSTER: Final = "nodemesh-envoy"
KIND_METADATA_KEY: Final = "nodemesh.io/kind"

PLAN_TYPES: Final = (typeurls.NODE_SETTINGS, typeurls.SERVICE_VIP, typeurls.WORKLOAD)
ENVOY_TYPES: Final = (typeurls.CLUSTER, typeurls.ENDPOINT, typeurls.LISTENER, typeurls.ROUTE)


class ProxyKind(StrEnum):
    AGENT = "agent"
    ENVOY = "envoy"
    UNKNOWN = "unknown"


def proxy_kind(stream: StreamInfo) -> ProxyKind:
    if stream.cluster == AGENT_CLUSTER:
        return ProxyKind.AGENT
    node = base_pb2.Node()
    try:
        node.ParseFromString(stream.node_bytes)
    except DecodeError:
        return ProxyKind.UNKNOWN
    declared = node.metadata.fields.get(KIND_METADATA_KEY)
    if declared is not None and declared.string_value in (ProxyKind.AGENT, ProxyKind.ENVOY):
        return ProxyKind(declared.string_value)
    if node.user_agent_name == AGENT_CLUSTER:
        return ProxyKind.AGENT
    if stream.cluster == ENVOY_CLUSTER or node.user_agent_name == "envoy":
        return ProxyKind.ENVOY
    return ProxyKind.UNKNOWN


def _proxy_document(streams: list[StreamInfo], expected: tuple[str, ...]) -> dict[str, object]:
    if not streams:
        return {"connected": False, "synced": False, "streams": 0, "types": {}}
    # Several streams (a reconnect racing the old stream's close): the newest speaks for the proxy.
    stream = max(streams, key=lambda s: (s.connected_since, s.stream_id))
    types = {
        typeurls.short_name(type_url): (
            stream.types[type_url].status.value if type_url in stream.types else ConfigStatus.NOT_SENT.value
        )
        for type_url in expected
    }
    return {
        "connected": True,
        "synced": all(status == ConfigStatus.SYNCED.value for status in types.values()),
        "streams": len(streams),
        "variant": stream.variant.value,
        "peer": stream.peer,
        "connected_since": stream.connected_since,
        "types": types,
    }


def node_sync(streams: Iterable[StreamInfo], node: str) -> dict[str, object]:
    """`{"agent": {...}, "envoy": {...}}`: connected, synced on every expected type, per-type status."""
    mine = [s for s in streams if s.node_id == node]
    agents = [s for s in mine if proxy_kind(s) is ProxyKind.AGENT]
    envoys = [s for s in mine if proxy_kind(s) is ProxyKind.ENVOY]
    return {"agent": _proxy_document(agents, PLAN_TYPES), "envoy": _proxy_document(envoys, ENVOY_TYPES)}
