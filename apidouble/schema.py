"""Custom objects against their CRD's openAPIV3Schema: prune unknown fields, apply defaults, validate.

The order and messages follow the real API server's structural-schema handling, so a test or a user sees
what `kubectl` would print against a real cluster. CEL rules (x-kubernetes-validations) are not evaluated.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any

from apidouble.errors import FieldError
from apidouble.jsonvalue import JsonObject, JsonValue

# The root of every object, and of x-kubernetes-embedded-resource fields, keeps these without a schema.
_IMPLICIT_FIELDS = ("apiVersion", "kind", "metadata")


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaResult:
    obj: JsonObject
    unknown_fields: tuple[str, ...]
    errors: tuple[FieldError, ...]


@dataclass(slots=True)
class _Walk:
    prune: bool
    errors: list[FieldError] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def process(obj: JsonObject, schema: JsonObject) -> SchemaResult:
    """Prune, default and validate a whole custom object (its metadata is left to the caller)."""
    walk = _Walk(prune=True)
    result = _object(walk, copy.deepcopy(obj), schema, "", implicit=True)
    return SchemaResult(obj=result, unknown_fields=tuple(walk.unknown), errors=tuple(walk.errors))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _render(value: JsonValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True)


def _type_name(value: JsonValue) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(value: JsonValue, schema: JsonObject) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    expected = schema.get("type")
    match expected:
        case None:
            return True
        case "object":
            return isinstance(value, dict)
        case "array":
            return isinstance(value, list)
        case "string":
            return isinstance(value, str)
        case "boolean":
            return isinstance(value, bool)
        case "integer":
            return (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, float) and value.is_integer()
            )
        case "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
        case _:
            return True


def _value(walk: _Walk, value: JsonValue, schema: JsonObject, path: str) -> JsonValue:
    if value is None and schema.get("nullable"):
        return None
    if not _type_ok(value, schema):
        got = _type_name(value)
        walk.errors.append(
            FieldError(
                field=path,
                reason="FieldValueTypeInvalid",
                message=f'Invalid value: "{got}": {path} in body must be of type {schema.get("type")}: '
                f'"{got}"',
            )
        )
        return value
    if isinstance(value, dict):
        value = _object(
            walk, value, schema, path, implicit=bool(schema.get("x-kubernetes-embedded-resource"))
        )
    elif isinstance(value, list):
        value = _array(walk, value, schema, path)
    else:
        _scalar(walk, value, schema, path)
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_render(v) for v in schema["enum"])
        walk.errors.append(
            FieldError(
                field=path,
                reason="FieldValueNotSupported",
                message=f"Unsupported value: {_render(value)}: supported values: {supported}",
            )
        )
    _combinators(walk, value, schema, path)
    return value


def _object(
    walk: _Walk, value: dict[str, Any], schema: JsonObject, path: str, *, implicit: bool
) -> JsonObject:
    properties: dict[str, Any] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    result: JsonObject = {}
    for key, item in value.items():
        child_path = _join(path, key)
        if implicit and key in _IMPLICIT_FIELDS:
            # The server owns these (ObjectMeta is pruned by its own type): a CRD's schema for them, such as
            # the `metadata: {type: object}` every generated CRD has, may restrict values but never prunes.
            if key in properties:
                check = _Walk(prune=False)
                _value(check, copy.deepcopy(item), properties[key], child_path)
                walk.errors.extend(check.errors)
            result[key] = item
        elif key in properties:
            sub = properties[key]
            if item is None and not sub.get("nullable"):
                continue  # nulls of non-nullable fields are pruned before defaulting, as the server does
            result[key] = _value(walk, item, sub, child_path)
        elif isinstance(additional, dict):
            result[key] = _value(walk, item, additional, f"{path}[{key}]" if path else key)
        elif additional is True or preserve or not walk.prune:
            result[key] = item
        else:
            walk.unknown.append(child_path)
    for key, sub in properties.items():
        if key not in result and "default" in sub:
            result[key] = _value(walk, copy.deepcopy(sub["default"]), sub, _join(path, key))
    for key in schema.get("required") or []:
        if key not in result:
            walk.errors.append(
                FieldError(field=_join(path, key), reason="FieldValueRequired", message="Required value")
            )
    if "minProperties" in schema and len(result) < schema["minProperties"]:
        walk.errors.append(
            FieldError(
                field=path,
                reason="FieldValueInvalid",
                message=f"Invalid value: {len(result)}: {path} in body should have at least "
                f"{schema['minProperties']} properties",
            )
        )
    if "maxProperties" in schema and len(result) > schema["maxProperties"]:
        walk.errors.append(
            FieldError(
                field=path,
                reason="FieldValueTooMany",
                message=f"Too many: {len(result)}: must have at most {schema['maxProperties']} items",
            )
        )
    return result


def _array(walk: _Walk, value: list[Any], schema: JsonObject, path: str) -> list[Any]:
    items = schema.get("items")
    result = [
        _value(walk, item, items, f"{path}[{i}]") if isinstance(items, dict) else item
        for i, item in enumerate(value)
    ]
    if "minItems" in schema and len(result) < schema["minItems"]:
        walk.errors.append(
            FieldError(
                field=path,
                reason="FieldValueInvalid",
                message=f"Invalid value: {len(result)}: {path} in body should have at least "
                f"{schema['minItems']} items",
            )
        )
    if "maxItems" in schema and len(result) > schema["maxItems"]:
        walk.errors.append(
            FieldError(
                field=path,
                reason="FieldValueTooMany",
                message=f"Too many: {len(result)}: must have at most {schema['maxItems']} items",
            )
        )
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set" or schema.get("uniqueItems"):
        seen: list[Any] = []
        for i, item in enumerate(result):
            if item in seen:
                walk.errors.append(
                    FieldError(
                        field=f"{path}[{i}]",
                        reason="FieldValueDuplicate",
                        message=f"Duplicate value: {_render(item)}",
                    )
                )
            seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen_keys: list[tuple[Any, ...]] = []
        for i, item in enumerate(result):
            if not isinstance(item, dict):
                continue
            identity = tuple(item.get(k) for k in keys)
            if identity in seen_keys:
                shown = _render({k: item.get(k) for k in keys})
                walk.errors.append(
                    FieldError(
                        field=f"{path}[{i}]",
                        reason="FieldValueDuplicate",
                        message=f"Duplicate value: {shown}",
                    )
                )
            seen_keys.append(identity)
    return result


def _scalar(walk: _Walk, value: JsonValue, schema: JsonObject, path: str) -> None:
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            walk.errors.append(
                FieldError(
                    field=path,
                    reason="FieldValueTooLong",
                    message=f"Too long: may not be more than {schema['maxLength']} bytes",
                )
            )
        if "minLength" in schema and len(value) < schema["minLength"]:
            walk.errors.append(
                FieldError(
                    field=path,
                    reason="FieldValueInvalid",
                    message=f"Invalid value: {_render(value)}: {path} in body should be at least "
                    f"{schema['minLength']} chars long",
                )
            )
        pattern = schema.get("pattern")
        if pattern is not None and not _pattern_matches(pattern, value):
            walk.errors.append(
                FieldError(
                    field=path,
                    reason="FieldValueInvalid",
                    message=f"Invalid value: {_render(value)}: {path} in body should match '{pattern}'",
                )
            )
    elif isinstance(value, int | float) and not isinstance(value, bool):
        minimum = schema.get("minimum")
        if minimum is not None:
            exclusive = bool(schema.get("exclusiveMinimum"))
            if value < minimum or (exclusive and value == minimum):
                relation = "greater than" if exclusive else "greater than or equal to"
                walk.errors.append(
                    FieldError(
                        field=path,
                        reason="FieldValueInvalid",
                        message=f"Invalid value: {_render(value)}: {path} in body should be "
                        f"{relation} {minimum}",
                    )
                )
        maximum = schema.get("maximum")
        if maximum is not None:
            exclusive = bool(schema.get("exclusiveMaximum"))
            if value > maximum or (exclusive and value == maximum):
                relation = "less than" if exclusive else "less than or equal to"
                walk.errors.append(
                    FieldError(
                        field=path,
                        reason="FieldValueInvalid",
                        message=f"Invalid value: {_render(value)}: {path} in body should be "
                        f"{relation} {maximum}",
                    )
                )
        multiple = schema.get("multipleOf")
        if multiple and value % multiple != 0:
            walk.errors.append(
                FieldError(
                    field=path,
                    reason="FieldValueInvalid",
                    message=f"Invalid value: {_render(value)}: {path} in body should be a "
                    f"multiple of {multiple}",
                )
            )


def _pattern_matches(pattern: str, value: str) -> bool:
    try:
        return re.search(pattern, value) is not None
    except re.error:
        # The CRD's pattern is RE2 syntax Python cannot compile: do not reject objects for our limitation.
        return True


def _valid_against(value: JsonValue, schema: JsonObject, path: str) -> bool:
    walk = _Walk(prune=False)
    _value(walk, copy.deepcopy(value), schema, path)
    return not walk.errors


def _combinators(walk: _Walk, value: JsonValue, schema: JsonObject, path: str) -> None:
    for sub in schema.get("allOf") or []:
        _value(_Walk(prune=False, errors=walk.errors), copy.deepcopy(value), sub, path)
    any_of = schema.get("anyOf")
    if any_of and not any(_valid_against(value, sub, path) for sub in any_of):
        walk.errors.append(
            FieldError(
                field=path,
                reason="FieldValueInvalid",
                message=f'Invalid value: "": {path} in body must '
                "be valid against at least one schema of anyOf",
            )
        )
    one_of = schema.get("oneOf")
    if one_of and sum(_valid_against(value, sub, path) for sub in one_of) != 1:
        walk.errors.append(
            FieldError(
                field=path,
                reason="FieldValueInvalid",
                message=f'Invalid value: "": {path} in body must '
                "be valid against exactly one schema of oneOf",
            )
        )
    negated = schema.get("not")
    if isinstance(negated, dict) and _valid_against(value, negated, path):
        walk.errors.append(
            FieldError(
                field=path,
                reason="FieldValueInvalid",
                message=f"{path} in body must not be valid against the schema in not",
            )
        )
