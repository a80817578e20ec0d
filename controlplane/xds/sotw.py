"""State-of-the-world ADS: the per-stream protocol state and its grpc.aio handler.

Rules (xDS spec, "xDS REST and gRPC protocol"): a request echoing the last nonce ACKs it, or NACKs it when it
carries error_detail; a request with an older nonce is stale and ignored. LDS/CDS responses (and our wildcard
types) carry the whole set, since a missing listener or cluster is deleted; RDS/EDS responses carry what was
asked for. A response goes out only when what the subscription selects differs from what was last sent, so
a NACKed version is never resent: only a newer one is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from controlplane.xds import typeurls
from controlplane.xds.cache import SnapshotSource
from controlplane.xds.metrics import XdsMetrics
from controlplane.xds.resource import Resource
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.status import StreamStatus, Variant
from controlplane.xds.stream import (
    Nonces,
    OpenStatus,
    Push,
    StreamEnv,
    StreamMachine,
    check_count,
    check_nonce,
    check_type_url,
    first_node,
    open_status_for,
    serve_stream,
)

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _TypeState:
    requested: bool = False
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    # The last response on this stream: its nonce, version and contents (None: nothing sent yet).
    nonce: str | None = None
    version: str = ""
    sent: dict[str, str] | None = None
    # Resend even if unchanged (endpoints of clusters just pushed).
    force: bool = False
    # The whole type's version when last evaluated, and whether the subscription changed since: when neither
    # moved, a new snapshot cannot change this type's response, so it is skipped without looking at resources.
    basis: str = ""
    dirty: bool = True


class SotwStream(StreamMachine):
    variant = Variant.SOTW

    def __init__(
        self,
        snapshots: SnapshotSource,
        *,
        max_names: int = 10_000,
        open_status: OpenStatus | None = None,
        nonces: Nonces | None = None,
        metrics: XdsMetrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._snapshots = snapshots
        self._max_names = max_names
        self._open_status = open_status
        self._nonces = nonces or Nonces()
        self._types: dict[str, _TypeState] = {}
        self.node_id: str | None = None
        self.snapshot: Snapshot | None = None
        self.status: StreamStatus | None = None

    def on_request(self, request: Any) -> list[Push]:
        type_url = str(request.type_url)
        check_type_url(type_url)
        check_count("resource_names", len(request.resource_names), self._max_names)
        nonce = str(request.response_nonce)
        check_nonce(nonce)
        if self.node_id is None:
            node = first_node(request)
            self.node_id = str(node.id)
            if self._open_status is not None:
                self.status = self._open_status(node)
        # Answer from the newest snapshot; if that is news to this stream, every type may have changed.
        latest = self._snapshots.get(self.node_id)
        refreshed = latest is not self.snapshot
        self.snapshot = latest
        logger.debug(
            "sotw request node=%s type=%s version=%s nonce=%s names=%d",
            self.node_id,
            typeurls.short_name(type_url),
            request.version_info,
            nonce,
            len(request.resource_names),
        )
        state = self._types.get(type_url)
        if state is None:
            state = self._types[type_url] = _TypeState()
        elif nonce and state.nonce is not None:
            if nonce != state.nonce:
                logger.debug("stale nonce node=%s type=%s nonce=%s", self.node_id, type_url, nonce)
                return []
            self._ack_or_nack(type_url, state, request)
        names = set(request.resource_names)
        # Wildcard only while the stream never subscribed by name: "*" asks for it explicitly.
        if not state.requested:
            state.requested = True
            state.wildcard = "*" in names or (not names and type_url in typeurls.WILDCARD_TYPES)
        else:
            state.wildcard = "*" in names or (state.wildcard and not names)
        names.discard("*")
        state.names = names
        state.dirty = True
        return self._respond(set(self._types) if refreshed else {type_url})

    def on_snapshot(self, snapshot: Snapshot) -> list[Push]:
        self.snapshot = snapshot
        return self._respond(set(self._types))

    def _ack_or_nack(self, type_url: str, state: _TypeState, request: Any) -> None:
        assert state.nonce is not None
        if request.HasField("error_detail"):
            message = str(request.error_detail.message)
            logger.warning(
                "xds NACK node=%s type=%s version=%s nonce=%s: %s",
                self.node_id,
                typeurls.short_name(type_url),
                state.version,
                state.nonce,
                message,
            )
            if self._metrics is not None:
                self._metrics.observe_nack(type_url)
            if self.status is not None:
                self.status.record_nack(type_url, nonce=state.nonce, version=state.version, message=message)
        elif self.status is not None:
            self.status.record_ack(type_url, nonce=state.nonce, version=state.version)

    def _respond(self, type_urls: set[str]) -> list[Push]:
        if self.snapshot is None:
            return []
        pushes: list[Push] = []
        for type_url in typeurls.PUSH_ORDER:
            state = self._types.get(type_url)
            if state is None or (type_url not in type_urls and not state.force):
                continue
            push = self._build(type_url, state, self.snapshot)
            if push is not None:
                pushes.append(push)
        return pushes

    def _select(self, type_url: str, state: _TypeState, snapshot: Snapshot) -> Mapping[str, Resource]:
        named = snapshot.of_type(type_url)
        if state.wildcard:
            return named
        return {n: named[n] for n in sorted(state.names) if n in named}

    def _build(self, type_url: str, state: _TypeState, snapshot: Snapshot) -> Push | None:
        basis = snapshot.type_version(type_url)
        if basis == state.basis and not (state.dirty or state.force or state.sent is None):
            return None
        state.basis, state.dirty = basis, False
        chosen = self._select(type_url, state, snapshot)
        contents = {name: r.version for name, r in chosen.items()}
        previous = state.sent
        if previous == contents and not state.force:
            return None
        state.force = False
        if type_url == typeurls.CLUSTER:
            self._rewarm_endpoints(chosen, previous or {})
        whole = state.wildcard or len(contents) == len(snapshot.of_type(type_url))
        version = basis if whole else snapshot.type_version(type_url, contents.keys())
        nonce = self._nonces.next()
        header = discovery_pb2.DiscoveryResponse(version_info=version, type_url=type_url, nonce=nonce)
        data = header.SerializeToString() + b"".join(r.sotw_fragment for r in chosen.values())
        state.nonce, state.version, state.sent = nonce, version, contents
        return Push(
            type_url=type_url,
            version=version,
            nonce=nonce,
            data=data,
            holds=contents,
            resource_count=len(contents),
        )

    def _rewarm_endpoints(self, clusters: Mapping[str, Resource], previous: Mapping[str, str]) -> None:
        """Envoy finishes warming a new or changed cluster only on a fresh EDS response: send one."""
        endpoints = self._types.get(typeurls.ENDPOINT)
        if endpoints is None or endpoints.sent is None:
            return
        refs: set[str] = set()
        for name, cluster in clusters.items():
            if previous.get(name) != cluster.version:
                refs |= cluster.refs
        if refs and (endpoints.wildcard or refs & endpoints.names):
            endpoints.force = True


class SotwHandler:
    """grpc.aio behaviour of StreamAggregatedResources: yields pre-encoded bytes."""

    def __init__(self, env: StreamEnv, *, max_names: int) -> None:
        self._env = env
        self._max_names = max_names

    async def serve(self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, bytes]) -> None:
        machine = SotwStream(
            self._env.snapshots,
            max_names=self._max_names,
            metrics=self._env.metrics,
            open_status=open_status_for(self._env, Variant.SOTW, context.peer()),
        )
        await serve_stream(machine, context, self._env)
