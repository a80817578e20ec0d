"""Policy status from diagnostics: one Accepted condition, table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controlplane.model.diagnostics import Diagnostic, Reason, Severity
from controlplane.model.refs import Kind, ObjectRef
from controlplane.status.policies import policy_status

POLICY = ObjectRef(kind=Kind.TRAFFIC_POLICY, namespace="shop", name="reviews")
NOW = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)


def diag(reason: Reason, field: str = "", severity: Severity = Severity.ERROR) -> Diagnostic:
    return Diagnostic(severity=severity, reason=reason, message="bad", ref=POLICY, field=field)


@pytest.mark.parametrize(
    ("diagnostics", "in_model", "expected"),
    [
        ((), True, ("True", "Accepted")),
        ((diag(Reason.UNKNOWN_FIELD, "spec.loadBalancr"),), True, ("False", "Invalid")),
        ((diag(Reason.UNKNOWN_FIELD, "spec.x", Severity.WARNING),), True, ("True", "Accepted")),
        ((diag(Reason.TARGET_NOT_FOUND, "spec.targetRefs[0]"),), True, ("False", "TargetNotFound")),
        ((diag(Reason.UNSUPPORTED_FEATURE, "spec.targetRefs[0]"),), True, ("False", "Invalid")),
        (
            (diag(Reason.TARGET_NOT_FOUND, "spec.targetRefs[0]"), diag(Reason.OUT_OF_RANGE, "spec.timeout")),
            True,
            ("False", "Invalid"),
        ),
        ((), False, ("False", "Invalid")),
        ((diag(Reason.CONFLICT, "spec.timeout", Severity.WARNING),), True, ("True", "Accepted")),
    ],
    ids=[
        "valid",
        "unknown field",
        "warning",
        "target missing",
        "target kind",
        "invalid wins",
        "not in model",
        "conflict",
    ],
)
def test_accepted_condition(
    diagnostics: tuple[Diagnostic, ...], in_model: bool, expected: tuple[str, str]
) -> None:
    status: Any = policy_status(POLICY, diagnostics, 7, in_model=in_model, now=NOW)
    [accepted] = status["conditions"]
    assert (accepted["status"], accepted["reason"]) == expected
    assert accepted["observedGeneration"] == 7
    for d in diagnostics:
        assert d.field in accepted["message"]


def test_other_condition_types_are_kept_and_the_transition_time_holds() -> None:
    other = {
        "type": "Programmed",
        "status": "True",
        "reason": "Done",
        "message": "",
        "lastTransitionTime": "x",
    }
    first: Any = policy_status(POLICY, (), 1, previous={"conditions": [other]}, now=NOW)
    assert first["conditions"][0] == other
    again: Any = policy_status(POLICY, (), 2, previous=first, now=NOW + timedelta(hours=1))
    accepted = again["conditions"][1]
    assert accepted["lastTransitionTime"] == "2026-11-26T10:00:00Z"
    assert accepted["observedGeneration"] == 2
