"""AuthorizationPolicy semantics: the reference evaluator, and which policies apply to which workload."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.model.authz import (
    AuthorizationAction,
    AuthorizationPolicy,
    AuthorizationRule,
    Condition,
    ConditionKey,
    HttpRequest,
    Operation,
    Request,
    Source,
    StringMatch,
    WorkloadPolicies,
    authorize,
    deny_all_stand_in,
)
from controlplane.model.diagnostics import Reason
from controlplane.model.frozenmap import FrozenMap
from controlplane.model.namespace import Namespace
from controlplane.model.objects import MeshObject, Upsert
from controlplane.model.policy import PolicyTargetRef
from controlplane.model.security import policies_for, security_diagnostics, selected_workloads
from controlplane.model.service import Service, ServicePort
from controlplane.model.snapshot import MeshSnapshot
from controlplane.model.workload import PodPhase, Workload

ALLOW, DENY, AUDIT = AuthorizationAction.ALLOW, AuthorizationAction.DENY, AuthorizationAction.AUDIT
FRONTEND = "cluster.local/ns/web/sa/frontend"
REVIEWS = "cluster.local/ns/shop/sa/reviews"


def m(*texts: str) -> tuple[StringMatch, ...]:
    return tuple(StringMatch.parse(t) for t in texts)


def nets(*texts: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(t) for t in texts)


def ap(
    name: str,
    action: AuthorizationAction = ALLOW,
    *rules: AuthorizationRule,
    ns: str = "shop",
    **kw: Any,
) -> AuthorizationPolicy:
    return AuthorizationPolicy(namespace=ns, name=name, action=action, rules=rules, **kw)


def http(
    principal: str | None = FRONTEND,
    *,
    method: str = "GET",
    path: str = "/",
    port: int = 9080,
    ip: str = "10.1.0.5",
    headers: dict[str, str] | None = None,
) -> Request:
    return Request(
        principal=principal,
        source_ip=ip,
        destination_port=port,
        http=HttpRequest(method=method, path=path, headers=headers or {}),
    )


def tcp(principal: str | None = FRONTEND, *, port: int = 9080, ip: str = "10.1.0.5") -> Request:
    return Request(principal=principal, source_ip=ip, destination_port=port)


def policies(*ps: AuthorizationPolicy) -> WorkloadPolicies:
    return WorkloadPolicies(
        deny=tuple(p for p in ps if p.action is DENY),
        allow=tuple(p for p in ps if p.action is ALLOW),
        audit=tuple(p for p in ps if p.action is AUDIT),
    )


def rule(
    *, sources: tuple[Source, ...] = (), ops: tuple[Operation, ...] = (), when: tuple[Condition, ...] = ()
) -> AuthorizationRule:
    return AuthorizationRule(sources=sources, operations=ops, conditions=when)


FROM_FRONTEND = Source(principals=m(FRONTEND))
GET_REVIEWS = Operation(methods=m("GET"), paths=m("/reviews/*"))
ADMIN = Operation(paths=m("/admin*"))

# (case id, policies, request, allowed)
CASES: list[tuple[str, tuple[AuthorizationPolicy, ...], Request, bool]] = [
    ("no policy allows", (), http(), True),
    ("allow with no rules denies", (ap("a"),), http(), False),
    ("empty rule matches everything", (ap("a", ALLOW, rule()),), tcp(None), True),
    ("principal matches", (ap("a", ALLOW, rule(sources=(FROM_FRONTEND,))),), http(), True),
    ("other principal denied", (ap("a", ALLOW, rule(sources=(FROM_FRONTEND,))),), http(REVIEWS), False),
    (
        "any principal needs mTLS",
        (ap("a", ALLOW, rule(sources=(Source(principals=m("*")),))),),
        tcp(None),
        False,
    ),
    (
        "notPrincipals * is plaintext only",
        (ap("a", ALLOW, rule(sources=(Source(not_principals=m("*")),))),),
        tcp(None),
        True,
    ),
    (
        "principal prefix",
        (ap("a", ALLOW, rule(sources=(Source(principals=m("cluster.local/ns/web/*")),))),),
        http(),
        True,
    ),
    (
        "principal suffix",
        (ap("a", ALLOW, rule(sources=(Source(principals=m("*/sa/frontend")),))),),
        http(),
        True,
    ),
    (
        "namespace from identity",
        (ap("a", ALLOW, rule(sources=(Source(namespaces=m("web")),))),),
        http(),
        True,
    ),
    (
        "plaintext has no namespace",
        (ap("a", ALLOW, rule(sources=(Source(namespaces=m("*")),))),),
        http(None),
        False,
    ),
    ("notNamespaces", (ap("a", ALLOW, rule(sources=(Source(not_namespaces=m("web")),))),), http(), False),
    ("ipBlocks", (ap("a", ALLOW, rule(sources=(Source(ip_blocks=nets("10.1.0.0/16")),))),), tcp(), True),
    (
        "notIpBlocks",
        (ap("a", ALLOW, rule(sources=(Source(not_ip_blocks=nets("10.0.0.0/8")),))),),
        tcp(),
        False,
    ),
    (
        "ipv6 block vs ipv4 caller",
        (ap("a", ALLOW, rule(sources=(Source(ip_blocks=nets("::/0")),))),),
        tcp(),
        False,
    ),
    (
        "sources are ORed",
        (ap("a", ALLOW, rule(sources=(Source(principals=m(REVIEWS)), FROM_FRONTEND))),),
        http(),
        True,
    ),
    (
        "fields of a source are ANDed",
        (ap("a", ALLOW, rule(sources=(Source(principals=m(FRONTEND), ip_blocks=nets("192.168.0.0/16")),))),),
        http(),
        False,
    ),
    ("ports", (ap("a", ALLOW, rule(ops=(Operation(ports=(9080,)),))),), tcp(port=9080), True),
    ("notPorts", (ap("a", ALLOW, rule(ops=(Operation(not_ports=(9080,)),))),), tcp(port=9080), False),
    ("method and path", (ap("a", ALLOW, rule(ops=(GET_REVIEWS,))),), http(path="/reviews/1"), True),
    (
        "query is not matched",
        (ap("a", ALLOW, rule(ops=(Operation(paths=m("/r")),))),),
        http(path="/r?x=1"),
        True,
    ),
    (
        "wrong method",
        (ap("a", ALLOW, rule(ops=(GET_REVIEWS,))),),
        http(method="POST", path="/reviews/1"),
        False,
    ),
    (
        "notPaths",
        (ap("a", ALLOW, rule(ops=(Operation(not_paths=m("/admin*")),))),),
        http(path="/admin/x"),
        False,
    ),
    (
        "from and to are ANDed",
        (ap("a", ALLOW, rule(sources=(FROM_FRONTEND,), ops=(GET_REVIEWS,))),),
        http(REVIEWS, path="/reviews/1"),
        False,
    ),
    (
        "rules are ORed",
        (ap("a", ALLOW, rule(ops=(GET_REVIEWS,)), rule(sources=(FROM_FRONTEND,))),),
        http(path="/x"),
        True,
    ),
    (
        "deny before allow",
        (ap("a", ALLOW, rule()), ap("d", DENY, rule(sources=(FROM_FRONTEND,)))),
        http(),
        False,
    ),
    (
        "deny misses",
        (ap("a", ALLOW, rule()), ap("d", DENY, rule(sources=(FROM_FRONTEND,)))),
        http(REVIEWS),
        True,
    ),
    ("deny alone leaves the rest open", (ap("d", DENY, rule(ops=(ADMIN,))),), http(path="/public"), True),
    # L7 fields on TCP fail closed.
    ("allow L7 rule on tcp", (ap("a", ALLOW, rule(ops=(GET_REVIEWS,))),), tcp(), False),
    (
        "allow header condition on tcp",
        (
            ap(
                "a",
                ALLOW,
                rule(when=(Condition(key=ConditionKey.REQUEST_HEADERS, header="x", not_values=m("y")),)),
            ),
        ),
        tcp(),
        False,
    ),
    # A DENY rule whose only field is L7 matches every TCP connection.
    ("deny L7 rule on tcp denies", (ap("d", DENY, rule(ops=(ADMIN,))),), tcp(), False),
    (
        "deny L7 rule keeps its L4 fields",
        (ap("d", DENY, rule(sources=(Source(not_namespaces=m("shop")),), ops=(ADMIN,))),),
        tcp(REVIEWS),
        True,
    ),
    (
        "deny L7 rule on tcp from outside",
        (ap("d", DENY, rule(sources=(Source(not_namespaces=m("shop")),), ops=(ADMIN,))),),
        tcp(),
        False,
    ),
    (
        "deny L7 rule with L4 port",
        (ap("d", DENY, rule(ops=(Operation(ports=(5432,), methods=m("GET")),))),),
        tcp(port=9080),
        True,
    ),
    ("deny L7 on http is exact", (ap("d", DENY, rule(ops=(ADMIN,))),), http(path="/public"), True),
    # Conditions.
    (
        "header values",
        (
            ap(
                "a",
                ALLOW,
                rule(
                    when=(Condition(key=ConditionKey.REQUEST_HEADERS, header="x-tenant", values=m("acme*")),)
                ),
            ),
        ),
        http(headers={"x-tenant": "acme-eu"}),
        True,
    ),
    (
        "header missing",
        (
            ap(
                "a",
                ALLOW,
                rule(when=(Condition(key=ConditionKey.REQUEST_HEADERS, header="x-tenant", values=m("*")),)),
            ),
        ),
        http(),
        False,
    ),
    (
        "header notValues when missing",
        (
            ap(
                "a",
                ALLOW,
                rule(
                    when=(Condition(key=ConditionKey.REQUEST_HEADERS, header="x-tenant", not_values=m("*")),)
                ),
            ),
        ),
        http(),
        True,
    ),
    (
        "source.ip",
        (ap("a", ALLOW, rule(when=(Condition(key=ConditionKey.SOURCE_IP, values=nets("10.1.0.5/32")),))),),
        tcp(),
        True,
    ),
    (
        "source.principal",
        (ap("a", ALLOW, rule(when=(Condition(key=ConditionKey.SOURCE_PRINCIPAL, not_values=m(FRONTEND)),))),),
        tcp(),
        False,
    ),
    (
        "source.namespace",
        (ap("a", ALLOW, rule(when=(Condition(key=ConditionKey.SOURCE_NAMESPACE, values=m("w*")),))),),
        tcp(),
        True,
    ),
    (
        "destination.port",
        (ap("a", ALLOW, rule(when=(Condition(key=ConditionKey.DESTINATION_PORT, values=(8080,)),))),),
        tcp(port=9080),
        False,
    ),
    (
        "values and notValues",
        (
            ap(
                "a",
                ALLOW,
                rule(
                    when=(Condition(key=ConditionKey.SOURCE_NAMESPACE, values=m("*"), not_values=m("web")),)
                ),
            ),
        ),
        tcp(),
        False,
    ),
    (
        "conditions are ANDed",
        (
            ap(
                "a",
                ALLOW,
                rule(
                    when=(
                        Condition(key=ConditionKey.DESTINATION_PORT, values=(9080,)),
                        Condition(key=ConditionKey.SOURCE_NAMESPACE, values=m("shop")),
                    )
                ),
            ),
        ),
        tcp(),
        False,
    ),
    # Audit never decides.
    ("audit alone", (ap("x", AUDIT, rule()),), http(), True),
    ("audit with allow-nothing", (ap("x", AUDIT, rule()), ap("a")), http(), False),
    # Rejected policies.
    ("rejected allow allows nothing", (deny_all_stand_in(ap("a", ALLOW, rule())),), http(), False),
    (
        "rejected allow leaves other allows",
        (deny_all_stand_in(ap("a", ALLOW)), ap("b", ALLOW, rule(sources=(FROM_FRONTEND,)))),
        http(),
        True,
    ),
    (
        "rejected deny denies everything",
        (ap("b", ALLOW, rule()), deny_all_stand_in(ap("d", DENY))),
        tcp(None),
        False,
    ),
]


@pytest.mark.parametrize(("ps", "request_", "allowed"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_authorize(ps: tuple[AuthorizationPolicy, ...], request_: Request, allowed: bool) -> None:
    assert authorize(policies(*ps), request_).allowed is allowed


def test_verdict_names_the_deciding_policy_and_audits() -> None:
    ps = policies(
        ap("audit", AUDIT, rule(sources=(FROM_FRONTEND,))),
        ap("allow", ALLOW, rule(sources=(FROM_FRONTEND,))),
        ap("deny", DENY, rule(ops=(ADMIN,))),
    )
    allowed = authorize(ps, http())
    assert allowed.allowed and allowed.policy == ap("allow").ref and allowed.audited == (ap("audit").ref,)
    denied = authorize(ps, http(path="/admin"))
    assert not denied.allowed and denied.policy == ap("deny").ref
    default = authorize(ps, http(REVIEWS))
    assert not default.allowed and default.policy is None and default.audited == ()


# -- properties: fail-closed choices never open access --------------------------------------------------

PRINCIPALS = (FRONTEND, REVIEWS, "cluster.local/ns/web/sa/*", "*")
st_matches = st.lists(st.sampled_from(PRINCIPALS), max_size=2).map(lambda ts: m(*ts))
st_source = st.builds(
    Source,
    principals=st_matches,
    not_principals=st_matches,
    namespaces=st.lists(st.sampled_from(("web", "shop", "*")), max_size=1).map(lambda ts: m(*ts)),
)
st_operation = st.builds(
    Operation,
    ports=st.lists(st.sampled_from((80, 9080)), max_size=1).map(tuple),
    methods=st.lists(st.sampled_from(("GET", "POST")), max_size=1).map(lambda ts: m(*ts)),
    not_paths=st.lists(st.sampled_from(("/admin*", "/")), max_size=1).map(lambda ts: m(*ts)),
)
st_condition = st.builds(
    Condition,
    key=st.just(ConditionKey.REQUEST_HEADERS),
    header=st.just("x"),
    values=st.lists(st.sampled_from(("a", "b*")), min_size=1, max_size=1).map(lambda ts: m(*ts)),
)
st_rule = st.builds(
    AuthorizationRule,
    sources=st.lists(st_source, max_size=2).map(tuple),
    operations=st.lists(st_operation, max_size=2).map(tuple),
    conditions=st.lists(st_condition, max_size=1).map(tuple),
)
st_policy = st.builds(
    lambda name, action, rules: ap(name, action, *rules),
    st.sampled_from(("p1", "p2", "p3")),
    st.sampled_from((ALLOW, DENY)),
    st.lists(st_rule, max_size=2),
)
st_http = st.builds(
    HttpRequest,
    method=st.sampled_from(("GET", "POST")),
    path=st.sampled_from(("/", "/admin/x", "/reviews")),
    headers=st.sampled_from(({}, {"x": "a"}, {"x": "bb"})),
)
st_request = st.builds(
    Request,
    principal=st.sampled_from((FRONTEND, REVIEWS, None)),
    source_ip=st.just("10.0.0.1"),
    destination_port=st.sampled_from((80, 9080)),
    http=st.none() | st_http,
)


def _unique(ps: list[AuthorizationPolicy]) -> list[AuthorizationPolicy]:
    return list({p.name: p for p in ps}.values())


@settings(max_examples=300, deadline=None)
@given(st.lists(st_policy, max_size=3), st_request, st.lists(st_http, min_size=1, max_size=4))
def test_tcp_is_allowed_only_if_every_http_request_would_be(
    ps: list[AuthorizationPolicy], req: Request, variants: list[HttpRequest]
) -> None:
    """L7 fields fail closed: a TCP connection passes only if any HTTP request on it would pass too."""
    workload_policies = policies(*_unique(ps))
    connection = dataclasses.replace(req, http=None)
    if authorize(workload_policies, connection).allowed:
        for variant in variants:
            assert authorize(workload_policies, dataclasses.replace(req, http=variant)).allowed


@settings(max_examples=300, deadline=None)
@given(st.lists(st_policy, max_size=3), st_policy, st_request)
def test_a_rejected_policy_never_allows_more_than_the_intended_one(
    others: list[AuthorizationPolicy], intended: AuthorizationPolicy, req: Request
) -> None:
    rest = [p for p in _unique(others) if p.name != intended.name]
    with_stand_in = authorize(policies(*rest, deny_all_stand_in(intended)), req)
    if with_stand_in.allowed:
        assert authorize(policies(*rest, intended), req).allowed


# -- which policies apply to a workload ---------------------------------------------------------------------

ROOT = "nodemesh-system"


def pod(ns: str, name: str, **labels: str) -> Workload:
    return Workload(
        uid=f"uid-{name}",
        namespace=ns,
        name=name,
        node="node-a",
        ips=(f"10.0.{len(ns)}.{len(name)}",),
        labels=FrozenMap(labels),
        phase=PodPhase.RUNNING,
    )


REVIEWS_POD = pod("shop", "reviews-1", app="reviews", version="v1")
RATINGS_POD = pod("shop", "ratings-1", app="ratings")
FRONT_POD = pod("web", "front-1", app="front")
ROOT_POD = pod(ROOT, "gateway-1", app="gateway")


def mesh(*extra: MeshObject) -> MeshSnapshot:
    base: list[MeshObject] = [
        Namespace(name="shop"),
        Namespace(name="web"),
        REVIEWS_POD,
        RATINGS_POD,
        FRONT_POD,
        ROOT_POD,
        Service(
            namespace="shop",
            name="reviews",
            selector=FrozenMap({"app": "reviews"}),
            ports=(ServicePort(port=9080, target_port=9080),),
        ),
        Service(namespace="shop", name="manual", ports=(ServicePort(port=80, target_port=80),)),
    ]
    return MeshSnapshot.from_objects([*base, *extra])


def names(ps: tuple[AuthorizationPolicy, ...]) -> list[str]:
    return [f"{p.namespace}/{p.name}" for p in ps]


def test_policies_for_selects_by_scope_and_sorts() -> None:
    s = mesh(
        ap("mesh-deny", DENY, rule(), ns=ROOT),
        ap("root-selected", ALLOW, ns=ROOT, selector=FrozenMap({"app": "reviews"})),
        ap("ns-audit", AUDIT, rule()),
        ap("z-reviews", ALLOW, selector=FrozenMap({"app": "reviews"})),
        ap("a-reviews-v2", ALLOW, selector=FrozenMap({"app": "reviews", "version": "v2"})),
        ap("b-target", ALLOW, target_refs=(PolicyTargetRef(name="reviews"),)),
        ap("c-manual", DENY, rule(), target_refs=(PolicyTargetRef(name="manual"),)),
        ap("d-missing", DENY, rule(), target_refs=(PolicyTargetRef(name="missing"),)),
        ap("web-wide", ALLOW, ns="web"),
    )
    reviews = policies_for(s, REVIEWS_POD)
    assert names(reviews.deny) == [f"{ROOT}/mesh-deny"]
    assert names(reviews.allow) == ["shop/b-target", "shop/z-reviews"]
    assert names(reviews.audit) == ["shop/ns-audit"]
    ratings = policies_for(s, RATINGS_POD)
    assert names(ratings.allow) == [] and names(ratings.audit) == ["shop/ns-audit"]
    assert names(policies_for(s, FRONT_POD).allow) == ["web/web-wide"]
    root = policies_for(s, ROOT_POD)
    assert names(root.deny) == [f"{ROOT}/mesh-deny"] and root.allow == ()
    # Another root namespace: the old one's policies are ordinary namespace policies.
    moved = policies_for(s, REVIEWS_POD, root_namespace="mesh-root")
    assert names(moved.deny) == []


def test_root_namespace_selector_policy_stays_in_the_root_namespace() -> None:
    gateway = ap("gw", ALLOW, ns=ROOT, selector=FrozenMap({"app": "gateway"}))
    other = dataclasses.replace(REVIEWS_POD, labels=FrozenMap({"app": "gateway"}))
    s = mesh(gateway, other)
    assert names(policies_for(s, ROOT_POD).allow) == [f"{ROOT}/gw"]
    assert policies_for(s, other).allow == ()


def test_selected_workloads() -> None:
    s = mesh()
    wide = ap("wide", DENY, ns=ROOT)
    assert [w.name for w in selected_workloads(s, wide)] == ["gateway-1", "ratings-1", "reviews-1", "front-1"]
    target = ap("t", target_refs=(PolicyTargetRef(name="reviews"),))
    assert [w.name for w in selected_workloads(s, target)] == ["reviews-1"]
    assert selected_workloads(s, ap("m", target_refs=(PolicyTargetRef(name="manual"),))) == ()


def test_a_service_change_changes_who_a_target_policy_selects() -> None:
    policy = ap("t", DENY, rule(), target_refs=(PolicyTargetRef(name="reviews"),))
    s = mesh(policy)
    assert names(policies_for(s, RATINGS_POD).deny) == []
    service = s.service("shop", "reviews")
    assert service is not None
    s2 = s.apply(Upsert(obj=dataclasses.replace(service, selector=FrozenMap({"app": "ratings"}))))
    assert names(policies_for(s2, RATINGS_POD).deny) == ["shop/t"]
    assert [p.name for p in s2.authorization_policies_targeting(service.ref)] == ["t"]


def test_target_diagnostics() -> None:
    s = mesh(
        ap("t", target_refs=(PolicyTargetRef(name="reviews"), PolicyTargetRef(name="manual"))),
        ap("u", target_refs=(PolicyTargetRef(name="missing"),)),
    )
    found = [(str(d.ref), d.field, d.reason) for d in security_diagnostics(s)]
    assert found == [
        ("AuthorizationPolicy/shop/t", "spec.targetRefs[1]", Reason.NO_BACKENDS),
        ("AuthorizationPolicy/shop/u", "spec.targetRefs[0]", Reason.TARGET_NOT_FOUND),
    ]
