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
