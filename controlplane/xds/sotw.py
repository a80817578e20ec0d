"""State-of-the-world ADS: the per-stream protocol state and its grpc.aio handler.

Rules (xDS spec, "xDS REST and gRPC protocol"): a request echoing the last nonce ACKs it, or NACKs it when it
carries error_detail; a request with an older nonce is stale and ignored. LDS/CDS responses (and our wildcard
types) carry the whole set, since a missing listener or cluster is deleted; RDS/EDS responses carry what was
asked for. A response goes out only when what the subscription selects differs from what was last sent, so
a NACKed version is never resent: only a newer one is.

RDS/EDS responses after the first carry only the resources that changed: the spec groups those types like
delta in SotW too (a name missing from a response is not deleted), and Envoy hands a response only to the
watches of the names it carries. A change of subscription, a removal or a forced resend gets a full response.
Moving to a new snapshot, a stream looks only at the names that differ between the set its client holds and
the new one (ResourceSet.changes_since, computed once and shared by every stream), never at every name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from controlplane.xds import typeurls
from controlplane.xds.resource import Resource
from controlplane.xds.snapshot import ResourceSet, Snapshot
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


# Types whose SotW responses may carry only what changed (see the module docstring).
_PARTIAL_TYPES = frozenset({typeurls.ENDPOINT, typeurls.ROUTE})


@dataclass(slots=True)
class _TypeState:
    requested: bool = False
    wildcard: bool = False
    names: frozenset[str] = frozenset()
    # The last response on this stream: its nonce and version (None: nothing sent yet).
    nonce: str | None = None
    version: str = ""
    # What the client holds once it applies the last response: replaced per response, never mutated, since
    # the stream status keeps it by reference.
    sent: Mapping[str, str] | None = None
    # The set `sent` was taken from: a newer set is compared with it through their shared diff.
    source: ResourceSet | None = None
    # Resend even if unchanged (endpoints of clusters just pushed).
    force: bool = False
    # The subscription changed since the last evaluation: look at every name, not only a diff.
    dirty: bool = True
    # A fingerprint of the last request's resource names (see _names_fingerprint).
    names_fingerprint: tuple[int, int] = (-1, 0)


def _names_fingerprint(request: Any) -> tuple[int, int]:
    """(length, hash) of the request's encoded resource names: far cheaper than a set of them.

    Envoy repeats its whole subscription on every ACK; an equal fingerprint finds an unchanged one without
    turning thousands of names into Python strings. The request is consumed: the fields around the names
    are cleared in place (copying it would cost more than the rest). Python's hash of bytes is keyed per
    process, so two different lists of names collide with probability about 2**-64, not by a client's design.
    """
    for name in ("version_info", "node", "response_nonce", "error_detail"):
        request.ClearField(name)
    encoded = request.SerializeToString()
    return len(encoded), hash(encoded)


class SotwStream(StreamBase[_TypeState], StreamMachine):
    variant = Variant.SOTW

    def on_request(self, request: Any) -> list[Push]:
        type_url = str(request.type_url)
        check_type_url(type_url)
        check_count("resource_names", len(request.resource_names), self._max_names)
        nonce = str(request.response_nonce)
        check_nonce(nonce)
        # Answer from the newest snapshot; if that is news to this stream, every type may have changed.
        refreshed = self._refresh(request)
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
            if self.status is not None:
                self.status.record_subscribed(type_url)  # CSDS shows it NOT_SENT until answered
        elif nonce and state.nonce is not None:
            if nonce != state.nonce:
                logger.debug("stale nonce node=%s type=%s nonce=%s", self.node_id, type_url, nonce)
                # Ignored for its own sake, but a snapshot newer than the stream had seen is news for every
                # type: the stream loop will not offer this one again.
                return self._respond(set(self._types)) if refreshed else []
            self._ack_or_nack(type_url, state, request)
        fingerprint = _names_fingerprint(request)  # consumes the request: nothing but names read below
        if state.requested and fingerprint == state.names_fingerprint:
            # The same names as last time give the same subscription (see below): nothing to re-evaluate.
            return self._respond(set(self._types) if refreshed else {type_url})
        state.names_fingerprint = fingerprint
        names = frozenset(request.resource_names)
        # Wildcard only while the stream never subscribed by name: "*" asks for it explicitly.
        if not state.requested:
            state.requested = True
            wildcard = "*" in names or (not names and type_url in typeurls.WILDCARD_TYPES)
        else:
            wildcard = "*" in names or (state.wildcard and not names)
        if "*" in names:
            names = names - {"*"}
        # An ACK repeats the subscription: only a different one needs every name looked at again.
        if wildcard != state.wildcard or names != state.names:
            if self.snapshot is not None:
                names = self.snapshot.of_type(type_url).share_names(names)
            state.wildcard, state.names, state.dirty = wildcard, names, True
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

    def _build(self, type_url: str, state: _TypeState, snapshot: Snapshot) -> Push | None:
        named = snapshot.of_type(type_url)
        held = state.sent
        if held is None or state.source is None or state.dirty or state.force:
            return self._build_full(type_url, state, named)
        if named is state.source:
            return None
        diff = named.changes_since(state.source)
        state.source = named
        if not diff:
            return None
        wildcard, names = state.wildcard, state.names
        changed = [n for n in diff.changed if wildcard or n in names]
        removed = bool(diff.removed) and not held.keys().isdisjoint(diff.removed)
        if not changed and not removed:
            return None
        if removed or type_url not in _PARTIAL_TYPES:
            return self._build_full(type_url, state, named)
        carried = [named[n] for n in changed]
        added = sum(1 for n in changed if n not in held)
        if len(held) + added == len(named):
            # The client now holds every resource of the set, each at the set's version: share its map.
            updated: Mapping[str, str] = named.versions
        else:
            updated = {**held, **{r.name: r.version for r in carried}}
        return self._push(
            type_url,
            state,
            named,
            held=updated,
            body=tuple(part for r in carried for part in r.sotw_parts),
            carried={r.name: r.version for r in carried},
        )

    def _build_full(self, type_url: str, state: _TypeState, named: ResourceSet) -> Push | None:
        """A response carrying everything the subscription selects, if that differs from what was sent."""
        chosen: Mapping[str, Resource]
        if state.wildcard or named.keys() <= state.names:
            chosen = named
        else:
            chosen = {n: r for n in sorted(state.names) if (r := named.get(n)) is not None}
        contents = named.versions if chosen is named else {name: r.version for name, r in chosen.items()}
        previous = state.sent
        state.source, state.dirty = named, False
        if previous == contents and not state.force:
            return None
        state.force = False
        if type_url == typeurls.CLUSTER:
            self._rewarm_endpoints(chosen, previous or {})
        # The whole set (chosen is a subset of it, in the same sorted order): its body is built once.
        whole = len(contents) == len(named)
        body = named.sotw_parts if whole else tuple(part for r in chosen.values() for part in r.sotw_parts)
        return self._push(type_url, state, named, held=contents, body=body, carried=contents)

    def _push(
        self,
        type_url: str,
        state: _TypeState,
        named: ResourceSet,
        *,
        held: Mapping[str, str],
        body: tuple[bytes, ...],
        carried: Mapping[str, str],
    ) -> Push:
        version = named.version if len(held) == len(named) else named.subset_version(held.keys())
        nonce = self._nonces.next()
        header = discovery_pb2.DiscoveryResponse(version_info=version, type_url=type_url, nonce=nonce)
        state.nonce, state.version, state.sent = nonce, version, held
        return Push(
            type_url=type_url,
            version=version,
            nonce=nonce,
            header=header.SerializeToString(),
            body=body,
            holds=held,
            resource_count=len(carried),
            changes=carried,
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
