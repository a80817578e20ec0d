"""Reading Kubernetes JSON with field paths: every problem becomes a Diagnostic, nothing raises."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import TypeVar

from controlplane.model.diagnostics import Diagnostic, Reason, Severity
from controlplane.model.duration import Duration, DurationError
from controlplane.model.refs import ObjectRef
from controlplane.model.regex import regex_problem

JSON = Mapping[str, object]
E = TypeVar("E", bound=StrEnum)


def sub(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
    }.get(type(value), type(value).__name__)


class Reader:
    """Typed access to one object's fields; collects diagnostics about it.

    `unknown` is the severity of fields the schema does not know: ERROR for our own CRDs (a typo must not
    pass silently), WARNING for Gateway API (newer API versions add fields we ignore), None to not check.
    """

    def __init__(self, ref: ObjectRef, *, unknown: Severity | None = None) -> None:
        self.ref = ref
        self.unknown = unknown
        self.diagnostics: list[Diagnostic] = []

    @property
    def failed(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.diagnostics)

    def report(self, path: str, reason: Reason, message: str, severity: Severity = Severity.ERROR) -> None:
        self.diagnostics.append(
            Diagnostic(severity=severity, reason=reason, message=message, ref=self.ref, field=path)
        )

    def _get(self, m: JSON, key: str, path: str, required: bool) -> object:
        value = m.get(key)
        if value is None and required:
            self.report(sub(path, key), Reason.MISSING_FIELD, f"{key} is required")
        return value

    def _wrong_type(self, path: str, expected: str, value: object) -> None:
        self.report(path, Reason.WRONG_TYPE, f"expected {expected}, got {_type_name(value)}")

    def check_fields(self, m: JSON, path: str, known: Iterable[str]) -> None:
        if self.unknown is None:
            return
        allowed = set(known)
        for key in m:
            if key not in allowed:
                what = "ignored" if self.unknown is Severity.WARNING else "not allowed"
                self.report(
                    sub(path, key), Reason.UNKNOWN_FIELD, f"unknown field {key!r} ({what})", self.unknown
                )

    def mapping(
        self, m: JSON, key: str, path: str, *, required: bool = False, known: Iterable[str] | None = None
    ) -> JSON | None:
        value = self._get(m, key, path, required)
        if value is None:
            return None
        return self.as_mapping(value, sub(path, key), known=known)

    def as_mapping(self, value: object, path: str, *, known: Iterable[str] | None = None) -> JSON | None:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            self._wrong_type(path, "object", value)
            return None
        if known is not None:
            self.check_fields(value, path, known)
        return value

    def items(
        self, m: JSON, key: str, path: str, *, required: bool = False, max_items: int | None = None
    ) -> list[tuple[str, object]]:
        """(path, item) pairs of a list field; [] when absent or wrong."""
        value = self._get(m, key, path, required)
        if value is None:
            return []
        here = sub(path, key)
        if not isinstance(value, list):
            self._wrong_type(here, "array", value)
            return []
        if max_items is not None and len(value) > max_items:
            self.report(here, Reason.OUT_OF_RANGE, f"at most {max_items} items allowed, got {len(value)}")
        return [(f"{here}[{i}]", item) for i, item in enumerate(value)]

    def mappings(
        self,
        m: JSON,
        key: str,
        path: str,
        *,
        known: Iterable[str] | None = None,
        required: bool = False,
        max_items: int | None = None,
    ) -> list[tuple[str, JSON]]:
        out = []
        for item_path, item in self.items(m, key, path, required=required, max_items=max_items):
            mapped = self.as_mapping(item, item_path, known=known)
            if mapped is not None:
                out.append((item_path, mapped))
        return out

    def string(
        self,
        m: JSON,
        key: str,
        path: str,
        *,
        required: bool = False,
        pattern: re.Pattern[str] | None = None,
        hint: str = "",
        max_length: int | None = None,
        min_length: int = 0,
    ) -> str | None:
        value = self._get(m, key, path, required)
        if value is None:
            return None
        here = sub(path, key)
        if not isinstance(value, str):
            self._wrong_type(here, "string", value)
            return None
        if len(value) < min_length:
            self.report(here, Reason.INVALID_VALUE, f"must be at least {min_length} characters")
            return None
        if max_length is not None and len(value) > max_length:
            self.report(here, Reason.INVALID_VALUE, f"must be at most {max_length} characters")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.report(here, Reason.INVALID_VALUE, f"{value!r} is not {hint or 'valid'}")
            return None
        return value

    def strings(self, m: JSON, key: str, path: str, *, max_items: int | None = None) -> list[str]:
        out = []
        for item_path, item in self.items(m, key, path, max_items=max_items):
            if isinstance(item, str):
                out.append(item)
            else:
                self._wrong_type(item_path, "string", item)
        return out

    def string_map(self, m: JSON, key: str, path: str) -> dict[str, str]:
        value = self.mapping(m, key, path)
        if value is None:
            return {}
        out = {}
        for k, v in value.items():
            if isinstance(v, str):
                out[k] = v
            else:
                self._wrong_type(sub(sub(path, key), k), "string", v)
        return out

    def integer(
        self,
        m: JSON,
        key: str,
        path: str,
        *,
        required: bool = False,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        value = self._get(m, key, path, required)
        if value is None:
            return None
        return self.as_integer(value, sub(path, key), minimum=minimum, maximum=maximum)

    def as_integer(
        self, value: object, path: str, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        # bool is an int in Python but not in JSON; a float like 3.0 is an integer in JSON.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self._wrong_type(path, "integer", value)
            return None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            self.report(path, Reason.OUT_OF_RANGE, f"{value} is out of range: must be {bounds}")
            return None
        return value

    def number(
        self, m: JSON, key: str, path: str, *, minimum: float | None = None, maximum: float | None = None
    ) -> float | None:
        value = m.get(key)
        if value is None:
            return None
        here = sub(path, key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._wrong_type(here, "number", value)
            return None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.report(
                here, Reason.OUT_OF_RANGE, f"{value} is out of range: must be between {minimum} and {maximum}"
            )
            return None
        return float(value)

    def boolean(self, m: JSON, key: str, path: str) -> bool | None:
        value = m.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            self._wrong_type(sub(path, key), "boolean", value)
            return None
        return value

    def enum(self, m: JSON, key: str, path: str, cls: type[E], *, required: bool = False) -> E | None:
        value = self._get(m, key, path, required)
        if value is None:
            return None
        here = sub(path, key)
        if not isinstance(value, str):
            self._wrong_type(here, "string", value)
            return None
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(e.value for e in cls)
            self.report(
                here, Reason.UNSUPPORTED_VALUE, f"unsupported value {value!r}: expected one of {allowed}"
            )
            return None

    def duration(
        self, m: JSON, key: str, path: str, *, gateway: bool, required: bool = False
    ) -> Duration | None:
        text = self.string(m, key, path, required=required)
        if text is None:
            return None
        try:
            return Duration.parse_gateway(text) if gateway else Duration.parse(text)
        except DurationError as exc:
            self.report(sub(path, key), Reason.INVALID_DURATION, str(exc))
            return None

    def regex(self, value: str, path: str) -> bool:
        problem = regex_problem(value)
        if problem is None:
            return True
        unsupported, message = problem
        self.report(path, Reason.UNSUPPORTED_REGEX if unsupported else Reason.INVALID_REGEX, message)
        return False

    def ip(self, value: object, path: str) -> str | None:
        """Normalized text of an IP address (so `::ffff:1` and `::FFFF:1` index alike)."""
        if not isinstance(value, str):
            self._wrong_type(path, "string", value)
            return None
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            self.report(path, Reason.INVALID_ADDRESS, f"{value!r} is not an IP address")
            return None

    def exclusive(self, m: JSON, path: str, keys: Iterable[str], *, required: bool = True) -> str | None:
        """The one of `keys` present in `m`; a diagnostic when none (if required) or several are."""
        present = [k for k in keys if m.get(k) is not None]
        if len(present) > 1:
            self.report(path, Reason.CONFLICTING_FIELDS, f"only one of {', '.join(present)} may be set")
            return None
        if not present:
            if required:
                self.report(path, Reason.MISSING_FIELD, f"one of {', '.join(keys)} is required")
            return None
        return present[0]
