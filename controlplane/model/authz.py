"""nodemesh.io/v1alpha1 AuthorizationPolicy: who may call a workload, as values, and what they mean.

Istio's semantics, which users know:
- Scope: `selector` (workloads in the policy's namespace by labels), or `target_refs` (the workloads the
  selectors of Services in the policy's namespace pick, on all their ports, not only the Service's), or
  neither: the whole namespace; in the root namespace (a setting, `nodemesh-system` by default), the whole
  mesh. A selector policy in the root namespace is for the root namespace's workloads only. See
  `controlplane.model.security` for the lookups.
- DENY policies are checked first; if any matches, the request is denied. Then, if at least one ALLOW policy
  selects the workload, the request must match one of their rules, or it is denied. With no ALLOW policy,
  it is allowed. AUDIT policies never change the outcome; they mark matching requests for logging.
- A rule with no fields matches every request; an ALLOW policy with no rules matches nothing, so it denies
  everything the other ALLOW policies do not allow. Inside a rule, `from`, `to` and `when` are ANDed; the
  entries of each list are ORed; inside one source or operation, every field set must match; a field lists
  alternatives (ORed), and its `not` form must match none of its values.
- L7 fields (methods, paths and `request.headers` conditions, and their `not` forms) cannot be checked on
  TCP traffic. They fail closed: in an ALLOW rule the rule does not match (it allows nothing on TCP); in a
  DENY rule they are dropped, so the rule matches on its L4 fields alone and denies more, never less. (Istio
  does the same.) An AUDIT rule is treated like a DENY rule: it audits more, never less.
- Principals and namespaces come from the caller's mTLS identity: a plaintext caller has neither, so a
  `principals`/`namespaces` entry (even `*`) never matches it and every `notPrincipals`/`notNamespaces`
  entry does. `principals: ["*"]` therefore means "any authenticated caller".
- Plaintext from outside the mesh passes no Envoy, so no RBAC checks it: where a workload's policies could
  not admit such a caller, the node refuses its plaintext in the kernel, like STRICT (see `plaintext.py`).
- A policy the converter rejects is kept as a fail-closed stand-in (`rejected=True`) for the scope it
  names (or its whole namespace when that scope cannot be read): a rejected ALLOW policy allows nothing
  (its scope is then default-deny, except what valid ALLOW policies allow), a rejected DENY policy (or one
  whose action cannot be read) denies everything. A rejected AUDIT policy is dropped: it never governs
  access. So a bad policy never opens access.

`authorize()` is the reference evaluator of these rules: translation to Envoy RBAC must agree with it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from controlplane.model.frozenmap import Labels
from controlplane.model.policy import PolicyTargetRef
from controlplane.model.refs import Kind, ObjectRef

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_PRINCIPAL_NAMESPACE: Final = re.compile(r"[^/]+/ns/([^/]+)/sa/[^/]+")


class AuthorizationAction(StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    AUDIT = "AUDIT"


class MatchType(StrEnum):
    EXACT = "Exact"
    PREFIX = "Prefix"  # `abc*`
    SUFFIX = "Suffix"  # `*abc`
    ANY = "Any"  # `*`: any value, but a value must be present


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class StringMatch:
    """One Istio-style string pattern: exact, `prefix*`, `*suffix`, or `*`."""

    type: MatchType
    value: str = ""

    @classmethod
    def parse(cls, text: str) -> StringMatch:
        """Assumes `text` was validated (at most one `*`, at either end)."""
        if text == "*":
            return cls(type=MatchType.ANY)
        if text.startswith("*"):
            return cls(type=MatchType.SUFFIX, value=text[1:])
        if text.endswith("*"):
            return cls(type=MatchType.PREFIX, value=text[:-1])
        return cls(type=MatchType.EXACT, value=text)

    def matches(self, text: str | None) -> bool:
        """None is an absent value: nothing matches it, not even `*`."""
        if text is None:
            return False
        match self.type:
            case MatchType.ANY:
                return True
            case MatchType.PREFIX:
                return text.startswith(self.value)
            case MatchType.SUFFIX:
                return text.endswith(self.value)
            case MatchType.EXACT:
                return text == self.value

    def __str__(self) -> str:
        match self.type:
            case MatchType.ANY:
                return "*"
            case MatchType.PREFIX:
                return f"{self.value}*"
            case MatchType.SUFFIX:
                return f"*{self.value}"
            case MatchType.EXACT:
                return self.value


def _any_match(patterns: tuple[StringMatch, ...], text: str | None) -> bool:
    return any(p.matches(text) for p in patterns)


def _in_blocks(blocks: tuple[IPNetwork, ...], ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address.version == block.version and address in block for block in blocks)


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """`from[].source`: who is calling. Empty tuples are unset fields (the converter rejects empty lists)."""

    principals: tuple[StringMatch, ...] = ()
    not_principals: tuple[StringMatch, ...] = ()
    namespaces: tuple[StringMatch, ...] = ()
    not_namespaces: tuple[StringMatch, ...] = ()
    ip_blocks: tuple[IPNetwork, ...] = ()
    not_ip_blocks: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """`to[].operation`: what is called. Ports are the destination workload's (container) ports."""

    ports: tuple[int, ...] = ()
    not_ports: tuple[int, ...] = ()
    methods: tuple[StringMatch, ...] = ()
    not_methods: tuple[StringMatch, ...] = ()
    paths: tuple[StringMatch, ...] = ()
    not_paths: tuple[StringMatch, ...] = ()

    @property
    def has_l7(self) -> bool:
        return bool(self.methods or self.not_methods or self.paths or self.not_paths)


