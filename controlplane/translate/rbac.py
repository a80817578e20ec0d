"""AuthorizationPolicy to Envoy RBAC, agreeing with `controlplane.model.authz.authorize`.

A workload's policies become up to two RBAC filters, in order: a DENY filter (any matching DENY policy
denies) and, when some ALLOW policy selects the workload, an ALLOW filter (only what one of them matches
passes; with no translatable rule it passes nothing). AUDIT policies never change the outcome and are left
out. One rule becomes one Envoy policy: its sources (ORed) and source conditions as principals, its
operations (ORed) and the other conditions as permissions.

The caller's identity is the filter state `nodemesh.peer_principal` (`spiffe://<td>/ns/<ns>/sa/<sa>`, from
the HBONE client certificate); a plaintext caller has none, so principal and namespace matchers never match
it and their `not` forms always do, as in the reference. HTTP RBAC sees each request; network RBAC (TCP)
sees no L7 attribute: an ALLOW rule with L7 fields is left out (allows nothing), a DENY rule keeps only its
L4 fields (denies more). The caller's IP is not known at the destination, so `ipBlocks` and `source.ip`
fail closed the same way (see `_rule`).

TCP rules are enforced a first time on the tunnel's CONNECT at 15008 (`connect=True`), before anything
connects to the pod: network RBAC decides only on the stream's first bytes, after its TCP proxy has
connected, so a server that speaks first would greet a denied caller. There the connection's own port is
15008, so ports are matched on the CONNECT authority (`podIP:port`) instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from envoy.config.core.v3 import address_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.rbac.v3.rbac_pb2 import Permission, Principal
from envoy.config.route.v3 import route_components_pb2
from envoy.type.matcher.v3 import filter_state_pb2, path_pb2, regex_pb2, string_pb2
from google.protobuf import wrappers_pb2

from controlplane.model.authz import (
    AuthorizationAction,
    AuthorizationPolicy,
    AuthorizationRule,
    Condition,
    ConditionKey,
    ConditionValue,
    MatchType,
    Operation,
    Source,
    StringMatch,
    WorkloadPolicies,
)

PEER_STATE = "nodemesh.peer_principal"
_SCHEME = "spiffe://"


@dataclass(frozen=True, slots=True, kw_only=True)
class RbacFilters:
    """The RBAC rule sets of one workload for one kind of traffic, in filter order (DENY first)."""

    deny: rbac_pb2.RBAC | None = None
    allow: rbac_pb2.RBAC | None = None

    @property
    def all(self) -> tuple[rbac_pb2.RBAC, ...]:
        return tuple(r for r in (self.deny, self.allow) if r is not None)


def _string(match: StringMatch, *, prefix: str = "") -> string_pb2.StringMatcher:
    """A pattern over `prefix + value` (the prefix is fixed text every value starts with)."""
    match match.type:
        case MatchType.EXACT:
            return string_pb2.StringMatcher(exact=prefix + match.value)
        case MatchType.PREFIX:
            return string_pb2.StringMatcher(prefix=prefix + match.value)
        case MatchType.SUFFIX:
            if not prefix:
                return string_pb2.StringMatcher(suffix=match.value)
            return _regex(re.escape(prefix) + ".*" + re.escape(match.value))
        case MatchType.ANY:
            if not prefix:
                return _regex(".*")
            return string_pb2.StringMatcher(prefix=prefix)


def _regex(pattern: str) -> string_pb2.StringMatcher:
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=pattern))


def _peer(matcher: string_pb2.StringMatcher) -> Principal:
    return Principal(filter_state=filter_state_pb2.FilterStateMatcher(key=PEER_STATE, string_match=matcher))


def _principal(match: StringMatch) -> Principal:
    return _peer(_string(match, prefix=_SCHEME))


def _namespace(match: StringMatch) -> Principal:
    value = re.escape(match.value)
    inner = {
        MatchType.EXACT: value,
        MatchType.PREFIX: value + "[^/]*",
        MatchType.SUFFIX: "[^/]*" + value,
        MatchType.ANY: "[^/]+",
    }[match.type]
    return _peer(_regex(f"spiffe://[^/]+/ns/{inner}/sa/[^/]+"))


def _ip(block: ConditionValue) -> Principal:
    assert not isinstance(block, StringMatch | int)
    return Principal(
        remote_ip=address_pb2.CidrRange(
            address_prefix=str(block.network_address),
            prefix_len=wrappers_pb2.UInt32Value(value=block.prefixlen),
        )
    )


def _or_ids(ids: list[Principal]) -> Principal:
    if len(ids) == 1:
        return ids[0]
    return Principal(or_ids=rbac_pb2.Principal.Set(ids=ids))


def _and_ids(ids: list[Principal]) -> Principal:
    if not ids:
        return Principal(any=True)
    if len(ids) == 1:
        return ids[0]
    return Principal(and_ids=rbac_pb2.Principal.Set(ids=ids))


def _not_id(principal: Principal) -> Principal:
    return Principal(not_id=principal)


def _or_rules(rules: list[Permission]) -> Permission:
    if len(rules) == 1:
        return rules[0]
    return Permission(or_rules=rbac_pb2.Permission.Set(rules=rules))


def _and_rules(rules: list[Permission]) -> Permission:
    if not rules:
        return Permission(any=True)
    if len(rules) == 1:
        return rules[0]
    return Permission(and_rules=rbac_pb2.Permission.Set(rules=rules))


def _not_rule(rule: Permission) -> Permission:
    return Permission(not_rule=rule)


def _header(name: str, match: StringMatch) -> route_components_pb2.HeaderMatcher:
    if match.type is MatchType.ANY:
        return route_components_pb2.HeaderMatcher(name=name, present_match=True)
    return route_components_pb2.HeaderMatcher(name=name, string_match=_string(match))


def _source(source: Source) -> Principal:
    ids: list[Principal] = []
    if source.principals:
        ids.append(_or_ids([_principal(m) for m in source.principals]))
    if source.not_principals:
        ids.append(_not_id(_or_ids([_principal(m) for m in source.not_principals])))
    if source.namespaces:
        ids.append(_or_ids([_namespace(m) for m in source.namespaces]))
    if source.not_namespaces:
        ids.append(_not_id(_or_ids([_namespace(m) for m in source.not_namespaces])))
    if source.ip_blocks:
        ids.append(_or_ids([_ip(b) for b in source.ip_blocks]))
    if source.not_ip_blocks:
        ids.append(_not_id(_or_ids([_ip(b) for b in source.not_ip_blocks])))
    return _and_ids(ids)


def _port(port: int, *, authority: bool) -> Permission:
    """The destination port: the connection's, or (`authority`) the port the CONNECT authority names."""
    if authority:
        return Permission(
            header=route_components_pb2.HeaderMatcher(
                name=":authority", string_match=string_pb2.StringMatcher(suffix=f":{port}")
            )
        )
    return Permission(destination_port=port)


