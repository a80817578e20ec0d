"""What each connected proxy has been sent, has ACKed and has NACKed, per type: the source for CSDS,
metrics and `meshctl proxy-status`."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

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
    delta_acked: dict[str, str] | None = None
    responses_sent: int = 0
    bytes_sent: int = 0

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


@dataclass(slots=True)
class StreamStatus:
    """The mutable record one stream keeps up to date; readers get `StreamInfo` copies."""

    info: StreamInfo
    _registry: ProxyStatusRegistry
    _types: dict[str, _TypeRecord] = field(default_factory=dict)
    # Delta: versions each outstanding nonce carried, applied to the ACKed set when that nonce is ACKed.
    _pending: dict[str, Mapping[str, str | None]] = field(default_factory=dict)

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
    ) -> None:
        """`resources`: what the client should now hold, kept by reference (the caller does not mutate it,
        or it is a live view); for delta, `delta_changes` is what this response changed (None: removed),
        applied to the ACKed set on ACK. SotW passes what the response carried (informational: a SotW ACK
        means the client holds `resources`, which SotW never mutates)."""
        record = self._get(type_url)
        if delta_changes is not None and self.info.variant is Variant.DELTA:
            self._pending[nonce] = delta_changes
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
        changes = self._pending.pop(nonce, None)
        if changes is None:
            record.acked_resources = record.sent_resources
        else:
            if record.delta_acked is None:
                record.delta_acked = {}
                record.acked_resources = MappingProxyType(record.delta_acked)
            for name, resource_version in changes.items():
                if resource_version is None:
                    record.delta_acked.pop(name, None)
                else:
                    record.delta_acked[name] = resource_version
        record.acked_version = version
        record.acked_nonce = nonce

    def record_nack(self, type_url: str, *, nonce: str, version: str, message: str) -> None:
        self._pending.pop(nonce, None)
        self._get(type_url).last_nack = Nack(
            version=version, nonce=nonce, message=message, at=self._registry.clock()
        )

    def snapshot(self) -> StreamInfo:
        types = {type_url: record.freeze() for type_url, record in self._types.items()}
        return replace(self.info, types=MappingProxyType(types))

    def close(self) -> None:
        self._registry._remove(self.info.stream_id)


class ProxyStatusRegistry:
    """All connected streams. Single event loop: no locking."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._ids = itertools.count(1)
        self._streams: dict[int, StreamStatus] = {}

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
        return status

    def streams(self) -> tuple[StreamInfo, ...]:
        return tuple(s.snapshot() for s in self._streams.values())

    def _remove(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)

    def __len__(self) -> int:
        return len(self._streams)


_NO_TYPES: Mapping[str, TypeStatus] = MappingProxyType({})
