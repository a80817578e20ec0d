"""Moving a stream to a new snapshot through the diff its sets share: exactly the changed names go out.

The stream machines are driven directly (no gRPC) over snapshots built from shared ResourceSets, as the
publisher builds them for every node.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import discovery_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.xds import typeurls as t
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.delta import DeltaStream
from controlplane.xds.resource import ResourcePool
from controlplane.xds.snapshot import ResourceSet, SetDiff, Snapshot
from controlplane.xds.sotw import SotwStream
from controlplane.xds.status import ConfigStatus, ProxyStatusRegistry, Variant
from controlplane.xds.stream import Push
from tests.xds import builders as b


def endpoint_set(pool: ResourcePool, ports: dict[str, int]) -> ResourceSet:
    return ResourceSet(pool.intern(b.endpoints(name, port)) for name, port in ports.items())


def mesh(pool: ResourcePool, clusters: ResourceSet, endpoints: ResourceSet) -> Snapshot:
    return Snapshot.from_sets({t.CLUSTER: clusters, t.ENDPOINT: endpoints})


class World:
    """Snapshots over one pool: clusters a..e, whose endpoint sets vary by port."""

    def __init__(self) -> None:
        self.pool = ResourcePool()
        self.clusters = ResourceSet(self.pool.intern(b.eds_cluster(n)) for n in "abcde")
        self._clusters: dict[tuple[str, ...], ResourceSet] = {tuple("abcde"): self.clusters}
        self.cache = SnapshotCache(self.pool)
        self.registry = ProxyStatusRegistry()

    def snapshot(self, **ports: int) -> Snapshot:
        """Clusters for exactly the names given (one shared set per name list), with their assignments."""
        names = tuple(sorted(ports))
        clusters = self._clusters.get(names)
        if clusters is None:
            clusters = self._clusters[names] = ResourceSet(self.pool.intern(b.eds_cluster(n)) for n in names)
        return mesh(self.pool, clusters, endpoint_set(self.pool, ports))

    def move(self, node: str, stream: SotwStream | DeltaStream, snapshot: Snapshot) -> list[Push]:
        """Install a node's snapshot and hand it to its stream, as the server loop does."""
        self.cache.set_snapshot(node, snapshot)
        return stream.on_snapshot(snapshot)

    def sotw(self, node: str) -> SotwStream:
        return SotwStream(self.cache, open_status=self._opener(node, Variant.SOTW))

    def delta(self, node: str) -> DeltaStream:
        return DeltaStream(self.cache, open_status=self._opener(node, Variant.DELTA))

    def _opener(self, node: str, variant: Variant) -> Any:
        def open_status(n: Any) -> Any:
            return self.registry.open_stream(
                node_id=node, cluster="", node_bytes=n.SerializeToString(), peer="test", variant=variant
            )

        return open_status


PORTS = {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}


def sotw_request(node: str, names: list[str], last: Push | None = None) -> Any:
    request = discovery_pb2.DiscoveryRequest(type_url=t.ENDPOINT, resource_names=names)
    request.node.id = node
    if last is not None:
        request.version_info, request.response_nonce = last.version, last.nonce
    return request


def delta_request(node: str, subscribe: list[str], last: Push | None = None) -> Any:
    request = discovery_pb2.DeltaDiscoveryRequest(type_url=t.ENDPOINT, resource_names_subscribe=subscribe)
    request.node.id = node
    if last is not None:
        request.response_nonce = last.nonce
    return request


def carried(push: Push) -> dict[str, int]:
    """SotW: each carried assignment's first port."""
    out: dict[str, int] = {}
    for packed in discovery_pb2.DiscoveryResponse.FromString(push.encode()).resources:
        cla = endpoint_pb2.ClusterLoadAssignment()
        packed.Unpack(cla)
        out[cla.cluster_name] = cla.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value
    return out


def delta_carried(push: Push) -> tuple[set[str], set[str]]:
    response = discovery_pb2.DeltaDiscoveryResponse.FromString(push.encode())
    return {r.name for r in response.resources}, set(response.removed_resources)


def only(pushes: list[Push]) -> Push:
    [push] = pushes
    return push


def test_changes_since_names_changed_added_and_removed_names_and_is_computed_once() -> None:
    pool = ResourcePool()
    old = endpoint_set(pool, {"a": 1, "b": 2, "c": 3})
    new = endpoint_set(pool, {"a": 1, "b": 9, "d": 4})
    diff = new.changes_since(old)
    assert diff == SetDiff(changed=("b", "d"), removed=("c",))
    assert new.changes_since(old) is diff
    assert not new.changes_since(new)
    assert not endpoint_set(pool, {"a": 1}).changes_since(endpoint_set(pool, {"a": 1}))


def test_changes_since_does_not_keep_the_older_set_alive() -> None:
    pool = ResourcePool()
    old = endpoint_set(pool, {"a": 1})
    new = endpoint_set(pool, {"a": 2})
    assert new.changes_since(old).changed == ("a",)
    gone = weakref.ref(old)
    del old
    gc.collect()
    assert gone() is None
    # A new set that happens to reuse the dead one's id is diffed afresh, not served the stale memo.
    assert new.changes_since(endpoint_set(pool, {"a": 2, "z": 1})).removed == ("z",)


