"""ConvergenceTracker with a fake clock, a real stream registry and real snapshots: streams are driven through
the same StreamStatus calls the serving loop makes (record_sent, record_evaluated, record_ack/nack)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from controlplane.convergence import ConvergenceOutcome, ConvergenceTracker
from controlplane.xds import typeurls as t
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.status import ProxyStatusRegistry, StreamStatus, Variant
from tests.xds import builders as b


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Outcomes:
    seen: list[tuple[ConvergenceOutcome, float]] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def push_converged(self, *, outcome: ConvergenceOutcome, seconds: float) -> None:
        self.seen.append((outcome, seconds))
        self.ended.set()


class Rig:
    def __init__(self, timeout: float = 60.0) -> None:
        self.clock = Clock()
        self.cache = SnapshotCache()
        self.registry = ProxyStatusRegistry()
        self.outcomes = Outcomes()
        self.tracker = ConvergenceTracker(
            registry=self.registry,
            snapshots=self.cache,
            observer=self.outcomes,
            timeout=timeout,
            clock=self.clock,
        )
        self.registry.listen(self.tracker)
        self._nonce = 0
        self._push = 0

    def connect(self, node: str, variant: Variant = Variant.DELTA) -> StreamStatus:
        return self.registry.open_stream(node_id=node, cluster="c", node_bytes=b"", peer="p", variant=variant)

    def install(self, seen: float | None, *nodes: str, ports: tuple[int, ...] = (1,)) -> Snapshot:
        snapshot = b.mesh(self.cache.pool, {"a": ports})
        for node in nodes:
            self.cache.set_snapshot(node, snapshot)
        self._push += 1
        self.tracker.on_push(self._push, seen=seen, snapshots=dict.fromkeys(nodes, snapshot))
        return snapshot

    def send(self, stream: StreamStatus, type_url: str = t.CLUSTER) -> str:
        self._nonce += 1
        nonce = f"0000000{self._nonce}-1"
        stream.record_sent(type_url, version="v", nonce=nonce, resources={}, size=1)
        return nonce


def test_a_push_converges_when_every_stream_of_every_changed_node_evaluated_and_acked() -> None:
    rig = Rig()
    a1, a2, b1 = rig.connect("a"), rig.connect("a", Variant.SOTW), rig.connect("b")
    snapshot = rig.install(99.0, "a", "b")
    rig.clock.now = 100.5
    cds = rig.send(a1)
    eds = rig.send(a1, t.ENDPOINT)
    a1.record_evaluated(snapshot)
    a1.record_ack(t.CLUSTER, nonce=cds, version="v")
    a2.record_evaluated(snapshot)  # nothing for it in this change: evaluated, nothing outstanding
    b1.record_evaluated(snapshot)
    assert rig.outcomes.seen == []  # a1 still owes the EDS ACK
    rig.clock.now = 101.25
    a1.record_ack(t.ENDPOINT, nonce=eds, version="v")
    assert rig.outcomes.seen == [(ConvergenceOutcome.CONVERGED, 2.25)]  # from the change seen at 99.0
    assert rig.tracker.pending == 0
    assert rig.tracker.proxies_not_synced() == 0


def test_an_ack_before_the_stream_evaluated_the_new_snapshot_does_not_count() -> None:
    rig = Rig()
    stream = rig.connect("a")
    old = rig.install(None, "a")
    nonce = rig.send(stream)
    stream.record_evaluated(old)
    rig.clock.now += 1
    new = rig.install(None, "a", ports=(2,))
    # The first push is still tracked: node a must now reach the newer snapshot, which carries it too.
    assert rig.tracker.pending == 2
    stream.record_ack(t.CLUSTER, nonce=nonce, version="v")
    assert rig.outcomes.seen == []
    assert rig.tracker.proxies_not_synced() == 1
    stream.record_evaluated(new)
    assert [outcome for outcome, _ in rig.outcomes.seen] == [ConvergenceOutcome.CONVERGED] * 2
    assert rig.outcomes.seen[0][1] == 1.0  # the first push: seen at install time, converged a second later


def test_a_sotw_ack_of_a_superseded_response_is_not_enough() -> None:
    rig = Rig()
    stream = rig.connect("a", Variant.SOTW)
    snapshot = rig.install(None, "a")
    rig.send(stream)
    newer = rig.send(stream)  # a second response of the same type before the first was ACKed
    stream.record_evaluated(snapshot)
    assert rig.outcomes.seen == [] and stream.unsettled == 1
    stream.record_ack(t.CLUSTER, nonce=newer, version="v")
    assert rig.outcomes.seen == [(ConvergenceOutcome.CONVERGED, 0.0)]


def test_a_nack_ends_the_push_for_every_node() -> None:
    rig = Rig()
    a, b_ = rig.connect("a"), rig.connect("b")
    snapshot = rig.install(None, "a", "b")
    b_.record_evaluated(snapshot)
    nonce = rig.send(a)
    a.record_evaluated(snapshot)
    rig.clock.now += 0.5
    a.record_nack(t.CLUSTER, nonce=nonce, version="v", message="bad")
    assert rig.outcomes.seen == [(ConvergenceOutcome.NACKED, 0.5)]
    assert rig.tracker.pending == 0
    assert rig.tracker.proxies_not_synced() == 1  # the NACKing stream is not in sync


def test_a_push_times_out_and_later_acks_are_ignored() -> None:
    rig = Rig(timeout=10.0)
    stream = rig.connect("a")
    snapshot = rig.install(None, "a")
    nonce = rig.send(stream)
    stream.record_evaluated(snapshot)
    rig.clock.now += 9.9
    rig.tracker.expire()
    assert rig.outcomes.seen == []
    rig.clock.now += 0.2
    rig.tracker.expire()
    ((outcome, seconds),) = rig.outcomes.seen
    assert outcome is ConvergenceOutcome.TIMEOUT and seconds == pytest.approx(10.1)
    stream.record_ack(t.CLUSTER, nonce=nonce, version="v")
    assert len(rig.outcomes.seen) == 1


def test_nodes_without_a_proxy_are_not_waited_on_and_a_push_of_only_those_is_not_tracked() -> None:
    rig = Rig()
    rig.install(None, "nobody-here")
    assert rig.tracker.pending == 0
    stream = rig.connect("a")
    snapshot = rig.install(None, "a", "nobody-here")
    stream.record_evaluated(snapshot)
    assert [outcome for outcome, _ in rig.outcomes.seen] == [ConvergenceOutcome.CONVERGED]


def test_a_closing_stream_no_longer_holds_its_node_back() -> None:
    rig = Rig()
    fast, gone = rig.connect("a"), rig.connect("a")
    snapshot = rig.install(None, "a")
    fast.record_evaluated(snapshot)
    rig.send(gone)
    assert rig.outcomes.seen == []
    gone.close()
    assert [outcome for outcome, _ in rig.outcomes.seen] == [ConvergenceOutcome.CONVERGED]
    assert rig.registry.streams_of("a") == (fast,)


def test_a_node_removed_from_the_mesh_counts_as_done() -> None:
    rig = Rig()
    a, b_ = rig.connect("a"), rig.connect("b")
    snapshot = rig.install(None, "a", "b")
    a.record_evaluated(snapshot)
    rig.tracker.on_push(99, seen=None, snapshots={}, removed=["b"])
    assert [outcome for outcome, _ in rig.outcomes.seen] == [ConvergenceOutcome.CONVERGED]
    assert b_.evaluated is None


async def test_run_expires_pushes_until_cancelled() -> None:
    clock = Clock()
    registry, outcomes = ProxyStatusRegistry(), Outcomes()
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds
        await asyncio.sleep(0)

    cache = SnapshotCache()
    tracker = ConvergenceTracker(
        registry=registry, snapshots=cache, observer=outcomes, timeout=2.0, clock=clock, sleep=sleep
    )
    registry.listen(tracker)
    registry.open_stream(node_id="a", cluster="c", node_bytes=b"", peer="p", variant=Variant.DELTA)
    tracker.on_push(1, seen=None, snapshots={"a": b.mesh(cache.pool, {"x": (1,)})})
    task = asyncio.create_task(tracker.run())
    async with asyncio.timeout(5):
        await outcomes.ended.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcomes.seen == [(ConvergenceOutcome.TIMEOUT, 2.0)]
    assert set(sleeps) == {0.5}


def test_the_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ConvergenceTracker(
            registry=ProxyStatusRegistry(), snapshots=SnapshotCache(), observer=Outcomes(), timeout=0
        )
