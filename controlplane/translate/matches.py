"""Gateway API matches as Envoy RouteMatches, and the precedence order the spec gives them.

HTTPRoute precedence (Gateway API v1): an Exact path, then the longest prefix (characters), then a method
match, then the most header matches, then the most query-parameter matches; ties go to the oldest route
(creationTimestamp), then to `namespace/name` alphabetically, then to rule and match order within the route.
Regular-expression paths are implementation-specific: they rank after Exact and before any prefix.

GRPCRoute precedence: the most characters of service, then of method, then the most header matches (with
Exact method matches before RegularExpression ones); then the same tie-breaks.
"""

from __future__ import annotations

import re

from envoy.config.route.v3 import route_components_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2

from controlplane.model.routes import (
    GRPCRoute,
    GRPCRouteMatch,
    HeaderMatch,
    HTTPRoute,
    HTTPRouteMatch,
    MatchType,
    PathMatchType,
)

PrecedenceKey = tuple[object, ...]

_PATH_RANK = {PathMatchType.EXACT: 0, PathMatchType.REGULAR_EXPRESSION: 1, PathMatchType.PATH_PREFIX: 2}


def _string_match(match_type: MatchType, value: str) -> string_pb2.StringMatcher:
    if match_type is MatchType.REGULAR_EXPRESSION:
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=value))
    return string_pb2.StringMatcher(exact=value)


def _headers(headers: tuple[HeaderMatch, ...]) -> list[route_components_pb2.HeaderMatcher]:
    return [
        route_components_pb2.HeaderMatcher(name=h.name.lower(), string_match=_string_match(h.type, h.value))
        for h in headers
    ]


def normalized_prefix(value: str) -> str:
    """A PathPrefix without its trailing slash (`/foo/` matches like `/foo`); `/` stays `/`."""
    stripped = value.rstrip("/")
    return stripped or "/"


def route_ordering(route: HTTPRoute | GRPCRoute) -> tuple[bool, str, str, str]:
    """Oldest first (unknown timestamps last), then namespace/name."""
    ts = route.creation_timestamp
    return (ts == "", ts, route.namespace, route.name)


def http_route_match(match: HTTPRouteMatch) -> route_components_pb2.RouteMatch:
    rm = route_components_pb2.RouteMatch()
    path = match.path
    if path.type is PathMatchType.EXACT:
        rm.path = path.value
    elif path.type is PathMatchType.REGULAR_EXPRESSION:
        rm.safe_regex.regex = path.value
    else:
        prefix = normalized_prefix(path.value)
        if prefix == "/":
            rm.prefix = "/"
        else:
            # Segment-aware: `/foo` matches `/foo` and `/foo/bar`, not `/foobar`.
            rm.path_separated_prefix = prefix
    rm.headers.extend(_headers(match.headers))
    if match.method is not None:
        rm.headers.append(
            route_components_pb2.HeaderMatcher(
                name=":method", string_match=string_pb2.StringMatcher(exact=match.method.value)
            )
        )
    rm.query_parameters.extend(
        route_components_pb2.QueryParameterMatcher(name=q.name, string_match=_string_match(q.type, q.value))
        for q in match.query_params
    )
    return rm


def http_precedence(match: HTTPRouteMatch, route: HTTPRoute, rule: int, index: int) -> PrecedenceKey:
    path = match.path
    length = len(normalized_prefix(path.value)) if path.type is PathMatchType.PATH_PREFIX else len(path.value)
    # "/" is shorter than any other prefix even though "/foo/" normalizes to 4 characters.
    return (
        _PATH_RANK[path.type],
        -length,
        match.method is None,
        -len(match.headers),
        -len(match.query_params),
        route_ordering(route),
        rule,
        index,
    )


_GRPC_NAME = "[^/]+"


def grpc_route_match(match: GRPCRouteMatch | None) -> route_components_pb2.RouteMatch:
    """gRPC calls are POSTs to `/<package.Service>/<Method>`; a missing part matches any."""
    rm = route_components_pb2.RouteMatch()
    method = match.method if match is not None else None
    if method is None:
        rm.prefix = "/"
    elif method.type is MatchType.REGULAR_EXPRESSION:
        rm.safe_regex.regex = f"/{method.service or _GRPC_NAME}/{method.method or _GRPC_NAME}"
    elif method.service and method.method:
        rm.path = f"/{method.service}/{method.method}"
    elif method.service:
        rm.path_separated_prefix = f"/{method.service}"
    else:
        rm.safe_regex.regex = f"/{_GRPC_NAME}/{re.escape(method.method or '')}"
    if match is not None:
        rm.headers.extend(_headers(match.headers))
    return rm


def grpc_precedence(match: GRPCRouteMatch | None, route: GRPCRoute, rule: int, index: int) -> PrecedenceKey:
    method = match.method if match is not None else None
    regex = method is not None and method.type is MatchType.REGULAR_EXPRESSION
    return (
        regex,
        -len(method.service or "") if method is not None else 0,
        -len(method.method or "") if method is not None else 0,
        -len(match.headers) if match is not None else 0,
        route_ordering(route),
        rule,
        index,
    )
