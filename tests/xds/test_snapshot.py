"""Snapshots: indexing, deterministic versions, consistency."""

from __future__ import annotations

import pytest

from controlplane.xds import typeurls as t
from controlplane.xds.errors import DuplicateResourceError, InconsistentSnapshotError
from controlplane.xds.resource import ResourcePool
from controlplane.xds.snapshot import ResourceSet, Snapshot
from tests.xds import builders as b


def test_build_indexes_by_type_and_name() -> None:
    snap = b.mesh(ResourcePool(), {"a": (1,), "b": (2,)}, routes={"r": "a"})
    assert list(snap.of_type(t.CLUSTER)) == ["a", "b"]
    assert list(snap.of_type(t.ROUTE)) == ["r"]
    assert snap.of_type(t.SECRET) == {}
    assert len(snap) == 6


def test_duplicate_names_with_different_content_are_refused() -> None:
    pool = ResourcePool()
    with pytest.raises(DuplicateResourceError):
        Snapshot.build([pool.intern(b.eds_cluster("a")), pool.intern(b.eds_cluster("a", timeout_s=2))])
    Snapshot.build([pool.intern(b.eds_cluster("a")), pool.intern(b.eds_cluster("a"))])


def test_versions_are_deterministic_and_track_content() -> None:
    one = b.mesh(ResourcePool(), {"a": (1,), "b": (2,)})
    two = b.mesh(ResourcePool(), {"b": (2,), "a": (1,)})
    changed = b.mesh(ResourcePool(), {"a": (1,), "b": (3,)})
    assert one.version == two.version
    assert one.type_version(t.CLUSTER) == two.type_version(t.CLUSTER)
    assert one.type_version(t.CLUSTER) == changed.type_version(t.CLUSTER)
    assert one.type_version(t.ENDPOINT) != changed.type_version(t.ENDPOINT)
    assert one.type_version(t.ENDPOINT, ["a"]) == changed.type_version(t.ENDPOINT, ["a"])
    assert one.type_version(t.ENDPOINT, ["a", "b"]) == one.type_version(t.ENDPOINT)
    assert one.version != changed.version


def test_consistency_names_every_missing_reference() -> None:
    pool = ResourcePool()
    snap = b.snapshot(pool, b.eds_cluster("a"), b.listener("l", "missing-route"), b.static_cluster("s"))
    with pytest.raises(InconsistentSnapshotError) as caught:
        snap.check_consistency()
    message = str(caught.value)
    assert "'missing-route'" in message and "ClusterLoadAssignment 'a'" in message
    assert len(caught.value.missing) == 2
    b.mesh(pool, {"a": (1,)}, routes={"r": "a"}).check_consistency()


def test_snapshots_share_resource_sets_and_their_versions() -> None:
    pool = ResourcePool()
    clusters = ResourceSet([pool.intern(b.eds_cluster("a")), pool.intern(b.eds_cluster("b"))])
    endpoints = ResourceSet([pool.intern(b.endpoints("a", 1)), pool.intern(b.endpoints("b", 2))])
    one = Snapshot.from_sets({t.CLUSTER: clusters, t.ENDPOINT: endpoints})
    two = Snapshot.from_sets({t.CLUSTER: clusters, t.ENDPOINT: endpoints, t.LISTENER: ResourceSet()})
    assert one.of_type(t.CLUSTER) is two.of_type(t.CLUSTER)
    assert one.type_version(t.CLUSTER) == two.type_version(t.CLUSTER) == clusters.version
    # Built the ordinary way, the same resources give the same versions (replicas agree).
    assert (
        b.snapshot(pool, b.eds_cluster("b"), b.eds_cluster("a")).type_version(t.CLUSTER) == clusters.version
    )
    one.check_consistency()
    two.check_consistency()


def test_consistency_is_checked_against_each_target_set() -> None:
    pool = ResourcePool()
    clusters = ResourceSet([pool.intern(b.eds_cluster("a"))])
    good = ResourceSet([pool.intern(b.endpoints("a", 1))])
    Snapshot.from_sets({t.CLUSTER: clusters, t.ENDPOINT: good}).check_consistency()
    # A verified pair is remembered, but a different endpoint set is checked afresh.
    with pytest.raises(InconsistentSnapshotError, match="'a'"):
        Snapshot.from_sets({t.CLUSTER: clusters, t.ENDPOINT: ResourceSet()}).check_consistency()


def test_a_derived_set_holds_the_base_plus_its_extras() -> None:
    pool = ResourcePool()
    base = ResourceSet([pool.intern(b.eds_cluster(n)) for n in ("a", "b", "c")])
    extra = pool.intern(b.eds_cluster("z-node-only"))
    replaced = pool.intern(b.eds_cluster("b", timeout_s=7))
    derived = ResourceSet.derive(base, [extra, replaced], ["c"])
    fresh = ResourceSet([base["a"], replaced, extra])
    assert list(derived) == list(fresh) == ["a", "b", "z-node-only"]
    assert all(derived[n] is fresh[n] for n in fresh)
    assert derived.size == fresh.size
    assert derived.versions == fresh.versions
    # Deterministic (replicas deriving the same way agree) and content-sensitive.
    assert derived.version == ResourceSet.derive(base, [replaced, extra], ["c"]).version
    assert derived.version != ResourceSet.derive(base, [extra], ["c"]).version
    assert derived.changes_since(base).changed == ("b", "z-node-only")
    assert derived.changes_since(base).removed == ("c",)
