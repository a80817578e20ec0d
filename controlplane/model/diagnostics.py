"""Diagnostics: what is wrong with a piece of user config, where, and why, as values (never exceptions)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from controlplane.model.refs import ObjectRef


class Severity(StrEnum):
    """ERROR: the object (or the part of it named) is left out. WARNING: it is used, with the part ignored."""

    ERROR = "Error"
    WARNING = "Warning"


class Reason(StrEnum):
    """Why; a closed set so it doubles as a metric label and a stable code for `meshctl analyze`."""

    # Reading input (sources).
    INVALID_YAML = "InvalidYAML"
    NOT_AN_OBJECT = "NotAnObject"
    DUPLICATE_OBJECT = "DuplicateObject"
    # Schema (conversion).
    MISSING_FIELD = "MissingField"
    WRONG_TYPE = "WrongType"
    UNKNOWN_FIELD = "UnknownField"
    INVALID_VALUE = "InvalidValue"
    UNSUPPORTED_VALUE = "UnsupportedValue"
    OUT_OF_RANGE = "OutOfRange"
    INVALID_NAME = "InvalidName"
    INVALID_DURATION = "InvalidDuration"
    INVALID_REGEX = "InvalidRegex"
    UNSUPPORTED_REGEX = "UnsupportedRegex"
    INVALID_ADDRESS = "InvalidAddress"
    UNSUPPORTED_VERSION = "UnsupportedVersion"
    CONFLICTING_FIELDS = "ConflictingFields"
    KEPT_LAST_VALID = "KeptLastValid"
    # A rejected security policy is kept as a stand-in that denies rather than allows.
    FAIL_CLOSED = "FailClosed"
    # Cross-object checks (translation).
    BACKEND_NOT_FOUND = "BackendNotFound"
    PARENT_NOT_FOUND = "ParentNotFound"
    TARGET_NOT_FOUND = "TargetNotFound"
    REF_NOT_PERMITTED = "RefNotPermitted"
    NO_BACKENDS = "NoBackends"
    CONFLICT = "Conflict"
    UNSUPPORTED_FEATURE = "UnsupportedFeature"


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Location:
    """Where in a source the object came from: a file and its document index (0-based), and line if known."""

    file: str
    document: int | None = None
    line: int | None = None

    def to_document(self) -> dict[str, object]:
        return {"file": self.file, "document": self.document, "line": self.line}

    def __str__(self) -> str:
        text = self.file
        if self.document is not None:
            text += f" document {self.document}"
        if self.line is not None:
            text += f" line {self.line}"
        return text


@dataclass(frozen=True, slots=True, kw_only=True)
class Diagnostic:
    severity: Severity
    reason: Reason
    message: str
    ref: ObjectRef | None = None
    # Dotted JSON path inside the object, e.g. `spec.rules[0].backendRefs[1].weight`; "" for the whole object.
    field: str = ""
    location: Location | None = None

    def __str__(self) -> str:
        subject = str(self.ref) if self.ref is not None else "<unknown object>"
        if self.field:
            subject += f" {self.field}"
        text = f"{self.severity}: {subject}: {self.reason}: {self.message}"
        if self.location is not None:
            text += f" ({self.location})"
        return text

    def to_document(self) -> dict[str, object]:
        """The JSON form (`meshctl analyze -o json`, the admin's `/debug/diagnostics`)."""
        return {
            "severity": self.severity.value,
            "reason": self.reason.value,
            "object": (
                {"kind": str(self.ref.kind), "namespace": self.ref.namespace, "name": self.ref.name}
                if self.ref is not None
                else None
            ),
            "field": self.field,
            "message": self.message,
            "location": self.location.to_document() if self.location is not None else None,
        }

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def sort_key(self) -> tuple[str, str, str, str, str]:
        """A total order for stable output (status, `meshctl analyze`, tests)."""
        return (
            str(self.location or ""),
            str(self.ref or ""),
            self.field,
            self.reason,
            self.message,
        )
