"""HTTPRoute and GRPCRoute semantics (Gateway API, GAMMA) in the route configurations translation emits."""

from __future__ import annotations

import re

import pytest
from envoy.config.route.v3 import route_components_pb2, route_pb2

from controlplane.model.diagnostics import Reason, Severity
from controlplane.model.objects import MeshObject
from controlplane.model.routes import (
    BackendObjectRef,
    ExtensionRefFilter,
    FilterType,
    GRPCMethodMatch,
    GRPCRouteMatch,
    HeaderMatch,
    HeaderModifierFilter,
    HTTPHeader,
    HTTPMethod,
    HTTPRouteMatch,
    MatchType,
    PathModifier,
    PathModifierType,
    RequestMirrorFilter,
    RequestRedirectFilter,
    RouteRetry,
    RouteTimeouts,
    URLRewriteFilter,
)
from controlplane.model.service import Service, ServiceType
from controlplane.translate import naming
from controlplane.translate.config import NodeConfig
from controlplane.translate.translator import translate_node
from tests.translate.builders import (
    as_dict,
    backend,
    exact,
    grpc_backend,
    grpc_port,
    grpc_route,
    grpc_rule,
    http_port,
    http_route,
    mesh,
    namespace,
    node,
    parent,
    pod,
    prefix,
    regex,
    rule,
    seconds,
    service,
    tcp_port,
)

BASE: tuple[MeshObject, ...] = (
    namespace("shop"),
    namespace("web"),
    node("n", "10.0.0.1"),
    pod("web", "client", "n", "10.1.0.10"),
    service("shop", "api", "10.96.0.1", http_port(80), http_port(81, name="http-admin")),
    service("shop", "v1", "10.96.0.2", http_port(80)),
    service("shop", "v2", "10.96.0.3", http_port(80)),
    service("shop", "db", "10.96.0.4", tcp_port(5432)),
    service("shop", "grpc", "10.96.0.5", grpc_port(9090)),
    Service(
        namespace="shop",
        name="ext",
        type=ServiceType.EXTERNAL_NAME,
        external_name="x.example",
        ports=(http_port(80),),
    ),
)


def _translate(*objects: MeshObject) -> NodeConfig:
    return translate_node(mesh(*BASE, *objects), "n")


def _config(config: NodeConfig, name: str = "shop/api:80") -> route_pb2.RouteConfiguration:
    return config.route_configs[name]


def _routes(*objects: MeshObject, name: str = "shop/api:80") -> list[route_components_pb2.Route]:
    (host,) = _config(_translate(*objects), name).virtual_hosts
    assert list(host.domains) == ["*"]
    return list(host.routes)


def _only(*objects: MeshObject, name: str = "shop/api:80") -> route_components_pb2.Route:
    """The one rule route (the last route is the 404 for requests matching no rule)."""
    *routes, not_found = _routes(*objects, name=name)
    assert not_found.name == naming.NOT_FOUND_ROUTE and not_found.direct_response.status == 404
    (route,) = routes
    return route


def _diagnostics(*objects: MeshObject) -> list[tuple[str, str, str, str]]:
    return [(str(d.ref), d.field, d.reason.value, d.severity.value) for d in _translate(*objects).diagnostics]


def test_service_without_routes_gets_a_default_route() -> None:
    (route,) = _routes()
    assert as_dict(route) == {
        "name": "default",
        "match": {"prefix": "/"},
        "route": {"cluster": "shop/api:80", "timeout": "0s"},
    }


def test_attached_route_gets_a_404_for_requests_matching_no_rule() -> None:
    routes = _routes(
        http_route("shop", "r", parent("shop", "api"), rule(backend("shop", "v1"), matches=(exact("/a"),)))
    )
    assert [r.name for r in routes] == ["HTTPRoute/shop/r/rule/0/match/0", "no-matching-rule"]
    assert as_dict(routes[-1]) == {
        "name": "no-matching-rule",
        "match": {"prefix": "/"},
        "direct_response": {"status": 404},
    }


