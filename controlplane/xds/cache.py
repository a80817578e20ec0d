"""Per-node snapshots, and the seam (`SnapshotSource`) the ADS streams watch for newer ones."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from controlplane.xds.resource import ResourcePool
from controlplane.xds.snapshot import Snapshot

logger = logging.getLogger(__name__)


class SnapshotWatch(Protocol):
    async def next(self, after: Snapshot | None) -> Snapshot:
        """Return the node's current snapshot as soon as it is not `after` (by identity)."""
        ...


class SnapshotSource(Protocol):
    """What an xDS stream needs from the cache."""

    def get(self, node_id: str) -> Snapshot | None: ...

    def watch(self, node_id: str) -> SnapshotWatch: ...


class _NodeWatch(SnapshotWatch):
    def __init__(self, cache: SnapshotCache, node_id: str) -> None:
        self._cache = cache
        self._node_id = node_id

    async def next(self, after: Snapshot | None) -> Snapshot:
        while True:
            current = self._cache.get(self._node_id)
            if current is not None and current is not after:
                return current
            # Each node has its own event, replaced on every change: waking one node never wakes the others,
            # and a slow stream only delays itself.
            await self._cache._event(self._node_id).wait()


class SnapshotCache(SnapshotSource):
    """Holds a consistent snapshot per node id, plus a default for nodes without their own."""

    def __init__(self, pool: ResourcePool | None = None) -> None:
        self.pool = pool if pool is not None else ResourcePool()
        self._snapshots: dict[str, Snapshot] = {}
        self._default: Snapshot | None = None
        self._events: dict[str, asyncio.Event] = {}

    def set_snapshot(self, node_id: str, snapshot: Snapshot) -> None:
        """Install a node's snapshot; if refs dangle, raise InconsistentSnapshotError and keep the old one."""
        snapshot.check_consistency()
        previous = self._snapshots.get(node_id)
        self._snapshots[node_id] = snapshot
        if previous is not snapshot:
            logger.debug("snapshot set node=%s version=%s", node_id, snapshot.version)
            self._signal(node_id)

    def set_default(self, snapshot: Snapshot | None) -> None:
        """Install the snapshot served to nodes that have none of their own (None removes it)."""
        if snapshot is not None:
            snapshot.check_consistency()
        self._default = snapshot
        for node_id in list(self._events):
            if node_id not in self._snapshots:
                self._signal(node_id)

    def clear(self, node_id: str) -> None:
        if self._snapshots.pop(node_id, None) is not None:
            self._signal(node_id)

    def get(self, node_id: str) -> Snapshot | None:
        return self._snapshots.get(node_id, self._default)

    def node_ids(self) -> frozenset[str]:
        return frozenset(self._snapshots)

    def watch(self, node_id: str) -> SnapshotWatch:
        return _NodeWatch(self, node_id)

    def _event(self, node_id: str) -> asyncio.Event:
        event = self._events.get(node_id)
        if event is None:
            event = self._events[node_id] = asyncio.Event()
        return event

    def _signal(self, node_id: str) -> None:
        event = self._events.pop(node_id, None)
        if event is not None:
            event.set()
