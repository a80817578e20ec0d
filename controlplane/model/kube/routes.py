"""Gateway API HTTPRoute and GRPCRoute from their API JSON, with the schema's and CEL rules' checks.

The CRD's OpenAPI schema and CEL rules are enforced by a real API server, but not on objects read from
files, so the checks that matter to translation are repeated here.
"""

from __future__ import annotations

import re
from typing import Final

from controlplane.model.diagnostics import Reason, Severity
from controlplane.model.duration import Duration
from controlplane.model.kube.fields import JSON, Reader, sub
from controlplane.model.routes import (
    GATEWAY_GROUP,
    BackendObjectRef,
    BackendRef,
    ExtensionRefFilter,
    FilterType,
    GRPCBackendRef,
    GRPCMethodMatch,
    GRPCRoute,
    GRPCRouteFilter,
    GRPCRouteMatch,
    GRPCRouteRule,
    HeaderMatch,
    HeaderModifierFilter,
    HTTPHeader,
    HTTPMethod,
    HTTPRoute,
    HTTPRouteFilter,
    HTTPRouteMatch,
    HTTPRouteRule,
    MatchType,
    ParentRef,
    PathMatch,
    PathMatchType,
    PathModifier,
    PathModifierType,
    RequestMirrorFilter,
    RequestRedirectFilter,
    RouteRetry,
    RouteTimeouts,
    URLRewriteFilter,
)

