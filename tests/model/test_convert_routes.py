"""HTTPRoute and GRPCRoute conversion: defaults applied, and every invalid field reported where it is."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.model.diagnostics import Reason, Severity
from controlplane.model.duration import Duration
from controlplane.model.kube import convert
from controlplane.model.refs import ObjectRef
from controlplane.model.routes import (
    BackendRef,
    ExtensionRefFilter,
    FilterType,
    GRPCMethodMatch,
    GRPCRoute,
    HeaderMatch,
    HeaderModifierFilter,
    HTTPHeader,
    HTTPMethod,
    HTTPRoute,
    HTTPRouteMatch,
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
    backend_services,
    parent_services,
)
from tests.model.builders import grpc_route, http_route, with_path


def _route(obj: dict[str, Any]) -> HTTPRoute:
    result = convert(obj)
    assert [str(d) for d in result.diagnostics] == []
    assert isinstance(result.obj, HTTPRoute)
    return result.obj


def test_defaults_are_applied() -> None:
    route = _route(http_route())
    assert route.generation == 3
    assert route.parent_refs == (
        ParentRef(group="", kind="Service", namespace="shop", name="reviews", port=9080),
    )
    (rule,) = route.rules
    assert rule.matches == (HTTPRouteMatch(path=PathMatch(type=PathMatchType.PATH_PREFIX, value="/")),)
    assert rule.backend_refs == (BackendRef(namespace="shop", name="reviews-v1", port=9080, weight=1),)
    assert parent_services(route) == {ObjectRef.service("shop", "reviews")}


def test_creation_timestamp_is_kept_for_precedence_ties() -> None:
    stamped = with_path(http_route(), "metadata.creationTimestamp", "2024-05-01T10:00:00Z")
    assert _route(stamped).creation_timestamp == "2024-05-01T10:00:00Z"
    assert _route(http_route()).creation_timestamp == ""
    grpc = with_path(
        grpc_route([{"backendRefs": [{"name": "ratings", "port": 9090}]}]),
        "metadata.creationTimestamp",
        "2023-01-02T03:04:05Z",
    )
    result = convert(grpc)
    assert isinstance(result.obj, GRPCRoute)
    assert result.obj.creation_timestamp == "2023-01-02T03:04:05Z"


def test_gateway_parent_is_not_a_service_parent() -> None:
    route = _route(http_route(parentRefs=[{"name": "gw", "sectionName": "https"}]))
    (parent,) = route.parent_refs
    assert (parent.group, parent.kind, parent.is_service) == ("gateway.networking.k8s.io", "Gateway", False)
    assert parent_services(route) == frozenset()


def test_full_rule() -> None:
    rule = {
        "name": "canary",
        "matches": [
            {
                "path": {"type": "Exact", "value": "/api/v1/reviews"},
                "headers": [
                    {"name": "x-user", "value": "tester"},
                    {"type": "RegularExpression", "name": "x-tier", "value": "gold|silver"},
                ],
                "queryParams": [{"name": "debug", "value": "1"}],
                "method": "GET",
            },
            {"path": {"type": "RegularExpression", "value": "/items/[0-9]+"}},
        ],
        "filters": [
            {
                "type": "RequestHeaderModifier",
                "requestHeaderModifier": {"set": [{"name": "x-a", "value": "1"}]},
            },
            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"remove": ["server"]}},
            {
                "type": "RequestMirror",
                "requestMirror": {"backendRef": {"name": "shadow", "port": 80}, "percent": 25},
            },
            {"type": "ExtensionRef", "extensionRef": {"group": "example.io", "kind": "Magic", "name": "m"}},
        ],
        "backendRefs": [
            {"name": "reviews-v1", "port": 9080, "weight": 90},
            {
                "name": "reviews-v2",
                "namespace": "shop-canary",
                "port": 9080,
                "weight": 0,
                "filters": [
                    {
                        "type": "RequestHeaderModifier",
                        "requestHeaderModifier": {"add": [{"name": "x-b", "value": "2"}]},
                    }
                ],
            },
        ],
        "timeouts": {"request": "10s", "backendRequest": "1s500ms"},
        "retry": {"attempts": 3, "backoff": "100ms", "codes": [502, 503]},
    }
    route = _route(http_route([rule], hostnames=["reviews.shop.svc.cluster.local", "*.example.com"]))
    (r,) = route.rules
    assert route.hostnames == ("reviews.shop.svc.cluster.local", "*.example.com")
    assert r.name == "canary"
    assert r.matches[0] == HTTPRouteMatch(
        path=PathMatch(type=PathMatchType.EXACT, value="/api/v1/reviews"),
        headers=(
            HeaderMatch(name="x-user", value="tester"),
            HeaderMatch(type=MatchType.REGULAR_EXPRESSION, name="x-tier", value="gold|silver"),
        ),
        query_params=(HeaderMatch(name="debug", value="1"),),
        method=HTTPMethod.GET,
    )
    assert r.matches[1].path == PathMatch(type=PathMatchType.REGULAR_EXPRESSION, value="/items/[0-9]+")
    assert r.filters[0] == HeaderModifierFilter(
        type=FilterType.REQUEST_HEADER_MODIFIER, set=(HTTPHeader(name="x-a", value="1"),)
    )
    assert r.filters[1] == HeaderModifierFilter(type=FilterType.RESPONSE_HEADER_MODIFIER, remove=("server",))
    mirror = r.filters[2]
    assert isinstance(mirror, RequestMirrorFilter)
    assert (mirror.backend.name, mirror.backend.namespace, mirror.numerator, mirror.denominator) == (
        "shadow",
        "shop",
        25,
        100,
    )
    assert r.filters[3] == ExtensionRefFilter(group="example.io", kind="Magic", name="m")
    assert [(b.namespace, b.name, b.weight) for b in r.backend_refs] == [
        ("shop", "reviews-v1", 90),
        ("shop-canary", "reviews-v2", 0),
    ]
    assert r.backend_refs[1].filters[0].type is FilterType.REQUEST_HEADER_MODIFIER
    assert r.timeouts == RouteTimeouts(
        request=Duration.of(seconds=10), backend_request=Duration.of(milliseconds=1500)
    )
    assert r.retry == RouteRetry(attempts=3, backoff=Duration.of(milliseconds=100), codes=(502, 503))
    assert backend_services(route) == {
        ObjectRef.service("shop", "reviews-v1"),
        ObjectRef.service("shop-canary", "reviews-v2"),
        ObjectRef.service("shop", "shadow"),
    }


def test_redirect_and_rewrite() -> None:
    redirect = {
        "type": "RequestRedirect",
        "requestRedirect": {
            "scheme": "https",
            "hostname": "example.com",
            "port": 8443,
            "statusCode": 301,
            "path": {"type": "ReplaceFullPath", "replaceFullPath": "/new"},
        },
    }
    rewrite = {
        "type": "URLRewrite",
        "urlRewrite": {
            "hostname": "internal",
            "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"},
        },
    }
    route = _route(
        http_route(
            [
                {"filters": [redirect]},
                {"matches": [{"path": {"value": "/v1"}}], "filters": [rewrite], "backendRefs": []},
            ]
        )
    )
    assert route.rules[0].filters == (
        RequestRedirectFilter(
            scheme="https",
            hostname="example.com",
            port=8443,
            status_code=301,
            path=PathModifier(type=PathModifierType.REPLACE_FULL_PATH, value="/new"),
        ),
    )
    assert route.rules[1].filters == (
        URLRewriteFilter(
            hostname="internal", path=PathModifier(type=PathModifierType.REPLACE_PREFIX_MATCH, value="/v2")
        ),
    )


RULE = "spec.rules[0]"
INVALID: list[tuple[str, str, Any, str, Reason]] = [
    # (case id, path to set, value, reported field, reason)
    (
        "negative weight",
        f"{RULE}.backendRefs[0].weight",
        -1,
        f"{RULE}.backendRefs[0].weight",
        Reason.OUT_OF_RANGE,
    ),
    (
        "weight too big",
        f"{RULE}.backendRefs[0].weight",
        1_000_001,
        f"{RULE}.backendRefs[0].weight",
        Reason.OUT_OF_RANGE,
    ),
    (
        "weight not int",
        f"{RULE}.backendRefs[0].weight",
        "ten",
        f"{RULE}.backendRefs[0].weight",
        Reason.WRONG_TYPE,
    ),
    (
        "service backend without port",
        f"{RULE}.backendRefs[0].port",
        ...,
        f"{RULE}.backendRefs[0].port",
        Reason.MISSING_FIELD,
    ),
    (
        "backend without name",
        f"{RULE}.backendRefs[0].name",
        ...,
        f"{RULE}.backendRefs[0].name",
        Reason.MISSING_FIELD,
    ),
    (
        "lookahead regex",
        f"{RULE}.matches",
        [{"path": {"type": "RegularExpression", "value": "/(?!admin).*"}}],
        f"{RULE}.matches[0].path.value",
        Reason.UNSUPPORTED_REGEX,
    ),
    (
        "broken regex",
        f"{RULE}.matches",
        [{"headers": [{"type": "RegularExpression", "name": "x", "value": "a(b"}]}],
        f"{RULE}.matches[0].headers[0].value",
        Reason.INVALID_REGEX,
    ),
    (
        "backreference in query regex",
        f"{RULE}.matches",
        [{"queryParams": [{"type": "RegularExpression", "name": "q", "value": r"(a)\1"}]}],
        f"{RULE}.matches[0].queryParams[0].value",
        Reason.UNSUPPORTED_REGEX,
    ),
    (
        "relative path",
        f"{RULE}.matches",
        [{"path": {"value": "api"}}],
        f"{RULE}.matches[0].path.value",
        Reason.INVALID_VALUE,
    ),
    (
        "unknown path type",
        f"{RULE}.matches",
        [{"path": {"type": "Glob", "value": "/x"}}],
        f"{RULE}.matches[0].path.type",
        Reason.UNSUPPORTED_VALUE,
    ),
    (
        "unknown method",
        f"{RULE}.matches",
        [{"method": "FETCH"}],
        f"{RULE}.matches[0].method",
        Reason.UNSUPPORTED_VALUE,
    ),
    (
        "bad header name",
        f"{RULE}.matches",
        [{"headers": [{"name": "bad header", "value": "v"}]}],
        f"{RULE}.matches[0].headers[0].name",
        Reason.INVALID_VALUE,
    ),
    (
        "fractional duration",
        f"{RULE}.timeouts",
        {"request": "1.5s"},
        f"{RULE}.timeouts.request",
        Reason.INVALID_DURATION,
    ),
    (
        "backendRequest over request",
        f"{RULE}.timeouts",
        {"request": "1s", "backendRequest": "2s"},
        f"{RULE}.timeouts.backendRequest",
        Reason.OUT_OF_RANGE,
    ),
    (
        "retry code not an error",
        f"{RULE}.retry",
        {"codes": [200]},
        f"{RULE}.retry.codes[0]",
        Reason.OUT_OF_RANGE,
    ),
    (
        "unknown filter type",
        f"{RULE}.filters",
        [{"type": "CORS"}],
        f"{RULE}.filters[0].type",
        Reason.UNSUPPORTED_VALUE,
    ),
    (
        "filter without its body",
        f"{RULE}.filters",
        [{"type": "URLRewrite"}],
        f"{RULE}.filters[0].urlRewrite",
        Reason.MISSING_FIELD,
    ),
    (
        "redirect code",
        f"{RULE}.filters",
        [{"type": "RequestRedirect", "requestRedirect": {"statusCode": 200}}],
        f"{RULE}.filters[0].requestRedirect.statusCode",
        Reason.UNSUPPORTED_VALUE,
    ),
    (
        "redirect and rewrite",
        f"{RULE}.filters",
        [
            {"type": "RequestRedirect", "requestRedirect": {"hostname": "a.example"}},
            {"type": "URLRewrite", "urlRewrite": {"hostname": "b.example"}},
        ],
        f"{RULE}.filters",
        Reason.CONFLICTING_FIELDS,
    ),
    (
        "prefix rewrite without prefix match",
        "spec.rules",
        [
            {
                "matches": [{"path": {"type": "Exact", "value": "/a"}}],
                "filters": [
                    {
                        "type": "URLRewrite",
                        "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
                    }
                ],
            }
        ],
        f"{RULE}.filters",
        Reason.CONFLICTING_FIELDS,
    ),
    (
        "mirror percent and fraction",
        f"{RULE}.filters",
        [
            {
                "type": "RequestMirror",
                "requestMirror": {
                    "backendRef": {"name": "m", "port": 1},
                    "percent": 5,
                    "fraction": {"numerator": 1},
                },
            }
        ],
        f"{RULE}.filters[0].requestMirror",
        Reason.CONFLICTING_FIELDS,
    ),
    ("parent port", "spec.parentRefs[0].port", 0, "spec.parentRefs[0].port", Reason.OUT_OF_RANGE),
    ("bad hostname", "spec.hostnames", ["Not_A_Host"], "spec.hostnames[0]", Reason.INVALID_VALUE),
    ("rules not a list", "spec.rules", {"a": 1}, "spec.rules", Reason.WRONG_TYPE),
]


@pytest.mark.parametrize(
    ("path", "value", "field", "reason"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_http_route(path: str, value: Any, field: str, reason: Reason) -> None:
    result = convert(with_path(http_route(), path, value))
    assert result.obj is None
    assert result.ref == ObjectRef(kind="HTTPRoute", namespace="shop", name="reviews")
    errors = [(d.field, d.reason) for d in result.diagnostics if d.severity is Severity.ERROR]
    assert errors == [(field, reason)]
    assert all(d.ref == result.ref for d in result.diagnostics)


def test_several_errors_are_all_reported() -> None:
    obj = with_path(http_route(), f"{RULE}.backendRefs[0].weight", -5)
    obj = with_path(obj, "spec.parentRefs[0].port", 99999)
    result = convert(obj)
    assert sorted(d.field for d in result.diagnostics) == [
        "spec.parentRefs[0].port",
        f"{RULE}.backendRefs[0].weight",
    ]


def test_unknown_gateway_api_field_is_a_warning_and_the_route_is_kept() -> None:
    obj = with_path(http_route(), f"{RULE}.sessionPersistenceTypo", {"x": 1})
    result = convert(obj)
    assert isinstance(result.obj, HTTPRoute)
    assert [(d.severity, d.reason, d.field) for d in result.diagnostics] == [
        (Severity.WARNING, Reason.UNKNOWN_FIELD, f"{RULE}.sessionPersistenceTypo")
    ]


def test_v1beta1_http_route_is_accepted() -> None:
    obj = http_route()
    obj["apiVersion"] = "gateway.networking.k8s.io/v1beta1"
    assert isinstance(convert(obj).obj, HTTPRoute)


def test_grpc_route() -> None:
    route = convert(
        grpc_route(
            [
                {
                    "matches": [
                        {
                            "method": {"service": "shop.Ratings", "method": "Get"},
                            "headers": [{"name": "x-v", "value": "2"}],
                        },
                        {"method": {"type": "RegularExpression", "service": "shop\\..*"}},
                    ],
                    "filters": [
                        {
                            "type": "ResponseHeaderModifier",
                            "responseHeaderModifier": {"add": [{"name": "a", "value": "b"}]},
                        }
                    ],
                    "backendRefs": [{"name": "ratings", "port": 50051, "weight": 3}],
                }
            ]
        )
    ).obj
    assert isinstance(route, GRPCRoute)
    (rule,) = route.rules
    assert rule.matches[0].method == GRPCMethodMatch(service="shop.Ratings", method="Get")
    assert rule.matches[0].headers == (HeaderMatch(name="x-v", value="2"),)
    assert rule.matches[1].method == GRPCMethodMatch(type=MatchType.REGULAR_EXPRESSION, service="shop\\..*")
    assert rule.backend_refs[0].weight == 3
    assert parent_services(route) == {ObjectRef.service("shop", "ratings")}


@pytest.mark.parametrize(
    ("rule", "field", "reason"),
    [
        ({"matches": [{"method": {}}]}, "spec.rules[0].matches[0].method", Reason.MISSING_FIELD),
        (
            {"matches": [{"method": {"service": "bad/name"}}]},
            "spec.rules[0].matches[0].method.service",
            Reason.INVALID_VALUE,
        ),
        (
            {"matches": [{"method": {"type": "RegularExpression", "method": "(?<=x)y"}}]},
            "spec.rules[0].matches[0].method.method",
            Reason.UNSUPPORTED_REGEX,
        ),
        (
            {"filters": [{"type": "URLRewrite", "urlRewrite": {"hostname": "x"}}]},
            "spec.rules[0].filters[0].type",
            Reason.UNSUPPORTED_VALUE,
        ),
        (
            {"backendRefs": [{"name": "r", "port": 1, "weight": -1}]},
            "spec.rules[0].backendRefs[0].weight",
            Reason.OUT_OF_RANGE,
        ),
    ],
)
def test_invalid_grpc_route(rule: dict[str, Any], field: str, reason: Reason) -> None:
    result = convert(grpc_route([rule]))
    assert result.obj is None
    assert [(d.field, d.reason) for d in result.diagnostics] == [(field, reason)]
