"""What a delta client holds (name -> version), without a private copy per stream of what every stream holds.

A delta stream's first response for a type sends the whole set: on a large mesh 10,000 clusters, the same
for a thousand nodes. `HeldVersions` keeps that set's read-only versions map by reference and records only
this stream's own departures from it (names changed, added or gone), so the per-stream cost is what differs,
not the mesh.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from types import MappingProxyType

_EMPTY: Mapping[str, str] = MappingProxyType({})


class HeldVersions(MutableMapping[str, str]):
    """A shared read-only map plus this holder's own changes; reads and writes as one dict would."""

    __slots__ = ("_gone", "_own", "_shadowed", "_shared")

    def __init__(self, initial: Mapping[str, str] | None = None) -> None:
        self._shared: Mapping[str, str] = _EMPTY
        # Names set here (they take precedence over the shared map).
        self._own: dict[str, str] = dict(initial or {})
        # Names of the shared map no longer held (never also in _own).
        self._gone: set[str] = set()
        # How many names of _own are also in the shared map (for len).
        self._shadowed = 0

    def replace(self, shared: Mapping[str, str]) -> None:
        """Hold exactly `shared`, kept by reference: the caller must never mutate it."""
        self._shared, self._own, self._gone, self._shadowed = shared, {}, set(), 0

    def __getitem__(self, name: str) -> str:
        version = self._own.get(name)
        if version is not None:
            return version
        if name in self._gone:
            raise KeyError(name)
        return self._shared[name]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        version = self._own.get(name)
        if version is not None:
            return version
        if name in self._gone:
            return default
        return self._shared.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._own or (name in self._shared and name not in self._gone)

    def __setitem__(self, name: str, version: str) -> None:
        if name not in self._own:
            if name in self._shared:
                self._shadowed += 1
            self._gone.discard(name)
        self._own[name] = version

    def __delitem__(self, name: str) -> None:
        if name in self._own:
            del self._own[name]
            if name in self._shared:
                self._shadowed -= 1
                self._gone.add(name)
        elif name in self._shared and name not in self._gone:
            self._gone.add(name)
        else:
            raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        own, gone = self._own, self._gone
        for name in self._shared:
            if name not in own and name not in gone:
                yield name
        yield from own

    def __len__(self) -> int:
        return len(self._shared) - len(self._gone) - self._shadowed + len(self._own)
