"""A persistent (immutable, structure-sharing) hash map for snapshots.

`set`/`delete` return a new map that shares all but one root-to-leaf path with the old one: a hash trie
of 32-way branch nodes over small leaf dicts. Cost per change: O(log32 n) nodes copied, each at most
32 entries (about 100 dict slots at 10,000 keys), instead of O(n) for copying a dict. Lookups walk the
same path. Iteration order follows hashes, so it is arbitrary: callers that need determinism sort.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
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
