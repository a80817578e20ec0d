"""Small builders of Kubernetes JSON for table-driven tests (what the API returns, trimmed)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def http_route(rules: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": 9080}],
        "rules": rules if rules is not None else [{"backendRefs": [{"name": "reviews-v1", "port": 9080}]}],
    }
    body.update(spec)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "reviews", "namespace": "shop", "generation": 3},
        "spec": body,
    }


def grpc_route(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GRPCRoute",
        "metadata": {"name": "ratings", "namespace": "shop"},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "ratings"}], "rules": rules},
    }


def traffic_policy(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"targetRefs": [{"group": "", "kind": "Service", "name": "reviews"}]}
    body.update(spec)
    return {
        "apiVersion": "nodemesh.io/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": "reviews", "namespace": "shop", "generation": 2},
        "spec": body,
    }


def with_path(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of obj with the dotted path (list indexes as `[i]`) set to value (or removed if ...)."""
    out = copy.deepcopy(obj)
    target: Any = out
    keys = path.replace("[", ".").replace("]", "").split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target.setdefault(key, {})
    last = keys[-1]
    if value is ...:
        del target[int(last) if isinstance(target, list) else last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return out
