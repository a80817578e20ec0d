"""Envoy RBAC from AuthorizationPolicies agrees with the reference evaluator `authz.authorize`: on a table
of policies x requests, and on generated ones. Envoy's side is evaluated by tests/translate/rbaceval.py."""

from __future__ import annotations

import ipaddress
from itertools import product

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
from controlplane.translate.rbac import build_rbac
from tests.translate import rbaceval

A = AuthorizationAction
WEB = "cluster.local/ns/web/sa/frontend"
ADMIN = "cluster.local/ns/ops/sa/admin"
OTHER = "cluster.local/ns/web-2/sa/batch"


def m(text: str) -> StringMatch:
    return StringMatch.parse(text)


def policy(name: str, action: AuthorizationAction, *rules: AuthorizationRule) -> AuthorizationPolicy:
    return AuthorizationPolicy(namespace="shop", name=name, action=action, rules=rules)


def http(method: str = "GET", path: str = "/", **headers: str) -> HttpRequest:
    return HttpRequest(method=method, path=path, headers=headers)


REQUESTS = [
    Request(principal=principal, source_ip=ip, destination_port=port, http=h)
    for principal, ip, port, h in product(
        (WEB, ADMIN, OTHER, None),
        ("10.1.0.5", "10.2.0.9"),
        (8080, 9090),
        (None, http(), http("POST", "/admin/x?q=1"), http("GET", "/api", **{"x-token": "abc"})),
    )
]

POLICIES = {
    "none": WorkloadPolicies(),
    "allow web principal": WorkloadPolicies(
        allow=(policy("a", A.ALLOW, AuthorizationRule(sources=(Source(principals=(m(WEB),)),))),)
    ),
    "allow nothing (empty ALLOW)": WorkloadPolicies(allow=(policy("a", A.ALLOW),)),
    "deny ops namespace, allow any authenticated": WorkloadPolicies(
        deny=(policy("d", A.DENY, AuthorizationRule(sources=(Source(namespaces=(m("ops"),)),))),),
        allow=(policy("a", A.ALLOW, AuthorizationRule(sources=(Source(principals=(m("*"),)),))),),
    ),
    "namespace prefix and not-principal": WorkloadPolicies(
        allow=(
            policy(
                "a",
                A.ALLOW,
                AuthorizationRule(
                    sources=(Source(namespaces=(m("web*"),), not_principals=(m("*/sa/batch"),)),)
                ),
            ),
        )
    ),
    "allow GET on /api* (L7 on TCP fails closed)": WorkloadPolicies(
        allow=(
            policy(
                "a",
                A.ALLOW,
                AuthorizationRule(operations=(Operation(methods=(m("GET"),), paths=(m("/api*"),)),)),
            ),
        )
    ),
    "deny POST on 8080 (L7 dropped on TCP: denies all 8080)": WorkloadPolicies(
        deny=(
            policy(
                "d", A.DENY, AuthorizationRule(operations=(Operation(ports=(8080,), methods=(m("POST"),)),))
            ),
        )
    ),
    "deny not-paths and plaintext": WorkloadPolicies(
        deny=(
            policy("d1", A.DENY, AuthorizationRule(operations=(Operation(not_paths=(m("/admin*"),)),))),
            policy("d2", A.DENY, AuthorizationRule(sources=(Source(not_principals=(m("*"),)),))),
        )
    ),
    "when header, source.ip and destination.port": WorkloadPolicies(
        allow=(
            policy(
                "a",
                A.ALLOW,
                AuthorizationRule(
                    conditions=(
                        Condition(key=ConditionKey.REQUEST_HEADERS, header="x-token", values=(m("ab*"),)),
                        Condition(key=ConditionKey.SOURCE_IP, values=(ipaddress.ip_network("10.1.0.0/16"),)),
                    )
                ),
                AuthorizationRule(
                    conditions=(Condition(key=ConditionKey.DESTINATION_PORT, not_values=(8080,)),),
                    sources=(Source(ip_blocks=(ipaddress.ip_network("10.2.0.0/16"),)),),
                ),
            ),
        )
    ),
    "rejected DENY stands in as deny-all": WorkloadPolicies(
        deny=(deny_all_stand_in(policy("bad", A.DENY)),),
        allow=(policy("a", A.ALLOW, AuthorizationRule()),),
    ),
    "rejected ALLOW allows nothing beside the valid one": WorkloadPolicies(
        allow=(
            deny_all_stand_in(policy("bad", A.ALLOW, AuthorizationRule())),
            policy("a", A.ALLOW, AuthorizationRule(sources=(Source(principals=(m(ADMIN),)),))),
        )
    ),
    "suffix principal and condition on principal/namespace": WorkloadPolicies(
        allow=(
            policy(
                "a",
                A.ALLOW,
                AuthorizationRule(
                    sources=(Source(principals=(m("*/sa/frontend"), m("*/sa/admin"))),),
                    conditions=(Condition(key=ConditionKey.SOURCE_NAMESPACE, not_values=(m("ops"),)),),
                ),
            ),
        ),
        audit=(policy("au", A.AUDIT, AuthorizationRule()),),
    ),
}


IP_POLICIES = {"when header, source.ip and destination.port"}


