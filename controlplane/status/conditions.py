"""`metav1.Condition` values as JSON, and the rule that keeps `lastTransitionTime` while a status holds.

Statuses are plain JSON (what is PATCHed), so "did anything change" is a comparison of dicts: a condition
whose `status` did not flip keeps its previous `lastTransitionTime`, which makes an unchanged outcome
produce exactly the JSON already on the object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

JsonObject = dict[str, object]

# metav1.Condition.message is limited to 32768 characters by the API server.
MAX_MESSAGE: Final = 32768


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes `metav1.Time`."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def truncate(message: str, limit: int = MAX_MESSAGE) -> str:
    if len(message) <= limit:
        return message
    marker = "... (truncated)"
    return message[: limit - len(marker)] + marker


def find_condition(conditions: object, condition_type: str) -> Mapping[str, object] | None:
    """The condition of `condition_type` in a JSON list of conditions (malformed counts as absent)."""
    if not isinstance(conditions, Sequence) or isinstance(conditions, str):
        return None
    for item in conditions:
        if isinstance(item, Mapping) and item.get("type") == condition_type:
            return item
    return None


def condition(
    condition_type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    generation: int,
    now: datetime,
    previous: Mapping[str, object] | None = None,
) -> JsonObject:
    """One condition; `lastTransitionTime` comes from `previous` when its status is the same."""
    transition = format_time(now)
    if previous is not None and previous.get("status") == status.value:
        kept = previous.get("lastTransitionTime")
        if isinstance(kept, str) and kept:
            transition = kept
    return {
        "type": condition_type,
        "status": status.value,
        "reason": reason,
        "message": truncate(message),
        "observedGeneration": generation,
        "lastTransitionTime": transition,
    }