def _operation(operation: Operation, *, l7: bool, authority: bool) -> Permission:
    rules: list[Permission] = []
    if operation.ports:
        rules.append(_or_rules([_port(p, authority=authority) for p in operation.ports]))
    if operation.not_ports:
        rules.append(_not_rule(_or_rules([_port(p, authority=authority) for p in operation.not_ports])))
    if l7:
        for values, negate in ((operation.methods, False), (operation.not_methods, True)):
            if values:
                rule = _or_rules([Permission(header=_header(":method", m)) for m in values])
                rules.append(_not_rule(rule) if negate else rule)
        for values, negate in ((operation.paths, False), (operation.not_paths, True)):
            if values:
                rule = _or_rules([Permission(url_path=path_pb2.PathMatcher(path=_string(m))) for m in values])
                rules.append(_not_rule(rule) if negate else rule)
    return _and_rules(rules)


def _condition_value(
    condition: Condition, value: ConditionValue, *, authority: bool
) -> Principal | Permission:
    match condition.key:
        case ConditionKey.REQUEST_HEADERS:
            assert isinstance(value, StringMatch)
            return Permission(header=_header(condition.header, value))
        case ConditionKey.SOURCE_IP:
            return _ip(value)
        case ConditionKey.SOURCE_NAMESPACE:
            assert isinstance(value, StringMatch)
            return _namespace(value)
        case ConditionKey.SOURCE_PRINCIPAL:
            assert isinstance(value, StringMatch)
            return _principal(value)
        case ConditionKey.DESTINATION_PORT:
            assert isinstance(value, int)
            return _port(value, authority=authority)


