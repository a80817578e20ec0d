"""The model -> xDS pipeline: MeshState applies source updates, SnapshotPublisher installs per-node snapshots.

Real translator, real cache; checks what nodes get, what they share, and what a change touches.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from controlplane.meshstate import MeshState, PushReason, reason_for
from controlplane.metrics import ControlPlaneMetrics
from controlplane.model.objects import Delete, MeshObject, ModelEvent, Upsert
from controlplane.publisher import SnapshotPublisher
from controlplane.sources.events import SourceUpdate
from controlplane.translate.translator import Translator
from controlplane.xds import typeurls as t
from controlplane.xds.cache import SnapshotCache
from tests.translate import builders as b


def _objects() -> list[Upsert]:
    objs: list[MeshObject] = [
        b.namespace("shop"),
        b.node("node-a", "198.19.0.1"),
        b.node("node-b", "198.19.0.2"),
        b.service("shop", "web", "198.19.128.10", b.http_port(80, target=8080)),
        b.service("shop", "db", "198.19.128.11", b.tcp_port(5432)),
        b.pod("shop", "web-1", "node-a", "198.18.1.2"),
        b.pod("shop", "db-1", "node-b", "198.18.2.2", sa="db"),
        b.endpoint_slice("shop", "web", b.endpoint("198.18.1.2")),
        b.endpoint_slice("shop", "db", b.endpoint("198.18.2.2"), ports=(("tcp", 5432),)),
    ]
    return [Upsert(obj=o) for o in objs]


class _Rig:
    def __init__(self) -> None:
        self.reasons: list[PushReason] = []
        self.state = MeshState(sources=["mesh"], on_change=self.reasons.append)
        self.cache = SnapshotCache()
        self.publisher = SnapshotPublisher(
            state=self.state,
            translator=Translator(),
            cache=self.cache,
            metrics=ControlPlaneMetrics(CollectorRegistry()),
        )

    async def publish(self, *events: ModelEvent, synced: bool = True) -> None:
        await self.state.publish(SourceUpdate(source="mesh", events=events, synced=synced))


async def test_every_node_gets_its_snapshot_and_shares_the_mesh_wide_sets() -> None:
    rig = _Rig()
    await rig.publish(*_objects())
    assert rig.reasons == [PushReason.INITIAL]
    result = await rig.publisher.push(frozenset(rig.reasons))
    assert result.nodes == 2 and set(result.changed_nodes) == {"node-a", "node-b"}
    a, b_ = rig.cache.get("node-a"), rig.cache.get("node-b")
    assert a is not None and b_ is not None
    for type_url in (t.ENDPOINT, t.SERVICE_VIP):
        assert a.of_type(type_url) is b_.of_type(type_url), f"{type_url} should be one shared set"
        assert len(a.of_type(type_url)) > 0
    # Clusters: the mesh's plus each node's HBONE originate cluster per local identity (their own sets).
    assert "hbone|shop|default" in a.of_type(t.CLUSTER) and "hbone|shop|default" not in b_.of_type(t.CLUSTER)
    # Each node has its own outbound listener (bound to its address) and plan.
    assert a.of_type(t.LISTENER) is not b_.of_type(t.LISTENER)
    assert [w.message().name for w in a.of_type(t.WORKLOAD).values()] == ["web-1"]  # type: ignore[attr-defined]
    assert [w.message().name for w in b_.of_type(t.WORKLOAD).values()] == ["db-1"]  # type: ignore[attr-defined]
    settings = a.of_type(t.NODE_SETTINGS)["node"].message()
    assert settings.envoy_address == "198.19.0.1"  # type: ignore[attr-defined]


async def test_an_endpoint_change_replaces_only_the_endpoint_set() -> None:
    rig = _Rig()
    await rig.publish(*_objects())
    await rig.publisher.push(frozenset({PushReason.INITIAL}))
    before = rig.cache.get("node-a")
    assert before is not None
    moved = b.endpoint_slice("shop", "web", b.endpoint("198.18.1.2"), b.endpoint("198.18.2.7"))
    await rig.publish(Upsert(obj=moved))
    assert rig.reasons[-1] is PushReason.ENDPOINTS
    await rig.publisher.push(frozenset({PushReason.ENDPOINTS}))
    after = rig.cache.get("node-a")
    assert after is not None and after is not before
    for type_url in (t.CLUSTER, t.LISTENER, t.ROUTE, t.WORKLOAD, t.NODE_SETTINGS, t.SERVICE_VIP):
        assert after.of_type(type_url) is before.of_type(type_url), f"{type_url} should be untouched"
    changed = {
        name for name, r in after.of_type(t.ENDPOINT).items() if before.of_type(t.ENDPOINT).get(name) is not r
    }
    assert len(changed) == 1


async def test_an_unchanged_model_wakes_no_node_and_a_removed_node_is_cleared() -> None:
    rig = _Rig()
    await rig.publish(*_objects())
    await rig.publisher.push(frozenset({PushReason.INITIAL}))
    again = await rig.publisher.push(frozenset({PushReason.CONFIG}))
    assert again.changed_nodes == ()
    node_b = b.node("node-b", "198.19.0.2")
    await rig.publish(Delete(ref=node_b.ref))
    result = await rig.publisher.push(frozenset({PushReason.CONFIG}))
    assert result.removed_nodes == ("node-b",)
    assert rig.cache.get("node-b") is None
    assert rig.cache.get("node-a") is not None


async def test_nothing_is_pushed_before_every_source_synced() -> None:
    rig = _Rig()
    await rig.publish(*_objects(), synced=False)
    assert rig.reasons == []
    assert not rig.state.synced.is_set()
    await rig.publish(synced=True)
    assert rig.reasons == [PushReason.INITIAL]


def test_push_reasons_name_endpoint_only_changes() -> None:
    slice_ = b.endpoint_slice("shop", "web", b.endpoint("198.18.1.2"))
    svc = b.service("shop", "web", "198.19.128.10", b.http_port(80))
    assert reason_for([Upsert(obj=slice_), Delete(ref=slice_.ref)]) is PushReason.ENDPOINTS
    assert reason_for([Upsert(obj=slice_), Upsert(obj=svc)]) is PushReason.CONFIG
    assert reason_for([]) is None


async def test_placement_lists_meshed_service_accounts_per_node() -> None:
    rig = _Rig()
    await rig.publish(*_objects())
    assert rig.state.service_accounts_on_node("node-b") == frozenset({("shop", "db")})
    assert rig.state.service_accounts_on_node("node-z") == frozenset()
