"""A persistent (immutable, structure-sharing) hash map for snapshots.

`set`/`delete` return a new map that shares all but one root-to-leaf path with the old one: a hash trie
of 32-way branch nodes over small leaf dicts. Cost per change: O(log32 n) nodes copied, each at most
32 entries (about 100 dict slots at 10,000 keys), instead of O(n) for copying a dict. Lookups walk the
same path. Iteration order follows hashes, so it is arbitrary: callers that need determinism sort.
`diff` compares two versions in O(changes x log n) by skipping the subtrees they share.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Generic, TypeVar, cast

K = TypeVar("K")
V = TypeVar("V")

_BITS: Final = 5
_MASK: Final = (1 << _BITS) - 1
_LEAF_MAX: Final = 16
# Hashes are taken as 64 unsigned bits; past the last chunk, colliding keys share one (growing) leaf.
_MAX_SHIFT: Final = 60
_HASH_MASK: Final = (1 << 64) - 1


class _Leaf:
    __slots__ = ("items",)

    def __init__(self, items: dict[object, object]) -> None:
        self.items = items


class _Branch:
    __slots__ = ("children",)

    def __init__(self, children: dict[int, _Leaf | _Branch]) -> None:
        self.children = children


_Node = _Leaf | _Branch
_EMPTY: Final = _Leaf({})


def _hash(key: object) -> int:
    return hash(key) & _HASH_MASK


def _build(items: dict[object, object], shift: int) -> _Node:
    if len(items) <= _LEAF_MAX or shift > _MAX_SHIFT:
        return _Leaf(items)
    groups: dict[int, dict[object, object]] = {}
    for key, value in items.items():
        groups.setdefault((_hash(key) >> shift) & _MASK, {})[key] = value
    return _Branch({index: _build(group, shift + _BITS) for index, group in groups.items()})


def _set(node: _Node, key: object, h: int, value: object, shift: int) -> tuple[_Node, bool]:
    if isinstance(node, _Leaf):
        items = dict(node.items)
        added = key not in items
        items[key] = value
        return _build(items, shift), added
    index = (h >> shift) & _MASK
    child = node.children.get(index)
    if child is None:
        new_child: _Node = _Leaf({key: value})
        added = True
    else:
        new_child, added = _set(child, key, h, value, shift + _BITS)
    children = dict(node.children)
    children[index] = new_child
    return _Branch(children), added


def _delete(node: _Node, key: object, h: int, shift: int) -> _Node | None:
    """The node without `key`: the same node when absent, None when nothing is left."""
    if isinstance(node, _Leaf):
        if key not in node.items:
            return node
        items = dict(node.items)
        del items[key]
        return _Leaf(items) if items else None
    index = (h >> shift) & _MASK
    child = node.children.get(index)
    if child is None:
        return node
    new_child = _delete(child, key, h, shift + _BITS)
    if new_child is child:
        return node
    children = dict(node.children)
    if new_child is None:
        del children[index]
    else:
        children[index] = new_child
    return _Branch(children) if children else None


def _walk(node: _Node) -> Iterator[tuple[object, object]]:
    if isinstance(node, _Leaf):
        yield from node.items.items()
    else:
        for child in node.children.values():
            yield from _walk(child)


class PMap(Mapping[K, V], Generic[K, V]):
    __slots__ = ("_len", "_root")

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        data = cast("dict[object, object]", dict(items))
        self._root: _Node = _build(data, 0) if data else _EMPTY
        self._len = len(data)

    @classmethod
    def _of(cls, root: _Node, length: int) -> PMap[K, V]:
        new: PMap[K, V] = cls.__new__(cls)
        new._root = root
        new._len = length
        return new

    def __getitem__(self, key: K) -> V:
        h = _hash(key)
        node = self._root
        shift = 0
        while isinstance(node, _Branch):
            child = node.children.get((h >> shift) & _MASK)
            if child is None:
                raise KeyError(key)
            node = child
            shift += _BITS
        if key not in node.items:
            raise KeyError(key)
        return cast("V", node.items[key])

    def __contains__(self, key: object) -> bool:
        try:
            self[cast("K", key)]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[K]:
        for key, _ in _walk(self._root):
            yield cast("K", key)

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"PMap({dict(self.items())!r})"

    def set(self, key: K, value: V) -> PMap[K, V]:
        root, added = _set(self._root, key, _hash(key), value, 0)
        return PMap._of(root, self._len + added)

    def delete(self, key: K) -> PMap[K, V]:
        """Without `key`; `self` itself when the key is absent."""
        root = _delete(self._root, key, _hash(key), 0)
        if root is self._root:
            return self
        return PMap._of(root if root is not None else _EMPTY, self._len - 1)

    def diff(self, other: PMap[K, V]) -> MapDiff[K, V]:
        """What changed from `self` to `other`. Subtrees the two maps share (the same node objects, as
        `set`/`delete` leave them) are skipped unopened, so comparing a map with one derived from it by k
        changes costs O(k log n), not O(n). Values compare by identity: a value replaced by an equal but
        distinct object counts as changed (callers that store values unchanged keep the same object)."""
        added: dict[object, object] = {}
        removed: dict[object, object] = {}
        changed: dict[object, tuple[object, object]] = {}
        _diff(self._root, other._root, added, removed, changed)
        return MapDiff(
            added=cast("dict[K, V]", added),
            removed=cast("dict[K, V]", removed),
            changed=cast("dict[K, tuple[V, V]]", changed),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MapDiff(Generic[K, V]):
    """The difference between two PMaps: keys only in the new one, only in the old one, and in both with
    different (by identity) values as (old, new)."""

    added: Mapping[K, V]
    removed: Mapping[K, V]
    changed: Mapping[K, tuple[V, V]]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def entries(self) -> Iterator[tuple[K, V | None, V | None]]:
        """Every touched key with its old and new value (None where absent). Only for maps whose values
        are never None."""
        for key, value in self.removed.items():
            yield key, value, None
        for key, (old, new) in self.changed.items():
            yield key, old, new
        for key, value in self.added.items():
            yield key, None, value


def _diff(
    a: _Node | None,
    b: _Node | None,
    added: dict[object, object],
    removed: dict[object, object],
    changed: dict[object, tuple[object, object]],
) -> None:
    if a is b:
        return
    if isinstance(a, _Branch) and isinstance(b, _Branch):
        # Both tries split keys by the same hash bits at the same depth, so children align by index.
        for index, child in a.children.items():
            other = b.children.get(index)
            if other is not child:
                _diff(child, other, added, removed, changed)
        for index, other in b.children.items():
            if index not in a.children:
                _diff(None, other, added, removed, changed)
        return
    # A leaf on either side (small, or the other side split it since): compare the two subtrees' items.
    old = dict(_walk(a)) if a is not None else {}
    new = dict(_walk(b)) if b is not None else {}
    for key, value in old.items():
        if key not in new:
            removed[key] = value
        elif new[key] is not value:
            changed[key] = (value, new[key])
    for key, value in new.items():
        if key not in old:
            added[key] = value
