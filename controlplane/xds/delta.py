"""Incremental (delta) ADS: the per-stream protocol state and its grpc.aio handler.

The server tracks what the client holds (name -> content-hash version, seeded from
initial_resource_versions on reconnect) and sends only what differs; names that vanish, or are subscribed
but do not exist, go out in removed_resources (the latter once). Stale-nonce requests still change the
subscription. A NACKed version is never resent: what the client holds is recorded when
sent, so only a newer version differs.

Moving to a new snapshot, a stream whose subscription did not change looks only at the names that differ
between the set it last built from and the new one (ResourceSet.changes_since, computed once and shared by
every stream); a first response or a subscription change looks at every name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from controlplane.xds import typeurls
from controlplane.xds.held import HeldVersions
from controlplane.xds.resource import Resource
from controlplane.xds.snapshot import ResourceSet, SetDiff, Snapshot
from controlplane.xds.status import Variant
from controlplane.xds.stream import (
    Push,
    StreamBase,
    StreamEnv,
    StreamMachine,
    check_count,
    check_nonce,
    check_type_url,
    open_status_for,
    serve_stream,
)

logger = logging.getLogger(__name__)

# Outstanding (un-ACKed) nonces remembered per type; older ones are treated as stale.
_MAX_OUTSTANDING = 32


@dataclass(slots=True)
class _TypeState:
    wildcard: bool = False
    names: frozenset[str] = frozenset()
    # What the client holds, as far as this stream knows.
    # (A shared whole-set map plus this stream's own changes: see HeldVersions.)
    known: HeldVersions = field(default_factory=HeldVersions)
    # Subscribed names already reported as not existing.
    reported_absent: set[str] = field(default_factory=set)
    # Names to resend even if the client holds them (endpoints of clusters just pushed).
    force: set[str] = field(default_factory=set)
    # Respond on the first request even with nothing to send, so the client knows it is in sync.
    answer_pending: bool = True
    outstanding: dict[str, str] = field(default_factory=dict)  # nonce -> system version
    # The set last evaluated: once it was, the client holds (or was told the absence of) every name of it
    # the subscription selects, so a newer set needs only their shared diff looked at.
    source: ResourceSet | None = None
    # The subscription changed since the last evaluation: look at every name, not only a diff.
    dirty: bool = True


class DeltaStream(StreamBase[_TypeState], StreamMachine):
    variant = Variant.DELTA

    def on_request(self, request: Any) -> list[Push]:
        type_url = str(request.type_url)
        check_type_url(type_url)
        check_count("resource_names_subscribe", len(request.resource_names_subscribe), self._max_names)
        check_count("resource_names_unsubscribe", len(request.resource_names_unsubscribe), self._max_names)
        check_count("initial_resource_versions", len(request.initial_resource_versions), self._max_names)
        nonce = str(request.response_nonce)
        check_nonce(nonce)
        # Answer from the newest snapshot; if that is news to this stream, every type may have changed.
        refreshed = self._refresh(request)
        subscribe = list(request.resource_names_subscribe)
        unsubscribe = list(request.resource_names_unsubscribe)
        logger.debug(
            "delta request node=%s type=%s nonce=%s subscribe=%d unsubscribe=%d initial=%d",
            self.node_id,
            typeurls.short_name(type_url),
            nonce,
            len(subscribe),
            len(unsubscribe),
            len(request.initial_resource_versions),
        )
        state = self._types.get(type_url)
        initial: dict[str, str] = {}
        if state is None:
            state = self._types[type_url] = _TypeState()
            if self.status is not None:
                self.status.record_subscribed(type_url)  # CSDS shows it NOT_SENT until answered
            initial = dict(request.initial_resource_versions)
            state.known = HeldVersions(initial)
            state.wildcard = not subscribe and type_url in typeurls.WILDCARD_TYPES
        elif nonce:
            self._ack_or_nack(type_url, state, nonce, request)
        # Set operations rather than a loop per name: a subscription may list thousands.
        if subscribe:
            names = set(subscribe)
            if "*" in names:
                state.wildcard = True
                names.discard("*")
            state.names = state.names | names
            state.reported_absent -= names
            # An explicit (re)subscription asks for the resource again, unless the client just told us,
            # reconnecting, which version it holds.
            if state.known:  # a first subscription (the usual case at scale) has nothing to forget
                for name in (names & state.known.keys()) - initial.keys():
                    del state.known[name]
        if unsubscribe:
            names = set(unsubscribe)
            if "*" in names:
                state.wildcard = False
                names.discard("*")
            state.names = state.names - names
            state.reported_absent -= names
            if not state.wildcard:
                for name in names & state.known.keys():
                    del state.known[name]
        # An ACK changes no subscription: the next snapshot needs only its diff looked at.
        if subscribe or unsubscribe:
            state.dirty = True
            if self.snapshot is not None:
                state.names = self.snapshot.of_type(type_url).share_names(state.names)
        return self._respond(set(self._types) if refreshed else {type_url})

    def on_snapshot(self, snapshot: Snapshot) -> list[Push]:
        self.snapshot = snapshot
        return self._respond(set(self._types))

    def _ack_or_nack(self, type_url: str, state: _TypeState, nonce: str, request: Any) -> None:
        version = state.outstanding.pop(nonce, None)
        if version is None:
            logger.debug("stale nonce node=%s type=%s nonce=%s", self.node_id, type_url, nonce)
            return
        if request.HasField("error_detail"):
            message = str(request.error_detail.message)
            logger.warning(
                "xds NACK node=%s type=%s version=%s nonce=%s: %s",
                self.node_id,
                typeurls.short_name(type_url),
                version,
                nonce,
                message,
            )
            if self._metrics is not None:
                self._metrics.observe_nack(type_url)
            if self.status is not None:
                self.status.record_nack(type_url, nonce=nonce, version=version, message=message)
        elif self.status is not None:
            self.status.record_ack(type_url, nonce=nonce, version=version)

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

    def _build(self, type_url: str, state: _TypeState, snapshot: Snapshot) -> Push | None:
        named = snapshot.of_type(type_url)
        if state.source is None or state.dirty or state.answer_pending:
            sending, removed = self._scan(state, named)
        elif named is state.source and not state.force:
            return None
        else:
            sending, removed = self._step(state, named, named.changes_since(state.source))
        state.source, state.dirty = named, False
        state.force.clear()
        state.reported_absent |= removed
        basis = named.version
        if not sending and not removed and not state.answer_pending:
            return None
        state.answer_pending = False
        if type_url == typeurls.CLUSTER:
            self._rewarm_endpoints(sending)
        whole = len(sending) == len(named)  # every resource of the set (a first response, usually)
        sent = named.versions if whole else {r.name: r.version for r in sending}
        if whole:
            # What the client held is a subset of the set (_scan and _step drop every other name), so it
            # now holds exactly the set: share its versions map rather than copy it into every stream.
            state.known.replace(sent)
        else:
            state.known.update(sent)
        if state.reported_absent:
            state.reported_absent -= sent.keys()
        replaces = whole and not removed
        changes: Mapping[str, str | None] = sent if replaces else {**sent, **dict.fromkeys(removed)}
        nonce = self._nonces.next()
        state.outstanding[nonce] = basis
        while len(state.outstanding) > _MAX_OUTSTANDING:
            del state.outstanding[next(iter(state.outstanding))]
        header = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=basis,
            type_url=type_url,
            nonce=nonce,
            removed_resources=sorted(removed),
        )
        return Push(
            type_url=type_url,
            version=basis,
            nonce=nonce,
            # The whole set's body is listed once and shared by every stream sending it.
            header=header.SerializeToString(),
            body=named.delta_parts if whole else tuple(part for r in sending for part in r.delta_parts),
            holds=MappingProxyType(state.known),
            resource_count=len(sending),
            removed=tuple(sorted(removed)),
            changes=changes,
            replaces=replaces,
        )

    @staticmethod
    def _scan(state: _TypeState, named: ResourceSet) -> tuple[list[Resource], set[str]]:
        """Every selected name: what to send and what to report removed (updates `known`)."""
        wildcard, names, known, force = state.wildcard, state.names, state.known, state.force
        whole = wildcard or named.keys() <= names
        if not known and whole:
            sending = list(named.values())  # a first response: everything, no name looked at
        else:
            candidates = (
                named.items() if whole else ((n, r) for n in sorted(names) if (r := named.get(n)) is not None)
            )
            held = known.get
            sending = [r for n, r in candidates if held(n) != r.version or n in force]
        removed: set[str] = set()
        if known:
            for name in known.keys() - named.keys():
                del known[name]
                if wildcard or name in names:
                    removed.add(name)
            if not wildcard:
                for name in known.keys() - names:
                    del known[name]  # held from an old subscription: nothing to tell
        removed |= names - named.keys() - state.reported_absent
        return sending, removed

    @staticmethod
    def _step(state: _TypeState, named: ResourceSet, diff: SetDiff) -> tuple[list[Resource], set[str]]:
        """As _scan, from the diff to the set last evaluated: the client holds every selected name of that
        set at its version, and was told of every selected name it lacks."""
        wildcard, names, known = state.wildcard, state.names, state.known
        picked = {n for n in diff.changed if wildcard or n in names}
        picked |= {n for n in state.force if n in named and (wildcard or n in names)}
        removed: set[str] = set()
        for name in diff.removed:
            # Every selected name of the older set is in `known`, so this also covers subscribed ones.
            if known.pop(name, None) is not None and (wildcard or name in names):
                removed.add(name)
        return [named[n] for n in sorted(picked)], removed

    def _rewarm_endpoints(self, clusters: list[Resource]) -> None:
        """Envoy finishes warming a new or changed cluster only on a fresh EDS response: send one."""
        endpoints = self._types.get(typeurls.ENDPOINT)
        if endpoints is None:
            return
        for cluster in clusters:
            for ref in cluster.refs:
                if endpoints.wildcard or ref in endpoints.names:
                    endpoints.force.add(ref)


class DeltaHandler:
    """grpc.aio behaviour of DeltaAggregatedResources: writes pre-encoded bytes."""

    def __init__(self, env: StreamEnv, *, max_names: int) -> None:
        self._env = env
        self._max_names = max_names

    async def serve(self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, bytes]) -> None:
        machine = DeltaStream(
            self._env.snapshots,
            max_names=self._max_names,
            metrics=self._env.metrics,
            open_status=open_status_for(self._env, Variant.DELTA, context.peer()),
        )
        await serve_stream(machine, context, self._env)
