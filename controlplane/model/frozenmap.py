"""An immutable, hashable mapping for label sets and selectors inside frozen values."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class FrozenMap(Mapping[K, V], Generic[K, V]):
    """A read-only dict that hashes by content, so values holding labels stay hashable."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        self._data: dict[K, V] = dict(data)
        self._hash: int | None = None

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


Labels = FrozenMap[str, str]
EMPTY_LABELS: Labels = FrozenMap()


def matches_selector(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Equality-based label selection, as a Service's selector uses it."""
    return all(labels.get(key) == value for key, value in selector.items())