def test_parent_ref_without_port_binds_every_http_port_and_with_port_only_that_one() -> None:
    everywhere = http_route("shop", "all", parent("shop", "api"), rule(backend("shop", "v1")))
    config = _translate(everywhere)
    assert _config(config, "shop/api:80").virtual_hosts[0].routes[0].route.cluster == "shop/v1:80"
    assert _config(config, "shop/api:81").virtual_hosts[0].routes[0].route.cluster == "shop/v1:80"
    port_scoped = http_route("shop", "one", parent("shop", "api", 81), rule(backend("shop", "v2")))
    config = _translate(port_scoped)
    assert _config(config, "shop/api:80").virtual_hosts[0].routes[0].name == "default"
    assert _config(config, "shop/api:81").virtual_hosts[0].routes[0].route.cluster == "shop/v2:80"
    by_name = http_route(
        "shop", "named", parent("shop", "api", section="http-admin"), rule(backend("shop", "v2"))
    )
    config = _translate(by_name)
    assert _config(config, "shop/api:80").virtual_hosts[0].routes[0].name == "default"
    assert _config(config, "shop/api:81").virtual_hosts[0].routes[0].route.cluster == "shop/v2:80"


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        (exact("/a/b"), {"path": "/a/b"}),
        (prefix("/"), {"prefix": "/"}),
        (prefix("/foo"), {"path_separated_prefix": "/foo"}),
        (prefix("/foo/"), {"path_separated_prefix": "/foo"}),
        (regex("/items/[0-9]+"), {"safe_regex": {"regex": "/items/[0-9]+"}}),
        (
            prefix("/", headers=(HeaderMatch(name="X-Canary", value="yes"),)),
            {"prefix": "/", "headers": [{"name": "x-canary", "string_match": {"exact": "yes"}}]},
        ),
        (
            prefix("/", headers=(HeaderMatch(type=MatchType.REGULAR_EXPRESSION, name="x-v", value="v[12]"),)),
            {"prefix": "/", "headers": [{"name": "x-v", "string_match": {"safe_regex": {"regex": "v[12]"}}}]},
        ),
        (
            prefix("/", query_params=(HeaderMatch(name="debug", value="1"),)),
            {"prefix": "/", "query_parameters": [{"name": "debug", "string_match": {"exact": "1"}}]},
        ),
        (
            prefix("/", method=HTTPMethod.POST),
            {"prefix": "/", "headers": [{"name": ":method", "string_match": {"exact": "POST"}}]},
        ),
    ],
)
def test_match_kinds(match: HTTPRouteMatch, expected: dict[str, object]) -> None:
    route = _only(
        http_route("shop", "r", parent("shop", "api"), rule(backend("shop", "v1"), matches=(match,)))
    )
    assert as_dict(route.match) == expected


def test_segment_aware_prefix_semantics() -> None:
    """path_separated_prefix: /foo matches /foo and /foo/bar, not /foobar (Envoy's documented rule)."""
    match = _only(
        http_route(
            "shop", "r", parent("shop", "api"), rule(backend("shop", "v1"), matches=(prefix("/foo/"),))
        )
    ).match
    value = match.path_separated_prefix

    def matches(path: str) -> bool:
        return path == value or path.startswith(value + "/")

    assert [p for p in ("/foo", "/foo/", "/foo/bar", "/foobar", "/fo") if matches(p)] == [
        "/foo",
        "/foo/",
        "/foo/bar",
    ]


