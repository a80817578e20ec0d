"""Gateway API v1 HTTPRoute and GRPCRoute, as the mesh uses them (GAMMA: a parentRef names a Service).

Values mirror the API closely and with its defaults applied (path match `PathPrefix /`, weight 1, parent
namespace = the route's), so translation never has to know the API's defaulting rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from controlplane.model.duration import Duration
from controlplane.model.refs import Kind, ObjectRef

GATEWAY_GROUP: Final = "gateway.networking.k8s.io"
CORE_GROUP: Final = ""


class PathMatchType(StrEnum):
    EXACT = "Exact"
    PATH_PREFIX = "PathPrefix"
    REGULAR_EXPRESSION = "RegularExpression"


class MatchType(StrEnum):
    """For headers, query parameters and gRPC methods."""

    EXACT = "Exact"
    REGULAR_EXPRESSION = "RegularExpression"


class HTTPMethod(StrEnum):
    GET = "GET"
    HEAD = "HEAD"
    POST = "POST"
    PUT = "PUT"
    DELETE = "DELETE"
    CONNECT = "CONNECT"
    OPTIONS = "OPTIONS"
    TRACE = "TRACE"
    PATCH = "PATCH"


class FilterType(StrEnum):
    REQUEST_HEADER_MODIFIER = "RequestHeaderModifier"
    RESPONSE_HEADER_MODIFIER = "ResponseHeaderModifier"
    REQUEST_REDIRECT = "RequestRedirect"
    URL_REWRITE = "URLRewrite"
    REQUEST_MIRROR = "RequestMirror"
    EXTENSION_REF = "ExtensionRef"


class PathModifierType(StrEnum):
    REPLACE_FULL_PATH = "ReplaceFullPath"
    REPLACE_PREFIX_MATCH = "ReplacePrefixMatch"


@dataclass(frozen=True, slots=True, kw_only=True)
class ParentRef:
    group: str = GATEWAY_GROUP
    kind: str = "Gateway"
    # Defaulted to the route's namespace by conversion.
    namespace: str
    name: str
    section_name: str | None = None
    port: int | None = None

    @property
    def is_service(self) -> bool:
        """GAMMA: the route attaches to a Service, not a Gateway."""
        return self.group == CORE_GROUP and self.kind == "Service"

    @property
    def service_ref(self) -> ObjectRef | None:
        return ObjectRef.service(self.namespace, self.name) if self.is_service else None


@dataclass(frozen=True, slots=True, kw_only=True)
class PathMatch:
    type: PathMatchType = PathMatchType.PATH_PREFIX
    value: str = "/"


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderMatch:
    """Also used for query parameters. Header names are compared case-insensitively by Envoy."""

    type: MatchType = MatchType.EXACT
    name: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPRouteMatch:
    path: PathMatch = PathMatch()
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[HeaderMatch, ...] = ()
    method: HTTPMethod | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPHeader:
    name: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderModifierFilter:
    type: FilterType  # REQUEST_HEADER_MODIFIER or RESPONSE_HEADER_MODIFIER
    set: tuple[HTTPHeader, ...] = ()
    add: tuple[HTTPHeader, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PathModifier:
    type: PathModifierType
    # The full path, or the prefix that replaces the matched PathPrefix.
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRedirectFilter:
    type: FilterType = FilterType.REQUEST_REDIRECT
    scheme: str | None = None  # "http" | "https"
    hostname: str | None = None
    path: PathModifier | None = None
    port: int | None = None
    status_code: int = 302


@dataclass(frozen=True, slots=True, kw_only=True)
class URLRewriteFilter:
    type: FilterType = FilterType.URL_REWRITE
    hostname: str | None = None
    path: PathModifier | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendObjectRef:
    """A backend without weight or filters (RequestMirror's target)."""

    group: str = CORE_GROUP
    kind: str = "Service"
    namespace: str
    name: str
    port: int | None = None

    @property
    def service_ref(self) -> ObjectRef | None:
        if self.group == CORE_GROUP and self.kind == "Service":
            return ObjectRef.service(self.namespace, self.name)
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestMirrorFilter:
    type: FilterType = FilterType.REQUEST_MIRROR
    backend: BackendObjectRef
    # Fraction of requests mirrored (numerator, denominator); (100, 100) when neither percent nor fraction.
    numerator: int = 100
    denominator: int = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtensionRefFilter:
    """Kept so translation can report it as unsupported (and drop the rule, as the spec says)."""

    type: FilterType = FilterType.EXTENSION_REF
    group: str
    kind: str
    name: str


HTTPRouteFilter = (
    HeaderModifierFilter | RequestRedirectFilter | URLRewriteFilter | RequestMirrorFilter | ExtensionRefFilter
)
GRPCRouteFilter = HeaderModifierFilter | RequestMirrorFilter | ExtensionRefFilter


@dataclass(frozen=True, slots=True, kw_only=True)
class _Backend:
    """What HTTPRoute and GRPCRoute backendRefs share; they differ only in the filters they allow."""

    group: str = CORE_GROUP
    kind: str = "Service"
    namespace: str
    name: str
    port: int | None = None
    weight: int = 1

    @property
    def service_ref(self) -> ObjectRef | None:
        """The Service it names; None for other kinds (translation reports those as unsupported)."""
        if self.group == CORE_GROUP and self.kind == "Service":
            return ObjectRef.service(self.namespace, self.name)
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendRef(_Backend):
    filters: tuple[HTTPRouteFilter, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteTimeouts:
    # Whole request, client to last response byte; zero disables it.
    request: Duration | None = None
    # Each try to a backend.
    backend_request: Duration | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRetry:
    """Gateway API v1.2 `retry`: None fields fall back to the implementation's defaults."""

    attempts: int | None = None
    backoff: Duration | None = None
    codes: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPRouteRule:
    name: str | None = None
    # Never empty: a rule without matches gets the API default, one `PathPrefix /` match.
    matches: tuple[HTTPRouteMatch, ...] = (HTTPRouteMatch(),)
    filters: tuple[HTTPRouteFilter, ...] = ()
    backend_refs: tuple[BackendRef, ...] = ()
    timeouts: RouteTimeouts | None = None
    retry: RouteRetry | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPRoute:
    namespace: str
    name: str
    generation: int = 0
    # metadata.creationTimestamp (RFC 3339, UTC, e.g. `2024-05-01T10:00:00Z`), "" when unknown: the
    # Gateway API breaks precedence ties by it (oldest first).
    creation_timestamp: str = ""
    parent_refs: tuple[ParentRef, ...] = ()
    hostnames: tuple[str, ...] = ()
    rules: tuple[HTTPRouteRule, ...] = ()

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(kind=Kind.HTTP_ROUTE, namespace=self.namespace, name=self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class GRPCMethodMatch:
    type: MatchType = MatchType.EXACT
    # Fully-qualified service (`pkg.Service`); None matches any.
    service: str | None = None
    method: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GRPCRouteMatch:
    method: GRPCMethodMatch | None = None
    headers: tuple[HeaderMatch, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class GRPCBackendRef(_Backend):
    filters: tuple[GRPCRouteFilter, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class GRPCRouteRule:
    name: str | None = None
    # Empty: match every request.
    matches: tuple[GRPCRouteMatch, ...] = ()
    filters: tuple[GRPCRouteFilter, ...] = ()
    backend_refs: tuple[GRPCBackendRef, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class GRPCRoute:
    namespace: str
    name: str
    generation: int = 0
    # metadata.creationTimestamp (RFC 3339, UTC, e.g. `2024-05-01T10:00:00Z`), "" when unknown: the
    # Gateway API breaks precedence ties by it (oldest first).
    creation_timestamp: str = ""
    parent_refs: tuple[ParentRef, ...] = ()
    hostnames: tuple[str, ...] = ()
    rules: tuple[GRPCRouteRule, ...] = ()

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(kind=Kind.GRPC_ROUTE, namespace=self.namespace, name=self.name)


Route = HTTPRoute | GRPCRoute


def parent_services(route: Route) -> frozenset[ObjectRef]:
    """The Services a route attaches to (GAMMA parents); Gateway parents are not the mesh's."""
    return frozenset(ref for p in route.parent_refs if (ref := p.service_ref) is not None)


def backend_services(route: Route) -> frozenset[ObjectRef]:
    """Every Service a route sends (or mirrors) traffic to."""
    refs: set[ObjectRef] = set()
    for rule in route.rules:
        for backend in rule.backend_refs:
            if (ref := backend.service_ref) is not None:
                refs.add(ref)
            refs.update(_mirror_targets(backend.filters))
        refs.update(_mirror_targets(rule.filters))
    return frozenset(refs)


def _mirror_targets(filters: tuple[HTTPRouteFilter, ...] | tuple[GRPCRouteFilter, ...]) -> set[ObjectRef]:
    return {
        ref
        for f in filters
        if isinstance(f, RequestMirrorFilter) and (ref := f.backend.service_ref) is not None
    }
