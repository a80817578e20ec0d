"""`meshctl describe pod`: how the describe document renders."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from controlplane.inspect import describe_pod
from controlplane.model.authz import (
    AuthorizationAction,
    AuthorizationPolicy,
    AuthorizationRule,
    Operation,
    Source,
    StringMatch,
)
from controlplane.model.diagnostics import Diagnostic, Reason, Severity
from controlplane.model.frozenmap import FrozenMap
from controlplane.model.peerauth import MtlsMode, PeerAuthentication
from meshctl import describe
from meshctl.output import Painter
from tests.translate.builders import (
    backend,
    http_port,
    http_route,
    mesh,
    namespace,
    node,
    parent,
    pod,
    policy,
    rule,
    service,
)

NOW = 1_000_000.0


def document(**pod_changes: Any) -> dict[str, Any]:
    labels = FrozenMap({"app": "reviews"})
    reviews = dataclasses.replace(
        service("shop", "reviews", "10.96.0.10", http_port(9080, target=8080)), selector=labels
    )
    route = http_route(
        "web", "reviews-from-web", parent("shop", "reviews"), rule(backend("shop", "reviews", 9080))
    )
    producer = http_route(
        "shop", "reviews", parent("shop", "reviews", 9080), rule(backend("shop", "reviews", 9080))
    )
    deny = AuthorizationPolicy(
        namespace="shop",
        name="deny-web",
        action=AuthorizationAction.DENY,
        rules=(AuthorizationRule(),),
        rejected=True,
    )
    strict = PeerAuthentication(namespace="shop", name="strict", mode=MtlsMode.STRICT)
    model = mesh(
        namespace("shop"),
        namespace("web"),
        node("node-a", "192.168.0.1"),
        pod("shop", "reviews-1", "node-a", "10.0.1.5", sa="reviews", labels=labels, **pod_changes),
        reviews,
        route,
        producer,
        policy("shop", "lb", "reviews"),
        deny,
        strict,
    )
    problem = Diagnostic(
        severity=Severity.ERROR,
        reason=Reason.FAIL_CLOSED,
        message="kept as deny-all",
        ref=deny.ref,
        field="spec.rules[0]",
    )
    found = describe_pod(model, "shop", "reviews-1", diagnostics=[problem])
    assert found is not None
    return found


def test_sections_of_a_meshed_pod() -> None:
    doc = document()
    doc["sync"] = {
        "agent": {
            "connected": True,
            "synced": True,
            "connected_since": NOW - 65,
            "types": {"node_settings": "synced", "service_vip": "synced", "workload": "synced"},
        },
        "envoy": {"connected": False, "synced": False, "types": {}},
    }
    doc["certificates"] = {
        "ca": True,
        "certificates": [
            {
                "spiffe_id": "spiffe://cluster.local/ns/shop/sa/reviews",
                "serial": "1f",
                "not_after": "2026-01-02T00:00:00+00:00",
                "remaining_seconds": 7200.0,
                "state": "valid",
            }
        ],
    }
    text = describe.render(doc, Painter(enabled=False), now=NOW)
    lines = text.splitlines()
    assert lines[:10] == [
        "Pod:              shop/reviews-1",
        "Node:             node-a (192.168.0.1)",
        "IPs:              10.0.1.5",
        "Service account:  reviews",
        "Phase:            Running (ready)",
        "Labels:           app=reviews",
        "Mesh:             meshed",
        "                  namespace shop is enrolled (nodemesh.io/mesh=enabled)",
        "Identity:         spiffe://cluster.local/ns/shop/sa/reviews",
        "Services:",
    ]
    for expected in [
        "  shop/reviews  10.96.0.10  http 9080->8080 HTTP  (via selector)",
        "  to Service/shop/reviews port 9080: HTTPRoute/shop/reviews (producer)",
        "  as Service/shop/reviews: HTTPRoute/shop/reviews, HTTPRoute/web/reviews-from-web",
        "  on Service/shop/reviews: TrafficPolicy/shop/lb",
        "  DENY   AuthorizationPolicy/shop/deny-web (namespace) REJECTED: fails closed",
        "  plaintext refused on every port (no identity to authorize: only mTLS callers are let in)",
        "  workload     STRICT     (namespace by PeerAuthentication/shop/strict)",
        "  port 8080    STRICT     (namespace by PeerAuthentication/shop/strict)",
        "Node sync (node-a):",
        "  agent  SYNCED  node_settings=SYNCED service_vip=SYNCED workload=SYNCED, connected 1m5s ago",
        "  envoy  not connected",
        "  spiffe://cluster.local/ns/shop/sa/reviews  serial 1f  expires in 2h0m "
        "(2026-01-02T00:00:00+00:00)  VALID",
        "  Error  AuthorizationPolicy/shop/deny-web spec.rules[0]: FailClosed: kept as deny-all",
    ]:
        assert expected in lines, f"{expected!r} not in:\n{text}"
    coloured = describe.render(doc, Painter(enabled=True), now=NOW)
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == text
    assert "\x1b[32mmeshed" in coloured and "\x1b[31mnot connected" in coloured


def test_a_pod_outside_the_mesh_and_without_live_state() -> None:
    text = describe.render(document(host_network=True), Painter(enabled=False), now=NOW)
    assert "Mesh:             not meshed" in text
    assert "the pod uses the host network" in text
    assert "Routes for traffic it sends (once it is meshed; its traffic bypasses the mesh now):" in text
    # Offline documents have no sync or certificate sections at all.
    assert "Node sync" not in text and "Certificates:" not in text
    doc = document()
    doc["certificates"] = {"ca": False, "certificates": []}
    doc["sync"] = None
    text = describe.render(doc, Painter(enabled=False), now=NOW)
    assert "  no CA runs in this control plane" in text
    assert "  the pod is not scheduled" in text


def _authorization_lines(*policies: AuthorizationPolicy) -> list[str]:
    model = mesh(
        namespace("shop"), node("node-a", "192.168.0.1"), pod("shop", "api", "node-a", "10.0.1.9"), *policies
    )
    found = describe_pod(model, "shop", "api")
    assert found is not None
    lines = describe.render(found, Painter(enabled=False), now=NOW).splitlines()
    start = lines.index("Authorization:")
    return lines[start + 1 : lines.index("mTLS:")]


def test_where_authorization_refuses_plaintext() -> None:
    def ap(name: str, action: AuthorizationAction, rule_: AuthorizationRule) -> AuthorizationPolicy:
        return AuthorizationPolicy(namespace="shop", name=name, action=action, rules=(rule_,))

    alice = AuthorizationRule(
        sources=(Source(principals=(StringMatch.parse("cluster.local/ns/shop/sa/a"),)),)
    )
    on_8080 = AuthorizationRule(operations=(Operation(ports=(8080,)),))
    on_9090 = AuthorizationRule(operations=(Operation(ports=(9090,)),))
    allow, deny = AuthorizationAction.ALLOW, AuthorizationAction.DENY
    note = " (no identity to authorize: only mTLS callers are let in)"

    assert _authorization_lines() == ["  no policy selects it: every caller is allowed"]
    assert _authorization_lines(ap("alice", allow, alice))[-1] == f"  plaintext refused on every port{note}"
    assert _authorization_lines(ap("alice", allow, alice), ap("web", allow, on_8080))[-1] == (
        f"  plaintext refused on every port but 8080{note}"
    )
    assert _authorization_lines(ap("admin", deny, on_9090)) == [
        "  DENY   AuthorizationPolicy/shop/admin (namespace)",
        f"  plaintext refused on port 9090{note}",
    ]
    # Denied to authenticated callers only: plaintext is not concerned.
    assert _authorization_lines(ap("no-alice", deny, alice)) == [
        "  DENY   AuthorizationPolicy/shop/no-alice (namespace)"
    ]
