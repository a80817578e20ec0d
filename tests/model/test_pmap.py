"""The persistent map behaves like a dict, and old versions never change."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from controlplane.model.pmap import PMap

ops = st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=300), st.integers()), max_size=400)


@given(ops)
def test_pmap_matches_dict_and_versions_are_immutable(operations: list[tuple[bool, int, int]]) -> None:
    m: PMap[int, int] = PMap()
    d: dict[int, int] = {}
    versions: list[tuple[PMap[int, int], dict[int, int]]] = []
    for is_set, key, value in operations:
        if is_set:
            m = m.set(key, value)
            d[key] = value
        else:
            m = m.delete(key)
            d.pop(key, None)
        versions.append((m, dict(d)))
    for version, expected in versions:
        assert dict(version.items()) == expected
        assert len(version) == len(expected)
        assert all(k in version for k in expected)
    assert m == PMap(d)


class _Colliding:
    """Keys that all hash alike must still be told apart (past the trie's last level)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        return 42

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Colliding) and other.n == self.n


def test_colliding_hashes() -> None:
    keys = [_Colliding(i) for i in range(100)]
    m: PMap[_Colliding, int] = PMap()
    for i, key in enumerate(keys):
        m = m.set(key, i)
    assert len(m) == 100 and all(m[k] == i for i, k in enumerate(keys))
    for key in keys[::2]:
        m = m.delete(key)
    assert len(m) == 50 and _Colliding(1) in m and _Colliding(2) not in m


def test_delete_absent_returns_same_map() -> None:
    m = PMap({1: 2})
    assert m.delete(3) is m
    assert PMap[int, int]().delete(1) == PMap()


def _dict_diff(
    old: dict[int, object], new: dict[int, object]
) -> tuple[dict[int, object], dict[int, object], dict[int, tuple[object, object]]]:
    added = {k: v for k, v in new.items() if k not in old}
    removed = {k: v for k, v in old.items() if k not in new}
    changed = {k: (old[k], new[k]) for k in old.keys() & new.keys() if old[k] is not new[k]}
    return added, removed, changed


base_items = st.dictionaries(st.integers(min_value=0, max_value=500), st.integers(), max_size=300)


@given(base_items, ops, st.booleans())
def test_diff_matches_a_dict_comparison(
    start: dict[int, int], operations: list[tuple[bool, int, int]], rebuild: bool
) -> None:
    # Values are boxed so identity tells versions apart as `diff` does.
    boxed: dict[int, object] = {k: [v] for k, v in start.items()}
    old: PMap[int, object] = PMap(boxed)
    new = old
    expected = dict(boxed)
    for is_set, key, value in operations:
        if is_set:
            box = [value]
            new = new.set(key, box)
            expected[key] = box
        else:
            new = new.delete(key)
            expected.pop(key, None)
    if rebuild:  # unrelated trees (no shared nodes) must diff the same
        new = PMap(expected)
    d = old.diff(new)
    added, removed, changed = _dict_diff(boxed, expected)
    assert (dict(d.added), dict(d.removed), dict(d.changed)) == (added, removed, changed)
    assert bool(d) == bool(added or removed or changed)
    assert {k for k, _, _ in d.entries()} == added.keys() | removed.keys() | changed.keys()


class _CountingKey:
    hashes = 0

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        _CountingKey.hashes += 1
        return hash(self.n)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _CountingKey) and other.n == self.n


def test_diff_skips_shared_subtrees() -> None:
    keys = [_CountingKey(i) for i in range(20_000)]
    old: PMap[_CountingKey, int] = PMap((k, 0) for k in keys)
    new = old.set(keys[7], 1).delete(keys[8]).set(_CountingKey(-1), 2)
    _CountingKey.hashes = 0
    d = old.diff(new)
    assert dict(d.changed) == {keys[7]: (0, 1)} and list(d.removed) == [keys[8]]
    assert list(d.added) == [_CountingKey(-1)]
    # Only the leaves on the three changed paths are opened (each at most a few dozen keys).
    assert _CountingKey.hashes < 300
    assert not old.diff(old)
