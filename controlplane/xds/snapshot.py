"""An immutable, versioned set of resources for one node, indexed by type URL then name."""

from __future__ import annotations

import bisect
import hashlib
import itertools
import weakref
from collections.abc import Collection, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from collections.abc import Set as AbstractSet
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
# Distinct extras (derived sets) whose subscribers' name sets one base set shares.
_MAX_EXTENDED = 1024


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
        "_base",
        "_by_name",
        "_delta_parts",
        "_diffs",
        "_extended",
        "_extras",
        "_items",
        "_names",
        "_pure",
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
        self._items: list[tuple[str, Resource]] | None = None
        # A derived set (see derive): the set it extends and its own resources, so its consistency is the
        # base's (checked once, shared) plus its extras'.
        self._base: ResourceSet | None = None
        self._extras: tuple[Resource, ...] = ()
        # A derived set that only adds names to its base ("pure"): `_by_name` holds the extras alone and
        # reads fall through to the base, so a node's set costs O(extras) memory, not a copy of the mesh's
        # (10,000 clusters for each of 1,000 nodes would be GBs); its bodies are the base's plus the extras'.
        self._pure = False
        self._delta_parts: tuple[bytes, ...] | None = None
        # The name sets of streams subscribed to every name of a set derived from this one, by its extras.
        self._extended: dict[frozenset[str], frozenset[str]] | None = None

    @classmethod
    def derive(
        cls, base: ResourceSet, changed: Iterable[Resource], removed: Iterable[str] = ()
    ) -> ResourceSet:
        """`base` with `changed` added or replaced and `removed` taken out.

        For a set that is a shared one plus a few extras (a node's clusters: the mesh's plus its own HBONE
        ones): one dict copy at C speed instead of a Python pass over every resource (new names are merged
        into the base's sorted order, not sorted again), a version derived from the base's plus the extras
        (deterministic, so replicas deriving the same way agree), and a size from the base's: the work per
        node is O(extras) in Python, the copy aside.
        """
        theirs = base._mapping()
        extras = sorted(changed, key=lambda r: r.name)
        gone = sorted(name for name in removed if name in theirs)
        new = [r for r in extras if r.name not in theirs]
        version = _digest(
            [("", base.version), *((r.name, r.version) for r in extras), *((n, "") for n in gone)]
        )
        if not gone and len(new) == len(extras) and not base._pure:
            made = cls.__new__(cls)
            made._init({r.name: r for r in extras}, version=version)
            made._size = base.size + sum(len(r.any_bytes) for r in extras)
            made._base, made._extras, made._pure = base, tuple(extras), True
            return made
        if new:
            # Splice the new names into the base's sorted items; the dict keeps that order.
            items = base._item_list()
            pieces: list[tuple[str, Resource]] = []
            start = 0
            for resource in new:
                # (name,) sorts just before (name, anything): compares names only, no key list needed.
                at = bisect.bisect_left(items, (resource.name,), lo=start)
                pieces += items[start:at]
                pieces.append((resource.name, resource))
                start = at
            pieces += items[start:]
            by_name = dict(pieces)
        else:
            by_name = dict(theirs)
        size = base.size
        for resource in extras:
            replaced = theirs.get(resource.name)
            if replaced is not None:
                size -= len(replaced.any_bytes)
            by_name[resource.name] = resource
            size += len(resource.any_bytes)
        for name in gone:
            size -= len(by_name.pop(name).any_bytes)
        made = cls.__new__(cls)
        made._init(by_name, version=version)
        made._size = size
        if not gone and not base._pure:
            made._base, made._extras = base, tuple(extras)
        return made

    def _under(self) -> ResourceSet:
        """The base of a pure derived set."""
        base = self._base
        assert base is not None
        return base

    def _mapping(self) -> Mapping[str, Resource]:
        """Every resource by name as one dict: this set's own, or for a pure derived set a temporary merge
        (for the rare paths that need one; never kept)."""
        return {**self._under()._by_name, **self._by_name} if self._pure else self._by_name

    def _item_list(self) -> list[tuple[str, Resource]]:
        """The (name, resource) pairs in order, listed once (derive splices into it for every node)."""
        if self._items is None:
            self._items = list(self.items())
        return self._items

    def __getitem__(self, name: str) -> Resource:
        if self._pure:
            resource = self._by_name.get(name)
            return resource if resource is not None else self._under()._by_name[name]
        return self._by_name[name]

    # Straight to the dict: Mapping's generic versions go through __getitem__ and KeyError, and the
    # serving path calls these for every name of every stream.
    def __contains__(self, name: object) -> bool:
        return name in self._by_name or (self._pure and name in self._under()._by_name)

    def get(self, name: str, default: Resource | None = None) -> Resource | None:  # type: ignore[override]
        resource = self._by_name.get(name)
        if resource is None and self._pure:
            resource = self._under()._by_name.get(name)
        return resource if resource is not None else default

    def keys(self) -> KeysView[str]:
        return _ChainedKeys(self) if self._pure else self._by_name.keys()

    def items(self) -> ItemsView[str, Resource]:
        return _ChainedItems(self) if self._pure else self._by_name.items()

    def values(self) -> ValuesView[Resource]:
        return _ChainedValues(self) if self._pure else self._by_name.values()

    def __iter__(self) -> Iterator[str]:
        if self._pure:
            return itertools.chain(self._under()._by_name, self._by_name)
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name) + (len(self._under()._by_name) if self._pure else 0)

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
            if self._pure:
                # The base's (shared) map plus the extras': nothing per node beyond the extras.
                self._versions = _ChainedVersions(
                    self._under().versions, {r.name: r.version for r in self._extras}
                )
            elif self._base is not None:
                # The base's map copied at C speed, then the few extras: not a pass per resource per node.
                versions = dict(self._base.versions)
                versions.update((r.name, r.version) for r in self._extras)
                self._versions = MappingProxyType(versions)
            else:
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
        if len(names) != len(self):
            return names
        if self._pure:
            return self._under()._share_extended(frozenset(self._by_name), names)
        if self._names is None:
            self._names = frozenset(self._by_name)
        return self._names if names == self._names else names

    def _share_extended(self, extras: frozenset[str], names: frozenset[str]) -> frozenset[str]:
        """share_names for the sets derived from this one by adding `extras`: nodes with the same extras
        (their own routes, say) share the first such stream's frozenset rather than keep one each."""
        if self._extended is None:
            self._extended = {}
        shared = self._extended.get(extras)
        if shared is None:
            if not (names >= extras and names.issuperset(self._by_name)):
                return names
            if len(self._extended) >= _MAX_EXTENDED:
                self._extended.clear()  # bounded: node churn cannot grow it forever
            self._extended[extras] = names
            return names
        return shared if names == shared else names

    @property
    def sotw_parts(self) -> tuple[bytes, ...]:
        """Every resource's SotW parts: the body of a response carrying the whole set, listed once and
        shared by every stream that sends it (references to the resources' bytes, not copies).

        A derived set that only adds to its base is the base's parts then its extras', composed at C speed
        on each call and not kept: a list per node of every mesh-wide resource would cost O(mesh) memory
        per node (the order of resources in a response means nothing to the client)."""
        if self._sotw_parts is not None:
            return self._sotw_parts
        if self._pure and self._base is not None:
            return self._base.sotw_parts + tuple(part for r in self._extras for part in r.sotw_parts)
        parts = tuple(part for r in self._by_name.values() for part in r.sotw_parts)
        if self._base is None:
            self._sotw_parts = parts
        return parts

    @property
    def delta_parts(self) -> tuple[bytes, ...]:
        """As `sotw_parts`, for a delta response carrying the whole set."""
        if self._delta_parts is not None:
            return self._delta_parts
        if self._pure and self._base is not None:
            return self._base.delta_parts + tuple(part for r in self._extras for part in r.delta_parts)
        parts = tuple(part for r in self._by_name.values() for part in r.delta_parts)
        if self._base is None:
            self._delta_parts = parts
        return parts

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
        diff = self._pure_diff(older)
        if diff is None:
            mine, theirs = self._mapping(), older._mapping()
            changed: list[str] = []
            for name, resource in mine.items():
                before = theirs.get(name)
                if before is not resource and (before is None or before.version != resource.version):
                    changed.append(name)
            removed = [name for name in theirs if name not in mine]
            if self._pure or older._pure:
                changed.sort()
                removed.sort()
            diff = SetDiff(changed=tuple(changed), removed=tuple(removed)) if changed or removed else _NO_DIFF
        # Weak, so a diff never keeps an old set (and its resources) alive; ids of dead sets are pruned.
        for key in [k for k, (ref, _) in self._diffs.items() if ref() is None]:
            del self._diffs[key]
        while len(self._diffs) >= _MAX_DIFFS:
            del self._diffs[next(iter(self._diffs))]
        self._diffs[id(older)] = (weakref.ref(older), diff)
        return diff

    def _pure_diff(self, older: ResourceSet) -> SetDiff | None:
        """The diff between two pure derived sets of one node, from what they share; None: no shortcut.

        Same base: only the extras can differ. Same extras: the bases' diff (computed once, shared by
        every node), since a pure set's extras never shadow its base's names."""
        if not (self._pure and older._pure):
            return None
        if self._base is older._base:
            mine, theirs = self._by_name, older._by_name
            changed = [
                n
                for n, r in mine.items()
                if (before := theirs.get(n)) is not r and (before is None or before.version != r.version)
            ]
            removed = [n for n in theirs if n not in mine]
        elif len(self._extras) == len(older._extras) and all(
            a is b for a, b in zip(self._extras, older._extras, strict=True)
        ):
            shared = self._under().changes_since(older._under())
            changed, removed = list(shared.changed), list(shared.removed)
        else:
            return None
        if not changed and not removed:
            return _NO_DIFF
        return SetDiff(changed=tuple(changed), removed=tuple(removed))

    def subset_version(self, names: Collection[str]) -> str:
        return _digest((n, self[n].version) for n in sorted(names) if n in self)

    def missing_refs(self, targets: ResourceSet) -> list[tuple[str, str]]:
        """(name, ref) for every ref of this set's resources that `targets` lacks.

        Every node's snapshot is checked on install, so the common cases avoid a pass over every resource:
        a derived set whose base has no missing refs checks only its extras; and once `targets` holds every
        name of a set already found complete (their diff, computed once and shared by every node, removes
        nothing), nothing can be missing. So an endpoint change costs each node O(1) here, not O(mesh).
        """
        if self._verified.get(id(targets)) is targets:
            return []
        if self._base is not None and not self._base.missing_refs(targets):
            missing = [(r.name, ref) for r in self._extras for ref in sorted(r.refs) if ref not in targets]
        elif any(not targets.changes_since(earlier).removed for earlier in list(self._verified.values())):
            missing = []
        else:
            present = targets._mapping()  # a dict: membership at C speed (a temporary one if pure)
            missing = [
                (name, ref) for name, r in self.items() for ref in sorted(r.refs) if ref not in present
            ]
        if not missing:
            self._verified[id(targets)] = targets
        return missing


