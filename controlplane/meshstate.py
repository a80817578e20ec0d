"""The mesh as the sources describe it: their updates applied to one model snapshot, plus their diagnostics.

Every source (files, Kubernetes) publishes into a `MeshState`; each update swaps in a new immutable
`MeshSnapshot` and tells a listener why (endpoints only, or config), so the push that follows can be
named and kept as small as the change. The state is also the CA's view of which service accounts have pods
on which node.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from enum import StrEnum

from controlplane.ca.authorization import WorkloadPlacement
from controlplane.model.diagnostics import Diagnostic
from controlplane.model.objects import ModelEvent
from controlplane.model.refs import Kind
from controlplane.model.snapshot import MeshSnapshot
from controlplane.sources.events import SourceSink, SourceUpdate

log = logging.getLogger(__name__)


class PushReason(StrEnum):
    """Why a push happened (a metric label: keep the set closed)."""

    ENDPOINTS = "endpoints"  # only EndpointSlices changed
    CONFIG = "config"  # anything else in the model changed
    DIAGNOSTICS = "diagnostics"  # only a source's diagnostics changed
    INITIAL = "initial"  # every source has synced for the first time


def reason_for(events: Iterable[ModelEvent]) -> PushReason | None:
    """ENDPOINTS when every event touches an EndpointSlice, CONFIG when any other kind, None for none."""
    reason: PushReason | None = None
    for event in events:
        if event.ref.kind != Kind.ENDPOINT_SLICE:
            return PushReason.CONFIG
        reason = PushReason.ENDPOINTS
    return reason


class MeshState(SourceSink, WorkloadPlacement):
    """Applies source updates in arrival order; `snapshot` is always the latest complete model."""

    def __init__(
        self,
        *,
        sources: Iterable[str],
        on_change: Callable[[PushReason], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.snapshot = MeshSnapshot.empty()
        self._on_change = on_change
        self._clock = clock
        # When the oldest change not yet taken by a push was seen (convergence latency starts there).
        self._seen: float | None = None
        self._expected = frozenset(sources)
        self._synced: set[str] = set()
        self._diagnostics: dict[str, tuple[Diagnostic, ...]] = {}
        # Set once every expected source has delivered its initial state.
        self.synced = asyncio.Event()

    async def publish(self, update: SourceUpdate) -> None:
        if update.events:
            self.snapshot = self.snapshot.apply_all(update.events)
        reason = reason_for(update.events)
        if update.diagnostics is not None and update.diagnostics != self._diagnostics.get(update.source):
            self._diagnostics[update.source] = update.diagnostics
            reason = reason or PushReason.DIAGNOSTICS
        if update.synced and update.source not in self._synced:
            self._synced.add(update.source)
            if self._expected <= self._synced and not self.synced.is_set():
                log.info("every source synced", extra={"sources": ",".join(sorted(self._synced))})
                self.synced.set()
                reason = PushReason.INITIAL
        if reason is not None and self.synced.is_set():
            if self._seen is None:
                self._seen = self._clock()
            self._on_change(reason)

    def take_change_seen(self) -> float | None:
        """When the oldest change since the last call was seen (None: none), for the push that reads
        `snapshot` now: take both together, so a change arriving later counts for the next push."""
        seen, self._seen = self._seen, None
        return seen

    def diagnostics(self) -> tuple[Diagnostic, ...]:
        """Every source's current diagnostics."""
        return tuple(d for source in sorted(self._diagnostics) for d in self._diagnostics[source])

    def service_accounts_on_node(self, node: str) -> frozenset[tuple[str, str]]:
        return frozenset((w.namespace, w.service_account) for w in self.snapshot.meshed_workloads_on(node))
