"""An immutable, versioned set of resources for one node, indexed by type URL then name."""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Collection, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
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


# Diffs one set keeps, by the set they start from: streams of nodes that saw the same snapshots ask for the
# same few (usually one: the set every stream held before this change).
_MAX_DIFFS = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class SetDiff:
    """How a ResourceSet differs from an older one: names added or with a new version, names gone."""

    changed: tuple[str, ...]
    removed: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.changed or self.removed)


_NO_DIFF = SetDiff(changed=(), removed=())


class ResourceSet(Mapping[str, Resource]):
    """The resources of one type, by name, immutable, with their version computed once.

    Resources that are the same for every node (clusters, endpoints, routes) go into one ResourceSet that
    every node's snapshot shares, so a mesh-wide change costs one set and one version hash, not one per node.
    """

    __slots__ = (
        "__weakref__",
        "_by_name",
        "_diffs",
        "_names",
        "_size",
        "_sotw_parts",
        "_verified",
        "_version",
        "_versions",
    )

    def __init__(self, resources: Iterable[Resource] = ()) -> None:
        by_name: dict[str, Resource] = {}
        for resource in resources:
            existing = by_name.get(resource.name)
            if existing is not None and existing.version != resource.version:
                raise DuplicateResourceError(
                    f"two different {resource.type_url} resources named {resource.name!r}"
                )
            by_name[resource.name] = resource
        self._init(dict(sorted(by_name.items())), version=None)

    def _init(self, by_name: dict[str, Resource], *, version: str | None) -> None:
        self._by_name = by_name
        self._version: str | None = version
        # Target sets every reference of this set was already found in (consistency is checked once).
        # Keyed by id() because a Mapping is unhashable; the identity check below guards against reuse of ids.
        self._verified: weakref.WeakValueDictionary[int, ResourceSet] = weakref.WeakValueDictionary()
        # id(older set) -> (a weak reference to it, the diff from it); see changes_since.
        self._diffs: dict[int, tuple[weakref.ref[ResourceSet], SetDiff]] = {}
        self._sotw_parts: tuple[bytes, ...] | None = None
        self._names: frozenset[str] | None = None
        self._versions: Mapping[str, str] | None = None
        self._size: int | None = None

    @classmethod
    def derive(
        cls, base: ResourceSet, changed: Iterable[Resource], removed: Iterable[str] = ()
    ) -> ResourceSet:
        """`base` with `changed` added or replaced and `removed` taken out.

        For a set that is a shared one plus a few extras (a node's clusters: the mesh's plus its own HBONE
        ones): one dict copy at C speed instead of a Python pass over every resource, and a version derived
        from the base's plus the extras (deterministic, so replicas deriving the same way agree).
        """
        by_name = dict(base._by_name)
        extras = sorted(changed, key=lambda r: r.name)
        gone = sorted(name for name in removed if name in by_name)
        grew = False
        for resource in extras:
            grew = grew or resource.name not in by_name
            by_name[resource.name] = resource
        for name in gone:
            del by_name[name]
        made = cls.__new__(cls)
        version = _digest(
            [("", base.version), *((r.name, r.version) for r in extras), *((n, "") for n in gone)]
        )
        made._init(dict(sorted(by_name.items())) if grew else by_name, version=version)
        return made

    def __getitem__(self, name: str) -> Resource:
        return self._by_name[name]

    # Straight to the dict: Mapping's generic versions go through __getitem__ and KeyError, and the
    # serving path calls these for every name of every stream.
    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str, default: Resource | None = None) -> Resource | None:  # type: ignore[override]
        return self._by_name.get(name, default)

    def keys(self) -> KeysView[str]:
        return self._by_name.keys()

    def items(self) -> ItemsView[str, Resource]:
        return self._by_name.items()

    def values(self) -> ValuesView[Resource]:
        return self._by_name.values()

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

    @property
    def versions(self) -> Mapping[str, str]:
        """Name -> version of every resource, built once and shared (read-only)."""
        if self._versions is None:
            self._versions = MappingProxyType({n: r.version for n, r in self._by_name.items()})
        return self._versions

    @property
    def size(self) -> int:
        """Encoded bytes of every resource, summed once (a set shared by every node is counted once)."""
        if self._size is None:
            self._size = sum(len(r.any_bytes) for r in self._by_name.values())
        return self._size

    def share_names(self, names: frozenset[str]) -> frozenset[str]:
        """`names`, or this set's own frozenset of its names when equal: streams that subscribe to every
        name (as Envoy does to every EDS cluster's) then hold one shared set instead of a copy each."""
        if len(names) != len(self._by_name):
            return names
        if self._names is None:
            self._names = frozenset(self._by_name)
        return self._names if names == self._names else names

    @property
    def sotw_parts(self) -> tuple[bytes, ...]:
        """Every resource's SotW parts in order: the body of a response carrying the whole set, listed once
        and shared by every stream that sends it (references to the resources' bytes, not copies)."""
        if self._sotw_parts is None:
            self._sotw_parts = tuple(part for r in self._by_name.values() for part in r.sotw_parts)
        return self._sotw_parts

    def changes_since(self, older: ResourceSet) -> SetDiff:
        """What differs from `older`: names added or changed in this set (sorted), names it lacks (sorted).

        Computed once per pair and shared: every stream whose client holds `older` moves to this set by
        looking only at the changed names, so a one-resource change costs each stream O(1), not O(set).
        """
        if older is self:
            return _NO_DIFF
        memo = self._diffs.get(id(older))
        if memo is not None and memo[0]() is older:
            return memo[1]
        theirs = older._by_name
        changed: list[str] = []
        for name, resource in self._by_name.items():
            before = theirs.get(name)
            if before is not resource and (before is None or before.version != resource.version):
                changed.append(name)
        removed = [name for name in theirs if name not in self._by_name]
        diff = SetDiff(changed=tuple(changed), removed=tuple(removed)) if changed or removed else _NO_DIFF
        # Weak, so a diff never keeps an old set (and its resources) alive; ids of dead sets are pruned.
        for key in [k for k, (ref, _) in self._diffs.items() if ref() is None]:
            del self._diffs[key]
        while len(self._diffs) >= _MAX_DIFFS:
            del self._diffs[next(iter(self._diffs))]
        self._diffs[id(older)] = (weakref.ref(older), diff)
        return diff

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

    @cached_property
    def size(self) -> int:
        """Encoded bytes of every resource of the snapshot: what a proxy holding all of it was sent."""
        return sum(named.size for named in self.resources.values())

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