def test_match_precedence_within_and_across_routes() -> None:
    first = http_route(
        "shop",
        "b-newer",
        parent("shop", "api"),
        rule(backend("shop", "v1"), matches=(prefix("/"),)),  # 0: catch-all
        rule(backend("shop", "v1"), matches=(prefix("/api"),)),  # 1
        rule(backend("shop", "v1"), matches=(prefix("/api/v1"),)),  # 2: longer prefix
        rule(backend("shop", "v1"), matches=(prefix("/api", method=HTTPMethod.GET),)),  # 3: method
        rule(
            backend("shop", "v1"),
            matches=(
                prefix(
                    "/api", headers=(HeaderMatch(name="a", value="1"), HeaderMatch(name="b", value="2"))
                ),  # 4
                prefix("/api", headers=(HeaderMatch(name="a", value="1"),)),  # 4/1
            ),
        ),
        rule(
            backend("shop", "v1"), matches=(prefix("/api", query_params=(HeaderMatch(name="q", value="1"),)),)
        ),  # 5
        rule(backend("shop", "v1"), matches=(exact("/api"),)),  # 6: exact
        rule(backend("shop", "v1"), matches=(regex("/api/.*"),)),  # 7: regex
        created="2024-02-01T00:00:00Z",
    )
    older = http_route(
        "shop",
        "z-older",
        parent("shop", "api"),
        rule(backend("shop", "v2"), matches=(prefix("/api", method=HTTPMethod.PUT),)),
        created="2024-01-01T00:00:00Z",
    )
    same_time_by_name = http_route(
        "shop",
        "a-same-time",
        parent("shop", "api"),
        rule(backend("shop", "v2"), matches=(prefix("/api", method=HTTPMethod.POST),)),
        created="2024-02-01T00:00:00Z",
    )
    names = [r.name.removeprefix("HTTPRoute/shop/") for r in _routes(first, older, same_time_by_name)]
    assert names == [
        "b-newer/rule/6/match/0",  # exact
        "b-newer/rule/7/match/0",  # regular expression
        "b-newer/rule/2/match/0",  # longest prefix
        "z-older/rule/0/match/0",  # /api + method: oldest route first
        "a-same-time/rule/0/match/0",  # same timestamp: by name
        "b-newer/rule/3/match/0",
        "b-newer/rule/4/match/0",  # /api: most headers
        "b-newer/rule/4/match/1",
        "b-newer/rule/5/match/0",  # then most query parameters
        "b-newer/rule/1/match/0",
        "b-newer/rule/0/match/0",  # "/" last
        "no-matching-rule",
    ]


def test_weighted_backends_zero_weight_and_missing_backends() -> None:
    route = _only(
        http_route(
            "shop",
            "split",
            parent("shop", "api"),
            rule(
                backend("shop", "v1", weight=80),
                backend("shop", "v2", weight=0),
                backend("shop", "gone", weight=15),
                backend("shop", "v2", port=9999, weight=5),
            ),
        )
    )
    action = as_dict(route.route)
    assert action["weighted_clusters"] == {
        "clusters": [{"name": "shop/v1:80", "weight": 80}, {"name": naming.INVALID_BACKEND, "weight": 20}]
    }
    assert action["cluster_not_found_response_code"] == "INTERNAL_SERVER_ERROR"
    diags = _diagnostics(
        http_route(
            "shop",
            "split",
            parent("shop", "api"),
            rule(
                backend("shop", "v1", weight=80),
                backend("shop", "gone", weight=15),
                backend("shop", "v2", port=9999),
            ),
        )
    )
    assert ("HTTPRoute/shop/split", "spec.rules[0].backendRefs[1]", "BackendNotFound", "Error") in diags
    assert ("HTTPRoute/shop/split", "spec.rules[0].backendRefs[2].port", "BackendNotFound", "Error") in diags


@pytest.mark.parametrize(
    "backends",
    [
        pytest.param((), id="no-backends"),
        pytest.param((backend("shop", "v1", weight=0), backend("shop", "v2", weight=0)), id="all-zero"),
        pytest.param((backend("shop", "gone"),), id="all-missing"),
        pytest.param((backend("shop", "v1", port=None),), id="no-port"),
        pytest.param((backend("shop", "ext"),), id="external-name"),
    ],
)
def test_rules_that_cannot_forward_answer_500(backends: tuple[object, ...]) -> None:
    route = _only(http_route("shop", "r", parent("shop", "api"), rule(*backends)))  # type: ignore[arg-type]
    assert as_dict(route)["direct_response"] == {"status": 500}


