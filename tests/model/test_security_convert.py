"""AuthorizationPolicy and PeerAuthentication conversion, fail-closed stand-ins, agreement with the CRDs."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from apidouble.crds import validate_crd
from controlplane.model.authz import (
    AuthorizationAction,
    AuthorizationPolicy,
    AuthorizationRule,
    Condition,
    ConditionKey,
    MatchType,
    Operation,
    Source,
    StringMatch,
)
from controlplane.model.diagnostics import Reason, Severity
from controlplane.model.frozenmap import FrozenMap
from controlplane.model.kube import convert
from controlplane.model.kube.security import (
    AUTHORIZATION_FIELDS,
    MAX_CLAUSES,
    MAX_CONDITION_VALUE_LENGTH,
    MAX_LABELS,
    MAX_PORT_LEVEL,
    MAX_RULES,
    MAX_TARGET_REFS,
    MAX_VALUES,
    PEER_AUTHENTICATION_FIELDS,
)
from controlplane.model.peerauth import MtlsMode, PeerAuthentication
from controlplane.model.policy import PolicyTargetRef
from controlplane.model.refs import Kind, ObjectRef
from controlplane.sources.files import ManifestDirectory, load_manifests
from tests.model.builders import with_path
from tests.model.crdvalidation import (
    ROOT,
    cel_rules,
    compile_cel,
    load_crd,
    openapi_schema,
    rejections,
    schema_fields,
)

AUTHZ_CRD = "nodemesh.io_authorizationpolicies.yaml"
PEER_CRD = "nodemesh.io_peerauthentications.yaml"
SAMPLES = ROOT / "manifests/samples/security"
APP = FrozenMap({"app": "reviews"})


def authorization_policy(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "reviews"}},
        "action": "ALLOW",
        "rules": [
            {
                "from": [{"source": {"principals": ["cluster.local/ns/web/sa/frontend"]}}],
                "to": [{"operation": {"ports": ["9080"], "methods": ["GET"]}}],
                "when": [{"key": "source.ip", "values": ["10.0.0.0/8"]}],
            }
        ],
    }
    body.update(spec)
    return {
        "apiVersion": "nodemesh.io/v1alpha1",
        "kind": "AuthorizationPolicy",
        "metadata": {
            "name": "reviews",
            "namespace": "shop",
            "generation": 4,
            "creationTimestamp": "2026-01-02T03:04:05Z",
        },
        "spec": body,
    }


def peer_authentication(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "reviews"}},
        "mtls": {"mode": "STRICT"},
        "portLevelMtls": {"9090": {"mode": "PERMISSIVE"}},
    }
    body.update(spec)
    return {
        "apiVersion": "nodemesh.io/v1alpha1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "reviews", "namespace": "shop", "generation": 1},
        "spec": body,
    }


def exact(text: str) -> StringMatch:
    return StringMatch(type=MatchType.EXACT, value=text)


# -- AuthorizationPolicy ------------------------------------------------------------------------------------

FULL_AUTHZ_RULES: list[dict[str, Any]] = [
    {
        "from": [
            {
                "source": {
                    "principals": ["cluster.local/ns/web/sa/frontend", "*/ns/web/sa/frontend", "*"],
                    "notPrincipals": ["cluster.local/ns/web/sa/legacy"],
                    "namespaces": ["web", "team-*"],
                    "notNamespaces": ["*-sandbox"],
                    "ipBlocks": ["10.0.0.0/8", "fd00::1"],
                    "notIpBlocks": ["10.9.0.0/16"],
                }
            },
            {"source": {"namespaces": ["shop"]}},
        ],
        "to": [
            {
                "operation": {
                    "ports": ["9080", "8080", "9080"],
                    "notPorts": ["15000"],
                    "methods": ["GET", "HEAD"],
                    "notMethods": ["DELETE"],
                    "paths": ["/reviews/*", "*.json", "/health", "*"],
                    "notPaths": ["/reviews/admin*"],
                }
            }
        ],
        "when": [
            {"key": "request.headers[X-Tenant]", "values": ["acme", "globex*"], "notValues": ["*-test"]},
            {"key": "source.ip", "notValues": ["10.1.2.3"]},
            {"key": "source.namespace", "values": ["web"]},
            {"key": "source.principal", "values": ["cluster.local/ns/web/*"]},
            {"key": "destination.port", "values": ["9080"]},
        ],
    },
    {},
]


def test_full_authorization_policy() -> None:
    obj = authorization_policy(action="DENY", rules=FULL_AUTHZ_RULES)
    result = convert(obj)
    assert [str(d) for d in result.diagnostics] == []
    net = ipaddress.ip_network
    assert result.obj == AuthorizationPolicy(
        namespace="shop",
        name="reviews",
        generation=4,
        created=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        selector=APP,
        action=AuthorizationAction.DENY,
        rules=(
            AuthorizationRule(
                sources=(
                    Source(
                        principals=(
                            exact("cluster.local/ns/web/sa/frontend"),
                            StringMatch(type=MatchType.SUFFIX, value="/ns/web/sa/frontend"),
                            StringMatch(type=MatchType.ANY),
                        ),
                        not_principals=(exact("cluster.local/ns/web/sa/legacy"),),
                        namespaces=(exact("web"), StringMatch(type=MatchType.PREFIX, value="team-")),
                        not_namespaces=(StringMatch(type=MatchType.SUFFIX, value="-sandbox"),),
                        ip_blocks=(net("10.0.0.0/8"), net("fd00::1/128")),
                        not_ip_blocks=(net("10.9.0.0/16"),),
                    ),
                    Source(namespaces=(exact("shop"),)),
                ),
                operations=(
                    Operation(
                        ports=(9080, 8080),
                        not_ports=(15000,),
                        methods=(exact("GET"), exact("HEAD")),
                        not_methods=(exact("DELETE"),),
                        paths=(
                            StringMatch(type=MatchType.PREFIX, value="/reviews/"),
                            StringMatch(type=MatchType.SUFFIX, value=".json"),
                            exact("/health"),
                            StringMatch(type=MatchType.ANY),
                        ),
                        not_paths=(StringMatch(type=MatchType.PREFIX, value="/reviews/admin"),),
                    ),
                ),
                conditions=(
                    Condition(
                        key=ConditionKey.REQUEST_HEADERS,
                        header="x-tenant",
                        values=(exact("acme"), StringMatch(type=MatchType.PREFIX, value="globex")),
                        not_values=(StringMatch(type=MatchType.SUFFIX, value="-test"),),
                    ),
                    Condition(key=ConditionKey.SOURCE_IP, not_values=(net("10.1.2.3/32"),)),
                    Condition(key=ConditionKey.SOURCE_NAMESPACE, values=(exact("web"),)),
                    Condition(
                        key=ConditionKey.SOURCE_PRINCIPAL,
                        values=(StringMatch(type=MatchType.PREFIX, value="cluster.local/ns/web/"),),
                    ),
                    Condition(key=ConditionKey.DESTINATION_PORT, values=(9080,)),
                ),
            ),
            AuthorizationRule(),
        ),
    )
    assert rejections(openapi_schema(load_crd(AUTHZ_CRD)), obj) == []


def test_wildcard_principal_forms() -> None:
    for text, expected in [
        ("*", StringMatch(type=MatchType.ANY)),
        ("*/ns/web/sa/frontend", StringMatch(type=MatchType.SUFFIX, value="/ns/web/sa/frontend")),
        ("cluster.local/ns/web/*", StringMatch(type=MatchType.PREFIX, value="cluster.local/ns/web/")),
    ]:
        assert StringMatch.parse(text) == expected
        assert str(expected) == text


def test_scope_forms() -> None:
    targets = convert(
        authorization_policy(selector=None, targetRefs=[{"group": "", "kind": "Service", "name": "reviews"}])
    ).obj
    assert isinstance(targets, AuthorizationPolicy)
    assert targets.selector is None and targets.target_refs == (PolicyTargetRef(name="reviews"),)
    assert targets.target_services == {ObjectRef.service("shop", "reviews")}
    # An empty selector, like none, means the whole namespace.
    empty: list[dict[str, Any]] = [{}, {"matchLabels": {}}]
    for selector in empty:
        wide = convert(authorization_policy(selector=selector)).obj
        assert isinstance(wide, AuthorizationPolicy) and wide.namespace_wide


def test_empty_spec_is_an_allow_nothing_policy() -> None:
    obj = authorization_policy()
    obj["spec"] = {}
    result = convert(obj)
    assert result.diagnostics == ()
    assert result.obj == AuthorizationPolicy(
        namespace="shop",
        name="reviews",
        generation=4,
        created=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert rejections(openapi_schema(load_crd(AUTHZ_CRD)), obj) == []


_RULE = "spec.rules[0]"
_SOURCE = f"{_RULE}.from[0].source"
_OPERATION = f"{_RULE}.to[0].operation"
_WHEN = f"{_RULE}.when[0]"

# (case id, path, value, reported field, reason, scope still known, also rejected by the CRD)
AUTHZ_INVALID: list[tuple[str, str, Any, str, Reason, bool, bool]] = [
    ("unknown spec field", "spec.provider", {"name": "x"}, "spec.provider", Reason.UNKNOWN_FIELD, True, True),
    ("custom action", "spec.action", "CUSTOM", "spec.action", Reason.UNSUPPORTED_VALUE, True, True),
    (
        "selector and targets",
        "spec.targetRefs",
        [{"group": "", "kind": "Service", "name": "reviews"}],
        "spec",
        Reason.CONFLICTING_FIELDS,
        False,
        True,
    ),
    (
        "bad label key",
        "spec.selector.matchLabels",
        {"-app": "x"},
        "spec.selector.matchLabels.-app",
        Reason.INVALID_VALUE,
        False,
        False,
    ),
    (
        "spiffe prefix",
        f"{_SOURCE}.principals",
        ["spiffe://cluster.local/ns/web/sa/frontend"],
        f"{_SOURCE}.principals[0]",
        Reason.INVALID_VALUE,
        True,
        True,
    ),
    (
        "principal shape",
        f"{_SOURCE}.principals",
        ["cluster.local/sa/frontend"],
        f"{_SOURCE}.principals[0]",
        Reason.INVALID_VALUE,
        True,
        True,
    ),
    (
        "inner wildcard",
        f"{_SOURCE}.notPrincipals",
        ["cluster.local/ns/*/sa/frontend"],
        f"{_SOURCE}.notPrincipals[0]",
        Reason.INVALID_VALUE,
        True,
        True,
    ),
    (
        "empty list",
        f"{_SOURCE}.principals",
        [],
        f"{_SOURCE}.principals",
        Reason.INVALID_VALUE,
        True,
        True,
    ),
    (
        "empty value",
        f"{_SOURCE}.namespaces",
        [""],
        f"{_SOURCE}.namespaces[0]",
        Reason.INVALID_VALUE,
        True,
        True,
    ),
    ("empty source", f"{_RULE}.from[0].source", {}, f"{_SOURCE}", Reason.MISSING_FIELD, True, True),
    ("empty from", f"{_RULE}.from", [], f"{_RULE}.from", Reason.INVALID_VALUE, True, True),
    (
        "namespace name",
        f"{_SOURCE}.namespaces",
        ["Shop_1"],
        f"{_SOURCE}.namespaces[0]",
        Reason.INVALID_VALUE,
        True,
        True,
    ),
    (
        "host bits",
        f"{_SOURCE}.ipBlocks",
        ["10.0.0.1/8"],
        f"{_SOURCE}.ipBlocks[0]",
        Reason.INVALID_ADDRESS,
        True,
        False,
    ),
    (
        "not an address",
        f"{_SOURCE}.notIpBlocks",
        ["ten"],
        f"{_SOURCE}.notIpBlocks[0]",
        Reason.INVALID_ADDRESS,
        True,
        True,
    ),
    (
        "port range",
        f"{_OPERATION}.ports",
        ["99999"],
        f"{_OPERATION}.ports[0]",
        Reason.OUT_OF_RANGE,
        True,
        True,
    ),
    (
        "port name",
        f"{_OPERATION}.notPorts",
        ["http"],
        f"{_OPERATION}.notPorts[0]",
        Reason.OUT_OF_RANGE,
        True,
        True,
    ),
    ("port type", f"{_OPERATION}.ports", [9080], f"{_OPERATION}.ports[0]", Reason.WRONG_TYPE, True, True),
    (
        "lower-case method",
        f"{_OPERATION}.methods",
        ["get"],
        f"{_OPERATION}.methods[0]",
        Reason.INVALID_VALUE,
        True,
        True,
    ),
    (
        "relative path",
        f"{_OPERATION}.paths",
        ["reviews"],
        f"{_OPERATION}.paths[0]",
        Reason.INVALID_VALUE,
        True,
        True,
    ),
    (
        "query in path",
        f"{_OPERATION}.paths",
        ["/a?b=1"],
        f"{_OPERATION}.paths[0]",
        Reason.INVALID_VALUE,
        True,
        True,
    ),
    (
        "inner path wildcard",
        f"{_OPERATION}.notPaths",
        ["/a/*/b"],
        f"{_OPERATION}.notPaths[0]",
        Reason.INVALID_VALUE,
        True,
        True,
    ),
    (
        "unknown operation field",
        f"{_OPERATION}.hosts",
        ["a.b"],
        f"{_OPERATION}.hosts",
        Reason.UNKNOWN_FIELD,
        True,
        True,
    ),
    ("empty operation", f"{_RULE}.to[0].operation", {}, _OPERATION, Reason.MISSING_FIELD, True, True),
    (
        "unsupported key",
        _WHEN,
        {"key": "request.auth.claims[iss]", "values": ["x"]},
        f"{_WHEN}.key",
        Reason.UNSUPPORTED_VALUE,
        True,
        True,
    ),
    (
        "bad header name",
        _WHEN,
        {"key": "request.headers[a b]", "values": ["x"]},
        f"{_WHEN}.key",
        Reason.INVALID_VALUE,
        True,
        True,
    ),
    ("no values", _WHEN, {"key": "source.ip"}, _WHEN, Reason.MISSING_FIELD, True, True),
    (
        "port condition",
        _WHEN,
        {"key": "destination.port", "values": ["x"]},
        f"{_WHEN}.values[0]",
        Reason.OUT_OF_RANGE,
        True,
        False,
    ),
    (
        "ip condition",
        _WHEN,
        {"key": "source.ip", "notValues": ["nowhere"]},
        f"{_WHEN}.notValues[0]",
        Reason.INVALID_ADDRESS,
        True,
        False,
    ),
    (
        "namespace condition",
        _WHEN,
        {"key": "source.namespace", "values": ["Web"]},
        f"{_WHEN}.values[0]",
        Reason.INVALID_VALUE,
        True,
        False,
    ),
    ("rules type", "spec.rules", {"from": []}, "spec.rules", Reason.WRONG_TYPE, True, True),
]


@pytest.mark.parametrize("case", AUTHZ_INVALID, ids=[c[0] for c in AUTHZ_INVALID])
def test_invalid_authorization_policy_fails_closed(
    case: tuple[str, str, Any, str, Reason, bool, bool],
) -> None:
    _, path, value, field, reason, scope_known, in_crd = case
    obj = with_path(authorization_policy(), path, value)
    result = convert(obj)
    assert [(d.field, d.reason, d.severity) for d in result.diagnostics] == [
        (field, reason, Severity.ERROR),
        ("", Reason.FAIL_CLOSED, Severity.WARNING),
    ]
    stand_in = result.obj
    assert isinstance(stand_in, AuthorizationPolicy) and stand_in.rejected
    assert stand_in.ref == ObjectRef(kind=Kind.AUTHORIZATION_POLICY, namespace="shop", name="reviews")
    if scope_known:
        assert stand_in.selector == APP
    else:
        assert stand_in.namespace_wide
        assert "every workload in namespace shop" in result.diagnostics[-1].message
    if path == "spec.action":
        # The action is unknown: deny everything.
        assert stand_in.action is AuthorizationAction.DENY and stand_in.rules == (AuthorizationRule(),)
    else:
        # A rejected ALLOW policy allows nothing (and makes its scope default-deny).
        assert stand_in.action is AuthorizationAction.ALLOW and stand_in.rules == ()
    found = rejections(openapi_schema(load_crd(AUTHZ_CRD)), obj)
    assert bool(found) == in_crd, found


def test_rejected_deny_policy_denies_everything() -> None:
    result = convert(authorization_policy(action="DENY", rules=[{"to": [{"operation": {"ports": ["x"]}}]}]))
    assert result.obj == AuthorizationPolicy(
        namespace="shop",
        name="reviews",
        generation=4,
        created=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        selector=APP,
        action=AuthorizationAction.DENY,
        rules=(AuthorizationRule(),),
        rejected=True,
    )
    assert "denies every request to the workloads it selects" in result.diagnostics[-1].message


def test_rejected_audit_policy_is_dropped() -> None:
    result = convert(authorization_policy(action="AUDIT", rules=[{"to": [{"operation": {"ports": ["x"]}}]}]))
    assert result.obj is None
    assert [d.reason for d in result.diagnostics] == [Reason.OUT_OF_RANGE]


def test_unreadable_spec_denies_the_namespace() -> None:
    obj = authorization_policy()
    obj["spec"] = ["not", "an", "object"]
    result = convert(obj)
    assert isinstance(result.obj, AuthorizationPolicy)
    assert result.obj.rejected and result.obj.namespace_wide and result.obj.rules == ()


# -- PeerAuthentication -------------------------------------------------------------------------------------


def test_peer_authentication() -> None:
    obj = peer_authentication()
    result = convert(obj)
    assert [str(d) for d in result.diagnostics] == []
    assert result.obj == PeerAuthentication(
        namespace="shop",
        name="reviews",
        generation=1,
        selector=APP,
        mode=MtlsMode.STRICT,
        port_modes=FrozenMap({9090: MtlsMode.PERMISSIVE}),
    )
    assert rejections(openapi_schema(load_crd(PEER_CRD)), obj) == []


def test_peer_authentication_defaults_and_yaml_integer_ports() -> None:
    namespace_wide = peer_authentication()
    namespace_wide["spec"] = {}
    assert convert(namespace_wide).obj == PeerAuthentication(namespace="shop", name="reviews", generation=1)
    # `8080:` unquoted in a YAML file is an integer key; the API server only ever sends strings.
    doc = yaml.safe_load(
        "apiVersion: nodemesh.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: a, namespace: shop}\n"
        "spec:\n  selector: {matchLabels: {app: a}}\n  portLevelMtls:\n    8080: {mode: STRICT}\n"
    )
    result = convert(doc)
    assert result.diagnostics == ()
    assert isinstance(result.obj, PeerAuthentication)
    assert result.obj.port_modes == {8080: MtlsMode.STRICT} and result.obj.mode is MtlsMode.UNSET


# (case id, path, value, reported field, reason, scope still known, also rejected by the CRD)
PEER_INVALID: list[tuple[str, str, Any, str, Reason, bool, bool]] = [
    ("disable", "spec.mtls.mode", "DISABLE", "spec.mtls.mode", Reason.UNSUPPORTED_VALUE, True, True),
    ("unknown field", "spec.mtls.enabled", True, "spec.mtls.enabled", Reason.UNKNOWN_FIELD, True, True),
    (
        "ports without selector",
        "spec.selector",
        ...,
        "spec.portLevelMtls",
        Reason.CONFLICTING_FIELDS,
        True,
        True,
    ),
    (
        "ports with an empty selector",
        "spec.selector.matchLabels",
        {},
        "spec.selector.matchLabels",
        Reason.MISSING_FIELD,
        True,
        True,
    ),
    (
        "port name",
        "spec.portLevelMtls",
        {"http": {"mode": "STRICT"}},
        "spec.portLevelMtls.http",
        Reason.OUT_OF_RANGE,
        True,
        True,
    ),
    (
        "port zero",
        "spec.portLevelMtls",
        {"0": {"mode": "STRICT"}},
        "spec.portLevelMtls.0",
        Reason.OUT_OF_RANGE,
        True,
        True,
    ),
    (
        "port mode",
        "spec.portLevelMtls.9090",
        {},
        "spec.portLevelMtls.9090.mode",
        Reason.MISSING_FIELD,
        True,
        True,
    ),
    (
        "label value type",
        "spec.selector.matchLabels.app",
        3,
        "spec.selector.matchLabels.app",
        Reason.WRONG_TYPE,
        False,
        True,
    ),
    ("selector type", "spec.selector", "app=reviews", "spec.selector", Reason.WRONG_TYPE, False, True),
]


@pytest.mark.parametrize("case", PEER_INVALID, ids=[c[0] for c in PEER_INVALID])
def test_invalid_peer_authentication_fails_closed(
    case: tuple[str, str, Any, str, Reason, bool, bool],
) -> None:
    _, path, value, field, reason, scope_known, in_crd = case
    obj = with_path(peer_authentication(), path, value)
    result = convert(obj)
    assert [(d.field, d.reason, d.severity) for d in result.diagnostics] == [
        (field, reason, Severity.ERROR),
        ("", Reason.FAIL_CLOSED, Severity.WARNING),
    ]
    stand_in = result.obj
    assert isinstance(stand_in, PeerAuthentication) and stand_in.rejected
    assert stand_in.mode is MtlsMode.STRICT and stand_in.port_modes == {}
    selector_readable = scope_known and path not in ("spec.selector", "spec.selector.matchLabels")
    assert stand_in.selector == (APP if selector_readable else None)
    found = rejections(openapi_schema(load_crd(PEER_CRD)), obj)
    assert bool(found) == in_crd, found


def test_creation_timestamp() -> None:
    obj = peer_authentication()
    obj["metadata"]["creationTimestamp"] = "2025-06-01T00:00:00+02:00"
    pa = convert(obj).obj
    assert isinstance(pa, PeerAuthentication)
    assert pa.created == datetime(2025, 5, 31, 22, 0, tzinfo=UTC)
    obj["metadata"]["creationTimestamp"] = "yesterday"
    result = convert(obj)
    assert isinstance(result.obj, PeerAuthentication) and result.obj.created is None
    assert not result.obj.rejected
    assert [(d.field, d.severity) for d in result.diagnostics] == [
        ("metadata.creationTimestamp", Severity.WARNING)
    ]


# -- the CRDs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_name", "fields"), [(AUTHZ_CRD, AUTHORIZATION_FIELDS), (PEER_CRD, PEER_AUTHENTICATION_FIELDS)]
)
def test_crd_schema_has_exactly_the_fields_the_converter_reads(
    file_name: str, fields: dict[str, tuple[str, ...]]
) -> None:
    found: dict[str, tuple[str, ...]] = {}
    schema_fields(openapi_schema(load_crd(file_name))["properties"]["spec"], "spec", found)
    assert {k: sorted(v) for k, v in found.items()} == {k: sorted(v) for k, v in fields.items()}


@pytest.mark.parametrize(
    ("file_name", "plural", "kind", "columns"),
    [
        (AUTHZ_CRD, "authorizationpolicies", "AuthorizationPolicy", {"Action", "Targets", "Accepted", "Age"}),
        (PEER_CRD, "peerauthentications", "PeerAuthentication", {"Mode", "Accepted", "Age"}),
    ],
)
def test_crd_shape(file_name: str, plural: str, kind: str, columns: set[str]) -> None:
    crd = load_crd(file_name)
    assert validate_crd(crd) == []
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == f"{plural}.nodemesh.io"
    assert crd["spec"]["names"]["kind"] == kind and crd["spec"]["scope"] == "Namespaced"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    assert {c["name"] for c in version["additionalPrinterColumns"]} == columns
    schema = openapi_schema(crd)
    assert schema["properties"]["status"]["properties"]["conditions"]["x-kubernetes-list-map-keys"] == [
        "type"
    ]
    rules = cel_rules(schema)
    assert rules
    for rule in rules:
        compile_cel(rule)


def test_crd_bounds_match_the_converter() -> None:
    spec = openapi_schema(load_crd(AUTHZ_CRD))["properties"]["spec"]["properties"]
    assert spec["targetRefs"]["maxItems"] == MAX_TARGET_REFS
    assert spec["rules"]["maxItems"] == MAX_RULES
    rule = spec["rules"]["items"]["properties"]
    assert {rule[k]["maxItems"] for k in ("from", "to", "when")} == {MAX_CLAUSES}
    source = rule["from"]["items"]["properties"]["source"]["properties"]
    operation = rule["to"]["items"]["properties"]["operation"]["properties"]
    when = rule["when"]["items"]["properties"]
    lists = [*source.values(), *operation.values(), when["values"], when["notValues"]]
    assert {item["maxItems"] for item in lists} == {MAX_VALUES}
    assert when["values"]["items"]["maxLength"] == MAX_CONDITION_VALUE_LENGTH
    assert spec["selector"]["properties"]["matchLabels"]["maxProperties"] == MAX_LABELS
    peer = openapi_schema(load_crd(PEER_CRD))["properties"]["spec"]["properties"]
    assert peer["portLevelMtls"]["maxProperties"] == MAX_PORT_LEVEL


def test_crd_enums_match_the_model() -> None:
    authz = openapi_schema(load_crd(AUTHZ_CRD))["properties"]["spec"]["properties"]
    assert authz["action"]["enum"] == [a.value for a in AuthorizationAction]
    peer = openapi_schema(load_crd(PEER_CRD))["properties"]["spec"]["properties"]
    assert peer["mtls"]["properties"]["mode"]["enum"] == [m.value for m in MtlsMode]
    assert peer["portLevelMtls"]["additionalProperties"]["properties"]["mode"]["enum"] == [
        m.value for m in MtlsMode
    ]


def test_crd_when_keys_match_the_model() -> None:
    authz = openapi_schema(load_crd(AUTHZ_CRD))
    when = authz["properties"]["spec"]["properties"]["rules"]["items"]["properties"]["when"]["items"]
    good = {
        ConditionKey.REQUEST_HEADERS: ("request.headers[x-a]", "a*"),
        ConditionKey.SOURCE_IP: ("source.ip", "10.0.0.1"),
        ConditionKey.SOURCE_NAMESPACE: ("source.namespace", "web-*"),
        ConditionKey.SOURCE_PRINCIPAL: ("source.principal", "td/ns/a/sa/b"),
        ConditionKey.DESTINATION_PORT: ("destination.port", "80"),
    }
    for key in ConditionKey:
        text, value = good[key]
        obj = authorization_policy(rules=[{"when": [{"key": text, "values": [value]}]}])
        assert rejections(authz, obj) == [], key
        assert convert(obj).diagnostics == (), key
        bad = authorization_policy(rules=[{"when": [{"key": text, "notValues": ["*x*"]}]}])
        assert rejections(authz, bad) != [], key
        assert [d.field for d in convert(bad).diagnostics if d.is_error] == [
            "spec.rules[0].when[0].notValues[0]"
        ]
    assert "pattern" in when["properties"]["key"]


def test_samples_load_cleanly_and_satisfy_the_crds() -> None:
    objects, diagnostics = load_manifests(SAMPLES)
    assert [str(d) for d in diagnostics] == []
    assert {o.ref.kind for o in objects} == {Kind.AUTHORIZATION_POLICY, Kind.PEER_AUTHENTICATION}
    schemas = {
        "AuthorizationPolicy": openapi_schema(load_crd(AUTHZ_CRD)),
        "PeerAuthentication": openapi_schema(load_crd(PEER_CRD)),
    }
    for path in sorted(Path(SAMPLES).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert rejections(schemas[doc["kind"]], doc) == [], (path.name, doc["metadata"]["name"])


def test_a_bad_edit_replaces_the_policy_with_its_stand_in(tmp_path: Path) -> None:
    """Unlike other kinds, a security policy does not keep its last valid version: that could keep access
    open that the edit meant to close. The stand-in takes its place until the policy is fixed."""
    manifest = tmp_path / "policy.yaml"
    manifest.write_text(yaml.safe_dump(authorization_policy()))
    directory = ManifestDirectory(tmp_path)
    directory.refresh()
    (valid,) = directory.objects().values()
    assert isinstance(valid, AuthorizationPolicy) and not valid.rejected
    manifest.write_text(
        yaml.safe_dump(with_path(authorization_policy(), "spec.rules[0].to[0].operation.ports", ["x"]))
    )
    directory.refresh()
    (stand_in,) = directory.objects().values()
    assert isinstance(stand_in, AuthorizationPolicy) and stand_in.rejected and stand_in.selector == APP
    assert {d.reason for d in directory.diagnostics()} == {Reason.OUT_OF_RANGE, Reason.FAIL_CLOSED}
