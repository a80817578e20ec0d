"""Server-side printing: `kubectl get` asks for a meta.k8s.io Table, with a CRD's printer columns."""

from __future__ import annotations

from datetime import UTC, datetime

from apidouble.jsonvalue import JsonObject, JsonValue
from apidouble.kinds import ResourceKind

TABLE_MEDIA = "as=Table"


def wants_table(accept: str) -> bool:
    return TABLE_MEDIA in accept and "g=meta.k8s.io" in accept


def human_age(seconds: float) -> str:
    """Kubernetes' short durations: 45s, 3m20s, 5h, 2d3h, 40d."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def _age(timestamp: JsonValue, now: datetime) -> str:
    if not isinstance(timestamp, str) or not timestamp:
        return "<unknown>"
    try:
        moment = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    return human_age((now - moment).total_seconds())


def _json_path(obj: JsonObject, path: str) -> JsonValue:
    """The simple JSONPaths printer columns use: `.spec.field`, `.items[0].x`, `.ports[*].port`."""
    current: list[JsonValue] = [obj]
    fanned_out = False
    for raw in path.strip().strip("{}").lstrip(".").split("."):
        if not raw:
            continue
        name, _, index = raw.partition("[")
        if name:
            current = [c.get(name) if isinstance(c, dict) else None for c in current]
        if index:
            position = index.rstrip("]")
            picked: list[JsonValue] = []
            for value in current:
                if not isinstance(value, list):
                    continue
                if position == "*":
                    picked.extend(value)
                    fanned_out = True
                elif position.isdigit() and int(position) < len(value):
                    picked.append(value[int(position)])
            current = picked
    present = [c for c in current if c is not None]
    if fanned_out:
        return present or None
    return present[0] if present else None


# Columns the real server prints for built-in kinds (a useful subset), after Name and before Age.
BUILTIN_COLUMNS: dict[str, tuple[JsonObject, ...]] = {
    "Pod": (
        {"name": "Status", "type": "string", "jsonPath": ".status.phase"},
        {"name": "IP", "type": "string", "jsonPath": ".status.podIP", "priority": 1},
        {"name": "Node", "type": "string", "jsonPath": ".spec.nodeName", "priority": 1},
    ),
    "Service": (
        {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
        {"name": "Cluster-IP", "type": "string", "jsonPath": ".spec.clusterIP"},
        {"name": "Port(s)", "type": "string", "jsonPath": ".spec.ports[*].port"},
    ),
    "Namespace": ({"name": "Status", "type": "string", "jsonPath": ".status.phase"},),
    "Node": ({"name": "Address", "type": "string", "jsonPath": ".status.addresses[0].address"},),
    "EndpointSlice": (
        {"name": "AddressType", "type": "string", "jsonPath": ".addressType"},
        {"name": "Endpoints", "type": "string", "jsonPath": ".endpoints[*].addresses[0]"},
    ),
    "CustomResourceDefinition": (
        {"name": "Created At", "type": "string", "jsonPath": ".metadata.creationTimestamp"},
    ),
}


def _cell(value: JsonValue) -> JsonValue:
    if value is None:
        return "<none>"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return value


def to_table(
    kind: ResourceKind,
    version: str,
    items: list[JsonObject],
    *,
    list_meta: JsonObject | None,
    now: datetime,
) -> JsonObject:
    columns: list[JsonObject] = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "description": "Name of the object",
            "priority": 0,
        }
    ]
    extra = kind.printer_columns.get(version, ()) if kind.custom else BUILTIN_COLUMNS.get(kind.kind, ())
    for column in extra:
        columns.append(
            {
                "name": column.get("name", ""),
                "type": column.get("type", "string"),
                "format": column.get("format", ""),
                "description": column.get("description", ""),
                "priority": column.get("priority", 0),
            }
        )
    columns.append({"name": "Age", "type": "date", "format": "", "description": "Age", "priority": 0})
    rows: list[JsonObject] = []
    for item in items:
        meta = item.get("metadata") or {}
        cells: list[JsonValue] = [meta.get("name", "")]
        for column in extra:
            value = _json_path(item, str(column.get("jsonPath", "")))
            cells.append(_age(value, now) if column.get("type") == "date" else _cell(value))
        cells.append(_age(meta.get("creationTimestamp"), now))
        rows.append(
            {
                "cells": cells,
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta},
            }
        )
    table: JsonObject = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": dict(list_meta or {}),
        "columnDefinitions": columns,
        "rows": rows,
    }
    return table
