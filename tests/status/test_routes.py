"""Route status from diagnostics: the Gateway API conditions and reasons, table-driven."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controlplane.model.diagnostics import Diagnostic, Reason, Severity
from controlplane.model.refs import Kind, ObjectRef
from controlplane.status.routes import DEFAULT_CONTROLLER, route_status

ROUTE = ObjectRef(kind=Kind.HTTP_ROUTE, namespace="shop", name="reviews")
NOW = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
SERVICE_PARENT: dict[str, Any] = {"group": "", "kind": "Service", "name": "reviews", "port": 9080}
OTHER_PARENT: dict[str, Any] = {"group": "", "kind": "Service", "name": "ratings"}
GATEWAY_PARENT: dict[str, Any] = {"name": "public-gw"}


def diag(
    reason: Reason, field: str = "", severity: Severity = Severity.ERROR, ref: ObjectRef = ROUTE
) -> Diagnostic:
    return Diagnostic(severity=severity, reason=reason, message=f"problem {reason}", ref=ref, field=field)


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    name: str
    diagnostics: tuple[Diagnostic, ...] = ()
    in_model: bool = True
    # (status, reason) of Accepted and ResolvedRefs
    accepted: tuple[str, str] = ("True", "Accepted")
    resolved: tuple[str, str] = ("True", "ResolvedRefs")


CASES = [
    Case(name="valid"),
    Case(
        name="schema error",
        diagnostics=(diag(Reason.OUT_OF_RANGE, "spec.rules[0].backendRefs[0].weight"),),
        accepted=("False", "UnsupportedValue"),
    ),
    Case(
        name="kept last valid",
        diagnostics=(
            diag(Reason.INVALID_REGEX, "spec.rules[0].matches[0].path.value"),
            diag(Reason.KEPT_LAST_VALID, severity=Severity.WARNING),
        ),
        accepted=("False", "UnsupportedValue"),
    ),
    Case(name="rejected, no diagnostics at hand", in_model=False, accepted=("False", "UnsupportedValue")),
    Case(
        name="backend missing",
        diagnostics=(diag(Reason.BACKEND_NOT_FOUND, "spec.rules[0].backendRefs[0]"),),
        resolved=("False", "BackendNotFound"),
    ),
    Case(
        name="backend port missing",
        diagnostics=(diag(Reason.BACKEND_NOT_FOUND, "spec.rules[0].backendRefs[0].port"),),
        resolved=("False", "BackendNotFound"),
    ),
    Case(
        name="mirror target missing (warning)",
        diagnostics=(
            diag(
                Reason.BACKEND_NOT_FOUND,
                "spec.rules[0].filters[0].requestMirror.backendRef",
                Severity.WARNING,
            ),
        ),
        resolved=("False", "BackendNotFound"),
    ),
    Case(
        name="backend kind unsupported (translation)",
        diagnostics=(diag(Reason.UNSUPPORTED_FEATURE, "spec.rules[1].backendRefs[0]"),),
        resolved=("False", "InvalidKind"),
    ),
    Case(
        name="backend kind unsupported (conversion)",
        diagnostics=(diag(Reason.UNSUPPORTED_VALUE, "spec.rules[1].backendRefs[0].kind"),),
        resolved=("False", "InvalidKind"),
    ),
    Case(
        name="cross-namespace backend not permitted",
        diagnostics=(diag(Reason.REF_NOT_PERMITTED, "spec.rules[0].backendRefs[0]"),),
        resolved=("False", "RefNotPermitted"),
    ),
    Case(
        name="parent not found",
        diagnostics=(diag(Reason.PARENT_NOT_FOUND, "spec.parentRefs[0]"),),
        accepted=("False", "NoMatchingParent"),
    ),
    Case(
        name="parent not permitted",
        diagnostics=(diag(Reason.REF_NOT_PERMITTED, "spec.parentRefs[0]"),),
        accepted=("False", "NotAllowedByListeners"),
    ),
    Case(
        name="parent problem wins over a schema problem",
        diagnostics=(
            diag(Reason.INVALID_VALUE, "spec.hostnames[0]"),
            diag(Reason.PARENT_NOT_FOUND, "spec.parentRefs[0].port"),
        ),
        accepted=("False", "NoMatchingParent"),
    ),
    Case(
        name="both conditions fail",
        diagnostics=(
            diag(Reason.MISSING_FIELD, "spec.rules[0].backendRefs[0].port"),
            diag(Reason.BACKEND_NOT_FOUND, "spec.rules[1].backendRefs[0]"),
        ),
        accepted=("False", "UnsupportedValue"),
        resolved=("False", "BackendNotFound"),
    ),
    Case(
        name="warnings only",
        diagnostics=(
            diag(Reason.UNKNOWN_FIELD, "spec.foo", Severity.WARNING),
            diag(Reason.CONFLICT, "spec.rules[0]", Severity.WARNING),
        ),
    ),
    Case(
        name="another object's diagnostics",
        diagnostics=(
            diag(
                Reason.OUT_OF_RANGE,
                "spec.x",
                ref=ROUTE.__class__(kind=Kind.HTTP_ROUTE, namespace="shop", name="other"),
            ),
        ),
    ),
]


def _conditions(status: dict[str, Any], parent: int = 0) -> dict[str, dict[str, Any]]:
    ours = [p for p in status["parents"] if p["controllerName"] == DEFAULT_CONTROLLER]
    return {c["type"]: c for c in ours[parent]["conditions"]}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_conditions_and_reasons(case: Case) -> None:
    status = route_status(ROUTE, [SERVICE_PARENT], case.diagnostics, 4, in_model=case.in_model, now=NOW)
    conditions = _conditions(status)
    assert (conditions["Accepted"]["status"], conditions["Accepted"]["reason"]) == case.accepted
    assert (conditions["ResolvedRefs"]["status"], conditions["ResolvedRefs"]["reason"]) == case.resolved
    for c in conditions.values():
        assert c["observedGeneration"] == 4
        assert c["lastTransitionTime"] == "2026-11-26T10:00:00Z"


def test_messages_name_the_field_path_and_the_reason() -> None:
    bad = diag(Reason.OUT_OF_RANGE, "spec.rules[0].backendRefs[0].weight")
    warning = diag(Reason.UNKNOWN_FIELD, "spec.extra", Severity.WARNING)
    conditions = _conditions(route_status(ROUTE, [SERVICE_PARENT], [bad, warning], 1, now=NOW))
    message = conditions["Accepted"]["message"]
    assert message.startswith("spec.rules[0].backendRefs[0].weight: problem OutOfRange (OutOfRange)")
    assert "warnings: spec.extra: problem UnknownField" in message


def test_one_entry_per_mesh_parent_and_parent_specific_diagnostics_stay_with_their_parent() -> None:
    parents = [SERVICE_PARENT, GATEWAY_PARENT, OTHER_PARENT, dict(SERVICE_PARENT)]
    diagnostics = [diag(Reason.PARENT_NOT_FOUND, "spec.parentRefs[2]")]
    status: Any = route_status(ROUTE, parents, diagnostics, 1, now=NOW)
    assert [p["parentRef"] for p in status["parents"]] == [SERVICE_PARENT, OTHER_PARENT]
    assert _conditions(status, 0)["Accepted"]["status"] == "True"
    assert _conditions(status, 1)["Accepted"]["reason"] == "NoMatchingParent"


def test_other_controllers_entries_are_kept_and_our_stale_entries_dropped() -> None:
    theirs = {"parentRef": GATEWAY_PARENT, "controllerName": "example.com/gateway", "conditions": []}
    stale = {"parentRef": OTHER_PARENT, "controllerName": DEFAULT_CONTROLLER, "conditions": []}
    status: Any = route_status(ROUTE, [SERVICE_PARENT], [], 1, previous={"parents": [theirs, stale]}, now=NOW)
    assert status["parents"][0] == theirs
    assert [p["parentRef"] for p in status["parents"][1:]] == [SERVICE_PARENT]


def test_transition_time_is_kept_while_the_status_holds_and_changes_when_it_flips() -> None:
    first = route_status(ROUTE, [SERVICE_PARENT], [], 1, now=NOW)
    later = NOW + timedelta(minutes=5)
    same = route_status(ROUTE, [SERVICE_PARENT], [], 1, previous=first, now=later)
    assert same == first, "an unchanged outcome is the same JSON, so nothing is written"
    broken = [diag(Reason.BACKEND_NOT_FOUND, "spec.rules[0].backendRefs[0]")]
    flipped = route_status(ROUTE, [SERVICE_PARENT], broken, 2, previous=first, now=later)
    conditions = _conditions(flipped)
    assert conditions["Accepted"]["lastTransitionTime"] == "2026-11-26T10:00:00Z"
    assert conditions["Accepted"]["observedGeneration"] == 2
    assert conditions["ResolvedRefs"]["lastTransitionTime"] == "2026-11-26T10:05:00Z"


@pytest.mark.parametrize("parent_refs", [None, "junk", [None, 3]], ids=["absent", "string", "junk items"])
def test_malformed_parent_refs_give_no_entries(parent_refs: object) -> None:
    assert route_status(ROUTE, parent_refs, [], 1, previous={"parents": "junk"}, now=NOW) == {"parents": []}
