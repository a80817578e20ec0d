"""Stand-ins the API server double needs to accept the install: the workload and RBAC kinds (registered
without a schema), and Gateway API's route CRDs, a prerequisite that is not part of the repository."""

from __future__ import annotations

from typing import Any

from apidouble.kinds import ResourceKind, StatusOnCreate


def _kind(group: str, plural: str, kind: str, *, namespaced: bool, status: bool = False) -> ResourceKind:
    return ResourceKind(
        group=group,
        versions=("v1",),
        plural=plural,
        singular=kind.lower(),
        kind=kind,
        namespaced=namespaced,
        status_subresource=status,
        status_on_create=StatusOnCreate.DROP if status else StatusOnCreate.KEEP,
    )


RBAC = "rbac.authorization.k8s.io"
STAND_IN_KINDS = (
    _kind("apps", "deployments", "Deployment", namespaced=True, status=True),
    _kind("apps", "daemonsets", "DaemonSet", namespaced=True, status=True),
    _kind("policy", "poddisruptionbudgets", "PodDisruptionBudget", namespaced=True, status=True),
    _kind(RBAC, "clusterroles", "ClusterRole", namespaced=False),
    _kind(RBAC, "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    _kind(RBAC, "roles", "Role", namespaced=True),
    _kind(RBAC, "rolebindings", "RoleBinding", namespaced=True),
)

_PARENT_REF: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "group": {"type": "string"},
        "kind": {"type": "string"},
        "namespace": {"type": "string"},
        "name": {"type": "string", "minLength": 1},
        "sectionName": {"type": "string"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
    },
}


def gateway_route_crd(plural: str, kind: str) -> dict[str, Any]:
    """A stand-in for an upstream Gateway API route CRD: the real group, version, scope and status
    subresource; parentRefs typed, rules left open (the mesh's own conversion checks them)."""
    group = "gateway.networking.k8s.io"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "parentRefs": {"type": "array", "items": _PARENT_REF},
                                        "hostnames": {"type": "array", "items": {"type": "string"}},
                                        "rules": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "x-kubernetes-preserve-unknown-fields": True,
                                            },
                                        },
                                    },
                                },
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                }
            ],
        },
    }
