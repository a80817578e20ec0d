"""An evaluator of the Envoy RBAC that `controlplane.translate.rbac` writes (the subset it uses), with Envoy's
semantics: filters in order, a DENY filter denies when a policy matches, an ALLOW filter denies when none
does; a policy matches when one of its permissions and one of its principals match."""

from __future__ import annotations

import ipaddress
import re

from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.type.matcher.v3 import string_pb2

from controlplane.model.authz import Request
from controlplane.translate.rbac import PEER_STATE, RbacFilters


def _string(m: string_pb2.StringMatcher, value: str | None) -> bool:
    if value is None:
        return False
    which = m.WhichOneof("match_pattern")
    if which == "exact":
        return value == str(m.exact)
    if which == "prefix":
        return value.startswith(m.prefix)
    if which == "suffix":
        return value.endswith(m.suffix)
    if which == "safe_regex":
        return re.fullmatch(m.safe_regex.regex, value) is not None
    raise AssertionError(f"unexpected string matcher {which}")


# At the CONNECT (`connect=True`): the connection is to 15008, and the authority names the pod and port.
_HBONE_PORT = 15008
_POD = "10.1.0.1"


def _header_value(req: Request, name: str, connect: bool) -> str | None:
    if connect:
        return f"{_POD}:{req.destination_port}" if name == ":authority" else None
    if req.http is None:
        return None
    if name == ":method":
        return req.http.method
    if name == ":path":
        return req.http.path
    return req.http.headers.get(name)


def _header(h: route_components_pb2.HeaderMatcher, req: Request, connect: bool) -> bool:
    value = _header_value(req, h.name, connect)
    which = h.WhichOneof("header_match_specifier")
    if which == "present_match":
        return (value is not None) == bool(h.present_match)
    if which == "string_match":
        return _string(h.string_match, value)
    raise AssertionError(f"unexpected header matcher {which}")


def principal(p: rbac_pb2.Principal, req: Request) -> bool:
    which = p.WhichOneof("identifier")
    if which == "any":
        return True
    if which == "and_ids":
        return all(principal(x, req) for x in p.and_ids.ids)
    if which == "or_ids":
        return any(principal(x, req) for x in p.or_ids.ids)
    if which == "not_id":
        return not principal(p.not_id, req)
    if which == "filter_state":
        assert p.filter_state.key == PEER_STATE
        peer = f"spiffe://{req.principal}" if req.principal is not None else None
        return _string(p.filter_state.string_match, peer)
    if which == "remote_ip":
        network = ipaddress.ip_network(f"{p.remote_ip.address_prefix}/{p.remote_ip.prefix_len.value}")
        address = ipaddress.ip_address(req.source_ip)
        return address.version == network.version and address in network
    raise AssertionError(f"unexpected principal {which}")


def permission(p: rbac_pb2.Permission, req: Request, connect: bool = False) -> bool:
    which = p.WhichOneof("rule")
    if which == "any":
        return True
    if which == "and_rules":
        return all(permission(x, req, connect) for x in p.and_rules.rules)
    if which == "or_rules":
        return any(permission(x, req, connect) for x in p.or_rules.rules)
    if which == "not_rule":
        return not permission(p.not_rule, req, connect)
    if which == "destination_port":
        return (_HBONE_PORT if connect else req.destination_port) == int(p.destination_port)
    if which == "header":
        return _header(p.header, req, connect)
    if which == "url_path":
        path = req.http.path.split("?", 1)[0] if req.http is not None else None
        return _string(p.url_path.path, path)
    raise AssertionError(f"unexpected permission {which}")


def _matches(rules: rbac_pb2.RBAC, req: Request, connect: bool) -> bool:
    return any(
        any(permission(x, req, connect) for x in policy.permissions)
        and any(principal(x, req) for x in policy.principals)
        for policy in rules.policies.values()
    )


def allowed(filters: RbacFilters, req: Request, *, connect: bool = False) -> bool:
    """`connect`: `filters` judge the CONNECT of the tunnel carrying `req` (a TCP stream) at 15008."""
    for rules in filters.all:
        matched = _matches(rules, req, connect)
        if rules.action == rbac_pb2.RBAC.DENY and matched:
            return False
        if rules.action == rbac_pb2.RBAC.ALLOW and not matched:
            return False
    return True
