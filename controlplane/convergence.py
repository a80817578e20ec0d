"""Convergence: how long from a change being seen to every proxy of the nodes it changed having ACKed it.

The publisher reports each push (`on_push`: when its first change was seen, and the snapshot each changed
node must now hold); the registry of streams reports stream progress (a new snapshot evaluated, the last
outstanding response ACKed, a NACK, a close). A node has converged once each of its connected streams has
evaluated the node's newest snapshot and has no response awaiting an ACK; a push has converged once all of
its nodes have. A NACK from a node the push waits on, or the timeout, ends the push's tracking instead.

Cheap on the serving path: progress of a stream whose node nothing waits on costs one dict lookup, and a
waited-on node is checked in O(its streams). Nodes with no connected proxy when the push happens are not
waited on (nothing would ACK); a push with none such is not tracked at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from controlplane.xds.cache import SnapshotSource
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.status import ProxyStatusRegistry, StreamListener, StreamStatus

log = logging.getLogger(__name__)


class ConvergenceOutcome(StrEnum):
    """How tracking a push ended (a metric label: keep the set closed)."""

    CONVERGED = "converged"  # every proxy of every changed node ACKed it
    NACKED = "nacked"  # a proxy of a changed node NACKed
    TIMEOUT = "timeout"  # not every proxy had ACKed within the timeout


class ConvergenceObserver(Protocol):
    """Where tracked pushes end up (metrics)."""

    def push_converged(self, *, outcome: ConvergenceOutcome, seconds: float) -> None:
        """`seconds`: from the change being seen to the outcome."""


class PushListener(Protocol):
    """What the publisher tells about each push."""

    def on_push(
        self,
        push_id: int,
        *,
        seen: float | None,
        snapshots: Mapping[str, Snapshot],
        removed: Iterable[str] = (),
    ) -> None:
        """`seen`: when the first change behind the push was seen (the tracker's clock; None: now);
        `snapshots`: the nodes whose snapshot changed, with it; `removed`: nodes that left the mesh."""


@dataclass(slots=True, eq=False)
class _Push:
    push_id: int
    seen: float
    deadline: float
    waiting: set[str]


class ConvergenceTracker(StreamListener, PushListener):
    """Register with `ProxyStatusRegistry.listen` and hand to the publisher; `run()` expires old pushes."""

    def __init__(
        self,
        *,
        registry: ProxyStatusRegistry,
        snapshots: SnapshotSource,
        observer: ConvergenceObserver,
        timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if timeout <= 0:
            raise ValueError("the convergence timeout must be positive")
        self._registry = registry
        self._snapshots = snapshots
        self._observer = observer
        self._timeout = timeout
        self._clock = clock
        self._sleep = sleep
        # Node -> the snapshot it must hold, while some push waits on it.
        self._targets: dict[str, Snapshot] = {}
        # Node -> the pushes waiting on it.
        self._waiting: dict[str, list[_Push]] = {}
        # By push id; insertion order is deadline order (one timeout for all).
        self._pushes: dict[int, _Push] = {}

    @property
    def pending(self) -> int:
        """Pushes still being tracked."""
        return len(self._pushes)

    def proxies_not_synced(self) -> int:
        """Connected streams not (yet) holding their node's newest snapshot, ACKed (for a gauge: O(streams),
        at scrape time only)."""
        latest = self._snapshots.get
        return sum(1 for stream in self._registry.statuses() if not stream.in_sync(latest(stream.node_id)))

    # -- the publisher's side ----------------------------------------------------------------------------

    def on_push(
        self,
        push_id: int,
        *,
        seen: float | None,
        snapshots: Mapping[str, Snapshot],
        removed: Iterable[str] = (),
    ) -> None:
        now = self._clock()
        self.expire(now)
        for node in removed:
            # Gone from the mesh: nothing of it left to wait for.
            self._node_converged(node, now)
        nodes: set[str] = set()
        for node, snapshot in snapshots.items():
            if node in self._targets or self._registry.streams_of(node):
                self._targets[node] = snapshot  # a newer snapshot replaces what older pushes waited for
                nodes.add(node)
        if not nodes:
            return
        push = _Push(
            push_id=push_id, seen=now if seen is None else seen, deadline=now + self._timeout, waiting=nodes
        )
        self._pushes[push_id] = push
        for node in nodes:
            self._waiting.setdefault(node, []).append(push)
        # Normally nothing has converged yet (no stream ran since the install); looking anyway means the
        # publisher may call this before or after installing. Cheap: the streams of these nodes only.
        for node in nodes:
            self._check(node, now)

    # -- the registry's side (the serving path) ----------------------------------------------------------

    def stream_progressed(self, stream: StreamStatus) -> None:
        if stream.node_id in self._targets:
            self._check(stream.node_id, self._clock())

    def stream_nacked(self, stream: StreamStatus) -> None:
        node = stream.node_id
        if node in self._targets:
            now = self._clock()
            for push in tuple(self._waiting.get(node, ())):
                self._finish(push, ConvergenceOutcome.NACKED, now)

    def stream_closed(self, stream: StreamStatus) -> None:
        # The other streams of the node may all be in sync: the closed one no longer counts.
        self.stream_progressed(stream)

    # -- expiry ------------------------------------------------------------------------------------------

    def expire(self, now: float | None = None) -> None:
        """End every push whose timeout has passed."""
        now = self._clock() if now is None else now
        while self._pushes:
            push = next(iter(self._pushes.values()))
            if push.deadline > now:
                return
            log.info(
                "push %d not converged after %.0fs: nodes still waiting: %s",
                push.push_id,
                self._timeout,
                ",".join(sorted(push.waiting)[:10]),
            )
            self._finish(push, ConvergenceOutcome.TIMEOUT, now)

    async def run(self) -> None:
        """Expire timed-out pushes until cancelled."""
        interval = min(1.0, self._timeout / 4)
        while True:
            await self._sleep(interval)
            self.expire()

    # -- internals ---------------------------------------------------------------------------------------

    def _check(self, node: str, now: float) -> None:
        target = self._targets.get(node)
        if target is None:
            return
        streams = self._registry.streams_of(node)
        if not streams:
            return  # nobody to ACK right now: a reconnecting proxy may still, or the timeout ends it
        for stream in streams:
            if stream.evaluated is not target or stream.unsettled:
                return
        self._node_converged(node, now)

    def _node_converged(self, node: str, now: float) -> None:
        self._targets.pop(node, None)
        for push in self._waiting.pop(node, ()):
            push.waiting.discard(node)
            if not push.waiting:
                self._finish(push, ConvergenceOutcome.CONVERGED, now)

    def _finish(self, push: _Push, outcome: ConvergenceOutcome, now: float) -> None:
        if self._pushes.pop(push.push_id, None) is None:
            return
        for node in push.waiting:
            pushes = self._waiting.get(node)
            if pushes is None:
                continue
            pushes.remove(push)
            if not pushes:
                del self._waiting[node]
                self._targets.pop(node, None)
        push.waiting.clear()
        self._observer.push_converged(outcome=outcome, seconds=max(0.0, now - push.seen))
