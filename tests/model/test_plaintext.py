"""Which ports refuse plaintext because of AuthorizationPolicy: the table of Istio's plaintext semantics
(no principal, no namespace, nothing L7 or address-based checkable in the kernel), and properties against
the reference evaluator: what is admitted is allowed for every plaintext caller and request, and for
policies the kernel can check exactly, what is refused is denied."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controlplane.model.authz import (
    AuthorizationAction,
    AuthorizationPolicy,
    AuthorizationRule,
    Condition,
    ConditionKey,
    ConditionValue,
    HttpRequest,
    Operation,
    Request,
    Source,
    StringMatch,
    WorkloadPolicies,
    authorize,
    deny_all_stand_in,
)
from controlplane.model.plaintext import PLAINTEXT_ADMITTED, PlaintextAuthorization, authorize_plaintext

ALLOW, DENY, AUDIT = AuthorizationAction.ALLOW, AuthorizationAction.DENY, AuthorizationAction.AUDIT
ALICE = "cluster.local/ns/bank/sa/alice"


def m(*texts: str) -> tuple[StringMatch, ...]:
    return tuple(StringMatch.parse(t) for t in texts)


def rule(
    *,
    src: tuple[Source, ...] = (),
    ops: tuple[Operation, ...] = (),
    when: tuple[Condition, ...] = (),
) -> AuthorizationRule:
    return AuthorizationRule(sources=src, operations=ops, conditions=when)


def ap(name: str, action: AuthorizationAction, *rules: AuthorizationRule) -> AuthorizationPolicy:
    return AuthorizationPolicy(namespace="bank", name=name, action=action, rules=rules)


def policies(*ps: AuthorizationPolicy) -> WorkloadPolicies:
    return WorkloadPolicies(
        deny=tuple(p for p in ps if p.action is DENY),
        allow=tuple(p for p in ps if p.action is ALLOW),
        audit=tuple(p for p in ps if p.action is AUDIT),
    )


def when(key: ConditionKey, *values: ConditionValue, negate: bool = False, header: str = "") -> Condition:
    if negate:
        return Condition(key=key, header=header, not_values=values)
    return Condition(key=key, header=header, values=values)


def refusing(refused: bool, **ports: bool) -> PlaintextAuthorization:
    """`refused` on every port but `p<port>=answer`."""
    return PlaintextAuthorization(
        refused=refused, ports=tuple(sorted((int(k.removeprefix("p")), v) for k, v in ports.items()))
    )


ALICE_ONLY = rule(src=(Source(principals=m(ALICE)),))
NET = (ipaddress.ip_network("10.0.0.0/8"),)
EVERYTHING = ap("deny-all", DENY, rule())

CASES: list[tuple[str, tuple[AuthorizationPolicy, ...], PlaintextAuthorization]] = [
    ("no policy", (), PLAINTEXT_ADMITTED),
    ("audit changes nothing", (ap("audit", AUDIT, rule()),), PLAINTEXT_ADMITTED),
    ("allow principals never matches plaintext", (ap("alice", ALLOW, ALICE_ONLY),), refusing(True)),
    (
        "allow any principal is any authenticated caller",
        (ap("a", ALLOW, rule(src=(Source(principals=m("*")),))),),
        refusing(True),
    ),
    ("allow namespaces", (ap("a", ALLOW, rule(src=(Source(namespaces=m("bank")),))),), refusing(True)),
    ("allow nothing (no rules)", (ap("none", ALLOW),), refusing(True)),
    ("allow everything (empty rule)", (ap("all", ALLOW, rule()),), refusing(False)),
    (
        "notPrincipals matches no identity",
        (ap("a", ALLOW, rule(src=(Source(not_principals=m(ALICE)),))),),
        refusing(False),
    ),
    ("notPrincipals * too", (ap("a", ALLOW, rule(src=(Source(not_principals=m("*")),))),), refusing(False)),
    (
        "notNamespaces matches no identity",
        (ap("a", ALLOW, rule(src=(Source(not_namespaces=m("x")),))),),
        refusing(False),
    ),
    (
        "sources are ORed: one without identity is enough",
        (ap("a", ALLOW, rule(src=(Source(principals=m(ALICE)), Source(not_namespaces=m("x"))))),),
        refusing(False),
    ),
    (
        "inside a source every field must match",
        (ap("a", ALLOW, rule(src=(Source(principals=m(ALICE), not_namespaces=m("x")),))),),
        refusing(True),
    ),
    ("allow to ports", (ap("a", ALLOW, rule(ops=(Operation(ports=(8080,)),))),), refusing(True, p8080=False)),
    (
        "allow to notPorts",
        (ap("a", ALLOW, rule(ops=(Operation(not_ports=(9090,)),))),),
        refusing(False, p9090=True),
    ),
    (
        "allow from principals to ports",
        (ap("a", ALLOW, rule(src=(Source(principals=m(ALICE)),), ops=(Operation(ports=(8080,)),))),),
        refusing(True),
    ),
    (
        "allow methods: L7, unchecked",
        (ap("a", ALLOW, rule(ops=(Operation(methods=m("GET")),))),),
        refusing(True),
    ),
    (
        "allow notPaths: L7 too",
        (ap("a", ALLOW, rule(ops=(Operation(not_paths=m("/admin*")),))),),
        refusing(True),
    ),
    (
        "an L7 operation anywhere in an allow rule voids the whole rule on TCP",
        (ap("a", ALLOW, rule(ops=(Operation(ports=(8080,)), Operation(ports=(9090,), methods=m("GET"))))),),
        refusing(True),
    ),
    (
        "allow when header: L7",
        (ap("a", ALLOW, rule(when=(when(ConditionKey.REQUEST_HEADERS, *m("x"), header="x-a"),))),),
        refusing(True),
    ),
    (
        "allow when source.principal",
        (ap("a", ALLOW, rule(when=(when(ConditionKey.SOURCE_PRINCIPAL, *m("*")),))),),
        refusing(True),
    ),
    (
        "allow when source.namespace not in",
        (ap("a", ALLOW, rule(when=(when(ConditionKey.SOURCE_NAMESPACE, *m("x"), negate=True),))),),
        refusing(False),
    ),
    (
        "allow when destination.port",
        (ap("a", ALLOW, rule(when=(when(ConditionKey.DESTINATION_PORT, 8080, 8081),))),),
        refusing(True, p8080=False, p8081=False),
    ),
    (
        "allow ipBlocks: the address is not checked",
        (ap("a", ALLOW, rule(src=(Source(ip_blocks=NET),))),),
        refusing(True),
    ),
    ("allow notIpBlocks", (ap("a", ALLOW, rule(src=(Source(not_ip_blocks=NET),))),), refusing(True)),
    (
        "allow when source.ip",
        (ap("a", ALLOW, rule(when=(when(ConditionKey.SOURCE_IP, NET[0]),))),),
        refusing(True),
    ),
    (
        "an address rule leaves the other rules",
        (ap("a", ALLOW, rule(src=(Source(ip_blocks=NET),)), rule(ops=(Operation(ports=(8080,)),))),),
        refusing(True, p8080=False),
    ),
    (
        "two allow policies: either admits",
        (ap("a", ALLOW, ALICE_ONLY), ap("b", ALLOW, rule(ops=(Operation(ports=(8080,)),)))),
        refusing(True, p8080=False),
    ),
    ("deny principals never matches plaintext", (ap("d", DENY, ALICE_ONLY),), refusing(False)),
    (
        "deny notPrincipals matches plaintext",
        (ap("d", DENY, rule(src=(Source(not_principals=m(ALICE)),))),),
        refusing(True),
    ),
    ("deny everything", (EVERYTHING,), refusing(True)),
    ("deny a port", (ap("d", DENY, rule(ops=(Operation(ports=(9090,)),))),), refusing(False, p9090=True)),
    (
        "deny all ports but one",
        (ap("d", DENY, rule(ops=(Operation(not_ports=(8080,)),))),),
        refusing(True, p8080=False),
    ),
    (
        "deny with L7 on a port: fails closed on that port",
        (ap("d", DENY, rule(ops=(Operation(ports=(9090,), paths=m("/admin*")),))),),
        refusing(False, p9090=True),
    ),
    (
        "deny when header: fails closed",
        (ap("d", DENY, rule(when=(when(ConditionKey.REQUEST_HEADERS, *m("1"), header="x-debug"),))),),
        refusing(True),
    ),
    (
        "deny from principals with L7: still no identity",
        (ap("d", DENY, rule(src=(Source(principals=m("*")),), ops=(Operation(methods=m("POST")),))),),
        refusing(False),
    ),
    (
        "deny ipBlocks: any caller may be in them",
        (ap("d", DENY, rule(src=(Source(ip_blocks=NET),))),),
        refusing(True),
    ),
    (
        "deny source.ip on a port",
        (ap("d", DENY, rule(ops=(Operation(ports=(22,)),), when=(when(ConditionKey.SOURCE_IP, NET[0]),))),),
        refusing(False, p22=True),
    ),
    (
        "deny beats allow on its port",
        (ap("a", ALLOW, rule()), ap("d", DENY, rule(ops=(Operation(ports=(9090,)),)))),
        refusing(False, p9090=True),
    ),
    (
        "allow one port, deny it again",
        (
            ap("a", ALLOW, rule(ops=(Operation(ports=(8080,)),))),
            ap("d", DENY, rule(ops=(Operation(ports=(8080,)),))),
        ),
        refusing(True),
    ),
    (
        "a rejected allow policy allows nothing",
        (deny_all_stand_in(ap("bad", ALLOW, rule())),),
        refusing(True),
    ),
    (
        "a rejected deny policy denies everything",
        (deny_all_stand_in(ap("bad", DENY, ALICE_ONLY)),),
        refusing(True),
    ),
    (
        "port 0 is a port like any other",
        (ap("a", ALLOW, rule(ops=(Operation(ports=(0,)),))),),
        refusing(True, p0=False),
    ),
]


@pytest.mark.parametrize(("ps", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_authorize_plaintext(ps: tuple[AuthorizationPolicy, ...], expected: PlaintextAuthorization) -> None:
    assert authorize_plaintext(policies(*ps)) == expected


def test_refuses_reads_the_port_then_the_default() -> None:
    found = refusing(True, p8080=False)
    assert found.refuses(None) and found.refuses(9090) and not found.refuses(8080)
    found = refusing(False, p9090=True)
    assert not found.refuses(None) and found.refuses(9090) and not found.refuses(8080)


# -- properties against the reference evaluator -----------------------------------------------------------

PORTS = (80, 8080, 9090)
NET_A, NET_B = ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.0.0/16")
# One field per source, operation and condition, so simple rules (the ones that admit plaintext) are
# frequent; a rule combines up to two of each.
SOURCES = (
    Source(principals=m(ALICE)),
    Source(principals=m("*")),
    Source(not_principals=m(ALICE)),
    Source(namespaces=m("bank")),
    Source(not_namespaces=m("web")),
    Source(not_namespaces=m("*")),
    Source(ip_blocks=(NET_A,)),
    Source(not_ip_blocks=(NET_B,)),
)
OPERATIONS = (
    *(Operation(ports=(p,)) for p in PORTS),
    Operation(ports=PORTS[:2]),
    *(Operation(not_ports=(p,)) for p in PORTS),
    Operation(methods=m("GET")),
    Operation(not_paths=m("/admin*")),
)
CONDITIONS = (
    when(ConditionKey.REQUEST_HEADERS, *m("a"), header="x"),
    *(when(ConditionKey.SOURCE_PRINCIPAL, *m(ALICE), negate=n) for n in (False, True)),
    *(when(ConditionKey.SOURCE_NAMESPACE, *m("web"), negate=n) for n in (False, True)),
    *(when(ConditionKey.DESTINATION_PORT, p, negate=n) for p in PORTS[1:] for n in (False, True)),
    *(when(ConditionKey.SOURCE_IP, NET_A, negate=n) for n in (False, True)),
)
st_rule = st.builds(
    AuthorizationRule,
    sources=st.lists(st.sampled_from(SOURCES), max_size=2).map(tuple),
    operations=st.lists(st.sampled_from(OPERATIONS), max_size=2).map(tuple),
    conditions=st.lists(st.sampled_from(CONDITIONS), max_size=2).map(tuple),
)
st_policy = st.builds(
    lambda name, action, rules: ap(name, action, *rules),
    st.sampled_from(("p1", "p2", "p3", "p4")),
    st.sampled_from((ALLOW, DENY, AUDIT)),
    st.lists(st_rule, max_size=2),
)
st_http = st.none() | st.builds(
    HttpRequest,
    method=st.sampled_from(("GET", "POST")),
    path=st.sampled_from(("/", "/admin/x")),
    headers=st.sampled_from(({}, {"x": "a"})),
)
st_plaintext = st.builds(
    Request,
    principal=st.none(),
    source_ip=st.sampled_from(("10.1.2.3", "192.168.1.1", "172.16.0.1")),
    destination_port=st.sampled_from((*PORTS, 443)),
    http=st_http,
)


def _unique(ps: list[AuthorizationPolicy]) -> WorkloadPolicies:
    return policies(*{p.ref: p for p in ps}.values())


@given(st.lists(st_policy, max_size=3), st.lists(st_plaintext, min_size=1, max_size=8))
def test_what_is_admitted_is_allowed_for_every_plaintext_request(
    ps: list[AuthorizationPolicy], requests: list[Request]
) -> None:
    workload = _unique(ps)
    found = authorize_plaintext(workload)
    for request in requests:
        if not found.refuses(request.destination_port):
            assert authorize(workload, request).allowed, (found, request)


def _l4_only(rule_: AuthorizationRule) -> bool:
    return (
        not rule_.has_l7
        and not any(s.ip_blocks or s.not_ip_blocks for s in rule_.sources)
        and not any(c.key is ConditionKey.SOURCE_IP for c in rule_.conditions)
    )


@given(st.lists(st_policy, max_size=3), st_plaintext)
def test_what_the_kernel_can_check_is_refused_exactly_when_denied(
    ps: list[AuthorizationPolicy], request: Request
) -> None:
    workload = _unique([p for p in ps if all(_l4_only(r) for r in p.rules)])
    expected = not authorize(workload, request).allowed
    assert authorize_plaintext(workload).refuses(request.destination_port) is expected
