"""Kubernetes JSON (as the API returns it, or as YAML files hold it) to model values. Pure: no I/O.

`convert(obj)` gives the model object, or diagnostics naming the object, the field path and the reason; an
object with an ERROR diagnostic is left out. Kinds the mesh does not use are ignored quietly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from controlplane.model.diagnostics import Diagnostic, Reason, Severity
from controlplane.model.kube.core import (
    convert_endpoint_slice,
    convert_namespace,
    convert_node,
    convert_pod,
    convert_service,
)
from controlplane.model.kube.fields import JSON, Reader
from controlplane.model.kube.policy import convert_traffic_policy
from controlplane.model.kube.routes import convert_grpc_route, convert_http_route
from controlplane.model.kube.security import convert_authorization_policy, convert_peer_authentication
from controlplane.model.objects import MeshObject
from controlplane.model.refs import CLUSTER_SCOPED, Kind, ObjectRef

_DNS_SUBDOMAIN: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")

ClusterConverter = Callable[[Reader, JSON, JSON, str], MeshObject]
# A converter may return None only for a fail-closed kind (nothing to stand in for the rejected object).
NamespacedConverter = Callable[[Reader, JSON, JSON, str, str], MeshObject | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class _KindSpec:
    kind: Kind
    versions: frozenset[str]
    # Severity of unknown fields: checked for CRDs only.
    unknown: Severity | None
    cluster: ClusterConverter | None = None
    namespaced: NamespacedConverter | None = None
    # Security policies: an object with errors is still returned, as the fail-closed stand-in its
    # converter builds, so a bad policy denies rather than allows (and replaces an earlier valid version).
    fail_closed: bool = False


# (API group, kind) -> how to convert it; "" is the core group.
_KINDS: Final[dict[tuple[str, str], _KindSpec]] = {
    ("", "Namespace"): _KindSpec(
        kind=Kind.NAMESPACE, versions=frozenset({"v1"}), unknown=None, cluster=convert_namespace
    ),
    ("", "Node"): _KindSpec(kind=Kind.NODE, versions=frozenset({"v1"}), unknown=None, cluster=convert_node),
    ("", "Pod"): _KindSpec(kind=Kind.POD, versions=frozenset({"v1"}), unknown=None, namespaced=convert_pod),
    ("", "Service"): _KindSpec(
        kind=Kind.SERVICE, versions=frozenset({"v1"}), unknown=None, namespaced=convert_service
    ),
    ("discovery.k8s.io", "EndpointSlice"): _KindSpec(
        kind=Kind.ENDPOINT_SLICE, versions=frozenset({"v1"}), unknown=None, namespaced=convert_endpoint_slice
    ),
    ("gateway.networking.k8s.io", "HTTPRoute"): _KindSpec(
        kind=Kind.HTTP_ROUTE,
        versions=frozenset({"v1", "v1beta1"}),
        unknown=Severity.WARNING,
        namespaced=convert_http_route,
    ),
    ("gateway.networking.k8s.io", "GRPCRoute"): _KindSpec(
        kind=Kind.GRPC_ROUTE,
        versions=frozenset({"v1", "v1alpha2"}),
        unknown=Severity.WARNING,
        namespaced=convert_grpc_route,
    ),
    ("nodemesh.io", "TrafficPolicy"): _KindSpec(
        kind=Kind.TRAFFIC_POLICY,
        versions=frozenset({"v1alpha1"}),
        unknown=Severity.ERROR,
        namespaced=convert_traffic_policy,
    ),
    ("nodemesh.io", "AuthorizationPolicy"): _KindSpec(
        kind=Kind.AUTHORIZATION_POLICY,
        versions=frozenset({"v1alpha1"}),
        unknown=Severity.ERROR,
        namespaced=convert_authorization_policy,
        fail_closed=True,
    ),
    ("nodemesh.io", "PeerAuthentication"): _KindSpec(
        kind=Kind.PEER_AUTHENTICATION,
        versions=frozenset({"v1alpha1"}),
        unknown=Severity.ERROR,
        namespaced=convert_peer_authentication,
        fail_closed=True,
    ),
}
_TOP_LEVEL: Final = ("apiVersion", "kind", "metadata", "spec", "status")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversionResult:
    # None when the kind is not the mesh's (ignored) or the object has errors, except for fail-closed
    # kinds (AuthorizationPolicy, PeerAuthentication): with errors, obj is their rejected stand-in.
    obj: MeshObject | None = None
    # What the input says it is, when it says (so a source can keep an earlier valid version of it).
    ref: ObjectRef | None = None
    diagnostics: tuple[Diagnostic, ...] = ()

    @property
    def ignored(self) -> bool:
        """Not a kind the mesh reads, and nothing wrong with it."""
        return self.obj is None and not self.diagnostics


def split_api_version(api_version: str) -> tuple[str, str]:
    """`gateway.networking.k8s.io/v1` -> (group, version); `v1` -> ("", "v1")."""
    group, _, version = api_version.rpartition("/")
    return group, version


def convert(obj: object, *, default_namespace: str = "default") -> ConversionResult:
    """One Kubernetes object (a decoded JSON/YAML mapping) to a model value; never raises.

    `default_namespace` is used when a namespaced object's metadata has none (files written for
    `kubectl apply -n`); objects from the API server always have one.
    """
    if not isinstance(obj, Mapping):
        return _problem(
            None, "", Reason.NOT_AN_OBJECT, f"expected a Kubernetes object, got {type(obj).__name__}"
        )
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
        return _problem(None, "", Reason.NOT_AN_OBJECT, "apiVersion and kind must be non-empty strings")
    group, version = split_api_version(api_version)
    spec = _KINDS.get((group, kind))
    if spec is None:
        return ConversionResult()
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    raw_namespace = metadata.get("namespace") if isinstance(metadata, Mapping) else None
    cluster_scoped = spec.kind in CLUSTER_SCOPED
    namespace = (
        ""
        if cluster_scoped
        else (raw_namespace if isinstance(raw_namespace, str) and raw_namespace else default_namespace)
    )
    ref = ObjectRef(kind=spec.kind, namespace=namespace, name=name if isinstance(name, str) else "")
    if version not in spec.versions:
        supported = ", ".join(sorted(f"{group}/{v}" if group else v for v in spec.versions))
        return _problem(
            ref, "apiVersion", Reason.UNSUPPORTED_VERSION, f"{api_version} is not supported: use {supported}"
        )
    reader = Reader(ref, unknown=spec.unknown)
    reader.check_fields(obj, "", _TOP_LEVEL)
    meta = reader.mapping(obj, "metadata", "", required=True)
    if meta is None:
        return ConversionResult(diagnostics=tuple(reader.diagnostics))
    _check_name(reader, meta, "name", _DNS_LABEL if spec.kind is Kind.NAMESPACE else _DNS_SUBDOMAIN)
    if not cluster_scoped and raw_namespace is not None:
        _check_name(reader, meta, "namespace", _DNS_LABEL)
    if reader.failed:
        return ConversionResult(ref=ref if ref.name else None, diagnostics=tuple(reader.diagnostics))
    converted: MeshObject | None
    if spec.cluster is not None:
        converted = spec.cluster(reader, obj, meta, ref.name)
    else:
        assert spec.namespaced is not None
        converted = spec.namespaced(reader, obj, meta, namespace, ref.name)
    diagnostics = tuple(reader.diagnostics)
    keep = not reader.failed or spec.fail_closed
    return ConversionResult(obj=converted if keep else None, ref=ref, diagnostics=diagnostics)


def _check_name(reader: Reader, meta: JSON, key: str, pattern: re.Pattern[str]) -> None:
    max_length = 63 if pattern is _DNS_LABEL else 253
    value = reader.string(meta, key, "metadata", required=key == "name", max_length=max_length)
    if value is not None and not pattern.fullmatch(value):
        reader.report(
            f"metadata.{key}",
            Reason.INVALID_NAME,
            f"{value!r} is not a valid name (lower-case alphanumerics and '-', alphanumeric at both ends)",
        )


def _problem(ref: ObjectRef | None, field: str, reason: Reason, message: str) -> ConversionResult:
    diagnostic = Diagnostic(severity=Severity.ERROR, reason=reason, message=message, ref=ref, field=field)
    return ConversionResult(ref=ref, diagnostics=(diagnostic,))


__all__ = ["ConversionResult", "convert", "split_api_version"]
