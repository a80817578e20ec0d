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


def _fragments(parts: tuple[bytes, ...], width: int) -> list[bytes]:
    """Each resource's fragment (its `width` consecutive parts joined), sorted."""
    return sorted(b"".join(parts[i : i + width]) for i in range(0, len(parts), width))


def test_derived_sets_splice_new_names_into_the_base_order_and_count_their_size() -> None:
    pool = ResourcePool()
    base = ResourceSet([pool.intern(b.eds_cluster(n)) for n in ("b", "d", "f", "h")])
    extras = [pool.intern(b.eds_cluster(n)) for n in ("a", "e", "c", "z", "g")]
    replaced = pool.intern(b.eds_cluster("d", timeout_s=9))
    for removed in ([], ["h"]):
        derived = ResourceSet.derive(base, [*extras, replaced], removed)
        fresh = ResourceSet([r for r in (*base.values(), *extras) if r.name not in removed and r.name != "d"])
        fresh = ResourceSet([*fresh.values(), replaced])
        assert list(derived.items()) == list(fresh.items())
        assert derived.size == fresh.size and derived.versions == fresh.versions
        # The same fragments, whatever their order in the body (responses carry resources in any order).
        assert _fragments(derived.sotw_parts, 2) == _fragments(fresh.sotw_parts, 2)
        assert _fragments(derived.delta_parts, 3) == _fragments(fresh.delta_parts, 3)
        assert derived.changes_since(fresh) == fresh.changes_since(derived)


def test_a_derived_set_is_checked_through_its_base_and_its_own_extras() -> None:
    pool = ResourcePool()
    base = ResourceSet([pool.intern(b.eds_cluster(n)) for n in ("a", "b")])
    targets = ResourceSet([pool.intern(b.endpoints(n, 1)) for n in ("a", "b", "x")])
    good = ResourceSet.derive(base, [pool.intern(b.eds_cluster("x"))])
    bad = ResourceSet.derive(base, [pool.intern(b.eds_cluster("y"))])
    assert good.missing_refs(targets) == []
    assert bad.missing_refs(targets) == [("y", "y")]
    # A base missing a ref is reported through the derived set too.
    assert good.missing_refs(ResourceSet([targets["b"], targets["x"]])) == [("a", "a")]


def test_a_set_found_complete_stays_so_for_targets_that_only_add_or_change_names() -> None:
    pool = ResourcePool()
    clusters = ResourceSet([pool.intern(b.eds_cluster(n)) for n in ("a", "b")])
    first = ResourceSet([pool.intern(b.endpoints("a", 1)), pool.intern(b.endpoints("b", 1))])
    assert clusters.missing_refs(first) == []
    changed = ResourceSet([pool.intern(b.endpoints("a", 2)), first["b"], pool.intern(b.endpoints("c", 1))])
    assert clusters.missing_refs(changed) == []
    # Once the earlier complete set is one name short of the targets, that shortcut does not apply.
    lost = ResourceSet([changed["a"], changed["c"]])
    assert clusters.missing_refs(lost) == [("b", "b")]


def _same(derived: ResourceSet, fresh: ResourceSet) -> None:
    assert sorted(derived.items()) == sorted(fresh.items()) and len(derived) == len(fresh)
    assert set(derived) == set(fresh.keys()) == set(derived.keys())
    assert all(derived[n] is fresh[n] and n in derived and derived.get(n) is fresh[n] for n in fresh)
    assert "nope" not in derived and derived.get("nope") is None
    assert derived.keys() <= frozenset(fresh) and not derived.keys() <= frozenset(list(fresh)[1:])
    assert dict(derived.versions) == dict(fresh.versions) and len(derived.versions) == len(fresh)
    assert derived.size == fresh.size
    assert _fragments(derived.delta_parts, 3) == _fragments(fresh.delta_parts, 3)
    assert derived.subset_version(["a", "nope", "x"]) == fresh.subset_version(["a", "nope", "x"])


def test_a_set_that_only_adds_to_its_base_reads_through_it_and_diffs_like_a_copy() -> None:
    pool = ResourcePool()
    base = ResourceSet([pool.intern(b.eds_cluster(n)) for n in ("a", "c", "e")])
    extras = [pool.intern(b.eds_cluster(n)) for n in ("x", "b")]
    derived = ResourceSet.derive(base, extras)
    _same(derived, ResourceSet([*base.values(), *extras]))
    # The next push: the base changed (same extras), or the extras did (same base), or neither shortcut.
    base2 = ResourceSet(
        [pool.intern(b.eds_cluster("a", timeout_s=3)), base["c"], pool.intern(b.eds_cluster("f"))]
    )
    moved = ResourceSet.derive(base2, extras)
    grown = ResourceSet.derive(base, [extras[0], pool.intern(b.eds_cluster("y"))])
    other = ResourceSet.derive(base2, [pool.intern(b.eds_cluster("z"))])
    for newer in (moved, grown, other):
        _same(newer, ResourceSet([*newer.values()]))
        plain = ResourceSet([*newer.values()]).changes_since(ResourceSet([*derived.values()]))
        assert newer.changes_since(derived) == plain
    assert moved.changes_since(derived).changed == ("a", "f") and moved.changes_since(derived).removed == (
        "e",
    )


def test_streams_of_nodes_with_the_same_extras_share_one_name_set() -> None:
    pool = ResourcePool()
    base = ResourceSet([pool.intern(b.eds_cluster(n)) for n in ("a", "b")])
    extra = pool.intern(b.eds_cluster("x"))
    one, two = ResourceSet.derive(base, [extra]), ResourceSet.derive(base, [extra])
    first, second = frozenset({"a", "b", "x"}), frozenset({"x", "b", "a"})
    assert one.share_names(first) is first
    assert two.share_names(second) is first  # equal names, another node: the first stream's set
    assert two.share_names(frozenset({"a", "b", "y"})) == {"a", "b", "y"}  # not all of its names
    other = ResourceSet.derive(base, [pool.intern(b.eds_cluster("y"))])
    mine = frozenset({"a", "b", "y"})
    assert other.share_names(mine) is mine  # other extras: its own entry
