"""Status of the mesh's own policy CRDs (TrafficPolicy, and the identity policies to come): one `Accepted`
condition in `status.conditions`, reason Accepted, Invalid or TargetNotFound.

- TargetNotFound: a targetRef names a Service (or port/section of it) that does not exist. The policy is
  accepted for its other targets, but the user should know, so the condition is False.
- Invalid: any other ERROR (schema, unsupported value or target kind), or the policy is not in the model
  at all (conversion rejected it; a kept older generation is not this generation being accepted).
Warnings change nothing but are listed in the message. Conditions of other types are kept as they were.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Final

from controlplane.model.diagnostics import Diagnostic, Reason, Severity
from controlplane.model.refs import ObjectRef
from controlplane.status.conditions import ConditionStatus, JsonObject, condition, find_condition
from controlplane.status.routes import describe

ACCEPTED: Final = "Accepted"


class PolicyConditionReason(StrEnum):
    ACCEPTED = "Accepted"
    INVALID = "Invalid"
    TARGET_NOT_FOUND = "TargetNotFound"


def policy_effect(diagnostic: Diagnostic) -> PolicyConditionReason | None:
    """The reason a diagnostic makes `Accepted` False with, or None when it is only shown (a warning)."""
    if diagnostic.reason is Reason.TARGET_NOT_FOUND:
        return PolicyConditionReason.TARGET_NOT_FOUND
    if diagnostic.severity is Severity.ERROR:
        return PolicyConditionReason.INVALID
    return None


def policy_status(
    policy: ObjectRef,
    diagnostics: Iterable[Diagnostic],
    generation: int,
    *,
    previous: Mapping[str, object] | None = None,
    in_model: bool = True,
    now: datetime,
) -> JsonObject:
    """The policy's desired `status`: `{"conditions": [...]}` with other condition types kept first."""
    relevant = sorted((d for d in diagnostics if d.ref is None or d.ref == policy), key=Diagnostic.sort_key)
    failing = [(describe(d), reason) for d in relevant if (reason := policy_effect(d)) is not None]
    warnings = "; ".join(describe(d) for d in relevant if policy_effect(d) is None)
    if not in_model and not any(r is PolicyConditionReason.INVALID for _, r in failing):
        failing.append(("the policy is not in effect", PolicyConditionReason.INVALID))
    if failing:
        status = ConditionStatus.FALSE
        # Invalid wins: a policy that is not in effect at all says so before a missing target.
        reason = min((r for _, r in failing), key=lambda r: r is not PolicyConditionReason.INVALID)
        message = "; ".join(text for text, _ in failing)
    else:
        status, reason, message = ConditionStatus.TRUE, PolicyConditionReason.ACCEPTED, "accepted by the mesh"
    if warnings:
        message += "; warnings: " + warnings
    previous_conditions = previous.get("conditions") if previous is not None else None
    others: list[JsonObject] = []
    if isinstance(previous_conditions, Sequence) and not isinstance(previous_conditions, str):
        others = [
            dict(c) for c in previous_conditions if isinstance(c, Mapping) and c.get("type") != ACCEPTED
        ]
    accepted = condition(
        ACCEPTED,
        status,
        reason,
        message,
        generation=generation,
        now=now,
        previous=find_condition(previous_conditions, ACCEPTED),
    )
    return {"conditions": [*others, accepted]}
