"""The three PATCH formats: JSON merge patch (RFC 7386), strategic merge patch, JSON patch (RFC 6902).

Strategic merge follows Kubernetes for the lists kubectl's client-side apply touches (containers by name,
ports by port, ...) and its `$patch`, `$setElementOrder`, `$retainKeys`, `$deleteFromPrimitiveList`
directives; lists it does not know are replaced, as merge patch would.
"""

from __future__ import annotations

import copy
from typing import Any

from apidouble.errors import bad_request, unprocessable
from apidouble.jsonvalue import JsonValue


def merge_patch(target: JsonValue, patch: JsonValue) -> JsonValue:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# Field name -> merge key of its list elements (client-go's patchMergeKey tags, for the fields that matter).
_MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "conditions": ("type",),
    "addresses": ("type",),
    "hostAliases": ("ip",),
    "ownerReferences": ("uid",),
    "topologySpreadConstraints": ("topologyKey",),
    # Container ports merge by containerPort, Service ports by port.
    "ports": ("containerPort", "port"),
}
# Lists of scalars that merge as sets.
_PRIMITIVE_MERGE = frozenset({"finalizers"})

_DIRECTIVE = "$patch"
_ORDER_PREFIX = "$setElementOrder/"
_DELETE_PRIMITIVE_PREFIX = "$deleteFromPrimitiveList/"
_RETAIN_KEYS = "$retainKeys"


def strategic_merge_patch(target: JsonValue, patch: JsonValue) -> JsonValue:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    return _merge_map(target if isinstance(target, dict) else {}, patch)


def _merge_map(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    directive = patch.get(_DIRECTIVE)
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != _DIRECTIVE}
    if directive not in (None, "merge"):
        raise bad_request(f"unknown patch type: {directive!r} in map")
    result = copy.deepcopy(target)
    if _RETAIN_KEYS in patch:
        keep = set(patch[_RETAIN_KEYS] or [])
        result = {k: v for k, v in result.items() if k in keep}
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in (_DIRECTIVE, _RETAIN_KEYS):
            continue
        if key.startswith(_ORDER_PREFIX):
            orders[key[len(_ORDER_PREFIX) :]] = value or []
            continue
        if key.startswith(_DELETE_PRIMITIVE_PREFIX):
            field = key[len(_DELETE_PRIMITIVE_PREFIX) :]
            doomed = value or []
            result[field] = [v for v in result.get(field) or [] if v not in doomed]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            if value.get(_DIRECTIVE) == "delete":
                result.pop(key, None)
            else:
                current = result.get(key)
                result[key] = _merge_map(current if isinstance(current, dict) else {}, value)
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = copy.deepcopy(value)
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _apply_order(field, result[field], order)
    return result


def _merge_key(field: str, items: list[Any]) -> str | None:
    candidates = _MERGE_KEYS.get(field)
    if not candidates:
        return None
    for candidate in candidates:
        if any(isinstance(i, dict) and candidate in i for i in items):
            return candidate
    return None


def _merge_list(field: str, target: JsonValue, patch: list[Any]) -> list[Any]:
    original: list[Any] = target if isinstance(target, list) else []
    if any(isinstance(p, dict) and p.get(_DIRECTIVE) == "replace" for p in patch):
        return [copy.deepcopy(p) for p in patch if not (isinstance(p, dict) and _DIRECTIVE in p)]
    if field in _PRIMITIVE_MERGE:
        merged = list(original)
        merged.extend(v for v in patch if v not in merged)
        return copy.deepcopy(merged)
    key = _merge_key(field, original + patch)
    if key is None:
        return copy.deepcopy(patch)
    result = copy.deepcopy(original)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise bad_request(f"map: {item!r} does not contain declared merge key: {key}")
        index = next(
            (
                i
                for i, existing in enumerate(result)
                if isinstance(existing, dict) and existing.get(key) == item[key]
            ),
            None,
        )
        if item.get(_DIRECTIVE) == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(_merge_map({}, item))
        else:
            result[index] = _merge_map(result[index], item)
    return result


def _apply_order(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    key = _merge_key(field, items + order)

    def identity(item: Any) -> Any:
        if key is not None and isinstance(item, dict):
            return item.get(key)
        return item

    wanted = [identity(o) for o in order]
    positioned = [i for i in items if identity(i) in wanted]
    rest = [i for i in items if identity(i) not in wanted]
    positioned.sort(key=lambda i: wanted.index(identity(i)))
    return positioned + rest


def json_patch(target: JsonValue, operations: JsonValue) -> JsonValue:
    if not isinstance(operations, list):
        raise bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"invalid json patch operation: {op!r}")
        doc = _apply_operation(doc, op)
    return doc


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _resolve(doc: JsonValue, parts: list[str], path: str) -> JsonValue:
    current = doc
    for part in parts:
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise unprocessable(f"jsonpatch: path {path!r} not found")
    return current


def _apply_operation(doc: JsonValue, op: dict[str, Any]) -> JsonValue:
    kind = op["op"]
    path = str(op["path"])
    parts = _pointer(path)
    if kind == "test":
        if _resolve(doc, parts, path) != op.get("value"):
            raise unprocessable(f"jsonpatch: test operation for path {path!r} failed")
        return doc
    if kind in ("move", "copy"):
        source = str(op.get("from", ""))
        value = copy.deepcopy(_resolve(doc, _pointer(source), source))
        if kind == "move":
            doc = _remove(doc, _pointer(source), source)
        return _add(doc, parts, path, value)
    if kind == "add":
        return _add(doc, parts, path, copy.deepcopy(op.get("value")))
    if kind == "remove":
        return _remove(doc, parts, path)
    if kind == "replace":
        doc = _remove(doc, parts, path)
        return _add(doc, parts, path, copy.deepcopy(op.get("value")))
    raise bad_request(f"unexpected json patch operation: {kind!r}")


def _add(doc: JsonValue, parts: list[str], path: str, value: JsonValue) -> JsonValue:
    if not parts:
        return value
    parent = _resolve(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise unprocessable(f"jsonpatch: index out of range in {path!r}")
    else:
        raise unprocessable(f"jsonpatch: cannot add at {path!r}")
    return doc


def _remove(doc: JsonValue, parts: list[str], path: str) -> JsonValue:
    if not parts:
        return None
    parent = _resolve(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
    else:
        raise unprocessable(f"jsonpatch: path {path!r} not found")
    return doc
