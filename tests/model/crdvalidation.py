"""What the API server would say about an object of one of our CRDs: the structural schema (the API double's
checker, as the server runs it) plus the CEL rules (x-kubernetes-validations, evaluated with cel-python)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import celpy
import yaml
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from apidouble.schema import process

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "manifests/crds"


def load_crd(file_name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CRDS / file_name).read_text())
    return data


def openapi_schema(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


@functools.cache
def compile_cel(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def cel_rules(schema: dict[str, Any]) -> list[str]:
    """Every CEL rule in the schema (to check they all compile)."""
    found = [v["rule"] for v in schema.get("x-kubernetes-validations", [])]
    for child in schema.get("properties", {}).values():
        found.extend(cel_rules(child))
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found.extend(cel_rules(schema[key]))
    return found


def _cel_failures(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    expected = {"object": dict, "array": list, "string": str}.get(schema.get("type", ""))
    if expected is not None and not isinstance(value, expected):
        return []  # the structural check reports it; the server runs no rules on a mistyped value
    out: list[str] = []
    for validation in schema.get("x-kubernetes-validations", []):
        try:
            ok = bool(compile_cel(validation["rule"]).evaluate({"self": json_to_cel(value)}))
        except CELEvalError:
            ok = False
        if not ok:
            out.append(f"{path}: {validation['message']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            child = f"{path}.{key}".lstrip(".")
            if key in props:
                out.extend(_cel_failures(props[key], item, child))
            elif isinstance(additional, dict):
                out.extend(_cel_failures(additional, item, child))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out.extend(_cel_failures(schema["items"], item, f"{path}[{i}]"))
    return out


def rejections(schema: dict[str, Any], obj: dict[str, Any]) -> list[str]:
    """Why the API server would refuse `obj` (empty: it would accept it)."""
    result = process(obj, schema)
    found = [f"{e.field}: {e.message}" for e in result.errors]
    found.extend(f"{field}: unknown field" for field in result.unknown_fields)
    return found + _cel_failures(schema, result.obj, "")


def schema_fields(schema: dict[str, Any], path: str, out: dict[str, tuple[str, ...]]) -> None:
    """Field names by path (lists as `[]`, object-valued maps as `{}`), like the converters' FIELDS."""
    if schema.get("type") == "array":
        schema_fields(schema["items"], f"{path}[]", out)
        return
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict) and additional.get("properties"):
        schema_fields(additional, f"{path}{{}}", out)
    props = schema.get("properties")
    if not props:
        return
    out[path] = tuple(props)
    for key, child in props.items():
        schema_fields(child, f"{path}.{key}", out)
