"""Gateway API route status for the mesh's (GAMMA) parents: one `status.parents[]` entry per Service
parentRef, with the `Accepted` and `ResolvedRefs` conditions and the spec's reasons.

The model's diagnostics (from conversion and translation) decide the conditions:
- `ResolvedRefs=False` when a reference does not resolve: BackendNotFound (the Service or its port does not
  exist), InvalidKind (a backendRef names something other than a core Service), RefNotPermitted (a
  cross-namespace reference that is not allowed). The route is still accepted: the spec wants the broken
  backend's share to fail, not the whole route.
- `Accepted=False` for one parent when the diagnostic is about that parentRef: NoMatchingParent (the Service,
  or the port/section named, does not exist), NotAllowedByListeners (attaching is not permitted).
- `Accepted=False` for every parent when any other ERROR is reported (schema or unsupported value: the
  object, or its new generation, is not in effect) or the route is not in the model at all: UnsupportedValue.
Warnings change no condition; they are listed in the `Accepted` message so users still see them.

Entries of other controllers (a Gateway's, another mesh's) are kept as they are; the write replaces the
whole `parents` list (merge patch), so it must carry them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from controlplane.model.diagnostics import Diagnostic, Reason, Severity
from controlplane.model.refs import ObjectRef
from controlplane.status.conditions import ConditionStatus, JsonObject, condition, find_condition

DEFAULT_CONTROLLER: Final = "nodemesh.io/mesh-controller"
GATEWAY_GROUP: Final = "gateway.networking.k8s.io"

_PARENT_FIELD: Final = re.compile(r"^spec\.parentRefs\[(\d+)\]")
_BACKEND_KIND: Final = re.compile(r"(backendRefs\[\d+\]|\.backendRef)(\.(kind|group))?$")


class RouteConditionType(StrEnum):
    ACCEPTED = "Accepted"
    RESOLVED_REFS = "ResolvedRefs"


class RouteConditionReason(StrEnum):
    """Gateway API's reasons for the two route conditions (a closed set: also a metric label)."""

    ACCEPTED = "Accepted"
    NO_MATCHING_PARENT = "NoMatchingParent"
    NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"
    UNSUPPORTED_VALUE = "UnsupportedValue"
    RESOLVED_REFS = "ResolvedRefs"
    BACKEND_NOT_FOUND = "BackendNotFound"
    INVALID_KIND = "InvalidKind"
    REF_NOT_PERMITTED = "RefNotPermitted"


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteEffect:
    """What one diagnostic does to a route's conditions."""

    condition: RouteConditionType
    reason: RouteConditionReason
    # The index of the parentRef it is about; None: every parent.
    parent: int | None = None


# When several diagnostics fail one condition, the reason shown is the first in this order.
_PRECEDENCE: Final = (
    RouteConditionReason.NO_MATCHING_PARENT,
    RouteConditionReason.NOT_ALLOWED_BY_LISTENERS,
    RouteConditionReason.UNSUPPORTED_VALUE,
    RouteConditionReason.REF_NOT_PERMITTED,
    RouteConditionReason.INVALID_KIND,
    RouteConditionReason.BACKEND_NOT_FOUND,
)


def route_effect(diagnostic: Diagnostic) -> RouteEffect | None:
    """The condition a diagnostic fails, or None when it only shows in the message (a warning)."""
    field = diagnostic.field
    parent_match = _PARENT_FIELD.match(field)
    parent = int(parent_match.group(1)) if parent_match else None
    reason = diagnostic.reason
    accepted, resolved = RouteConditionType.ACCEPTED, RouteConditionType.RESOLVED_REFS
    if reason is Reason.PARENT_NOT_FOUND:
        return RouteEffect(condition=accepted, reason=RouteConditionReason.NO_MATCHING_PARENT, parent=parent)
    if reason is Reason.REF_NOT_PERMITTED:
        if parent is not None:
            return RouteEffect(
                condition=accepted, reason=RouteConditionReason.NOT_ALLOWED_BY_LISTENERS, parent=parent
            )
        return RouteEffect(condition=resolved, reason=RouteConditionReason.REF_NOT_PERMITTED)
    if reason is Reason.BACKEND_NOT_FOUND:
        return RouteEffect(condition=resolved, reason=RouteConditionReason.BACKEND_NOT_FOUND)
    names_kind = field.endswith((".kind", ".group"))
    backend_kind = _BACKEND_KIND.search(field) is not None and (
        reason is Reason.UNSUPPORTED_FEATURE
        or (reason in (Reason.UNSUPPORTED_VALUE, Reason.INVALID_VALUE) and names_kind)
    )
    if backend_kind:
        return RouteEffect(condition=resolved, reason=RouteConditionReason.INVALID_KIND)
    if diagnostic.severity is Severity.ERROR:
        return RouteEffect(condition=accepted, reason=RouteConditionReason.UNSUPPORTED_VALUE, parent=parent)
    return None