def test_header_modifiers_route_and_backend_level() -> None:
    request = HeaderModifierFilter(
        type=FilterType.REQUEST_HEADER_MODIFIER,
        set=(HTTPHeader(name="X-Set", value="1"),),
        add=(HTTPHeader(name="x-add", value="2"),),
        remove=("X-Drop",),
    )
    response = HeaderModifierFilter(
        type=FilterType.RESPONSE_HEADER_MODIFIER,
        add=(HTTPHeader(name="x-resp", value="3"),),
        remove=("server",),
    )
    route = as_dict(
        _only(
            http_route(
                "shop",
                "r",
                parent("shop", "api"),
                rule(
                    backend("shop", "v1", weight=1, filters=(response,)),
                    backend("shop", "v2", weight=1),
                    filters=(request,),
                ),
            )
        )
    )
    assert route["request_headers_to_add"] == [
        {"header": {"key": "x-set", "value": "1"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
        {"header": {"key": "x-add", "value": "2"}},  # APPEND_IF_EXISTS_OR_ADD is the default (0)
    ]
    assert route["request_headers_to_remove"] == ["x-drop"]
    assert route["route"]["weighted_clusters"]["clusters"] == [
        {
            "name": "shop/v1:80",
            "weight": 1,
            "response_headers_to_add": [{"header": {"key": "x-resp", "value": "3"}}],
            "response_headers_to_remove": ["server"],
        },
        {"name": "shop/v2:80", "weight": 1},
    ]


@pytest.mark.parametrize(
    ("redirect", "expected"),
    [
        (RequestRedirectFilter(), {"response_code": "FOUND"}),
        (RequestRedirectFilter(scheme="https", status_code=301), {"scheme_redirect": "https"}),
        (
            RequestRedirectFilter(hostname="h.example", status_code=303),
            {"host_redirect": "h.example", "response_code": "SEE_OTHER"},
        ),
        (
            RequestRedirectFilter(port=8443, status_code=307),
            {"port_redirect": 8443, "response_code": "TEMPORARY_REDIRECT"},
        ),
        (
            RequestRedirectFilter(
                path=PathModifier(type=PathModifierType.REPLACE_FULL_PATH, value="/x"), status_code=308
            ),
            {"path_redirect": "/x", "response_code": "PERMANENT_REDIRECT"},
        ),
    ],
)
def test_request_redirect(redirect: RequestRedirectFilter, expected: dict[str, object]) -> None:
    route = _only(
        http_route("shop", "r", parent("shop", "api"), rule(backend("shop", "v1"), filters=(redirect,)))
    )
    assert as_dict(route)["redirect"] == expected
    assert not route.HasField("route")


def _apply(rewrite: dict[str, object], path: str) -> str:
    pattern = rewrite["pattern"]["regex"]  # type: ignore[index]
    # RE2 and Python agree on these anchored patterns; Envoy replaces every match (here: one).
    return re.sub(pattern, str(rewrite["substitution"]).replace("\\", "\\\\"), path)


@pytest.mark.parametrize(
    ("match_prefix", "replacement", "cases"),
    [
        ("/foo", "/bar", {"/foo": "/bar", "/foo/": "/bar/", "/foo/x/y": "/bar/x/y"}),
        ("/foo/", "/bar/", {"/foo": "/bar", "/foo/x": "/bar/x"}),
        ("/foo", "/", {"/foo": "/", "/foo/": "/", "/foo/x": "/x"}),
        ("/", "/api", {"/": "/api/", "/x": "/api/x"}),
    ],
)
def test_url_rewrite_replace_prefix_match(match_prefix: str, replacement: str, cases: dict[str, str]) -> None:
    rewrite = URLRewriteFilter(
        hostname="internal.example",
        path=PathModifier(type=PathModifierType.REPLACE_PREFIX_MATCH, value=replacement),
    )
    route = as_dict(
        _only(
            http_route(
                "shop",
                "r",
                parent("shop", "api"),
                rule(backend("shop", "v1"), matches=(prefix(match_prefix),), filters=(rewrite,)),
            )
        )
    )
    assert route["route"]["host_rewrite_literal"] == "internal.example"
    assert {p: _apply(route["route"]["regex_rewrite"], p) for p in cases} == cases


def test_url_rewrite_full_path_and_redirect_prefix() -> None:
    full = URLRewriteFilter(path=PathModifier(type=PathModifierType.REPLACE_FULL_PATH, value="/v2/all"))
    route = as_dict(
        _only(http_route("shop", "r", parent("shop", "api"), rule(backend("shop", "v1"), filters=(full,))))
    )
    assert _apply(route["route"]["regex_rewrite"], "/anything/here") == "/v2/all"
    redirect = RequestRedirectFilter(
        path=PathModifier(type=PathModifierType.REPLACE_PREFIX_MATCH, value="/new")
    )
    route = as_dict(
        _only(
            http_route(
                "shop", "r", parent("shop", "api"), rule(matches=(prefix("/old"),), filters=(redirect,))
            )
        )
    )
    assert _apply(route["redirect"]["regex_rewrite"], "/old/page") == "/new/page"


def test_request_mirror_with_fraction_and_missing_target() -> None:
    mirror = RequestMirrorFilter(
        backend=BackendObjectRef(namespace="shop", name="v2", port=80), numerator=1, denominator=8
    )
    gone = RequestMirrorFilter(backend=BackendObjectRef(namespace="shop", name="gone", port=80))
    route = as_dict(
        _only(
            http_route(
                "shop", "r", parent("shop", "api"), rule(backend("shop", "v1"), filters=(mirror, gone))
            )
        )
    )
    assert route["route"]["request_mirror_policies"] == [
        {
            "cluster": "shop/v2:80",
            "runtime_fraction": {"default_value": {"numerator": 125000, "denominator": "MILLION"}},
        }
    ]
    diags = _diagnostics(
        http_route("shop", "r", parent("shop", "api"), rule(backend("shop", "v1"), filters=(gone,)))
    )
    assert (
        "HTTPRoute/shop/r",
        "spec.rules[0].filters[0].requestMirror.backendRef",
        "BackendNotFound",
        "Warning",
    ) in diags


def test_extension_ref_filter_answers_500() -> None:
    ext = ExtensionRefFilter(group="example.com", kind="Thing", name="x")
    route = _only(http_route("shop", "r", parent("shop", "api"), rule(backend("shop", "v1"), filters=(ext,))))
    assert as_dict(route)["direct_response"] == {"status": 500}


def test_timeouts_and_retries() -> None:
    route = as_dict(
        _only(
            http_route(
                "shop",
                "r",
                parent("shop", "api"),
                rule(
                    backend("shop", "v1"),
                    timeouts=RouteTimeouts(request=seconds(5), backend_request=seconds(1.5)),
                    retry=RouteRetry(attempts=3, codes=(502, 503), backoff=seconds(0.25)),
                ),
            )
        )
    )["route"]
    assert route["timeout"] == "5s"
    assert route["retry_policy"] == {
        "retry_on": "connect-failure,refused-stream,retriable-status-codes",
        "num_retries": 3,
        "per_try_timeout": "1.500s",
        "retriable_status_codes": [502, 503],
        "retry_back_off": {"base_interval": "0.250s"},
    }
    only_backend = as_dict(
        _only(
            http_route(
                "shop",
                "r",
                parent("shop", "api"),
                rule(backend("shop", "v1"), timeouts=RouteTimeouts(backend_request=seconds(2))),
            )
        )
    )["route"]
    assert only_backend["retry_policy"] == {"num_retries": 0, "per_try_timeout": "2s"}
    assert only_backend["timeout"] == "0s"


def test_consumer_routes_override_producer_routes_for_their_namespace() -> None:
    producer = http_route("shop", "prod", parent("shop", "api"), rule(backend("shop", "v1")))
    consumer = http_route("web", "cons", parent("shop", "api", 80), rule(backend("shop", "v2")))
    config = _translate(producer, consumer)
    assert [r.route.cluster for r in _config(config, "shop/api:80").virtual_hosts[0].routes[:-1]] == [
        "shop/v1:80"
    ]
    web = _config(config, "shop/api:80@web").virtual_hosts[0].routes
    assert [r.route.cluster for r in web[:-1]] == ["shop/v2:80"]
    # The consumer route is port-scoped: port 81 keeps the producer's routes for web too.
    assert "shop/api:81@web" not in set(config.route_configs)


def test_same_match_in_two_routes_conflicts_and_the_older_wins() -> None:
    old = http_route(
        "shop",
        "old",
        parent("shop", "api"),
        rule(backend("shop", "v1"), matches=(prefix("/x"),)),
        created="2024-01-01T00:00:00Z",
    )
    new = http_route(
        "shop",
        "new",
        parent("shop", "api"),
        rule(backend("shop", "v2"), matches=(prefix("/x"),)),
        created="2024-06-01T00:00:00Z",
    )
    assert [r.route.cluster for r in _routes(old, new)[:-1]] == ["shop/v1:80"]
    assert ("HTTPRoute/shop/new", "spec.rules[0].matches[0]", "Conflict", "Warning") in _diagnostics(old, new)


def test_http_and_grpc_routes_on_one_port_conflict() -> None:
    h = http_route(
        "shop", "h", parent("shop", "grpc"), rule(backend("shop", "v1")), created="2024-01-01T00:00:00Z"
    )
    g = grpc_route(
        "shop",
        "g",
        parent("shop", "grpc"),
        grpc_rule(grpc_backend("shop", "grpc")),
        created="2024-02-01T00:00:00Z",
    )
    routes = _routes(h, g, name="shop/grpc:9090")
    assert routes[0].name == "HTTPRoute/shop/h/rule/0/match/0"
    assert ("GRPCRoute/shop/g", "spec.parentRefs", "Conflict", "Warning") in _diagnostics(h, g)


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        (GRPCMethodMatch(service="pkg.Svc", method="Get"), {"path": "/pkg.Svc/Get"}),
        (GRPCMethodMatch(service="pkg.Svc"), {"path_separated_prefix": "/pkg.Svc"}),
        (GRPCMethodMatch(method="Get"), {"safe_regex": {"regex": "/[^/]+/Get"}}),
        (
            GRPCMethodMatch(type=MatchType.REGULAR_EXPRESSION, service="pkg\\..*"),
            {"safe_regex": {"regex": "/pkg\\..*/[^/]+"}},
        ),
    ],
)
def test_grpc_method_matches(method: GRPCMethodMatch, expected: dict[str, object]) -> None:
    route = _only(
        grpc_route(
            "shop",
            "g",
            parent("shop", "grpc"),
            grpc_rule(grpc_backend("shop", "grpc"), matches=(GRPCRouteMatch(method=method),)),
        ),
        name="shop/grpc:9090",
    )
    assert as_dict(route.match) == expected
    assert route.route.cluster == "shop/grpc:9090"


