"""What each connected proxy has been sent, has ACKed and has NACKed, per type: the source for CSDS,
metrics and `meshctl proxy-status`."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol, cast

from controlplane.xds.held import HeldVersions
from controlplane.xds.snapshot import Snapshot

_NO_VERSIONS: Mapping[str, str] = MappingProxyType({})
_MAX_PENDING = 64


class ConfigStatus(StrEnum):
    SYNCED = "synced"  # the last response was ACKed
    NOT_SENT = "not_sent"  # nothing sent yet for this type
    STALE = "stale"  # sent, not yet ACKed
    ERROR = "error"  # the last response was NACKed


class Variant(StrEnum):
    SOTW = "sotw"
    DELTA = "delta"


@dataclass(frozen=True, slots=True, kw_only=True)
class Nack:
    version: str
    nonce: str
    message: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TypeStatus:
    type_url: str
    sent_version: str = ""
    sent_nonce: str = ""
    sent_at: float | None = None
    acked_version: str = ""
    acked_nonce: str = ""
    last_nack: Nack | None = None
    # Name -> version the client was last sent (SotW: the last response; delta: everything it holds).
    sent_resources: Mapping[str, str] = field(default_factory=lambda: _NO_VERSIONS)
    # Name -> version the client has ACKed.
    acked_resources: Mapping[str, str] = field(default_factory=lambda: _NO_VERSIONS)
    responses_sent: int = 0
    bytes_sent: int = 0

    @property
    def status(self) -> ConfigStatus:
        if not self.sent_nonce:
            return ConfigStatus.NOT_SENT
        if self.last_nack is not None and self.last_nack.nonce == self.sent_nonce:
            return ConfigStatus.ERROR
        if self.acked_nonce == self.sent_nonce:
            return ConfigStatus.SYNCED
        return ConfigStatus.STALE

    def resource_status(self, name: str) -> ConfigStatus:
        sent = self.sent_resources.get(name)
        if sent is None:
            return ConfigStatus.NOT_SENT
        if self.acked_resources.get(name) == sent:
            return ConfigStatus.SYNCED
        if self.last_nack is not None and self.last_nack.nonce == self.sent_nonce:
            return ConfigStatus.ERROR
        return ConfigStatus.STALE


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamInfo:
    """A read-only view of one connected stream."""

    stream_id: int
    node_id: str
    cluster: str
    node_bytes: bytes  # the serialized envoy.config.core.v3.Node of the first request
    peer: str
    variant: Variant
    connected_since: float
    types: Mapping[str, TypeStatus]


@dataclass(slots=True)
class _TypeRecord:
    """Mutable per-type state behind TypeStatus; updated on every push and ACK, so it never copies maps."""

    type_url: str
    sent_version: str = ""
    sent_nonce: str = ""
    sent_at: float | None = None
    acked_version: str = ""
    acked_nonce: str = ""
    last_nack: Nack | None = None
    # SotW: the (never mutated) contents of the last response; delta: a live view of what the client holds.
    sent_resources: Mapping[str, str] = field(default_factory=lambda: _NO_VERSIONS)
    # SotW: the contents of the ACKed response; delta: a dict updated in place from each ACKed response.
    acked_resources: Mapping[str, str] = field(default_factory=lambda: _NO_VERSIONS)
    delta_acked: HeldVersions | None = None
    responses_sent: int = 0
    bytes_sent: int = 0

    @property
    def settled(self) -> bool:
        """Nothing outstanding: no response sent yet, or the last one was ACKed or NACKed."""
        nonce = self.sent_nonce
        return (
            not nonce
            or self.acked_nonce == nonce
            or (self.last_nack is not None and self.last_nack.nonce == nonce)
        )

    @property
    def errored(self) -> bool:
        return self.last_nack is not None and self.last_nack.nonce == self.sent_nonce

    def freeze(self) -> TypeStatus:
        return TypeStatus(
            type_url=self.type_url,
            sent_version=self.sent_version,
            sent_nonce=self.sent_nonce,
            sent_at=self.sent_at,
            acked_version=self.acked_version,
            acked_nonce=self.acked_nonce,
            last_nack=self.last_nack,
            sent_resources=MappingProxyType(dict(self.sent_resources)),
            acked_resources=MappingProxyType(dict(self.acked_resources)),
            responses_sent=self.responses_sent,
            bytes_sent=self.bytes_sent,
        )


class StreamListener(Protocol):
    """Told when a stream may have come into sync, NACKed, or closed (the convergence tracker).

    Called on the serving path: implementations must be O(1) for nodes they are not waiting on.
    """

    def stream_progressed(self, stream: StreamStatus) -> None:
        """The stream evaluated a new snapshot, or its last outstanding response was ACKed."""

    def stream_nacked(self, stream: StreamStatus) -> None: ...

    def stream_closed(self, stream: StreamStatus) -> None:
        """Called once the stream is no longer in `ProxyStatusRegistry.streams_of`."""


@dataclass(slots=True)
class StreamStatus:
    """The mutable record one stream keeps up to date; readers get `StreamInfo` copies."""

    info: StreamInfo
    _registry: ProxyStatusRegistry
    _types: dict[str, _TypeRecord] = field(default_factory=dict)
    # Delta: versions each outstanding nonce carried, applied to the ACKed set when that nonce is ACKed.
    # With each: whether the client then holds exactly those (a whole-set response: kept by reference).
    _pending: dict[str, tuple[Mapping[str, str | None], bool]] = field(default_factory=dict)
    # The snapshot the stream last evaluated, recorded once the responses it caused were written.
    evaluated: Snapshot | None = None
    # Types whose last response awaits its ACK or NACK: kept as a count so "in sync?" is O(1).
    unsettled: int = 0

    @property
    def node_id(self) -> str:
        return self.info.node_id

    def in_sync(self, snapshot: Snapshot | None) -> bool:
        """Evaluated `snapshot`, every response ACKed, none NACKed."""
        return (
            snapshot is not None
            and self.evaluated is snapshot
            and not self.unsettled
            and not any(r.errored for r in self._types.values())
        )

    def synced_types(self) -> frozenset[str]:
        """Types whose last response the client ACKed (CSDS SYNCED): O(types), no copies, for listeners
        that need more than "nothing outstanding" (a type not yet subscribed is not listed)."""
        return frozenset(t for t, r in self._types.items() if r.sent_nonce and r.acked_nonce == r.sent_nonce)

    @property
    def bytes_sent(self) -> int:
        """Bytes of every response written on this stream, all types."""
        return sum(r.bytes_sent for r in self._types.values())

    def record_evaluated(self, snapshot: Snapshot) -> None:
        """The stream has looked at `snapshot` and written every response it called for."""
        if snapshot is not self.evaluated:
            self.evaluated = snapshot
            listener = self._registry.listener
            if listener is not None:
                listener.stream_progressed(self)

    def _get(self, type_url: str) -> _TypeRecord:
        record = self._types.get(type_url)
        if record is None:
            record = self._types[type_url] = _TypeRecord(type_url=type_url)
        return record

    def record_subscribed(self, type_url: str) -> None:
        """The client asked for this type: it is listed from now on (NOT_SENT until a response goes out)."""
        self._get(type_url)

    def record_sent(
        self,
        type_url: str,
        *,
        version: str,
        nonce: str,
        resources: Mapping[str, str],
        size: int,
        delta_changes: Mapping[str, str | None] | None = None,
        delta_replaces: bool = False,
    ) -> None:
        """`resources`: what the client should now hold, kept by reference (the caller does not mutate it,
        or it is a live view); for delta, `delta_changes` is what this response changed (None: removed),
        applied to the ACKed set on ACK; `delta_replaces`: the client then holds exactly `delta_changes`
        (a whole set, no removals), which is kept by reference. SotW passes what the response carried
        (informational: a SotW ACK means the client holds `resources`, which SotW never mutates)."""
        record = self._get(type_url)
        if record.settled:
            self.unsettled += 1
        if delta_changes is not None and self.info.variant is Variant.DELTA:
            self._pending[nonce] = (delta_changes, delta_replaces)
            while len(self._pending) > _MAX_PENDING:  # a client that never ACKs
                del self._pending[next(iter(self._pending))]
        record.sent_version = version
        record.sent_nonce = nonce
        record.sent_at = self._registry.clock()
        record.sent_resources = resources
        record.responses_sent += 1
        record.bytes_sent += size

    def record_ack(self, type_url: str, *, nonce: str, version: str) -> None:
        record = self._get(type_url)
        was_settled = record.settled
        pending = self._pending.pop(nonce, None)
        changes = None if pending is None else pending[0]
        if changes is None:
            record.acked_resources = record.sent_resources
        else:
            if record.delta_acked is None:
                record.delta_acked = HeldVersions()
                record.acked_resources = MappingProxyType(record.delta_acked)
            if pending is not None and pending[1]:
                # Holds exactly the set that was sent (no None in it): share it, do not copy it per stream.
                record.delta_acked.replace(cast(Mapping[str, str], changes))
                changes = {}
            for name, resource_version in changes.items():
                if resource_version is None:
                    record.delta_acked.pop(name, None)
                else:
                    record.delta_acked[name] = resource_version
        record.acked_version = version
        record.acked_nonce = nonce
        if not was_settled and record.settled:
            self.unsettled -= 1
            listener = self._registry.listener
            if listener is not None and not self.unsettled:
                listener.stream_progressed(self)

    def record_nack(self, type_url: str, *, nonce: str, version: str, message: str) -> None:
        self._pending.pop(nonce, None)
        record = self._get(type_url)
        was_settled = record.settled
        record.last_nack = Nack(version=version, nonce=nonce, message=message, at=self._registry.clock())
        if not was_settled and record.settled:
            self.unsettled -= 1
        listener = self._registry.listener
        if listener is not None:
            listener.stream_nacked(self)

    def snapshot(self) -> StreamInfo:
        types = {type_url: record.freeze() for type_url, record in self._types.items()}
        return replace(self.info, types=MappingProxyType(types))

    def close(self) -> None:
        self._registry._remove(self)


class ProxyStatusRegistry:
    """All connected streams. Single event loop: no locking."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._ids = itertools.count(1)
        self._streams: dict[int, StreamStatus] = {}
        self._by_node: dict[str, dict[int, StreamStatus]] = {}
        self.listener: StreamListener | None = None

    def listen(self, listener: StreamListener | None) -> None:
        """Tell `listener` about stream progress (one listener: the composition root wires it)."""
        self.listener = listener

    def open_stream(
        self, *, node_id: str, cluster: str, node_bytes: bytes, peer: str, variant: Variant
    ) -> StreamStatus:
        stream_id = next(self._ids)
        info = StreamInfo(
            stream_id=stream_id,
            node_id=node_id,
            cluster=cluster,
            node_bytes=node_bytes,
            peer=peer,
            variant=variant,
            connected_since=self.clock(),
            types=_NO_TYPES,
        )
        status = StreamStatus(info=info, _registry=self)
        self._streams[stream_id] = status
        self._by_node.setdefault(node_id, {})[stream_id] = status
        return status

    def streams(self) -> tuple[StreamInfo, ...]:
        return tuple(s.snapshot() for s in self._streams.values())

    def statuses(self) -> tuple[StreamStatus, ...]:
        """The live records (read them, do not record into them)."""
        return tuple(self._streams.values())

    def streams_of(self, node_id: str) -> tuple[StreamStatus, ...]:
        """The live records of one node's connected streams."""
        streams = self._by_node.get(node_id)
        return tuple(streams.values()) if streams else ()

    def _remove(self, status: StreamStatus) -> None:
        stream_id = status.info.stream_id
        if self._streams.pop(stream_id, None) is None:
            return
        node = self._by_node.get(status.node_id)
        if node is not None:
            node.pop(stream_id, None)
            if not node:
                del self._by_node[status.node_id]
        if self.listener is not None:
            self.listener.stream_closed(status)

    def __len__(self) -> int:
        return len(self._streams)


_NO_TYPES: Mapping[str, TypeStatus] = MappingProxyType({})
