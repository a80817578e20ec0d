"""Client Status Discovery Service (envoy.service.status.v3): what each node was sent, ACKed, NACKed.

Per connected stream one ClientConfig: first, per type, an entry with an empty name carrying the type's last
sent version, its status and the last NACK; then one entry per resource the node holds, with its content
version.

CSDS has no field for what the server knows of the stream itself, so the node in each ClientConfig carries
it as one extra metadata key, `nodemesh.io/stream`: {id, variant, peer, connected_since (RFC 3339), replica}.
The node's own metadata is kept; a client-sent value of that key is overwritten, so it cannot be spoofed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.admin.v3 import config_dump_shared_pb2
from envoy.config.core.v3 import base_pb2
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc
from google.protobuf import timestamp_pb2

from controlplane.xds.status import ConfigStatus, ProxyStatusRegistry, StreamInfo, TypeStatus

_CONFIG_STATUS = {
    ConfigStatus.SYNCED: csds_pb2.SYNCED,
    ConfigStatus.NOT_SENT: csds_pb2.NOT_SENT,
    ConfigStatus.STALE: csds_pb2.STALE,
    ConfigStatus.ERROR: csds_pb2.ERROR,
}
_CLIENT_STATUS = {
    ConfigStatus.SYNCED: config_dump_shared_pb2.ACKED,
    ConfigStatus.NOT_SENT: config_dump_shared_pb2.UNKNOWN,
    ConfigStatus.STALE: config_dump_shared_pb2.REQUESTED,
    ConfigStatus.ERROR: config_dump_shared_pb2.NACKED,
}


def _timestamp(seconds: float | None) -> Any:
    stamp = timestamp_pb2.Timestamp()
    if seconds is not None:
        stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def string_matches(matcher: Any, value: str) -> bool:
    """envoy.type.matcher.v3.StringMatcher, without `custom`."""
    kind = matcher.WhichOneof("match_pattern")
    fold = bool(matcher.ignore_case) and kind != "safe_regex"
    subject = value.lower() if fold else value
    match kind:
        case "exact" | "prefix" | "suffix" | "contains":
            pattern = str(getattr(matcher, kind))
            pattern = pattern.lower() if fold else pattern
            if kind == "exact":
                return subject == pattern
            if kind == "prefix":
                return subject.startswith(pattern)
            if kind == "suffix":
                return subject.endswith(pattern)
            return pattern in subject
        case "safe_regex":
            return re.fullmatch(str(matcher.safe_regex.regex), value) is not None
    return False


def node_selected(request: Any, node_id: str) -> bool:
    matchers = list(request.node_matchers)
    if not matchers:
        return True
    return any(not m.HasField("node_id") or string_matches(m.node_id, node_id) for m in matchers)


def _type_entries(status: TypeStatus) -> list[Any]:
    type_state = status.status
    entries = []
    summary = csds_pb2.ClientConfig.GenericXdsConfig(
        type_url=status.type_url,
        name="",
        version_info=status.sent_version,
        last_updated=_timestamp(status.sent_at),
        config_status=_CONFIG_STATUS[type_state],
        client_status=_CLIENT_STATUS[type_state],
    )
    nack = status.last_nack
    if nack is not None:
        summary.error_state.CopyFrom(
            config_dump_shared_pb2.UpdateFailureState(
                last_update_attempt=_timestamp(nack.at), details=nack.message, version_info=nack.version
            )
        )
    entries.append(summary)
    for name, version in sorted(status.sent_resources.items()):
        resource_state = status.resource_status(name)
        entry = csds_pb2.ClientConfig.GenericXdsConfig(
            type_url=status.type_url,
            name=name,
            version_info=version,
            last_updated=_timestamp(status.sent_at),
            config_status=_CONFIG_STATUS[resource_state],
            client_status=_CLIENT_STATUS[resource_state],
        )
        if resource_state is ConfigStatus.ERROR and nack is not None:
            entry.error_state.CopyFrom(summary.error_state)
        entries.append(entry)
    return entries


STREAM_METADATA_KEY = "nodemesh.io/stream"


def stream_facts(stream: StreamInfo, replica: str) -> dict[str, str | float]:
    """What the server knows of a stream, as the `nodemesh.io/stream` metadata value."""
    return {
        "id": stream.stream_id,
        "variant": stream.variant.value,
        "peer": stream.peer,
        "connected_since": _timestamp(stream.connected_since).ToJsonString(),
        "replica": replica,
    }


def client_config(stream: StreamInfo, replica: str = "") -> Any:
    node = base_pb2.Node.FromString(stream.node_bytes)
    node.metadata.fields[STREAM_METADATA_KEY].struct_value.Clear()
    node.metadata.fields[STREAM_METADATA_KEY].struct_value.update(stream_facts(stream, replica))
    config = csds_pb2.ClientConfig(node=node)
    for _, status in sorted(stream.types.items()):
        config.generic_xds_configs.extend(_type_entries(status))
    return config


def build_status_response(registry: ProxyStatusRegistry, request: Any, replica: str = "") -> Any:
    response = csds_pb2.ClientStatusResponse()
    for stream in sorted(registry.streams(), key=lambda s: (s.node_id, s.stream_id)):
        if node_selected(request, stream.node_id):
            response.config.append(client_config(stream, replica))
    return response


class CsdsServicer(csds_pb2_grpc.ClientStatusDiscoveryServiceServicer):  # type: ignore[misc]
    """`replica`: this control-plane replica's id, reported with every stream (clients may be spread over
    several replicas, each answering only for its own streams)."""

    def __init__(self, registry: ProxyStatusRegistry, *, replica: str = "") -> None:
        self._registry = registry
        self._replica = replica

    async def FetchClientStatus(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:  # noqa: N802
        return build_status_response(self._registry, request, self._replica)

    async def StreamClientStatus(  # noqa: N802
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        async for request in request_iterator:
            yield build_status_response(self._registry, request, self._replica)
