"""An immutable, versioned set of resources for one node, indexed by type URL then name."""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType

from controlplane.xds.errors import DuplicateResourceError, InconsistentSnapshotError
from controlplane.xds.resource import REF_TARGETS, Resource


def _digest(pairs: Iterable[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for name, version in pairs:
        h.update(name.encode())
        h.update(b"\0")
        h.update(version.encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


class ResourceSet(Mapping[str, Resource]):
    """The resources of one type, by name, immutable, with their version computed once.

    Resources that are the same for every node (clusters, endpoints, routes) go into one ResourceSet that
    every node's snapshot shares, so a mesh-wide change costs one set and one version hash, not one per node.
    """

    __slots__ = ("__weakref__", "_by_name", "_verified", "_version")

    def __init__(self, resources: Iterable[Resource] = ()) -> None:
        by_name: dict[str, Resource] = {}
        for resource in resources:
            existing = by_name.get(resource.name)
            if existing is not None and existing.version != resource.version:
                raise DuplicateResourceError(
                    f"two different {resource.type_url} resources named {resource.name!r}"
                )
            by_name[resource.name] = resource
        self._by_name = dict(sorted(by_name.items()))
        self._version: str | None = None
        # Target sets every reference of this set was already found in (consistency is checked once).
        # Keyed by id() because a Mapping is unhashable; the identity check below guards against reuse of ids.
        self._verified: weakref.WeakValueDictionary[int, ResourceSet] = weakref.WeakValueDictionary()

    def __getitem__(self, name: str) -> Resource:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def version(self) -> str:
        """Hash of the sorted (name, version) pairs: replicas fed the same resources agree."""
        if self._version is None:
            self._version = _digest((n, r.version) for n, r in self._by_name.items())
        return self._version

    def subset_version(self, names: Collection[str]) -> str:
        return _digest((n, self._by_name[n].version) for n in sorted(names) if n in self._by_name)

    def missing_refs(self, targets: ResourceSet) -> list[tuple[str, str]]:
        """(name, ref) for every ref of this set's resources that `targets` lacks."""
        if self._verified.get(id(targets)) is targets:
            return []
        missing = [
            (name, ref) for name, r in self._by_name.items() for ref in sorted(r.refs) if ref not in targets
        ]
        if not missing:
            self._verified[id(targets)] = targets
        return missing


_EMPTY_SET = ResourceSet()


@dataclass(frozen=True, eq=False)
class Snapshot:
    resources: Mapping[str, ResourceSet]

    @classmethod
    def build(cls, resources: Iterable[Resource]) -> Snapshot:
        by_type: dict[str, list[Resource]] = {}
        for resource in resources:
            by_type.setdefault(resource.type_url, []).append(resource)
        return cls.from_sets({t: ResourceSet(rs) for t, rs in by_type.items()})

    @classmethod
    def from_sets(cls, sets: Mapping[str, ResourceSet]) -> Snapshot:
        """A snapshot over existing sets, shared with other snapshots rather than copied."""
        return cls(resources=MappingProxyType(dict(sorted(sets.items()))))

    def of_type(self, type_url: str) -> ResourceSet:
        return self.resources.get(type_url, _EMPTY_SET)

    @cached_property
    def version(self) -> str:
        return _digest((type_url, named.version) for type_url, named in self.resources.items())

    def type_version(self, type_url: str, names: Collection[str] | None = None) -> str:
        """A hash of the sorted (name, version) pairs of a type (or of the given names present in it).

        Deterministic, so replicas fed the same snapshot report the same version_info.
        """
        named = self.of_type(type_url)
        return named.version if names is None else named.subset_version(names)

    def check_consistency(self) -> None:
        """Raise InconsistentSnapshotError naming every route or endpoint name referenced but absent."""
        missing: list[str] = []
        for source_type, target_type in REF_TARGETS.items():
            for name, ref in self.of_type(source_type).missing_refs(self.of_type(target_type)):
                missing.append(
                    f"{source_type.rsplit('.', 1)[-1]} {name!r} references missing "
                    f"{target_type.rsplit('.', 1)[-1]} {ref!r}"
                )
        if missing:
            raise InconsistentSnapshotError(missing)

    def __len__(self) -> int:
        return sum(len(named) for named in self.resources.values())