HOSTNAME_RE: Final = re.compile(r"(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
HEADER_NAME_RE: Final = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")
SECTION_NAME_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
GRPC_SERVICE_RE: Final = re.compile(r"\.?[a-zA-Z_][a-zA-Z_0-9]*(\.[a-zA-Z_][a-zA-Z_0-9]*)*")
GRPC_METHOD_RE: Final = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
REDIRECT_CODES: Final = (301, 302, 303, 307, 308)
MAX_WEIGHT: Final = 1_000_000

_SPEC_FIELDS: Final = ("parentRefs", "hostnames", "rules")
_PARENT_FIELDS: Final = ("group", "kind", "namespace", "name", "sectionName", "port")
_HTTP_RULE_FIELDS: Final = (
    "name",
    "matches",
    "filters",
    "backendRefs",
    "timeouts",
    "retry",
    "sessionPersistence",
)
_GRPC_RULE_FIELDS: Final = ("name", "matches", "filters", "backendRefs", "sessionPersistence")
_HTTP_MATCH_FIELDS: Final = ("path", "headers", "queryParams", "method")
_HEADER_MATCH_FIELDS: Final = ("type", "name", "value")
_FILTER_FIELDS: Final = (
    "type",
    "requestHeaderModifier",
    "responseHeaderModifier",
    "requestMirror",
    "requestRedirect",
    "urlRewrite",
    "extensionRef",
)
_FILTER_FIELD_BY_TYPE: Final = {
    FilterType.REQUEST_HEADER_MODIFIER: "requestHeaderModifier",
    FilterType.RESPONSE_HEADER_MODIFIER: "responseHeaderModifier",
    FilterType.REQUEST_MIRROR: "requestMirror",
    FilterType.REQUEST_REDIRECT: "requestRedirect",
    FilterType.URL_REWRITE: "urlRewrite",
    FilterType.EXTENSION_REF: "extensionRef",
}
_GRPC_FILTER_TYPES: Final = frozenset(
    {
        FilterType.REQUEST_HEADER_MODIFIER,
        FilterType.RESPONSE_HEADER_MODIFIER,
        FilterType.REQUEST_MIRROR,
        FilterType.EXTENSION_REF,
    }
)


def _parent_refs(r: Reader, spec: JSON, namespace: str) -> tuple[ParentRef, ...]:
    refs = []
    for path, p in r.mappings(spec, "parentRefs", "spec", known=_PARENT_FIELDS, max_items=32):
        name = r.string(p, "name", path, required=True, min_length=1, max_length=253)
        port = r.integer(p, "port", path, minimum=1, maximum=65535)
        section = r.string(p, "sectionName", path, pattern=SECTION_NAME_RE, hint="a valid section name")
        group = r.string(p, "group", path)
        kind = r.string(p, "kind", path)
        if name is None:
            continue
        refs.append(
            ParentRef(
                group=group if group is not None else GATEWAY_GROUP,
                kind=kind or "Gateway",
                namespace=r.string(p, "namespace", path) or namespace,
                name=name,
                section_name=section,
                port=port,
            )
        )
    return tuple(refs)


def _hostnames(r: Reader, spec: JSON) -> tuple[str, ...]:
    out = []
    for path, h in r.items(spec, "hostnames", "spec", max_items=16):
        if not isinstance(h, str) or not HOSTNAME_RE.fullmatch(h) or len(h) > 253:
            r.report(
                path, Reason.INVALID_VALUE, f"{h!r} is not a valid hostname (optionally prefixed with *.)"
            )
        else:
            out.append(h)
    return tuple(out)


def _header_matches(r: Reader, m: JSON, key: str, path: str) -> tuple[HeaderMatch, ...]:
    out = []
    seen: set[str] = set()
    for item_path, h in r.mappings(m, key, path, known=_HEADER_MATCH_FIELDS, max_items=16):
        match_type = r.enum(h, "type", item_path, MatchType) or MatchType.EXACT
        name = r.string(h, "name", item_path, required=True, pattern=HEADER_NAME_RE, hint="a valid name")
        value = r.string(h, "value", item_path, required=True, max_length=4096)
        if name is None or value is None:
            continue
        folded = name.lower() if key == "headers" else name
        if folded in seen:
            # The spec: only the first match for a given name counts; say so rather than drop silently.
            r.report(
                sub(item_path, "name"), Reason.INVALID_VALUE, f"{name!r} is matched twice", Severity.WARNING
            )
            continue
        seen.add(folded)
        if match_type is MatchType.REGULAR_EXPRESSION and not r.regex(value, sub(item_path, "value")):
            continue
        out.append(HeaderMatch(type=match_type, name=name, value=value))
    return tuple(out)


def _path_match(r: Reader, m: JSON, path: str) -> PathMatch:
    p = r.mapping(m, "path", path, known=("type", "value"))
    if p is None:
        return PathMatch()
    here = sub(path, "path")
    match_type = r.enum(p, "type", here, PathMatchType) or PathMatchType.PATH_PREFIX
    value = r.string(p, "value", here, max_length=1024)
    if value is None:
        value = "/"
    if match_type is PathMatchType.REGULAR_EXPRESSION:
        r.regex(value, sub(here, "value"))
    elif not value.startswith("/"):
        r.report(sub(here, "value"), Reason.INVALID_VALUE, f"path {value!r} must be absolute (start with /)")
    elif any(bad in value for bad in ("//", "/./", "/../", "%2f", "%2F", "#")) or value.endswith(
        ("/..", "/.")
    ):
        r.report(sub(here, "value"), Reason.INVALID_VALUE, f"path {value!r} is not normalized")
    return PathMatch(type=match_type, value=value)


def _http_matches(r: Reader, rule: JSON, path: str) -> tuple[HTTPRouteMatch, ...]:
    matches = []
    for match_path, m in r.mappings(rule, "matches", path, known=_HTTP_MATCH_FIELDS, max_items=64):
        matches.append(
            HTTPRouteMatch(
                path=_path_match(r, m, match_path),
                headers=_header_matches(r, m, "headers", match_path),
                query_params=_header_matches(r, m, "queryParams", match_path),
                method=r.enum(m, "method", match_path, HTTPMethod),
            )
        )
    return tuple(matches) if matches else (HTTPRouteMatch(),)


def _headers(r: Reader, m: JSON, key: str, path: str) -> tuple[HTTPHeader, ...]:
    out = []
    for item_path, h in r.mappings(m, key, path, known=("name", "value"), max_items=16):
        name = r.string(
            h, "name", item_path, required=True, pattern=HEADER_NAME_RE, hint="a valid header name"
        )
        value = r.string(h, "value", item_path, required=True, max_length=4096)
        if name is not None and value is not None:
            out.append(HTTPHeader(name=name, value=value))
    return tuple(out)


def _header_modifier(r: Reader, m: JSON, path: str, filter_type: FilterType) -> HeaderModifierFilter:
    r.check_fields(m, path, ("set", "add", "remove"))
    return HeaderModifierFilter(
        type=filter_type,
        set=_headers(r, m, "set", path),
        add=_headers(r, m, "add", path),
        remove=tuple(r.strings(m, "remove", path, max_items=16)),
    )


def _path_modifier(r: Reader, m: JSON, path: str) -> PathModifier | None:
    p = r.mapping(m, "path", path, known=("type", "replaceFullPath", "replacePrefixMatch"))
    if p is None:
        return None
    here = sub(path, "path")
    modifier_type = r.enum(p, "type", here, PathModifierType, required=True)
    if modifier_type is None:
        return None
    key = "replaceFullPath" if modifier_type is PathModifierType.REPLACE_FULL_PATH else "replacePrefixMatch"
    other = "replacePrefixMatch" if key == "replaceFullPath" else "replaceFullPath"
    if p.get(other) is not None:
        r.report(
            sub(here, other),
            Reason.CONFLICTING_FIELDS,
            f"{other} must not be set when type is {modifier_type}",
        )
    value = r.string(p, key, here, required=True, max_length=1024)
    if value is not None and not value.startswith("/"):
        r.report(sub(here, key), Reason.INVALID_VALUE, f"{value!r} must start with /")
        return None
    return PathModifier(type=modifier_type, value=value) if value is not None else None


def _backend_object_ref(r: Reader, m: JSON, path: str, namespace: str) -> BackendObjectRef | None:
    r.check_fields(m, path, ("group", "kind", "name", "namespace", "port"))
    name = r.string(m, "name", path, required=True, min_length=1)
    port = r.integer(m, "port", path, minimum=1, maximum=65535)
    group = r.string(m, "group", path) or ""
    kind = r.string(m, "kind", path) or "Service"
    if port is None and group == "" and kind == "Service":
        r.report(sub(path, "port"), Reason.MISSING_FIELD, "port is required for a Service backend")
    if name is None:
        return None
    return BackendObjectRef(
        group=group, kind=kind, namespace=r.string(m, "namespace", path) or namespace, name=name, port=port
    )


def _mirror(r: Reader, m: JSON, path: str, namespace: str) -> RequestMirrorFilter | None:
    r.check_fields(m, path, ("backendRef", "percent", "fraction"))
    backend_json = r.mapping(m, "backendRef", path, required=True)
    backend = (
        _backend_object_ref(r, backend_json, sub(path, "backendRef"), namespace) if backend_json else None
    )
    numerator, denominator = 100, 100
    if m.get("percent") is not None and m.get("fraction") is not None:
        r.report(path, Reason.CONFLICTING_FIELDS, "only one of percent and fraction may be set")
    percent = r.integer(m, "percent", path, minimum=0, maximum=100)
    if percent is not None:
        numerator = percent
    fraction = r.mapping(m, "fraction", path, known=("numerator", "denominator"))
    if fraction is not None:
        here = sub(path, "fraction")
        numerator = r.integer(fraction, "numerator", here, required=True, minimum=0) or 0
        denominator = r.integer(fraction, "denominator", here, minimum=1) or 100
        if numerator > denominator:
            r.report(here, Reason.OUT_OF_RANGE, "numerator must not be greater than denominator")
    if backend is None:
        return None
    return RequestMirrorFilter(backend=backend, numerator=numerator, denominator=denominator)


def _filter(
    r: Reader, f: JSON, path: str, namespace: str, allowed: frozenset[FilterType] | None
) -> HTTPRouteFilter | None:
    filter_type = r.enum(f, "type", path, FilterType, required=True)
    if filter_type is None:
        return None
    if allowed is not None and filter_type not in allowed:
        r.report(
            sub(path, "type"), Reason.UNSUPPORTED_VALUE, f"filter type {filter_type} is not allowed here"
        )
        return None
    key = _FILTER_FIELD_BY_TYPE[filter_type]
    for other in _FILTER_FIELD_BY_TYPE.values():
        if other != key and f.get(other) is not None:
            r.report(
                sub(path, other), Reason.CONFLICTING_FIELDS, f"{other} must not be set for type {filter_type}"
            )
    body = r.mapping(f, key, path, required=True)
    if body is None:
        return None
    here = sub(path, key)
    match filter_type:
        case FilterType.REQUEST_HEADER_MODIFIER | FilterType.RESPONSE_HEADER_MODIFIER:
            return _header_modifier(r, body, here, filter_type)
        case FilterType.REQUEST_REDIRECT:
            r.check_fields(body, here, ("scheme", "hostname", "path", "port", "statusCode"))
            scheme = r.string(body, "scheme", here)
            if scheme is not None and scheme not in ("http", "https"):
                r.report(
                    sub(here, "scheme"), Reason.UNSUPPORTED_VALUE, f"scheme {scheme!r} must be http or https"
                )
            status = r.integer(body, "statusCode", here)
            if status is not None and status not in REDIRECT_CODES:
                r.report(
                    sub(here, "statusCode"),
                    Reason.UNSUPPORTED_VALUE,
                    f"status code {status} is not a redirect",
                )
            hostname = r.string(body, "hostname", here, pattern=HOSTNAME_RE, hint="a valid hostname")
            return RequestRedirectFilter(
                scheme=scheme,
                hostname=hostname,
                path=_path_modifier(r, body, here),
                port=r.integer(body, "port", here, minimum=1, maximum=65535),
                status_code=status if status is not None else 302,
            )
        case FilterType.URL_REWRITE:
            r.check_fields(body, here, ("hostname", "path"))
            hostname = r.string(body, "hostname", here, pattern=HOSTNAME_RE, hint="a valid hostname")
            return URLRewriteFilter(hostname=hostname, path=_path_modifier(r, body, here))
        case FilterType.REQUEST_MIRROR:
            return _mirror(r, body, here, namespace)
        case FilterType.EXTENSION_REF:
            r.check_fields(body, here, ("group", "kind", "name"))
            group = r.string(body, "group", here, required=True)
            kind = r.string(body, "kind", here, required=True)
            name = r.string(body, "name", here, required=True)
            if group is None or kind is None or name is None:
                return None
            return ExtensionRefFilter(group=group, kind=kind, name=name)


def _filters(
    r: Reader, m: JSON, path: str, namespace: str, allowed: frozenset[FilterType] | None = None
) -> tuple[HTTPRouteFilter, ...]:
    out: list[HTTPRouteFilter] = []
    for filter_path, f in r.mappings(m, "filters", path, known=_FILTER_FIELDS, max_items=16):
        converted = _filter(r, f, filter_path, namespace, allowed)
        if converted is not None:
            out.append(converted)
    types = [f.type for f in out]
    for filter_type in set(types):
        if (
            filter_type not in (FilterType.REQUEST_MIRROR, FilterType.EXTENSION_REF)
            and types.count(filter_type) > 1
        ):
            r.report(sub(path, "filters"), Reason.CONFLICTING_FIELDS, f"{filter_type} may appear only once")
    if FilterType.REQUEST_REDIRECT in types and FilterType.URL_REWRITE in types:
        r.report(
            sub(path, "filters"),
            Reason.CONFLICTING_FIELDS,
            "RequestRedirect and URLRewrite cannot both be used",
        )
    return tuple(out)


def _backend_ref_common(r: Reader, b: JSON, path: str) -> tuple[str, str, str | None, int | None, int]:
    group = r.string(b, "group", path) or ""
    kind = r.string(b, "kind", path) or "Service"
    name = r.string(b, "name", path, required=True, min_length=1, max_length=253)
    port = r.integer(b, "port", path, minimum=1, maximum=65535)
    weight = r.integer(b, "weight", path, minimum=0, maximum=MAX_WEIGHT)
    if port is None and group == "" and kind == "Service":
        r.report(sub(path, "port"), Reason.MISSING_FIELD, "port is required for a Service backend")
    return group, kind, name, port, weight if weight is not None else 1


_BACKEND_FIELDS: Final = ("group", "kind", "name", "namespace", "port", "weight", "filters")


def _timeouts(r: Reader, rule: JSON, path: str) -> RouteTimeouts | None:
    t = r.mapping(rule, "timeouts", path, known=("request", "backendRequest"))
    if t is None:
        return None
    here = sub(path, "timeouts")
    request = r.duration(t, "request", here, gateway=True)
    backend = r.duration(t, "backendRequest", here, gateway=True)
    if request and backend and backend > request:
        r.report(sub(here, "backendRequest"), Reason.OUT_OF_RANGE, "backendRequest must not exceed request")
    return RouteTimeouts(request=request, backend_request=backend)


def _retry(r: Reader, rule: JSON, path: str) -> RouteRetry | None:
    m = r.mapping(rule, "retry", path, known=("codes", "attempts", "backoff"))
    if m is None:
        return None
    here = sub(path, "retry")
    codes = []
    for code_path, code in r.items(m, "codes", here):
        value = r.as_integer(code, code_path, minimum=400, maximum=599)
        if value is not None:
            codes.append(value)
    backoff: Duration | None = r.duration(m, "backoff", here, gateway=True)
    return RouteRetry(attempts=r.integer(m, "attempts", here, minimum=0), backoff=backoff, codes=tuple(codes))


def _check_prefix_rewrites(
    r: Reader, rule_path: str, filters: tuple[HTTPRouteFilter, ...], matches: tuple[HTTPRouteMatch, ...]
) -> None:
    needs_one_prefix = any(
        isinstance(f, RequestRedirectFilter | URLRewriteFilter)
        and f.path is not None
        and f.path.type is PathModifierType.REPLACE_PREFIX_MATCH
        for f in filters
    )
    if needs_one_prefix and (len(matches) != 1 or matches[0].path.type is not PathMatchType.PATH_PREFIX):
        r.report(
            sub(rule_path, "filters"),
            Reason.CONFLICTING_FIELDS,
            "a ReplacePrefixMatch path modifier needs exactly one PathPrefix match in its rule",
        )


def convert_http_route(r: Reader, obj: JSON, meta: JSON, namespace: str, name: str) -> HTTPRoute:
    spec = r.mapping(obj, "spec", "", known=_SPEC_FIELDS) or {}
    rules = []
    for rule_path, rule in r.mappings(spec, "rules", "spec", known=_HTTP_RULE_FIELDS, max_items=16):
        matches = _http_matches(r, rule, rule_path)
        filters = _filters(r, rule, rule_path, namespace)
        _check_prefix_rewrites(r, rule_path, filters, matches)
        backends = []
        for b_path, b in r.mappings(rule, "backendRefs", rule_path, known=_BACKEND_FIELDS, max_items=16):
            group, kind, backend_name, port, weight = _backend_ref_common(r, b, b_path)
            backend_filters = _filters(r, b, b_path, namespace)
            _check_prefix_rewrites(r, b_path, backend_filters, matches)
            if backend_name is not None:
                backends.append(
                    BackendRef(
                        group=group,
                        kind=kind,
                        namespace=r.string(b, "namespace", b_path) or namespace,
                        name=backend_name,
                        port=port,
                        weight=weight,
                        filters=backend_filters,
                    )
                )
        rules.append(
            HTTPRouteRule(
                name=r.string(rule, "name", rule_path, pattern=SECTION_NAME_RE, hint="a valid rule name"),
                matches=matches,
                filters=filters,
                backend_refs=tuple(backends),
                timeouts=_timeouts(r, rule, rule_path),
                retry=_retry(r, rule, rule_path),
            )
        )
    return HTTPRoute(
        namespace=namespace,
        name=name,
        generation=_generation(meta),
        creation_timestamp=_creation_timestamp(meta),
        parent_refs=_parent_refs(r, spec, namespace),
        hostnames=_hostnames(r, spec),
        rules=tuple(rules),
    )


def _grpc_method(r: Reader, m: JSON, path: str) -> GRPCMethodMatch | None:
    method = r.mapping(m, "method", path, known=("type", "service", "method"))
    if method is None:
        return None
    here = sub(path, "method")
    match_type = r.enum(method, "type", here, MatchType) or MatchType.EXACT
    service = r.string(method, "service", here, max_length=1024)
    name = r.string(method, "method", here, max_length=1024)
    if service is None and name is None:
        r.report(here, Reason.MISSING_FIELD, "one or both of service and method must be specified")
    for key, value, pattern in (("service", service, GRPC_SERVICE_RE), ("method", name, GRPC_METHOD_RE)):
        if value is None:
            continue
        if match_type is MatchType.REGULAR_EXPRESSION:
            r.regex(value, sub(here, key))
        elif not pattern.fullmatch(value):
            r.report(sub(here, key), Reason.INVALID_VALUE, f"{value!r} is not a valid gRPC {key} name")
    return GRPCMethodMatch(type=match_type, service=service, method=name)


def _grpc_filters(r: Reader, m: JSON, path: str, namespace: str) -> tuple[GRPCRouteFilter, ...]:
    out: list[GRPCRouteFilter] = []
    for f in _filters(r, m, path, namespace, _GRPC_FILTER_TYPES):
        if isinstance(f, HeaderModifierFilter | RequestMirrorFilter | ExtensionRefFilter):
            out.append(f)
    return tuple(out)


def convert_grpc_route(r: Reader, obj: JSON, meta: JSON, namespace: str, name: str) -> GRPCRoute:
    spec = r.mapping(obj, "spec", "", known=_SPEC_FIELDS) or {}
    rules = []
    for rule_path, rule in r.mappings(spec, "rules", "spec", known=_GRPC_RULE_FIELDS, max_items=16):
        matches = tuple(
            GRPCRouteMatch(
                method=_grpc_method(r, m, match_path), headers=_header_matches(r, m, "headers", match_path)
            )
            for match_path, m in r.mappings(
                rule, "matches", rule_path, known=("method", "headers"), max_items=64
            )
        )
        backends = []
        for b_path, b in r.mappings(rule, "backendRefs", rule_path, known=_BACKEND_FIELDS, max_items=16):
            group, kind, backend_name, port, weight = _backend_ref_common(r, b, b_path)
            backend_filters = _grpc_filters(r, b, b_path, namespace)
            if backend_name is not None:
                backends.append(
                    GRPCBackendRef(
                        group=group,
                        kind=kind,
                        namespace=r.string(b, "namespace", b_path) or namespace,
                        name=backend_name,
                        port=port,
                        weight=weight,
                        filters=backend_filters,
                    )
                )
        rules.append(
            GRPCRouteRule(
                name=r.string(rule, "name", rule_path, pattern=SECTION_NAME_RE, hint="a valid rule name"),
                matches=matches,
                filters=_grpc_filters(r, rule, rule_path, namespace),
                backend_refs=tuple(backends),
            )
        )
    return GRPCRoute(
        namespace=namespace,
        name=name,
        generation=_generation(meta),
        creation_timestamp=_creation_timestamp(meta),
        parent_refs=_parent_refs(r, spec, namespace),
        hostnames=_hostnames(r, spec),
        rules=tuple(rules),
    )


def _generation(meta: JSON) -> int:
    value = meta.get("generation")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _creation_timestamp(meta: JSON) -> str:
    value = meta.get("creationTimestamp")
    return value if isinstance(value, str) else ""