class ConditionKey(StrEnum):
    REQUEST_HEADERS = "request.headers"  # written `request.headers[<name>]`
    SOURCE_IP = "source.ip"
    SOURCE_NAMESPACE = "source.namespace"
    SOURCE_PRINCIPAL = "source.principal"
    DESTINATION_PORT = "destination.port"

    @property
    def l7(self) -> bool:
        return self is ConditionKey.REQUEST_HEADERS


# Per key: StringMatch (headers, namespace, principal), IPNetwork (source.ip), int (destination.port).
ConditionValue = StringMatch | IPNetwork | int


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """`when[]`: the attribute must match one of `values` (if set) and none of `not_values` (if set)."""

    key: ConditionKey
    # The header name, lower-cased, for REQUEST_HEADERS; "" otherwise.
    header: str = ""
    values: tuple[ConditionValue, ...] = ()
    not_values: tuple[ConditionValue, ...] = ()

    def __str__(self) -> str:
        return f"request.headers[{self.header}]" if self.key is ConditionKey.REQUEST_HEADERS else self.key


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationRule:
    sources: tuple[Source, ...] = ()
    operations: tuple[Operation, ...] = ()
    conditions: tuple[Condition, ...] = ()

    @property
    def has_l7(self) -> bool:
        """Uses a field only HTTP traffic has (so it fails closed on TCP)."""
        return any(o.has_l7 for o in self.operations) or any(c.key.l7 for c in self.conditions)

    @property
    def uses_source_ip(self) -> bool:
        """Names the caller's address (ipBlocks, notIpBlocks, a source.ip condition)."""
        return any(s.ip_blocks or s.not_ip_blocks for s in self.sources) or any(
            c.key is ConditionKey.SOURCE_IP for c in self.conditions
        )

    def without_source_ip(self) -> AuthorizationRule:
        """The rule with its address fields dropped: it matches more callers."""
        return AuthorizationRule(
            sources=tuple(dataclasses.replace(s, ip_blocks=(), not_ip_blocks=()) for s in self.sources),
            operations=self.operations,
            conditions=tuple(c for c in self.conditions if c.key is not ConditionKey.SOURCE_IP),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationPolicy:
    namespace: str
    name: str
    generation: int = 0
    # metadata.creationTimestamp, when known (files have none): older policies win conflicts.
    created: datetime | None = None
    # None: no selector (namespace-wide, or mesh-wide in the root namespace); never an empty map.
    selector: Labels | None = None
    # Services in the policy's namespace; exclusive with `selector`.
    target_refs: tuple[PolicyTargetRef, ...] = ()
    action: AuthorizationAction = AuthorizationAction.ALLOW
    rules: tuple[AuthorizationRule, ...] = ()
    # A fail-closed stand-in for a policy that failed conversion (see the module docstring); its errors are
    # in the conversion diagnostics.
    rejected: bool = False

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(kind=Kind.AUTHORIZATION_POLICY, namespace=self.namespace, name=self.name)

    @property
    def namespace_wide(self) -> bool:
        return self.selector is None and not self.target_refs

    @property
    def target_services(self) -> frozenset[ObjectRef]:
        return frozenset(
            ObjectRef.service(self.namespace, t.name)
            for t in self.target_refs
            if t.group == "" and t.kind == "Service"
        )


def deny_all_stand_in(policy: AuthorizationPolicy) -> AuthorizationPolicy:
    """What a rejected policy becomes: ALLOW nothing for a rejected ALLOW policy, DENY everything else."""
    if policy.action is AuthorizationAction.ALLOW:
        return AuthorizationPolicy(
            namespace=policy.namespace,
            name=policy.name,
            generation=policy.generation,
            created=policy.created,
            selector=policy.selector,
            target_refs=policy.target_refs,
            action=AuthorizationAction.ALLOW,
            rules=(),
            rejected=True,
        )
    return AuthorizationPolicy(
        namespace=policy.namespace,
        name=policy.name,
        generation=policy.generation,
        created=policy.created,
        selector=policy.selector,
        target_refs=policy.target_refs,
        action=AuthorizationAction.DENY,
        rules=(AuthorizationRule(),),
        rejected=True,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadPolicies:
    """The AuthorizationPolicies that apply to one workload, by action, each sorted by reference."""

    deny: tuple[AuthorizationPolicy, ...] = ()
    allow: tuple[AuthorizationPolicy, ...] = ()
    audit: tuple[AuthorizationPolicy, ...] = ()

    @property
    def default_deny(self) -> bool:
        """Some ALLOW policy selects the workload: what none allows is denied."""
        return bool(self.allow)


# -- the reference evaluator ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest:
    method: str
    # The request path; the query string is not matched.
    path: str
    # Header names lower-cased.
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """What the destination knows about one connection (and, for HTTP, one request on it)."""

    # `<trust-domain>/ns/<ns>/sa/<sa>` from the peer certificate; None for a plaintext caller.
    principal: str | None
    source_ip: str
    destination_port: int
    http: HttpRequest | None = None

    @property
    def source_namespace(self) -> str | None:
        if self.principal is None:
            return None
        m = _PRINCIPAL_NAMESPACE.fullmatch(self.principal)
        return m.group(1) if m else None


class _Mode(StrEnum):
    STRICT = "strict"  # every field must match (ALLOW, and any rule on HTTP)
    L4_ONLY = "l4-only"  # TCP traffic under DENY/AUDIT: L7 fields are dropped


def _source_matches(s: Source, req: Request) -> bool:
    ns = req.source_namespace
    return (
        (not s.principals or _any_match(s.principals, req.principal))
        and not (s.not_principals and _any_match(s.not_principals, req.principal))
        and (not s.namespaces or _any_match(s.namespaces, ns))
        and not (s.not_namespaces and _any_match(s.not_namespaces, ns))
        and (not s.ip_blocks or _in_blocks(s.ip_blocks, req.source_ip))
        and not (s.not_ip_blocks and _in_blocks(s.not_ip_blocks, req.source_ip))
    )


def _operation_matches(o: Operation, req: Request, mode: _Mode) -> bool:
    if (o.ports and req.destination_port not in o.ports) or req.destination_port in o.not_ports:
        return False
    if mode is _Mode.L4_ONLY:
        return True
    method = req.http.method if req.http is not None else None
    path = req.http.path.split("?", 1)[0] if req.http is not None else None
    return (
        (not o.methods or _any_match(o.methods, method))
        and not (o.not_methods and _any_match(o.not_methods, method))
        and (not o.paths or _any_match(o.paths, path))
        and not (o.not_paths and _any_match(o.not_paths, path))
    )


def _value_matches(condition: Condition, value: ConditionValue, req: Request) -> bool:
    match condition.key:
        case ConditionKey.REQUEST_HEADERS:
            header = req.http.headers.get(condition.header) if req.http is not None else None
            return isinstance(value, StringMatch) and value.matches(header)
        case ConditionKey.SOURCE_IP:
            return not isinstance(value, StringMatch | int) and _in_blocks((value,), req.source_ip)
        case ConditionKey.SOURCE_NAMESPACE:
            return isinstance(value, StringMatch) and value.matches(req.source_namespace)
        case ConditionKey.SOURCE_PRINCIPAL:
            return isinstance(value, StringMatch) and value.matches(req.principal)
        case ConditionKey.DESTINATION_PORT:
            return isinstance(value, int) and value == req.destination_port


def _condition_matches(c: Condition, req: Request, mode: _Mode) -> bool:
    if mode is _Mode.L4_ONLY and c.key.l7:
        return True
    return (not c.values or any(_value_matches(c, v, req) for v in c.values)) and not (
        c.not_values and any(_value_matches(c, v, req) for v in c.not_values)
    )


def rule_matches(rule: AuthorizationRule, action: AuthorizationAction, req: Request) -> bool:
    """Whether one rule of a policy with `action` matches the request (L7 on TCP fails closed)."""
    mode = _Mode.STRICT
    if req.http is None and rule.has_l7:
        if action is AuthorizationAction.ALLOW:
            return False
        mode = _Mode.L4_ONLY
    return (
        (not rule.sources or any(_source_matches(s, req) for s in rule.sources))
        and (not rule.operations or any(_operation_matches(o, req, mode) for o in rule.operations))
        and all(_condition_matches(c, req, mode) for c in rule.conditions)
    )


def policy_matches(policy: AuthorizationPolicy, req: Request) -> bool:
    return any(rule_matches(rule, policy.action, req) for rule in policy.rules)


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    allowed: bool
    # The policy that decided: the first matching DENY, or the first matching ALLOW; None when no policy
    # decided (allowed for lack of ALLOW policies, or denied by default because none matched).
    policy: ObjectRef | None = None
    audited: tuple[ObjectRef, ...] = ()


def authorize(policies: WorkloadPolicies, req: Request) -> Verdict:
    audited = tuple(p.ref for p in policies.audit if policy_matches(p, req))
    for policy in policies.deny:
        if policy_matches(policy, req):
            return Verdict(allowed=False, policy=policy.ref, audited=audited)
    if not policies.allow:
        return Verdict(allowed=True, audited=audited)
    for policy in policies.allow:
        if policy_matches(policy, req):
            return Verdict(allowed=True, policy=policy.ref, audited=audited)
    return Verdict(allowed=False, audited=audited)
