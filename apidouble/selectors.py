"""Label and field selectors, parsed from their query-string syntax and matched against objects."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from apidouble.errors import bad_request
from apidouble.jsonvalue import JsonObject, JsonValue


class Operator(StrEnum):
    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


@dataclass(frozen=True, slots=True, kw_only=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case Operator.EXISTS:
                return present
            case Operator.DOES_NOT_EXIST:
                return not present
            case Operator.EQUALS | Operator.IN:
                return present and value in self.values
            case Operator.NOT_EQUALS | Operator.NOT_IN:
                return not present or value not in self.values


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, obj: JsonObject) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_SET_RE = re.compile(rf"^\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)\s*$")
_CMP_RE = re.compile(rf"^\s*(?P<key>{_KEY})\s*(?P<op>==|!=|=)\s*(?P<value>[-A-Za-z0-9_.]*)\s*$")
_EXISTS_RE = re.compile(rf"^\s*(?P<neg>!?)\s*(?P<key>{_KEY})\s*$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside `( ... )` value sets."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def parse_label_selector(text: str | None) -> LabelSelector:
    if not text:
        return LabelSelector()
    requirements: list[Requirement] = []
    for part in _split_top_level(text):
        if m := _SET_RE.match(part):
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            op = Operator.IN if m["op"] == "in" else Operator.NOT_IN
            requirements.append(Requirement(key=m["key"], operator=op, values=values))
        elif m := _CMP_RE.match(part):
            op = Operator.NOT_EQUALS if m["op"] == "!=" else Operator.EQUALS
            requirements.append(Requirement(key=m["key"], operator=op, values=frozenset({m["value"]})))
        elif m := _EXISTS_RE.match(part):
            op = Operator.DOES_NOT_EXIST if m["neg"] else Operator.EXISTS
            requirements.append(Requirement(key=m["key"], operator=op))
        else:
            raise bad_request(f"unable to parse requirement: {part.strip()!r}: invalid label selector")
    return LabelSelector(requirements=tuple(requirements))


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldRequirement:
    path: str
    equals: bool
    value: str

    def matches(self, obj: JsonObject) -> bool:
        return (_field_value(obj, self.path) == self.value) == self.equals


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: JsonObject) -> bool:
        return all(r.matches(obj) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


# Fields every kind can be selected by; kinds add their own below (the real server allows only listed ones).
_COMMON_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
_KIND_FIELDS: dict[str, frozenset[str]] = {
    "Pod": frozenset(
        {"spec.nodeName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP"}
    ),
    "Secret": frozenset({"type"}),
    "Namespace": frozenset({"status.phase"}),
    "Node": frozenset({"spec.unschedulable"}),
    "Service": frozenset({"spec.clusterIP", "spec.type"}),
}


def parse_field_selector(text: str | None, kind: str) -> FieldSelector:
    if not text:
        return FieldSelector()
    allowed = _COMMON_FIELDS | _KIND_FIELDS.get(kind, frozenset())
    requirements: list[FieldRequirement] = []
    for part in _split_top_level(text):
        for op, equals in (("!=", False), ("==", True), ("=", True)):
            if op in part:
                path, value = part.split(op, 1)
                path = path.strip()
                if path not in allowed:
                    raise bad_request(
                        f'"{path}" is not a known field selector: only "{", ".join(sorted(allowed))}"'
                    )
                requirements.append(FieldRequirement(path=path, equals=equals, value=value.strip()))
                break
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
    return FieldSelector(requirements=tuple(requirements))


def _field_value(obj: JsonObject, path: str) -> str:
    current: JsonValue = obj
    for part in path.split("."):
        if not isinstance(current, dict):
            return ""
        current = current.get(part)
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)
