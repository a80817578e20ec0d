"""CustomResourceDefinitions: checking one, and turning it into the kind it makes the double serve."""

from __future__ import annotations

import re
from typing import Any

from apidouble.errors import FieldError
from apidouble.jsonvalue import JsonObject
from apidouble.kinds import ResourceKind, StatusOnCreate

_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key giving Kubernetes' version order: v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > other."""
    m = _VERSION_RE.match(version)
    if m is None:
        return (3, 0, 0, version)
    stage = {"": 0, "beta": 1, "alpha": 2}[m[2] or ""]
    return (stage, -int(m[1]), -int(m[3] or 0), version)


def validate_crd(crd: JsonObject) -> list[FieldError]:
    errors: list[FieldError] = []
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return [FieldError(field="spec", reason="FieldValueRequired", message="Required value")]
    group = spec.get("group")
    names = spec.get("names") or {}
    if not group:
        errors.append(FieldError(field="spec.group", reason="FieldValueRequired", message="Required value"))
    elif "." not in group:
        errors.append(
            FieldError(
                field="spec.group",
                reason="FieldValueInvalid",
                message=f'Invalid value: "{group}": should be a domain with at least one dot',
            )
        )
    for key in ("plural", "kind"):
        if not names.get(key):
            errors.append(
                FieldError(field=f"spec.names.{key}", reason="FieldValueRequired", message="Required value")
            )
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        errors.append(
            FieldError(
                field="spec.scope",
                reason="FieldValueNotSupported",
                message=f'Unsupported value: "{scope or ""}": supported values: "Cluster", "Namespaced"',
            )
        )
    versions = spec.get("versions") or []
    if not versions:
        errors.append(
            FieldError(field="spec.versions", reason="FieldValueRequired", message="Required value")
        )
    storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
    if versions and len(storage) != 1:
        errors.append(
            FieldError(
                field="spec.versions",
                reason="FieldValueInvalid",
                message="Invalid value: []: must have exactly one version marked as storage version",
            )
        )
    for i, version in enumerate(versions):
        if not isinstance(version, dict) or not version.get("name"):
            errors.append(
                FieldError(
                    field=f"spec.versions[{i}].name", reason="FieldValueRequired", message="Required value"
                )
            )
    name = (crd.get("metadata") or {}).get("name")
    plural = names.get("plural")
    if group and plural and name != f"{plural}.{group}":
        errors.append(
            FieldError(
                field="metadata.name",
                reason="FieldValueInvalid",
                message=f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
            )
        )
    return errors


def kind_from_crd(crd: JsonObject) -> ResourceKind:
    spec: dict[str, Any] = crd["spec"]
    names: dict[str, Any] = spec["names"]
    served = [v for v in spec["versions"] if v.get("served", True)]
    served.sort(key=lambda v: version_priority(str(v["name"])))
    schemas: dict[str, JsonObject] = {}
    columns: dict[str, tuple[JsonObject, ...]] = {}
    has_status = False
    for version in served:
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if isinstance(schema, dict):
            schemas[version["name"]] = schema
        columns[version["name"]] = tuple(version.get("additionalPrinterColumns") or ())
        if "status" in (version.get("subresources") or {}):
            has_status = True
    return ResourceKind(
        group=spec["group"],
        versions=tuple(str(v["name"]) for v in served),
        plural=names["plural"],
        singular=names.get("singular") or str(names["kind"]).lower(),
        kind=names["kind"],
        namespaced=spec["scope"] == "Namespaced",
        status_subresource=has_status,
        status_on_create=StatusOnCreate.DROP if has_status else StatusOnCreate.KEEP,
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        schemas=schemas,
        printer_columns=columns,
        custom=True,
    )


def established_status(crd: JsonObject, now: str) -> JsonObject:
    """The status the CRD controllers of a real server would settle on: names accepted, established."""
    spec = crd["spec"]
    names = dict(spec["names"])
    names.setdefault("singular", str(names["kind"]).lower())
    names.setdefault("listKind", f"{names['kind']}List")
    conditions = [
        {
            "type": "NamesAccepted",
            "status": "True",
            "reason": "NoConflicts",
            "message": "no conflicts found",
            "lastTransitionTime": now,
        },
        {
            "type": "Established",
            "status": "True",
            "reason": "InitialNamesAccepted",
            "message": "the initial names have been accepted",
            "lastTransitionTime": now,
        },
    ]
    stored = sorted({str(v["name"]) for v in spec["versions"] if v.get("storage")})
    return {"acceptedNames": names, "conditions": conditions, "storedVersions": stored}
