"""The YAML each step applies, as Kubernetes JSON: pure builders, no I/O."""

from __future__ import annotations

from typing import Any, Final

from demo.app import REVIEWS_PORT, TRUST_DOMAIN, spec

Manifest = dict[str, Any]

GATEWAY: Final = "gateway.networking.k8s.io/v1"
NODEMESH: Final = "nodemesh.io/v1alpha1"
TESTER_HEADER: Final = ("x-user", "tester")


def _principal(key: str) -> str:
    """A policy principal: the SPIFFE ID without its scheme (`cluster.local/ns/web/sa/batch`)."""
    pod = spec(key)
    return f"{TRUST_DOMAIN}/ns/{pod.namespace}/sa/{pod.service_account}"


def _split_rule(v1: int, v2: int) -> dict[str, Any]:
    return {
        "backendRefs": [
            {"name": "reviews-v1", "port": REVIEWS_PORT, "weight": v1},
            {"name": "reviews-v2", "port": REVIEWS_PORT, "weight": v2},
        ]
    }


def reviews_route(*, split: tuple[int, int] = (80, 20), header_route: bool = False) -> Manifest:
    """HTTPRoute `shop/reviews` bound to the Service (GAMMA): a weighted split between v1 and v2, and with
    `header_route` a first rule sending `x-user: tester` to v2."""
    rules: list[dict[str, Any]] = []
    if header_route:
        name, value = TESTER_HEADER
        rules.append(
            {
                "matches": [{"headers": [{"name": name, "value": value}]}],
                "backendRefs": [{"name": "reviews-v2", "port": REVIEWS_PORT}],
            }
        )
    rules.append(_split_rule(*split))
    return {
        "apiVersion": GATEWAY,
        "kind": "HTTPRoute",
        "metadata": {"name": "reviews", "namespace": "shop"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": REVIEWS_PORT}],
            "rules": rules,
        },
    }


def reviews_authorization() -> list[Manifest]:
    """On the reviews workloads: DENY `web/batch` by principal, ALLOW `web/frontend`."""
    selector = {"matchLabels": {"app": "reviews"}}
    return [
        {
            "apiVersion": NODEMESH,
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "reviews-deny-batch", "namespace": "shop"},
            "spec": {
                "selector": selector,
                "action": "DENY",
                "rules": [{"from": [{"source": {"principals": [_principal("batch")]}}]}],
            },
        },
        {
            "apiVersion": NODEMESH,
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "reviews-allow-frontend", "namespace": "shop"},
            "spec": {
                "selector": selector,
                "action": "ALLOW",
                "rules": [{"from": [{"source": {"principals": [_principal("frontend")]}}]}],
            },
        },
    ]


def strict_mtls() -> Manifest:
    """PeerAuthentication `shop/default`, no selector: every workload of `shop` accepts only mTLS."""
    return {
        "apiVersion": NODEMESH,
        "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "shop"},
        "spec": {"mtls": {"mode": "STRICT"}},
    }
