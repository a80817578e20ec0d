"""A minimal OpenAPI v3 index: enough for kubectl to learn that the server validates fields itself.

kubectl (without --validate=false) asks /openapi/v3 whether each kind's PATCH takes `fieldValidation`; when
it does, kubectl sends `fieldValidation=Strict` and leaves validation to the server instead of downloading
schemas. The documents carry no schemas, so kubectl's apply falls back to its built-in patch strategies.
"""

from __future__ import annotations

import hashlib
import json

from apidouble.jsonvalue import JsonObject
from apidouble.kinds import KindRegistry, ResourceKind


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _group_versions(registry: KindRegistry) -> list[tuple[str, str]]:
    return sorted({(k.group, v) for k in registry for v in k.versions})


def _item_path(kind: ResourceKind, version: str) -> str:
    base = f"/{_gv_path(kind.group, version)}"
    if kind.namespaced:
        return f"{base}/namespaces/{{namespace}}/{kind.plural}/{{name}}"
    return f"{base}/{kind.plural}/{{name}}"


def group_version_doc(registry: KindRegistry, group: str, version: str) -> JsonObject | None:
    kinds = registry.in_group_version(group, version)
    if not kinds:
        return None
    paths: JsonObject = {}
    for kind in kinds:
        if "patch" not in kind.verbs:
            continue
        paths[_item_path(kind, version)] = {
            "patch": {
                "operationId": f"patch{kind.kind}",
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind.kind},
                "parameters": [
                    {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": "OK"}},
            }
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (nodemesh API server double)", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }


def root_doc(registry: KindRegistry) -> JsonObject:
    paths: JsonObject = {}
    for group, version in _group_versions(registry):
        doc = group_version_doc(registry, group, version)
        digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()
        path = _gv_path(group, version)
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}