# Views of a pure derived set that iterate its base's dict then its own at C speed (the generic views
# would look every name up through ResourceSet.__getitem__).
class _ChainedKeys(KeysView[str]):
    __slots__ = ("_set",)

    def __init__(self, chained: ResourceSet) -> None:
        super().__init__(chained)
        self._set = chained

    def __iter__(self) -> Iterator[str]:
        chained = self._set
        return itertools.chain(chained._under()._by_name, chained._by_name)

    def __le__(self, other: AbstractSet[object]) -> bool:
        if isinstance(other, (set, frozenset)):
            chained = self._set
            return chained._under()._by_name.keys() <= other and chained._by_name.keys() <= other
        return super().__le__(other)


class _ChainedItems(ItemsView[str, Resource]):
    __slots__ = ("_set",)

    def __init__(self, chained: ResourceSet) -> None:
        super().__init__(chained)
        self._set = chained

    def __iter__(self) -> Iterator[tuple[str, Resource]]:
        chained = self._set
        return itertools.chain(chained._under()._by_name.items(), chained._by_name.items())


class _ChainedValues(ValuesView[Resource]):
    __slots__ = ("_set",)

    def __init__(self, chained: ResourceSet) -> None:
        super().__init__(chained)
        self._set = chained

    def __iter__(self) -> Iterator[Resource]:
        chained = self._set
        return itertools.chain(chained._under()._by_name.values(), chained._by_name.values())


class _ChainedVersions(Mapping[str, str]):
    """Name -> version of a pure derived set: its extras' over its base's shared map (disjoint names)."""

    __slots__ = ("_base", "_own")

    def __init__(self, base: Mapping[str, str], own: dict[str, str]) -> None:
        self._base = base
        self._own = own

    def __getitem__(self, name: str) -> str:
        version = self._own.get(name)
        return version if version is not None else self._base[name]

    def __contains__(self, name: object) -> bool:
        return name in self._own or name in self._base

    def __iter__(self) -> Iterator[str]:
        return itertools.chain(self._base, self._own)

    def __len__(self) -> int:
        return len(self._base) + len(self._own)


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
