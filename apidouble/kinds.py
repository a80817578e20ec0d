"""The kinds the double serves: built-ins, plus custom resources registered from CRDs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from apidouble.errors import Resource
from apidouble.jsonvalue import JsonObject

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


class StatusOnCreate(StrEnum):
    """What a create does with the `.status` the client sent (per kind, as the real strategies do)."""

    DROP = "drop"  # kinds with a status subresource: status is the controllers' to write
    KEEP = "keep"  # kinds without one, and Nodes (the kubelet registers with status)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceKind:
    group: str
    versions: tuple[str, ...]  # served, preferred first
    plural: str
    singular: str
    kind: str
    namespaced: bool
    status_subresource: bool = False
    status_on_create: StatusOnCreate = StatusOnCreate.DROP
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    # Per served version: the openAPIV3Schema that custom objects are pruned, defaulted and validated with.
    schemas: Mapping[str, JsonObject] = field(default_factory=dict)
    # Per served version: the CRD's additionalPrinterColumns, for Table output.
    printer_columns: Mapping[str, tuple[JsonObject, ...]] = field(default_factory=dict)
    custom: bool = False
    # Only accepts creates and keeps nothing (TokenReview): a "virtual" resource.
    virtual: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def resource(self) -> Resource:
        return Resource(group=self.group, plural=self.plural, kind=self.kind)

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version


def _core(
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    status: bool = False,
    short: tuple[str, ...] = (),
    keep_status: bool = False,
    categories: tuple[str, ...] = (),
) -> ResourceKind:
    return ResourceKind(
        group="",
        versions=("v1",),
        plural=plural,
        singular=kind.lower(),
        kind=kind,
        namespaced=namespaced,
        status_subresource=status,
        status_on_create=StatusOnCreate.KEEP if keep_status or not status else StatusOnCreate.DROP,
        short_names=short,
        categories=categories,
    )


BUILTIN_KINDS: tuple[ResourceKind, ...] = (
    _core("namespaces", "Namespace", namespaced=False, status=True, short=("ns",)),
    _core("pods", "Pod", status=True, short=("po",), categories=("all",)),
    _core("services", "Service", status=True, short=("svc",), categories=("all",)),
    _core("nodes", "Node", namespaced=False, status=True, short=("no",), keep_status=True),
    _core("serviceaccounts", "ServiceAccount", short=("sa",)),
    _core("secrets", "Secret"),
    _core("configmaps", "ConfigMap", short=("cm",)),
    _core("endpoints", "Endpoints", short=("ep",)),
    ResourceKind(
        group="discovery.k8s.io",
        versions=("v1",),
        plural="endpointslices",
        singular="endpointslice",
        kind="EndpointSlice",
        namespaced=True,
        status_on_create=StatusOnCreate.KEEP,
    ),
    ResourceKind(
        group="apiextensions.k8s.io",
        versions=("v1",),
        plural="customresourcedefinitions",
        singular="customresourcedefinition",
        kind="CustomResourceDefinition",
        namespaced=False,
        status_subresource=True,
        short_names=("crd", "crds"),
    ),
    ResourceKind(
        group="authentication.k8s.io",
        versions=("v1",),
        plural="tokenreviews",
        singular="tokenreview",
        kind="TokenReview",
        namespaced=False,
        verbs=("create",),
        virtual=True,
    ),
    ResourceKind(
        group="coordination.k8s.io",
        versions=("v1",),
        plural="leases",
        singular="lease",
        kind="Lease",
        namespaced=True,
        status_on_create=StatusOnCreate.KEEP,
    ),
)


class KindRegistry:
    """Kinds by (group, plural); CRDs add and remove theirs at runtime."""

    def __init__(self, kinds: tuple[ResourceKind, ...] = BUILTIN_KINDS) -> None:
        self._kinds: dict[tuple[str, str], ResourceKind] = {k.key: k for k in kinds}

    def register(self, kind: ResourceKind) -> None:
        self._kinds[kind.key] = kind

    def unregister(self, key: tuple[str, str]) -> None:
        self._kinds.pop(key, None)

    def get(self, group: str, plural: str) -> ResourceKind | None:
        return self._kinds.get((group, plural))

    def lookup(self, group: str, version: str, plural: str) -> ResourceKind | None:
        kind = self._kinds.get((group, plural))
        if kind is None or version not in kind.versions:
            return None
        return kind

    def by_kind(self, group: str, kind_name: str) -> ResourceKind | None:
        for kind in self._kinds.values():
            if kind.group == group and kind.kind == kind_name:
                return kind
        return None

    def __iter__(self) -> Iterator[ResourceKind]:
        return iter(sorted(self._kinds.values(), key=lambda k: (k.group, k.plural)))

    def groups(self) -> dict[str, list[str]]:
        """Group name -> served versions (preferred first), for discovery; the core group is left out."""
        out: dict[str, list[str]] = {}
        for kind in self:
            if not kind.group:
                continue
            versions = out.setdefault(kind.group, [])
            for version in kind.versions:
                if version not in versions:
                    versions.append(version)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceKind]:
        return [k for k in self if k.group == group and version in k.versions]
