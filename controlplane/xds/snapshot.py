"""An immutable, versioned set of resources for one node, indexed by type URL then name."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

from controlplane.xds.errors import DuplicateResourceError, InconsistentSnapshotError
from controlplane.xds.resource import REF_TARGETS, Resource

_EMPTY: Mapping[str, Resource] = MappingProxyType({})


def _digest(pairs: Iterable[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for name, version in pairs:
        h.update(name.encode())
        h.update(b"\0")
        h.update(version.encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class Snapshot:
    resources: Mapping[str, Mapping[str, Resource]]
    # Memo of type_version over whole types: snapshots are shared by many streams.
    _type_versions: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def build(cls, resources: Iterable[Resource]) -> Snapshot:
        by_type: dict[str, dict[str, Resource]] = {}
        for resource in resources:
            names = by_type.setdefault(resource.type_url, {})
            existing = names.get(resource.name)
            if existing is not None and existing.version != resource.version:
                raise DuplicateResourceError(
                    f"two different {resource.type_url} resources named {resource.name!r}"
                )
            names[resource.name] = resource
        return cls(
            resources=MappingProxyType(
                {t: MappingProxyType(dict(sorted(n.items()))) for t, n in sorted(by_type.items())}
            )
        )

    def of_type(self, type_url: str) -> Mapping[str, Resource]:
        return self.resources.get(type_url, _EMPTY)

    @cached_property
    def version(self) -> str:
        return _digest(
            (f"{type_url}\0{name}", r.version)
            for type_url, named in sorted(self.resources.items())
            for name, r in sorted(named.items())
        )

    def type_version(self, type_url: str, names: Collection[str] | None = None) -> str:
        """A hash of the sorted (name, version) pairs of a type (or of the given names present in it).

        Deterministic, so replicas fed the same snapshot report the same version_info.
        """
        named = self.of_type(type_url)
        if names is None:
            memo = self._type_versions.get(type_url)
            if memo is None:
                memo = _digest((n, r.version) for n, r in named.items())
                self._type_versions[type_url] = memo
            return memo
        return _digest((n, named[n].version) for n in sorted(names) if n in named)

    def check_consistency(self) -> None:
        """Raise InconsistentSnapshotError naming every route or endpoint name referenced but absent."""
        missing: list[str] = []
        for source_type, target_type in REF_TARGETS.items():
            targets = self.of_type(target_type)
            for name, resource in self.of_type(source_type).items():
                missing.extend(
                    f"{source_type.rsplit('.', 1)[-1]} {name!r} references missing "
                    f"{target_type.rsplit('.', 1)[-1]} {ref!r}"
                    for ref in sorted(resource.refs)
                    if ref not in targets
                )
        if missing:
            raise InconsistentSnapshotError(missing)

    def __len__(self) -> int:
        return sum(len(named) for named in self.resources.values())