def test_sotw_stream_moving_from_a_to_b_gets_exactly_the_changed_names() -> None:
    world = World()
    world.cache.set_snapshot("n", world.snapshot(**PORTS))
    stream = world.sotw("n")
    first = only(stream.on_request(sotw_request("n", list("abcde"))))
    assert carried(first) == PORTS
    assert stream.on_request(sotw_request("n", list("abcde"), first)) == []  # the ACK sends nothing
    changed = world.snapshot(**{**PORTS, "b": 20, "d": 40})
    second = only(world.move("n", stream, changed))
    assert carried(second) == {"b": 20, "d": 40}
    # What the client holds is still every assignment, at its new version.
    assert dict(second.holds) == {n: r.version for n, r in changed.of_type(t.ENDPOINT).items()}
    assert second.version == changed.type_version(t.ENDPOINT)


def test_sotw_stream_that_skipped_a_snapshot_gets_everything_that_differs() -> None:
    world = World()
    a = world.snapshot(**PORTS)
    b_snap = world.snapshot(**{**PORTS, "b": 20})
    c = mesh(world.pool, world.clusters, endpoint_set(world.pool, {**PORTS, "b": 20, "e": 50}))
    one, two = world.sotw("one"), world.sotw("two")
    for node, stream in (("one", one), ("two", two)):
        world.cache.set_snapshot(node, a)
        first = only(stream.on_request(sotw_request(node, list("abcde"))))
        assert stream.on_request(sotw_request(node, list("abcde"), first)) == []
    # "one" sees A -> B -> C; "two" only A -> C.
    assert carried(only(world.move("one", one, b_snap))) == {"b": 20}
    assert carried(only(world.move("one", one, c))) == {"e": 50}
    assert carried(only(world.move("two", two, c))) == {"b": 20, "e": 50}


def test_sotw_changes_outside_the_subscription_send_nothing() -> None:
    world = World()
    world.cache.set_snapshot("n", world.snapshot(**PORTS))
    stream = world.sotw("n")
    first = only(stream.on_request(sotw_request("n", ["a", "b"])))
    assert stream.on_request(sotw_request("n", ["a", "b"], first)) == []
    assert world.move("n", stream, world.snapshot(**{**PORTS, "c": 30})) == []
    push = only(world.move("n", stream, world.snapshot(**{**PORTS, "c": 30, "a": 10})))
    assert carried(push) == {"a": 10}
    # Not the whole type: the version covers the subscribed names only, as a full response's would.
    assert push.version == world.snapshot(**{**PORTS, "c": 30, "a": 10}).type_version(t.ENDPOINT, ["a", "b"])


def test_sotw_removal_of_a_subscribed_name_gets_a_full_response() -> None:
    world = World()
    world.cache.set_snapshot("n", world.snapshot(**PORTS))
    stream = world.sotw("n")
    first = only(stream.on_request(sotw_request("n", list("abcde"))))
    stream.on_request(sotw_request("n", list("abcde"), first))
    without_c = {n: p for n, p in PORTS.items() if n != "c"}
    assert carried(only(world.move("n", stream, world.snapshot(**{**without_c, "a": 10})))) == {
        **without_c,
        "a": 10,
    }


def test_sotw_lds_and_cds_stay_complete_after_a_change() -> None:
    world = World()
    snap = world.snapshot(**PORTS)
    world.cache.set_snapshot("n", snap)
    stream = world.sotw("n")
    request = discovery_pb2.DiscoveryRequest(type_url=t.CLUSTER)
    request.node.id = "n"
    first = only(stream.on_request(request))
    clusters = ResourceSet([*world.clusters.values(), world.pool.intern(b.eds_cluster("f"))])
    changed = mesh(world.pool, clusters, endpoint_set(world.pool, {**PORTS, "f": 6}))
    pushes = world.move("n", stream, changed)
    cds = discovery_pb2.DiscoveryResponse.FromString(pushes[0].encode())
    assert pushes[0].type_url == t.CLUSTER and len(cds.resources) == 6
    assert first.version != pushes[0].version


def test_sotw_partial_response_acked_leaves_the_status_with_everything_held() -> None:
    world = World()
    world.cache.set_snapshot("n", world.snapshot(**PORTS))
    stream = world.sotw("n")
    first = only(stream.on_request(sotw_request("n", list("abcde"))))
    assert stream.status is not None
    stream.status.record_sent(
        t.ENDPOINT, version=first.version, nonce=first.nonce, resources=first.holds, size=1
    )
    stream.on_request(sotw_request("n", list("abcde"), first))
    changed = world.snapshot(**{**PORTS, "a": 10})
    second = only(world.move("n", stream, changed))
    stream.status.record_sent(
        t.ENDPOINT,
        version=second.version,
        nonce=second.nonce,
        resources=second.holds,
        size=1,
        delta_changes=second.changes,
    )
    stream.on_request(sotw_request("n", list("abcde"), second))
    [info] = world.registry.streams()
    status = info.types[t.ENDPOINT]
    assert status.status is ConfigStatus.SYNCED
    assert dict(status.acked_resources) == {n: r.version for n, r in changed.of_type(t.ENDPOINT).items()}


