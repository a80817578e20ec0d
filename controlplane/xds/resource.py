"""One xDS resource, serialized once: its Any bytes, a content-hash version and ready-made wire fragments.

Protobuf parsers merge repeated fields across concatenated encodings, so a response is its header's bytes
followed by each resource's pre-encoded fragment: a resource is never re-serialized per node or per stream.
"""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from controlplane.xds import typeurls
from controlplane.xds.errors import UnknownTypeUrlError

_HCM_TYPE_URL = typeurls.type_url_of(http_connection_manager_pb2.HttpConnectionManager())

# A reference held by a resource of one type names a resource of another: listeners name routes (RDS),
# clusters name endpoints (EDS).
REF_TARGETS: dict[str, str] = {typeurls.LISTENER: typeurls.ROUTE, typeurls.CLUSTER: typeurls.ENDPOINT}


@dataclass(frozen=True, slots=True, kw_only=True, weakref_slot=True)
class Resource:
    type_url: str
    name: str
    # Content hash of the deterministic serialization: equal content gives equal versions on every replica.
    version: str
    any_bytes: bytes
    # Names of resources of REF_TARGETS[type_url] this one depends on.
    refs: frozenset[str]
    # The wire fragments around `any_bytes`, kept apart so the (possibly large) Any is stored once:
    # `sotw_parts` encodes DiscoveryResponse(resources=[any]), `delta_parts`
    # DeltaDiscoveryResponse(resources=[Resource(name, version, any)]).
    sotw_prefix: bytes
    delta_prefix: bytes
    delta_suffix: bytes

    @property
    def size(self) -> int:
        return len(self.any_bytes)

    @property
    def sotw_parts(self) -> tuple[bytes, bytes]:
        return (self.sotw_prefix, self.any_bytes)

    @property
    def delta_parts(self) -> tuple[bytes, bytes, bytes]:
        return (self.delta_prefix, self.any_bytes, self.delta_suffix)

    @property
    def sotw_fragment(self) -> bytes:
        return b"".join(self.sotw_parts)

    @property
    def delta_fragment(self) -> bytes:
        return b"".join(self.delta_parts)

    def to_any(self) -> any_pb2.Any:
        return any_pb2.Any.FromString(self.any_bytes)

    def message(self) -> Message:
        """Parse the resource back (for diagnostics; the serving path never needs it)."""
        cls = typeurls.message_class(self.type_url)
        return cls.FromString(self.to_any().value)


def resource_name(message: Message) -> str:
    """The xDS resource name of a message, by its type's naming rule."""
    type_url = typeurls.type_url_of(message)
    match type_url:
        case typeurls.LISTENER | typeurls.ROUTE | typeurls.CLUSTER | typeurls.SECRET:
            return str(getattr(message, "name"))  # noqa: B009 - envoy messages are untyped here
        case typeurls.ENDPOINT:
            return str(getattr(message, "cluster_name"))  # noqa: B009
        case typeurls.WORKLOAD:
            return str(getattr(message, "uid"))  # noqa: B009
        case typeurls.SERVICE_VIP:
            return f"{getattr(message, 'namespace')}/{getattr(message, 'name')}"  # noqa: B009
        case typeurls.NODE_SETTINGS:
            return "node"
    raise UnknownTypeUrlError(type_url)


def resource_refs(message: Message) -> frozenset[str]:
    """Names of the resources a message depends on (see REF_TARGETS)."""
    if isinstance(message, cluster_pb2.Cluster):
        if message.type == cluster_pb2.Cluster.EDS:
            return frozenset({message.eds_cluster_config.service_name or message.name})
        return frozenset()
    if typeurls.type_url_of(message) == typeurls.LISTENER:
        listener = message
        chains = list(getattr(listener, "filter_chains"))  # noqa: B009
        if listener.HasField("default_filter_chain"):
            chains.append(getattr(listener, "default_filter_chain"))  # noqa: B009
        names: set[str] = set()
        for chain in chains:
            for network_filter in chain.filters:
                if network_filter.typed_config.type_url != _HCM_TYPE_URL:
                    continue
                hcm = http_connection_manager_pb2.HttpConnectionManager()
                network_filter.typed_config.Unpack(hcm)
                if hcm.HasField("rds"):
                    names.add(str(hcm.rds.route_config_name))
        return frozenset(names)
    return frozenset()


def _pack(message: Message, type_url: str | None, name: str | None) -> tuple[str, str, bytes]:
    type_url = type_url or typeurls.type_url_of(message)
    if type_url not in typeurls.KNOWN_TYPES:
        raise UnknownTypeUrlError(type_url)
    name = resource_name(message) if name is None else name
    packed = any_pb2.Any(type_url=type_url, value=message.SerializeToString(deterministic=True))
    return type_url, name, packed.SerializeToString(deterministic=True)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(number: int, payload: int) -> bytes:
    """The tag and length of a length-delimited field (wire type 2) whose payload is `payload` bytes."""
    return _varint(number << 3 | 2) + _varint(payload)


# Field numbers from the descriptors, not from memory.
_SOTW_RESOURCES = discovery_pb2.DiscoveryResponse.DESCRIPTOR.fields_by_name["resources"].number
_DELTA_RESOURCES = discovery_pb2.DeltaDiscoveryResponse.DESCRIPTOR.fields_by_name["resources"].number
_RESOURCE_FIELDS = discovery_pb2.Resource.DESCRIPTOR.fields_by_name
_VERSION, _BODY, _NAME = (_RESOURCE_FIELDS[f].number for f in ("version", "resource", "name"))


def _encode(message: Message, type_url: str, name: str, any_bytes: bytes) -> Resource:
    version = hashlib.sha256(name.encode() + b"\0" + any_bytes).hexdigest()[:16]
    # Fields in number order (version, resource, name), as deterministic serialization writes them.
    version_field = _len_field(_VERSION, len(version)) + version.encode()
    body_head = _len_field(_BODY, len(any_bytes))
    name_field = _len_field(_NAME, len(name.encode())) + name.encode()
    inner = len(version_field) + len(body_head) + len(any_bytes) + len(name_field)
    return Resource(
        type_url=type_url,
        name=name,
        version=version,
        any_bytes=any_bytes,
        refs=resource_refs(message),
        sotw_prefix=_len_field(_SOTW_RESOURCES, len(any_bytes)),
        delta_prefix=_len_field(_DELTA_RESOURCES, inner) + version_field + body_head,
        delta_suffix=name_field,
    )


def build_resource(message: Message, type_url: str | None = None, name: str | None = None) -> Resource:
    """Serialize a message once into a Resource (not interned; ResourcePool.intern shares equal ones)."""
    return _encode(message, *_pack(message, type_url, name))


class ResourcePool:
    """Interns resources by content, so equal resources across nodes share one object and one set of bytes.

    Entries are weak: a resource no snapshot holds any more is freed.
    """

    def __init__(self) -> None:
        self._by_key: weakref.WeakValueDictionary[tuple[str, str, bytes], Resource] = (
            weakref.WeakValueDictionary()
        )

    def intern(self, message: Message, type_url: str | None = None, *, name: str | None = None) -> Resource:
        type_url, name, any_bytes = _pack(message, type_url, name)
        key = (type_url, name, hashlib.sha256(any_bytes).digest())
        existing = self._by_key.get(key)
        if existing is not None:
            return existing
        created = _encode(message, type_url, name, any_bytes)
        self._by_key[key] = created
        return created

    def __len__(self) -> int:
        return len(self._by_key)
