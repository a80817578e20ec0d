"""The control plane's metrics fed by MeshState, the publisher and the debouncer: when a change was seen,
config bytes per node, debounce waits, convergence outcomes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytest
from prometheus_client import CollectorRegistry

from controlplane.convergence import ConvergenceOutcome
from controlplane.meshstate import MeshState, PushReason
from controlplane.metrics import ControlPlaneMetrics
from controlplane.model.objects import MeshObject, Upsert
from controlplane.publisher import SnapshotPublisher
from controlplane.sources.events import SourceUpdate
from controlplane.translate.translator import Translator
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.snapshot import Snapshot
from tests.controlplane.test_publisher import _objects
from tests.translate import builders as b


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


class Pushes:
    """A PushListener that keeps what it is told."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float | None, dict[str, Snapshot], tuple[str, ...]]] = []

    def on_push(
        self,
        push_id: int,
        *,
        seen: float | None,
        snapshots: Mapping[str, Snapshot],
        removed: Iterable[str] = (),
    ) -> None:
        self.seen.append((push_id, seen, dict(snapshots), tuple(removed)))


class Rig:
    def __init__(self) -> None:
        self.clock = Clock()
        self.registry = CollectorRegistry()
        self.metrics = ControlPlaneMetrics(self.registry)
        self.state = MeshState(sources=["mesh"], on_change=lambda _: None, clock=self.clock)
        self.cache = SnapshotCache()
        self.pushes = Pushes()
        self.publisher = SnapshotPublisher(
            state=self.state,
            translator=Translator(),
            cache=self.cache,
            metrics=self.metrics,
            convergence=self.pushes,
        )

    async def publish(self, *objects: MeshObject) -> None:
        events = tuple(Upsert(obj=o) for o in objects)
        await self.state.publish(SourceUpdate(source="mesh", events=events, synced=True))

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


async def test_the_push_is_told_when_its_first_change_was_seen_and_which_nodes_it_changed() -> None:
    rig = Rig()
    await rig.state.publish(SourceUpdate(source="mesh", events=tuple(_objects()), synced=True))
    await rig.publisher.push(frozenset({PushReason.INITIAL}))
    (_, seen, snapshots, _) = rig.pushes.seen[-1]
    assert seen == 10.0 and set(snapshots) == {"node-a", "node-b"}
    assert snapshots["node-a"] is rig.cache.get("node-a")
    # Two changes coalesced into one push: the first one's time counts.
    rig.clock.now = 20.0
    await rig.publish(b.endpoint_slice("shop", "web", b.endpoint("198.18.1.2"), b.endpoint("198.18.2.7")))
    rig.clock.now = 21.0
    await rig.publish(b.endpoint_slice("shop", "web", b.endpoint("198.18.2.7")))
    await rig.publisher.push(frozenset({PushReason.ENDPOINTS}))
    (push_id, seen, snapshots, _) = rig.pushes.seen[-1]
    assert (push_id, seen) == (2, 20.0)
    # A push with no change since: nothing seen.
    await rig.publisher.push(frozenset({PushReason.CONFIG}))
    assert rig.pushes.seen[-1][1] is None and rig.pushes.seen[-1][2] == {}


async def test_config_bytes_are_observed_per_changed_node_with_the_largest_as_a_gauge() -> None:
    rig = Rig()
    await rig.state.publish(SourceUpdate(source="mesh", events=tuple(_objects()), synced=True))
    await rig.publisher.push(frozenset({PushReason.INITIAL}))
    a, b_ = rig.cache.get("node-a"), rig.cache.get("node-b")
    assert a is not None and b_ is not None
    assert a.size == sum(len(r.any_bytes) for named in a.resources.values() for r in named.values())
    assert rig.sample("nodemesh_node_config_bytes_count") == 2
    assert rig.sample("nodemesh_node_config_bytes_sum") == a.size + b_.size
    assert rig.sample("nodemesh_node_config_max_bytes") == max(a.size, b_.size)
    await rig.publisher.push(frozenset({PushReason.CONFIG}))  # nothing changed: nothing observed
    assert rig.sample("nodemesh_node_config_bytes_count") == 2


def test_debounce_waits_and_coalesced_notifications() -> None:
    rig = Rig()
    rig.metrics.debounced(waited=0.2, notifications=1)
    rig.metrics.debounced(waited=0.4, notifications=5)
    assert rig.sample("nodemesh_debounce_wait_seconds_count") == 2
    assert rig.sample("nodemesh_debounce_wait_seconds_sum") == pytest.approx(0.6)
    assert rig.sample("nodemesh_debounce_coalesced_notifications_total") == 4


def test_convergence_outcomes_are_counted_and_only_converged_pushes_timed() -> None:
    rig = Rig()
    rig.metrics.push_converged(outcome=ConvergenceOutcome.CONVERGED, seconds=0.3)
    rig.metrics.push_converged(outcome=ConvergenceOutcome.NACKED, seconds=9.0)
    rig.metrics.push_converged(outcome=ConvergenceOutcome.TIMEOUT, seconds=60.0)
    assert rig.sample("nodemesh_convergence_seconds_count") == 1
    assert rig.sample("nodemesh_convergence_seconds_sum") == 0.3
    for outcome in ConvergenceOutcome:
        assert rig.sample("nodemesh_convergence_pushes_total", outcome=outcome.value) == 1
    rig.metrics.track_proxies_not_synced(lambda: 3)
    assert rig.sample("nodemesh_proxies_not_synced") == 3