def test_delta_stream_moving_from_a_to_b_gets_exactly_the_changed_names() -> None:
    world = World()
    world.cache.set_snapshot("n", world.snapshot(**PORTS))
    stream = world.delta("n")
    first = only(stream.on_request(delta_request("n", list("abcde"))))
    assert delta_carried(first) == (set("abcde"), set())
    assert stream.on_request(delta_request("n", [], first)) == []
    without_c = {n: p for n, p in PORTS.items() if n != "c"}
    changed = world.snapshot(**{**without_c, "b": 20})
    assert delta_carried(only(world.move("n", stream, changed))) == ({"b"}, {"c"})
    assert dict(stream._types[t.ENDPOINT].known) == {
        n: r.version for n, r in changed.of_type(t.ENDPOINT).items()
    }


def test_delta_stream_that_skipped_a_snapshot_gets_everything_that_differs() -> None:
    world = World()
    a = world.snapshot(**PORTS)
    b_snap = world.snapshot(**{**PORTS, "b": 20})
    c = world.snapshot(a=1, b=20, d=4, e=50)
    one, two = world.delta("one"), world.delta("two")
    for node, stream in (("one", one), ("two", two)):
        world.cache.set_snapshot(node, a)
        first = only(stream.on_request(delta_request(node, list("abcde"))))
        assert stream.on_request(delta_request(node, [], first)) == []
    assert delta_carried(only(world.move("one", one, b_snap))) == ({"b"}, set())
    assert delta_carried(only(world.move("one", one, c))) == ({"e"}, {"c"})
    assert delta_carried(only(world.move("two", two, c))) == ({"b", "e"}, {"c"})
    # A name removed while subscribed comes back: sent again. One that never existed: reported once.
    assert delta_carried(only(two.on_request(delta_request("two", ["ghost"])))) == (set(), {"ghost"})
    assert delta_carried(only(world.move("two", two, world.snapshot(**PORTS)))) == ({"b", "c", "e"}, set())


NAMES = "abcdef"
snapshots = st.dictionaries(st.sampled_from(NAMES), st.integers(1, 3), min_size=1)
subscriptions = st.sets(st.sampled_from(NAMES), min_size=1).map(sorted)
steps = st.lists(st.one_of(snapshots, subscriptions), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(start=snapshots, steps=steps)
def test_sotw_client_holds_every_subscribed_assignment_after_any_sequence(
    start: dict[str, int], steps: list[dict[str, int] | list[str]]
) -> None:
    world = World()
    world.cache.set_snapshot("n", world.snapshot(**start))
    stream = world.sotw("n")
    names = list(NAMES)
    held: dict[str, int] = {}

    def apply(pushes: list[Push]) -> None:
        for push in pushes:
            held.update(carried(push))
            assert stream.on_request(sotw_request("n", names, push)) == []  # ACKs send nothing

    apply(stream.on_request(sotw_request("n", names)))
    for step in steps:
        if isinstance(step, dict):
            current = world.snapshot(**step)
            apply(world.move("n", stream, current))
        else:
            names = step
            apply(stream.on_request(sotw_request("n", names)))
        snap = world.cache.get("n")
        assert snap is not None
        expected = {n: p for n, p in _ports(snap).items() if n in names}
        assert {n: held[n] for n in expected} == expected


@settings(max_examples=60, deadline=None)
@given(start=snapshots, steps=steps)
def test_delta_client_holds_exactly_the_subscribed_assignments_after_any_sequence(
    start: dict[str, int], steps: list[dict[str, int] | list[str]]
) -> None:
    world = World()
    world.cache.set_snapshot("n", world.snapshot(**start))
    stream = world.delta("n")
    names = list(NAMES)
    held: dict[str, str] = {}

    def apply(pushes: list[Push]) -> None:
        for push in pushes:
            response = discovery_pb2.DeltaDiscoveryResponse.FromString(push.encode())
            held.update({r.name: r.version for r in response.resources})
            for name in response.removed_resources:
                held.pop(name, None)
            assert stream.on_request(delta_request("n", [], push)) == []

    apply(stream.on_request(delta_request("n", names)))
    for step in steps:
        if isinstance(step, dict):
            apply(world.move("n", stream, world.snapshot(**step)))
        else:
            request = delta_request("n", sorted(set(step) - set(names)))
            request.resource_names_unsubscribe.extend(sorted(set(names) - set(step)))
            for name in set(names) - set(step):
                held.pop(name, None)  # a client forgets what it unsubscribes from
            names = step
            apply(stream.on_request(request))
        snap = world.cache.get("n")
        assert snap is not None
        endpoints = snap.of_type(t.ENDPOINT)
        assert held == {n: endpoints[n].version for n in names if n in endpoints}


def _ports(snap: Snapshot) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, resource in snap.of_type(t.ENDPOINT).items():
        cla = endpoint_pb2.ClusterLoadAssignment()
        resource.to_any().Unpack(cla)
        out[name] = cla.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value
    return out
