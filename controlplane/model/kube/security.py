"""nodemesh.io/v1alpha1 AuthorizationPolicy and PeerAuthentication from their API JSON.

Mirrors manifests/crds/nodemesh.io_{authorizationpolicies,peerauthentications}.yaml: the same fields,
bounds and cross-field rules, so objects from files get the errors the API server would give. Unknown
fields are errors (our own schema).

Both kinds fail closed: a policy with errors is still returned, as the stand-in its module describes
(`authz.py`, `peerauth.py`), scoped to what its selector or targetRefs say when they can be read, else to
its whole namespace; a WARNING diagnostic says what the stand-in does, next to the errors.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Final, TypeVar

from controlplane.model.authz import (
    AuthorizationAction,
    AuthorizationPolicy,
    AuthorizationRule,
    Condition,
    ConditionKey,
    ConditionValue,
    IPNetwork,
    Operation,
    Source,
    StringMatch,
    deny_all_stand_in,
)
from controlplane.model.diagnostics import Reason, Severity
from controlplane.model.frozenmap import FrozenMap, Labels
from controlplane.model.kube.fields import JSON, Reader, sub
from controlplane.model.kube.routes import HEADER_NAME_RE
from controlplane.model.peerauth import MtlsMode, PeerAuthentication
from controlplane.model.policy import PolicyTargetRef

# Every field of each schema, by JSON path (lists as `[]`, map values as `{}`); tests check the CRDs have
# exactly these.
AUTHORIZATION_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "spec": ("selector", "targetRefs", "action", "rules"),
    "spec.selector": ("matchLabels",),
    "spec.targetRefs[]": ("group", "kind", "name"),
    "spec.rules[]": ("from", "to", "when"),
    "spec.rules[].from[]": ("source",),
    "spec.rules[].from[].source": (
        "principals",
        "notPrincipals",
        "namespaces",
        "notNamespaces",
        "ipBlocks",
        "notIpBlocks",
    ),
    "spec.rules[].to[]": ("operation",),
    "spec.rules[].to[].operation": ("ports", "notPorts", "methods", "notMethods", "paths", "notPaths"),
    "spec.rules[].when[]": ("key", "values", "notValues"),
}
PEER_AUTHENTICATION_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "spec": ("selector", "mtls", "portLevelMtls"),
    "spec.selector": ("matchLabels",),
    "spec.mtls": ("mode",),
    "spec.portLevelMtls{}": ("mode",),
}

# Bounds (the CRDs say the same; they also keep the API server's CEL cost estimates finite).
MAX_TARGET_REFS: Final = 16
MAX_RULES: Final = 64
MAX_CLAUSES: Final = 16  # from, to, when entries per rule
MAX_VALUES: Final = 64  # items of one string list
MAX_VALUE_LENGTH: Final = 1024
MAX_CONDITION_VALUE_LENGTH: Final = 256
MAX_LABELS: Final = 64
MAX_PORT_LEVEL: Final = 64

_LABEL_NAME: Final = r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]"
_DNS_SUBDOMAIN: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
LABEL_KEY_RE: Final = re.compile(rf"({_DNS_SUBDOMAIN}/)?{_LABEL_NAME}")
LABEL_VALUE_RE: Final = re.compile(rf"({_LABEL_NAME})?")
_DNS_LABEL_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN_RE: Final = re.compile(_DNS_SUBDOMAIN)
# `*`, or text with one `*` at its start or its end.
_WILDCARD_RE: Final = re.compile(r"\*|\*?[^*]+|[^*]+\*")
PRINCIPAL_EXACT_RE: Final = re.compile(r"([^/*\s]+)/ns/([^/*\s]+)/sa/([^/*\s]+)")
_NAMESPACE_CHARS_RE: Final = re.compile(r"[a-z0-9-]+")
_METHOD_RE: Final = re.compile(r"[A-Z][A-Z0-9_-]*")
_PORT_RE: Final = re.compile(r"[0-9]{1,5}")
_HEADER_KEY_RE: Final = re.compile(r"request\.headers\[(.+)\]")
_PATH_FORBIDDEN: Final = frozenset("?#{}")

T = TypeVar("T")
_Parser = Callable[[Reader, str, str], T | None]


def _created(r: Reader, meta: JSON) -> datetime | None:
    text = meta.get("creationTimestamp")
    if text is None:
        return None
    try:
        if not isinstance(text, str):
            raise ValueError(text)
        created = datetime.fromisoformat(text)
    except ValueError:
        r.report(
            "metadata.creationTimestamp",
            Reason.INVALID_VALUE,
            f"{text!r} is not an RFC 3339 time: conflicts are resolved as if it had none",
            Severity.WARNING,
        )
        return None
    return created if created.tzinfo is not None else created.replace(tzinfo=UTC)


def _generation(meta: JSON) -> int:
    generation = meta.get("generation")
    return generation if isinstance(generation, int) and not isinstance(generation, bool) else 0


def _selector(r: Reader, spec: JSON, fields: Mapping[str, tuple[str, ...]]) -> Labels | None:
    """matchLabels; None without a selector or with an empty one (both mean the whole namespace)."""
    m = r.mapping(spec, "selector", "spec", known=fields["spec.selector"])
    if m is None:
        return None
    path = "spec.selector.matchLabels"
    labels = r.mapping(m, "matchLabels", "spec.selector")
    if labels is None:
        return None
    if len(labels) > MAX_LABELS:
        r.report(path, Reason.OUT_OF_RANGE, f"at most {MAX_LABELS} labels allowed, got {len(labels)}")
    out: dict[str, str] = {}
    for key, value in labels.items():
        here = f"{path}.{key}"
        if len(key) > 316 or not LABEL_KEY_RE.fullmatch(key):
            r.report(here, Reason.INVALID_VALUE, f"{key!r} is not a valid label key")
        elif not isinstance(value, str):
            r.report(here, Reason.WRONG_TYPE, "expected string")
        elif len(value) > 63 or not LABEL_VALUE_RE.fullmatch(value):
            r.report(here, Reason.INVALID_VALUE, f"{value!r} is not a valid label value")
        else:
            out[key] = value
    return FrozenMap(out) if out else None


def _target_refs(r: Reader, spec: JSON) -> tuple[PolicyTargetRef, ...]:
    if spec.get("targetRefs") is None:
        return ()
    entries = r.mappings(
        spec,
        "targetRefs",
        "spec",
        known=AUTHORIZATION_FIELDS["spec.targetRefs[]"],
        max_items=MAX_TARGET_REFS,
    )
    if not entries and isinstance(spec.get("targetRefs"), list):
        r.report("spec.targetRefs", Reason.MISSING_FIELD, "at least one target is required when set")
    refs = []
    for path, t in entries:
        group = r.string(t, "group", path, required=True)
        kind = r.string(t, "kind", path, required=True)
        name = r.string(
            t, "name", path, required=True, pattern=_SUBDOMAIN_RE, hint="a Service name", max_length=253
        )
        if group is not None and group != "":
            r.report(sub(path, "group"), Reason.UNSUPPORTED_VALUE, f'group {group!r} not supported: use ""')
        if kind is not None and kind != "Service":
            r.report(sub(path, "kind"), Reason.UNSUPPORTED_VALUE, f"kind {kind!r} not supported: use Service")
        if name is not None:
            refs.append(PolicyTargetRef(name=name))
    return tuple(refs)


# -- values of rules -------------------------------------------------------------------------------------


def _texts(
    r: Reader, m: JSON, key: str, path: str, max_length: int = MAX_VALUE_LENGTH
) -> list[tuple[str, str]]:
    """(path, text) of a string list that, when present, must be non-empty with non-empty items."""
    value = m.get(key)
    if value is None:
        return []
    items = r.items(m, key, path, max_items=MAX_VALUES)
    if isinstance(value, list) and not value:
        r.report(sub(path, key), Reason.INVALID_VALUE, f"{key} must not be empty: leave it out instead")
    out = []
    for item_path, item in items:
        if not isinstance(item, str):
            r.report(item_path, Reason.WRONG_TYPE, "expected string")
        elif not item:
            r.report(item_path, Reason.INVALID_VALUE, "must not be empty")
        elif len(item) > max_length:
            r.report(item_path, Reason.INVALID_VALUE, f"must be at most {max_length} characters")
        else:
            out.append((item_path, item))
    return out


def _wildcard(r: Reader, path: str, text: str) -> StringMatch | None:
    if not _WILDCARD_RE.fullmatch(text):
        r.report(
            path,
            Reason.INVALID_VALUE,
            f"{text!r}: `*` is allowed only alone, at the start (suffix match) or at the end (prefix match)",
        )
        return None
    return StringMatch.parse(text)


def _principal(r: Reader, path: str, text: str) -> StringMatch | None:
    if text.startswith("spiffe://"):
        r.report(
            path,
            Reason.INVALID_VALUE,
            f"{text!r}: write principals without spiffe://, as <trust-domain>/ns/<namespace>/sa/<account>",
        )
        return None
    if any(c.isspace() for c in text):
        r.report(path, Reason.INVALID_VALUE, f"{text!r}: a principal has no whitespace")
        return None
    match = _wildcard(r, path, text)
    if match is None:
        return None
    if "*" not in text:
        m = PRINCIPAL_EXACT_RE.fullmatch(text)
        if m is None or not _DNS_LABEL_RE.fullmatch(m[2]) or not _SUBDOMAIN_RE.fullmatch(m[3]):
            r.report(
                path,
                Reason.INVALID_VALUE,
                f"{text!r} is not a principal: expected <trust-domain>/ns/<namespace>/sa/<account>, "
                "optionally with `*` at the start or end",
            )
            return None
    return match


def _namespace(r: Reader, path: str, text: str) -> StringMatch | None:
    if len(text) > 64:
        r.report(path, Reason.INVALID_VALUE, f"{text!r} is longer than a namespace name")
        return None
    match = _wildcard(r, path, text)
    if match is None:
        return None
    if match.value and not _NAMESPACE_CHARS_RE.fullmatch(match.value):
        r.report(path, Reason.INVALID_VALUE, f"{text!r} is not a namespace name (or a pattern of one)")
        return None
    if "*" not in text and not _DNS_LABEL_RE.fullmatch(text):
        r.report(path, Reason.INVALID_VALUE, f"{text!r} is not a valid namespace name")
        return None
    return match


def _method(r: Reader, path: str, text: str) -> StringMatch | None:
    match = _wildcard(r, path, text)
    if match is None:
        return None
    if match.value and not _METHOD_RE.fullmatch(match.value):
        r.report(
            path, Reason.INVALID_VALUE, f"{text!r} is not an HTTP method (methods are upper-case, e.g. GET)"
        )
        return None
    return match


def _path(r: Reader, path: str, text: str) -> StringMatch | None:
    bad = next((c for c in text if c in _PATH_FORBIDDEN or c.isspace()), None)
    if bad is not None:
        why = "the query string is not matched" if bad in "?#" else f"{bad!r} is not allowed in a path"
        r.report(path, Reason.INVALID_VALUE, f"{text!r}: {why}")
        return None
    match = _wildcard(r, path, text)
    if match is None:
        return None
    if not text.startswith("*") and not text.startswith("/"):
        r.report(path, Reason.INVALID_VALUE, f"{text!r}: a path starts with / (or * for a suffix match)")
        return None
    return match


def _header_value(r: Reader, path: str, text: str) -> StringMatch | None:
    return _wildcard(r, path, text)


def _port(r: Reader, path: str, text: str) -> int | None:
    if not _PORT_RE.fullmatch(text) or not 1 <= int(text) <= 65535:
        r.report(path, Reason.OUT_OF_RANGE, f"{text!r} is not a port number (1-65535)")
        return None
    return int(text)


def _network(r: Reader, path: str, text: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        r.report(path, Reason.INVALID_ADDRESS, f"{text!r} is not an IP address or CIDR block: {exc}")
        return None


def _parsed(
    r: Reader, m: JSON, key: str, path: str, parse: _Parser[T], *, max_length: int = MAX_VALUE_LENGTH
) -> tuple[T, ...]:
    out = []
    for item_path, text in _texts(r, m, key, path, max_length):
        value = parse(r, item_path, text)
        if value is not None and value not in out:
            out.append(value)
    return tuple(out)


def _source(r: Reader, path: str, s: JSON) -> Source:
    return Source(
        principals=_parsed(r, s, "principals", path, _principal),
        not_principals=_parsed(r, s, "notPrincipals", path, _principal),
        namespaces=_parsed(r, s, "namespaces", path, _namespace),
        not_namespaces=_parsed(r, s, "notNamespaces", path, _namespace),
        ip_blocks=_parsed(r, s, "ipBlocks", path, _network),
        not_ip_blocks=_parsed(r, s, "notIpBlocks", path, _network),
    )


def _operation(r: Reader, path: str, o: JSON) -> Operation:
    return Operation(
        ports=_parsed(r, o, "ports", path, _port),
        not_ports=_parsed(r, o, "notPorts", path, _port),
        methods=_parsed(r, o, "methods", path, _method),
        not_methods=_parsed(r, o, "notMethods", path, _method),
        paths=_parsed(r, o, "paths", path, _path),
        not_paths=_parsed(r, o, "notPaths", path, _path),
    )


def _nonempty(r: Reader, m: JSON, key: str, path: str, what: str) -> JSON | None:
    """A required object that must set at least one field (an empty source/operation is a mistake)."""
    fields = AUTHORIZATION_FIELDS[f"{_shape(path)}.{key}"]
    value = r.mapping(m, key, path, required=True, known=fields)
    if value is not None and not any(value.get(f) is not None for f in fields):
        r.report(sub(path, key), Reason.MISSING_FIELD, f"{what} must set at least one of {', '.join(fields)}")
        return None
    return value


def _shape(path: str) -> str:
    """`spec.rules[0].from[2]` -> `spec.rules[].from[]` (the key of AUTHORIZATION_FIELDS)."""
    return re.sub(r"\[[0-9]+\]", "[]", path)


_CONDITION_PARSERS: Final[dict[ConditionKey, _Parser[ConditionValue]]] = {
    ConditionKey.REQUEST_HEADERS: _header_value,
    ConditionKey.SOURCE_IP: _network,
    ConditionKey.SOURCE_NAMESPACE: _namespace,
    ConditionKey.SOURCE_PRINCIPAL: _principal,
    ConditionKey.DESTINATION_PORT: _port,
}


def _condition(r: Reader, path: str, w: JSON) -> Condition | None:
    text = r.string(w, "key", path, required=True, min_length=1)
    if w.get("values") is None and w.get("notValues") is None:
        r.report(path, Reason.MISSING_FIELD, "one of values and notValues is required")
    if text is None:
        return None
    header = ""
    if (m := _HEADER_KEY_RE.fullmatch(text)) is not None:
        key = ConditionKey.REQUEST_HEADERS
        header = m[1]
        if not HEADER_NAME_RE.fullmatch(header):
            r.report(sub(path, "key"), Reason.INVALID_VALUE, f"{header!r} is not a valid header name")
            return None
    else:
        try:
            key = ConditionKey(text)
        except ValueError:
            allowed = ", ".join(["request.headers[<name>]", *(k.value for k in ConditionKey if not k.l7)])
            r.report(
                sub(path, "key"),
                Reason.UNSUPPORTED_VALUE,
                f"unsupported key {text!r}: expected one of {allowed}",
            )
            return None
    parse = _CONDITION_PARSERS[key]
    return Condition(
        key=key,
        header=header.lower(),
        values=_parsed(r, w, "values", path, parse, max_length=MAX_CONDITION_VALUE_LENGTH),
        not_values=_parsed(r, w, "notValues", path, parse, max_length=MAX_CONDITION_VALUE_LENGTH),
    )


def _rule(r: Reader, path: str, rule: JSON) -> AuthorizationRule:
    fields = AUTHORIZATION_FIELDS
    sources = []
    for item_path, entry in r.mappings(rule, "from", path, known=fields["spec.rules[].from[]"]):
        s = _nonempty(r, entry, "source", item_path, "a source")
        if s is not None:
            sources.append(_source(r, sub(item_path, "source"), s))
    operations = []
    for item_path, entry in r.mappings(rule, "to", path, known=fields["spec.rules[].to[]"]):
        o = _nonempty(r, entry, "operation", item_path, "an operation")
        if o is not None:
            operations.append(_operation(r, sub(item_path, "operation"), o))
    conditions = []
    for item_path, entry in r.mappings(rule, "when", path, known=fields["spec.rules[].when[]"]):
        c = _condition(r, item_path, entry)
        if c is not None:
            conditions.append(c)
    for key in ("from", "to", "when"):
        value = rule.get(key)
        if isinstance(value, list) and not value:
            r.report(sub(path, key), Reason.INVALID_VALUE, f"{key} must not be empty: leave it out instead")
        elif isinstance(value, list) and len(value) > MAX_CLAUSES:
            r.report(sub(path, key), Reason.OUT_OF_RANGE, f"at most {MAX_CLAUSES} items allowed")
    return AuthorizationRule(
        sources=tuple(sources), operations=tuple(operations), conditions=tuple(conditions)
    )


# -- the kinds --------------------------------------------------------------------------------------------


def _errors_since(r: Reader, start: int) -> bool:
    return any(d.is_error for d in r.diagnostics[start:])


def convert_authorization_policy(
    r: Reader, obj: JSON, meta: JSON, namespace: str, name: str
) -> AuthorizationPolicy | None:
    start = len(r.diagnostics)
    spec = r.mapping(obj, "spec", "", known=AUTHORIZATION_FIELDS["spec"])
    scope_known = spec is not None or obj.get("spec") is None
    spec = spec or {}
    scope_start = len(r.diagnostics)
    selector = _selector(r, spec, AUTHORIZATION_FIELDS)
    target_refs = _target_refs(r, spec)
    if spec.get("selector") is not None and spec.get("targetRefs") is not None:
        r.report("spec", Reason.CONFLICTING_FIELDS, "only one of selector and targetRefs may be set")
    scope_known = scope_known and not _errors_since(r, scope_start)
    action_start = len(r.diagnostics)
    action = r.enum(spec, "action", "spec", AuthorizationAction) or AuthorizationAction.ALLOW
    action_known = not _errors_since(r, action_start)
    rules = [
        _rule(r, path, rule)
        for path, rule in r.mappings(
            spec, "rules", "spec", known=AUTHORIZATION_FIELDS["spec.rules[]"], max_items=MAX_RULES
        )
    ]
    policy = AuthorizationPolicy(
        namespace=namespace,
        name=name,
        generation=_generation(meta),
        created=_created(r, meta),
        selector=selector if scope_known else None,
        target_refs=target_refs if scope_known else (),
        action=action if action_known else AuthorizationAction.DENY,
        rules=tuple(rules),
    )
    if not _errors_since(r, start):
        return policy
    if policy.action is AuthorizationAction.AUDIT:
        # An AUDIT policy governs no access: dropping it opens nothing.
        return None
    stand_in = deny_all_stand_in(policy)
    if stand_in.action is AuthorizationAction.ALLOW:
        effect = "allows nothing: requests to {} are denied unless another ALLOW policy allows them"
    else:
        effect = "denies every request to {}"
    scope = "the workloads it selects" if scope_known else f"every workload in namespace {namespace}"
    if not scope_known:
        scope += " (its selector or targetRefs cannot be read)"
    r.report(
        "",
        Reason.FAIL_CLOSED,
        f"the policy is rejected; until it is fixed it {effect.format(scope)}",
        Severity.WARNING,
    )
    return stand_in


def _port_level(r: Reader, spec: JSON) -> FrozenMap[int, MtlsMode]:
    path = "spec.portLevelMtls"
    value = spec.get("portLevelMtls")
    if value is None:
        return FrozenMap()
    if not isinstance(value, Mapping):
        r.report(path, Reason.WRONG_TYPE, "expected object")
        return FrozenMap()
    if len(value) > MAX_PORT_LEVEL:
        r.report(path, Reason.OUT_OF_RANGE, f"at most {MAX_PORT_LEVEL} ports allowed, got {len(value)}")
    modes: dict[int, MtlsMode] = {}
    for raw_key, entry in value.items():
        # YAML files may give an unquoted port as an integer key; JSON from the API server has strings.
        key = str(raw_key) if isinstance(raw_key, int) and not isinstance(raw_key, bool) else raw_key
        here = f"{path}.{key}"
        port = _port(r, here, key) if isinstance(key, str) else None
        if not isinstance(key, str):
            r.report(here, Reason.WRONG_TYPE, "port keys are port numbers")
        m = r.as_mapping(entry, here, known=PEER_AUTHENTICATION_FIELDS["spec.portLevelMtls{}"])
        if m is None:
            continue
        mode = r.enum(m, "mode", here, MtlsMode, required=True)
        if port is not None and mode is not None:
            modes[port] = mode
    if value and spec.get("selector") is None:
        r.report(
            path,
            Reason.CONFLICTING_FIELDS,
            "portLevelMtls needs spec.selector: per-port modes apply only to selected workloads",
        )
    return FrozenMap(sorted(modes.items()))


def convert_peer_authentication(
    r: Reader, obj: JSON, meta: JSON, namespace: str, name: str
) -> PeerAuthentication:
    start = len(r.diagnostics)
    spec = r.mapping(obj, "spec", "", known=PEER_AUTHENTICATION_FIELDS["spec"])
    scope_known = spec is not None or obj.get("spec") is None
    spec = spec or {}
    scope_start = len(r.diagnostics)
    selector = _selector(r, spec, PEER_AUTHENTICATION_FIELDS)
    scope_known = scope_known and not _errors_since(r, scope_start)
    mtls = r.mapping(spec, "mtls", "spec", known=PEER_AUTHENTICATION_FIELDS["spec.mtls"])
    mode = (r.enum(mtls, "mode", "spec.mtls", MtlsMode) if mtls is not None else None) or MtlsMode.UNSET
    port_modes = _port_level(r, spec)
    if selector is None and spec.get("selector") is not None and port_modes and scope_known:
        r.report(
            "spec.selector.matchLabels",
            Reason.MISSING_FIELD,
            "portLevelMtls needs a selector with at least one label",
        )
    created = _created(r, meta)
    if not _errors_since(r, start):
        return PeerAuthentication(
            namespace=namespace,
            name=name,
            generation=_generation(meta),
            created=created,
            selector=selector,
            mode=mode,
            port_modes=port_modes,
        )
    scope = "the workloads it selects" if scope_known else f"every workload in namespace {namespace}"
    r.report(
        "",
        Reason.FAIL_CLOSED,
        f"the policy is rejected; until it is fixed, {scope} accept only mTLS (STRICT)",
        Severity.WARNING,
    )
    return PeerAuthentication(
        namespace=namespace,
        name=name,
        generation=_generation(meta),
        created=created,
        selector=selector if scope_known else None,
        mode=MtlsMode.STRICT,
        rejected=True,
    )