def test_grpc_precedence_and_match_all() -> None:
    routes = _routes(
        grpc_route(
            "shop",
            "g",
            parent("shop", "grpc"),
            grpc_rule(grpc_backend("shop", "grpc")),  # no matches: everything
            grpc_rule(
                grpc_backend("shop", "grpc"), matches=(GRPCRouteMatch(method=GRPCMethodMatch(service="a.B")),)
            ),
            grpc_rule(
                grpc_backend("shop", "grpc"),
                matches=(GRPCRouteMatch(method=GRPCMethodMatch(service="a.B", method="M")),),
            ),
        ),
        name="shop/grpc:9090",
    )
    assert [as_dict(r.match) for r in routes] == [
        {"path": "/a.B/M"},
        {"path_separated_prefix": "/a.B"},
        {"prefix": "/"},
        {"prefix": "/"},  # the 404 after every rule
    ]


def test_route_on_opaque_tcp_port_is_reported_and_not_applied() -> None:
    r = http_route("shop", "r", parent("shop", "db"), rule(backend("shop", "v1")))
    config = _translate(r)
    assert "shop/db:5432" not in set(config.route_configs)
    assert ("HTTPRoute/shop/r", "spec.parentRefs[0]", "UnsupportedFeature", "Warning") in _diagnostics(r)


