"""A small OpenAPI v3 structural-schema checker for tests: types, required, enum, bounds, patterns,
additionalProperties: false. (CEL rules are not evaluated.) Returns the paths of violations."""

from __future__ import annotations

import re
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def violations(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    expected = schema.get("type")
    if expected is not None:
        ok = isinstance(value, _TYPES[expected]) and not (
            isinstance(value, bool) and expected in ("integer", "number")
        )
        if not ok:
            return [f"{path}: type"]
    out: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: enum")
    if "minimum" in schema and value < schema["minimum"]:
        out.append(f"{path}: minimum")
    if "maximum" in schema and value > schema["maximum"]:
        out.append(f"{path}: maximum")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        out.append(f"{path}: pattern")
    if "minLength" in schema and len(value) < schema["minLength"]:
        out.append(f"{path}: minLength")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{path}.{key}: required".lstrip("."))
        for key, item in value.items():
            child = f"{path}.{key}".lstrip(".")
            if key in props:
                out.extend(violations(props[key], item, child))
            elif schema.get("additionalProperties") is False:
                out.append(f"{child}: unknown")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            out.append(f"{path}: minItems")
        for i, item in enumerate(value):
            out.extend(violations(schema.get("items", {}), item, f"{path}[{i}]"))
    return out
