"""A ProxyStatusRegistry that tells the benchmark, without polling, when every stream has ACKed a target.

It hooks the server's own bookkeeping: each stream's status record is swapped for a subclass whose
`record_ack` and `record_sent` also report here, so an ACK is seen the moment the server processes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from controlplane.xds import typeurls
from controlplane.xds.status import ProxyStatusRegistry, StreamStatus, Variant


@dataclass(frozen=True, slots=True, kw_only=True)
class SentResponse:
    """One response a stream was sent, while the watch records them all (the cold start)."""

    variant: Variant
    type_url: str
    version: str
    nonce: str
    # Resource name -> version, for the resources the response carried.
    resources: Mapping[str, str]
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SentEndpoints:
    """The last EDS response one stream was sent: what a naive server would have had to serialize."""

    version: str
    nonce: str
    # Resource name -> version carried by the response.
    resources: Mapping[str, str]
    size: int


class _HookedStatus(StreamStatus):
    __slots__ = ()

    def _watch(self) -> AckWatch:
        registry = self._registry
        assert isinstance(registry, AckWatch)
        return registry

    def record_ack(self, type_url: str, *, nonce: str, version: str) -> None:
        super().record_ack(type_url, nonce=nonce, version=version)
        self._watch().on_ack(self.info.stream_id, type_url, version)

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
        super().record_sent(
            type_url,
            version=version,
            nonce=nonce,
            resources=resources,
            size=size,
            delta_changes=delta_changes,
            delta_replaces=delta_replaces,
        )
        # `delta_changes` is what the response carried: for delta what it changed (None: removed); for SotW
        # every resource of a full response, but only the changed ones in later EDS/RDS responses.
        if delta_changes is None:
            carried: Mapping[str, str] = resources
        else:
            carried = {name: v for name, v in delta_changes.items() if v is not None}
        watch = self._watch()
        if watch.recording:
            watch.sent_log.append(
                SentResponse(
                    variant=self.info.variant,
                    type_url=type_url,
                    version=version,
                    nonce=nonce,
                    resources=carried,
                    size=size,
                )
            )
        if type_url == typeurls.ENDPOINT:
            watch.on_sent_endpoints(
                self.info.stream_id,
                SentEndpoints(version=version, nonce=nonce, resources=carried, size=size),
            )


class AckWatch(ProxyStatusRegistry):
    """Status registry for the benchmark: `expect_streams(n)` and `arm(target, n)` return events."""

    def __init__(self, *, clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__()
        self._clock = clock
        self._streams_wanted = 0
        self._streams_opened = asyncio.Event()
        self._target: Mapping[str, str] = MappingProxyType({})
        self._wanted = 0
        self._acked: dict[int, dict[str, str]] = {}
        self._synced: set[int] = set()
        self._all_synced = asyncio.Event()
        # When the last stream reached the target (clock time), set before the event wakes anyone.
        self.synced_at = 0.0
        self.last_endpoints: dict[int, SentEndpoints] = {}
        # While `recording`, every response sent to any stream, in order (the cold start's naive rebuild).
        self.recording = False
        self.sent_log: list[SentResponse] = []
        self.variants: dict[int, Variant] = {}

    def open_stream(
        self, *, node_id: str, cluster: str, node_bytes: bytes, peer: str, variant: Variant
    ) -> StreamStatus:
        plain = super().open_stream(
            node_id=node_id, cluster=cluster, node_bytes=node_bytes, peer=peer, variant=variant
        )
        stream_id = plain.info.stream_id
        hooked = _HookedStatus(info=plain.info, _registry=self)
        self._streams[stream_id] = hooked
        self._by_node[node_id][stream_id] = hooked
        self.variants[stream_id] = variant
        if self._streams_wanted and len(self) >= self._streams_wanted:
            self._streams_opened.set()
        return hooked

    def expect_streams(self, count: int) -> asyncio.Event:
        """An event set once `count` streams have opened (sent their first request)."""
        self._streams_wanted = count
        self._streams_opened = asyncio.Event()
        if len(self) >= count:
            self._streams_opened.set()
        return self._streams_opened

    def arm(self, target: Mapping[str, str], streams: int) -> asyncio.Event:
        """An event set once `streams` streams have ACKed, for every type in `target`, its version there."""
        self._target = MappingProxyType(dict(target))
        self._wanted = streams
        self._all_synced = asyncio.Event()
        self._synced = {sid for sid, acked in self._acked.items() if self._reached(acked)}
        self._check_done()
        return self._all_synced

    def on_ack(self, stream_id: int, type_url: str, version: str) -> None:
        acked = self._acked.get(stream_id)
        if acked is None:
            acked = self._acked[stream_id] = {}
        acked[type_url] = version
        if stream_id not in self._synced and self._reached(acked):
            self._synced.add(stream_id)
            self._check_done()

    def on_sent_endpoints(self, stream_id: int, sent: SentEndpoints) -> None:
        self.last_endpoints[stream_id] = sent

    def _reached(self, acked: Mapping[str, str]) -> bool:
        return bool(self._target) and all(acked.get(t) == v for t, v in self._target.items())

    def _check_done(self) -> None:
        if self._wanted and len(self._synced) >= self._wanted and not self._all_synced.is_set():
            self.synced_at = self._clock()
            self._all_synced.set()

    def _remove(self, status: StreamStatus) -> None:
        super()._remove(status)
        stream_id = status.info.stream_id
        self._acked.pop(stream_id, None)
        self._synced.discard(stream_id)
        self.last_endpoints.pop(stream_id, None)
        self.variants.pop(stream_id, None)