@pytest.mark.parametrize(
    ("parent_ref", "field"),
    [
        (parent("shop", "nope"), "spec.parentRefs[0]"),
        (parent("shop", "api", 8080), "spec.parentRefs[0].port"),
        (parent("shop", "api", section="grpc"), "spec.parentRefs[0].sectionName"),
    ],
)
def test_bad_parent_refs(parent_ref: object, field: str) -> None:
    r = http_route("shop", "r", parent_ref, rule(backend("shop", "v1")))  # type: ignore[arg-type]
    assert ("HTTPRoute/shop/r", field, "ParentNotFound", "Error") in _diagnostics(r)
    assert all(rc.virtual_hosts[0].routes[0].name == "default" for rc in _translate(r).route_configs.values())


def test_bad_input_never_breaks_other_services() -> None:
    bad = http_route(
        "shop",
        "bad",
        parent("shop", "api"),
        rule(backend("shop", "gone")),
        rule(backend("other", "x", weight=0)),
    )
    good = http_route("shop", "good", parent("shop", "v1"), rule(backend("shop", "v2")))
    config = _translate(bad, good)
    assert _config(config, "shop/v1:80").virtual_hosts[0].routes[0].route.cluster == "shop/v2:80"
    severities = {d.severity for d in config.diagnostics if d.ref is not None and d.ref.name == "bad"}
    assert Severity.ERROR in severities
    assert Reason.BACKEND_NOT_FOUND in {d.reason for d in config.diagnostics}