@pytest.mark.parametrize("name", sorted(POLICIES.keys() - IP_POLICIES))
def test_rbac_agrees_with_the_reference_evaluator(name: str) -> None:
    policies = POLICIES[name]
    filters = {True: build_rbac(policies, http=True), False: build_rbac(policies, http=False)}
    connect = build_rbac(policies, http=False, connect=True)
    outcomes = set()
    for req in REQUESTS:
        expected = authorize(policies, req).allowed
        got = rbaceval.allowed(filters[req.http is not None], req)
        assert got == expected, f"{name}: {req}"
        if req.http is None:
            # The same decision at the tunnel's CONNECT, before anything reaches the pod.
            assert rbaceval.allowed(connect, req, connect=True) == expected, f"{name} (CONNECT): {req}"
        outcomes.add(got)
    if name not in ("none", "allow nothing (empty ALLOW)", "rejected DENY stands in as deny-all"):
        # The table exercises both outcomes for every policy set (else it proves little).
        assert outcomes == {True, False}, name


@pytest.mark.parametrize("name", sorted(IP_POLICIES))
def test_source_ip_rules_fail_closed(name: str) -> None:
    """The destination does not know the caller's IP (the tunnel comes from its node): an ALLOW rule on it
    allows nothing, so Envoy never allows what the reference would deny."""
    policies = POLICIES[name]
    filters = {True: build_rbac(policies, http=True), False: build_rbac(policies, http=False)}
    connect = build_rbac(policies, http=False, connect=True)
    for req in REQUESTS:
        if rbaceval.allowed(filters[req.http is not None], req):
            assert authorize(policies, req).allowed, req
        if req.http is None and rbaceval.allowed(connect, req, connect=True):
            assert authorize(policies, req).allowed, req


def test_no_allow_policy_means_no_allow_filter_and_an_empty_allow_denies_everything() -> None:
    assert build_rbac(WorkloadPolicies(), http=True).all == ()
    (only,) = build_rbac(WorkloadPolicies(allow=(policy("a", A.ALLOW),)), http=True).all
    assert not only.policies


# -- generated ---------------------------------------------------------------------------------------------

_patterns = st.sampled_from(["*", "web", "w*", "*b", "ops", "*/sa/frontend", "cluster.local/ns/web/sa/*"])
_principals = st.sampled_from([WEB, ADMIN, OTHER, "cluster.local/ns/web/sa/x"])
_ns = st.sampled_from(["*", "web", "we*", "*ps", "ops"])


@st.composite
def sources(draw: st.DrawFn) -> Source:
    return Source(
        principals=tuple(m(p) for p in draw(st.lists(st.one_of(_patterns, _principals), max_size=2))),
        not_principals=tuple(m(p) for p in draw(st.lists(_patterns, max_size=2))),
        namespaces=tuple(m(p) for p in draw(st.lists(_ns, max_size=2))),
        not_namespaces=tuple(m(p) for p in draw(st.lists(_ns, max_size=2))),
    )


@st.composite
def operations(draw: st.DrawFn) -> Operation:
    return Operation(
        ports=tuple(draw(st.lists(st.sampled_from([8080, 9090]), max_size=2))),
        not_ports=tuple(draw(st.lists(st.sampled_from([9090]), max_size=1))),
        methods=tuple(m(x) for x in draw(st.lists(st.sampled_from(["GET", "P*", "*"]), max_size=2))),
        paths=tuple(m(x) for x in draw(st.lists(st.sampled_from(["/api", "/admin*", "*x"]), max_size=2))),
        not_paths=tuple(m(x) for x in draw(st.lists(st.sampled_from(["/api*"]), max_size=1))),
    )


@st.composite
def rules(draw: st.DrawFn) -> AuthorizationRule:
    conditions = []
    if draw(st.booleans()):
        conditions.append(
            Condition(key=ConditionKey.REQUEST_HEADERS, header="x-token", values=(m(draw(_ns)),))
        )
    return AuthorizationRule(
        sources=tuple(draw(st.lists(sources(), max_size=2))),
        operations=tuple(draw(st.lists(operations(), max_size=2))),
        conditions=tuple(conditions),
    )


@st.composite
def workload_policies(draw: st.DrawFn) -> WorkloadPolicies:
    def some(action: AuthorizationAction) -> tuple[AuthorizationPolicy, ...]:
        return tuple(
            policy(f"{action}-{i}", action, *draw(st.lists(rules(), max_size=2)))
            for i in range(draw(st.integers(0, 2)))
        )

    return WorkloadPolicies(deny=some(A.DENY), allow=some(A.ALLOW))


@settings(max_examples=150, deadline=None)
@given(workload_policies())
def test_generated_policies_agree_with_the_reference(policies: WorkloadPolicies) -> None:
    filters = {True: build_rbac(policies, http=True), False: build_rbac(policies, http=False)}
    connect = build_rbac(policies, http=False, connect=True)
    for req in REQUESTS:
        expected = authorize(policies, req).allowed
        assert rbaceval.allowed(filters[req.http is not None], req) == expected, req
        if req.http is None:
            assert rbaceval.allowed(connect, req, connect=True) == expected, req