def is_mesh_parent(parent_ref: Mapping[str, object]) -> bool:
    """GAMMA: a parentRef to a core Service is the mesh's; Gateways belong to gateway controllers."""
    return parent_ref.get("group", GATEWAY_GROUP) == "" and parent_ref.get("kind", "Gateway") == "Service"


def parent_key(parent_ref: Mapping[str, object], route_namespace: str) -> tuple[object, ...]:
    """A parentRef with the API's defaults applied, to match status entries to spec entries."""
    return (
        parent_ref.get("group", GATEWAY_GROUP),
        parent_ref.get("kind", "Gateway"),
        parent_ref.get("namespace") or route_namespace,
        parent_ref.get("name"),
        parent_ref.get("sectionName"),
        parent_ref.get("port"),
    )


def _mappings(value: object) -> list[Mapping[str, object]]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [item if isinstance(item, Mapping) else {} for item in value]


def describe(diagnostic: Diagnostic) -> str:
    """One diagnostic as a condition message names it: field path, what is wrong, the model's code."""
    text = f"{diagnostic.message} ({diagnostic.reason})"
    return f"{diagnostic.field}: {text}" if diagnostic.field else text


def _condition_outcome(
    condition_type: RouteConditionType,
    effects: Sequence[tuple[str, RouteEffect]],
) -> tuple[ConditionStatus, str, str]:
    failing = [(text, e) for text, e in effects if e.condition is condition_type]
    if not failing:
        if condition_type is RouteConditionType.ACCEPTED:
            return ConditionStatus.TRUE, RouteConditionReason.ACCEPTED, "accepted by the mesh"
        return ConditionStatus.TRUE, RouteConditionReason.RESOLVED_REFS, "all references resolved"
    reason = min((e.reason for _, e in failing), key=_PRECEDENCE.index)
    return ConditionStatus.FALSE, reason, "; ".join(text for text, _ in failing)


def route_status(
    route: ObjectRef,
    parent_refs: object,
    diagnostics: Iterable[Diagnostic],
    generation: int,
    controller_name: str = DEFAULT_CONTROLLER,
    *,
    previous: Mapping[str, object] | None = None,
    in_model: bool = True,
    now: datetime,
) -> JsonObject:
    """The route's desired `status`: `{"parents": [...]}` with other controllers' entries first, as they were.

    `parent_refs` is the route's `spec.parentRefs` as JSON; `diagnostics` are the route's own (every
    source); `in_model` says whether the route is in effect at all (False: conversion rejected it);
    `previous` is the status on the object now, for other controllers' entries and transition times.
    """
    relevant = sorted((d for d in diagnostics if d.ref is None or d.ref == route), key=Diagnostic.sort_key)
    effects = [(describe(d), e) for d in relevant if (e := route_effect(d)) is not None]
    warnings = "; ".join(describe(d) for d in relevant if route_effect(d) is None)
    if not in_model and not any(e.condition is RouteConditionType.ACCEPTED for _, e in effects):
        not_in_effect = RouteEffect(
            condition=RouteConditionType.ACCEPTED, reason=RouteConditionReason.UNSUPPORTED_VALUE
        )
        effects.append(("the route is not in effect", not_in_effect))
    previous_parents = _mappings(previous.get("parents") if previous is not None else None)
    others: list[JsonObject] = [
        dict(entry) for entry in previous_parents if entry.get("controllerName") != controller_name
    ]
    ours_before = {
        parent_key(ref, route.namespace): entry
        for entry in previous_parents
        if entry.get("controllerName") == controller_name
        and isinstance(ref := entry.get("parentRef"), Mapping)
    }
    ours: list[JsonObject] = []
    seen: set[tuple[object, ...]] = set()
    for index, parent_ref in enumerate(_mappings(parent_refs)):
        key = parent_key(parent_ref, route.namespace)
        if not is_mesh_parent(parent_ref) or key in seen:
            continue
        seen.add(key)
        mine = [(text, e) for text, e in effects if e.parent is None or e.parent == index]
        before = ours_before.get(key)
        before_conditions = before.get("conditions") if before is not None else None
        conditions: list[JsonObject] = []
        for condition_type in RouteConditionType:
            status, reason, message = _condition_outcome(condition_type, mine)
            if condition_type is RouteConditionType.ACCEPTED and warnings:
                message += "; warnings: " + warnings
            conditions.append(
                condition(
                    condition_type,
                    status,
                    reason,
                    message,
                    generation=generation,
                    now=now,
                    previous=find_condition(before_conditions, condition_type),
                )
            )
        ours.append(
            {"parentRef": dict(parent_ref), "controllerName": controller_name, "conditions": conditions}
        )
    return {"parents": others + ours}
