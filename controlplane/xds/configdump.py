"""The configuration the control plane holds for one node, as Envoy JSON, with key material redacted.

Backs the admin endpoint `/debug/config?node=NODE&type=TYPE` that `meshctl proxy-config` reads. Private keys,
passwords, generic secrets and session-ticket keys are replaced by `[redacted]` before anything is rendered,
wherever they sit (a Secret, or a TLS context inlined in a listener or cluster, inside `Any` fields too), so
they never leave the control plane through this path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message

from controlplane.xds import typeurls
from controlplane.xds.errors import XdsError
from controlplane.xds.snapshot import Snapshot

REDACTED = "[redacted]"

# Names meshctl and people use for each type, besides the type URL and the short xDS names.
TYPE_ALIASES: Mapping[str, str] = {
    "listeners": typeurls.LISTENER,
    "routes": typeurls.ROUTE,
    "clusters": typeurls.CLUSTER,
    "endpoints": typeurls.ENDPOINT,
    "secrets": typeurls.SECRET,
    "workloads": typeurls.WORKLOAD,
    "service-vips": typeurls.SERVICE_VIP,
    "node-settings": typeurls.NODE_SETTINGS,
}

_DATA_SOURCE = "envoy.config.core.v3.DataSource"
# Message full name -> fields holding key material (each a DataSource, or repeated DataSource).
_SENSITIVE: Mapping[str, tuple[str, ...]] = {
    "envoy.extensions.transport_sockets.tls.v3.TlsCertificate": ("private_key", "password"),
    "envoy.extensions.transport_sockets.tls.v3.GenericSecret": ("secret",),
    "envoy.extensions.transport_sockets.tls.v3.TlsSessionTicketKeys": ("keys",),
}


class ConfigQueryError(XdsError):
    """A config query that cannot be answered; `status` is the HTTP status that says why."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class SnapshotLookup(Protocol):
    """What the dump needs from the cache (SnapshotCache satisfies it)."""

    def get(self, node_id: str) -> Snapshot | None: ...

    def node_ids(self) -> frozenset[str]: ...


def resolve_type(text: str) -> str:
    """A type URL from `clusters`, `cds`, or the type URL itself; ConfigQueryError(400) otherwise."""
    if text in typeurls.KNOWN_TYPES:
        return text
    if text in TYPE_ALIASES:
        return TYPE_ALIASES[text]
    for type_url, short in typeurls.SHORT_NAMES.items():
        if text == short:
            return type_url
    names = ", ".join(sorted(TYPE_ALIASES))
    raise ConfigQueryError(f"unknown type {text!r}; expected one of {names} (or a type URL)", status=400)


def _redact_fields(message: Message, fields: tuple[str, ...]) -> None:
    for name in fields:
        value = getattr(message, name)
        if isinstance(value, Message):
            if message.HasField(name):
                value.Clear()
                setattr(value, "inline_string", REDACTED)  # noqa: B010 - envoy messages are untyped here
        else:  # repeated DataSource
            for item in value:
                item.Clear()
                setattr(item, "inline_string", REDACTED)  # noqa: B010


def _unpack(packed: Any) -> Message | None:
    """The message inside an Any, if this process knows its type (else it cannot be rendered either)."""
    name = str(packed.type_url).rpartition("/")[2]
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(name)
    except KeyError:
        return None
    inner = message_factory.GetMessageClass(descriptor)()
    inner.ParseFromString(packed.value)
    return inner


def redact(message: Message) -> None:
    """Replace key material anywhere in `message` (in place) by an inline `[redacted]`."""
    full_name = message.DESCRIPTOR.full_name
    sensitive = _SENSITIVE.get(full_name)
    if sensitive is not None:
        _redact_fields(message, sensitive)
    if full_name == "google.protobuf.Any":
        inner = _unpack(message)
        if inner is not None:
            before = inner.SerializeToString(deterministic=True)
            redact(inner)
            after = inner.SerializeToString(deterministic=True)
            if after != before:
                setattr(message, "value", after)  # noqa: B010
        return
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                for item in value.values():
                    redact(item)
        elif field.is_repeated:
            for item in value:
                redact(item)
        else:
            redact(value)


def render_resource(type_url: str, any_bytes: bytes) -> dict[str, Any]:
    """One resource as Envoy JSON (`@type` first, proto field names), key material redacted."""
    packed = any_pb2.Any.FromString(any_bytes)
    inner = typeurls.message_class(type_url).FromString(packed.value)
    redact(inner)
    packed.value = inner.SerializeToString(deterministic=True)
    rendered: dict[str, Any] = json_format.MessageToDict(packed, preserving_proto_field_name=True)
    return rendered


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigDump:
    """Answers config queries from a snapshot cache."""

    snapshots: SnapshotLookup

    def query(self, *, node: str, type_name: str) -> dict[str, Any]:
        """The node's resources of one type: {node, snapshot, version, type_url, resources: [...]}.

        `snapshot` says whether the node has its own snapshot or gets the default one. A resource this
        process cannot render (an `Any` of an unknown type) is listed with an `error` instead of its body.
        """
        if not node:
            raise ConfigQueryError("missing node: /debug/config?node=NODE&type=TYPE", status=400)
        type_url = resolve_type(type_name)
        snapshot = self.snapshots.get(node)
        own = self.snapshots.node_ids()
        if snapshot is None:
            known = ", ".join(sorted(own)) or "none"
            raise ConfigQueryError(f"no config for node {node!r} (nodes with config: {known})", status=404)
        resources = []
        for name, resource in snapshot.of_type(type_url).items():
            entry: dict[str, Any] = {"name": name, "version": resource.version}
            try:
                entry["resource"] = render_resource(type_url, resource.any_bytes)
            except (TypeError, json_format.Error) as exc:  # an Any whose type this process lacks
                entry["error"] = f"cannot render: {exc}"
            resources.append(entry)
        return {
            "node": node,
            "snapshot": "node" if node in own else "default",
            "version": snapshot.version,
            "type_url": type_url,
            "resources": resources,
        }