def _condition(
    condition: Condition, principals: list[Principal], permissions: list[Permission], *, authority: bool
) -> None:
    for values, negate in ((condition.values, False), (condition.not_values, True)):
        if not values:
            continue
        matchers = [_condition_value(condition, v, authority=authority) for v in values]
        if isinstance(matchers[0], Principal):
            ids = [m for m in matchers if isinstance(m, Principal)]
            principals.append(_not_id(_or_ids(ids)) if negate else _or_ids(ids))
        else:
            rules = [m for m in matchers if isinstance(m, Permission)]
            permissions.append(_not_rule(_or_rules(rules)) if negate else _or_rules(rules))


def _rule(
    rule: AuthorizationRule, action: AuthorizationAction, *, http: bool, authority: bool
) -> rbac_pb2.Policy | None:
    """One rule as an Envoy policy; None when it can match nothing here (L7 in an ALLOW rule on TCP).

    The caller's IP is not known at the destination (the tunnel comes from its node), so source-IP fields
    fail closed like L7 on TCP: an ALLOW rule with them matches nothing, a DENY rule drops them."""
    if not http and rule.has_l7 and action is AuthorizationAction.ALLOW:
        return None
    if rule.uses_source_ip:
        if action is AuthorizationAction.ALLOW:
            return None
        rule = rule.without_source_ip()
    principals: list[Principal] = []
    permissions: list[Permission] = []
    if rule.sources:
        principals.append(_or_ids([_source(s) for s in rule.sources]))
    if rule.operations:
        permissions.append(_or_rules([_operation(o, l7=http, authority=authority) for o in rule.operations]))
    for condition in rule.conditions:
        if not http and condition.key.l7:
            continue  # DENY on TCP: dropped, so the rule matches on its L4 fields alone
        _condition(condition, principals, permissions, authority=authority)
    return rbac_pb2.Policy(permissions=[_and_rules(permissions)], principals=[_and_ids(principals)])


def _policies(
    policies: tuple[AuthorizationPolicy, ...], *, http: bool, authority: bool
) -> dict[str, rbac_pb2.Policy]:
    out: dict[str, rbac_pb2.Policy] = {}
    for policy in policies:
        for i, rule in enumerate(policy.rules):
            translated = _rule(rule, policy.action, http=http, authority=authority)
            if translated is not None:
                out[f"{policy.namespace}/{policy.name}/rule/{i}"] = translated
    return out


def build_rbac(policies: WorkloadPolicies, *, http: bool, connect: bool = False) -> RbacFilters:
    """The RBAC filters for a workload's `policies` on HTTP (`http`) or TCP traffic; `connect`: TCP rules
    for the tunnel's CONNECT (HTTP RBAC, ports from the authority)."""
    if http and connect:
        raise ValueError("the CONNECT carries TCP rules: http and connect exclude each other")
    deny = None
    if policies.deny and (rules := _policies(policies.deny, http=http, authority=connect)):
        deny = rbac_pb2.RBAC(action=rbac_pb2.RBAC.DENY, policies=rules)
    allow = None
    if policies.allow:
        allow = rbac_pb2.RBAC(
            action=rbac_pb2.RBAC.ALLOW, policies=_policies(policies.allow, http=http, authority=connect)
        )
    return RbacFilters(deny=deny, allow=allow)
