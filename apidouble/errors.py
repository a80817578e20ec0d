"""The double's errors, each rendered as the `Status` object a real API server returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from apidouble.jsonvalue import JsonObject


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldError:
    """One field-level cause of a 422 Invalid, as in `details.causes` of a Status."""

    field: str
    reason: str  # FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, FieldValueTooLong, ...
    message: str

    def render(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class ApiError(Exception):
    """Root exception of the double: any request failure, carrying the Status to send."""

    def __init__(
        self,
        *,
        code: int,
        reason: str,
        message: str,
        details: JsonObject | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> JsonObject:
        status: JsonObject = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            status["details"] = self.details
        return status


@dataclass(frozen=True, slots=True, kw_only=True)
class Resource:
    """What an error message names: `pods` or `httproutes.gateway.networking.k8s.io`, and the Kind."""

    group: str
    plural: str
    kind: str = ""

    @property
    def qualified_plural(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def details(self, name: str) -> JsonObject:
        details: JsonObject = {"name": name, "kind": self.plural}
        if self.group:
            details["group"] = self.group
        return details


def not_found(resource: Resource, name: str) -> ApiError:
    return ApiError(
        code=404,
        reason="NotFound",
        message=f'{resource.qualified_plural} "{name}" not found',
        details=resource.details(name),
    )


def already_exists(resource: Resource, name: str) -> ApiError:
    return ApiError(
        code=409,
        reason="AlreadyExists",
        message=f'{resource.qualified_plural} "{name}" already exists',
        details=resource.details(name),
    )


def conflict(resource: Resource, name: str, why: str) -> ApiError:
    return ApiError(
        code=409,
        reason="Conflict",
        message=f'Operation cannot be fulfilled on {resource.qualified_plural} "{name}": {why}',
        details=resource.details(name),
    )


MODIFIED_CONFLICT = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Invalid:
    """Builder for 422 Invalid from field errors."""

    resource: Resource
    name: str
    errors: tuple[FieldError, ...] = field(default_factory=tuple)

    def error(self) -> ApiError:
        rendered = [e.render() for e in self.errors]
        summary = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
        details: JsonObject = {
            "name": self.name,
            "kind": self.resource.kind,
            "causes": [{"reason": e.reason, "message": e.message, "field": e.field} for e in self.errors],
        }
        if self.resource.group:
            details["group"] = self.resource.group
        return ApiError(
            code=422,
            reason="Invalid",
            message=f'{self.resource.qualified_kind} "{self.name}" is invalid: {summary}',
            details=details,
        )


def invalid(resource: Resource, name: str, errors: list[FieldError]) -> ApiError:
    return Invalid(resource=resource, name=name, errors=tuple(errors)).error()


def expired(message: str) -> ApiError:
    # Current API servers answer an expired resourceVersion with reason Expired (410); older ones said Gone.
    return ApiError(code=410, reason="Expired", message=message)


def bad_request(message: str) -> ApiError:
    return ApiError(code=400, reason="BadRequest", message=message)


def method_not_allowed(message: str) -> ApiError:
    return ApiError(code=405, reason="MethodNotAllowed", message=message)


def unsupported_media_type(message: str) -> ApiError:
    return ApiError(code=415, reason="UnsupportedMediaType", message=message)


def unprocessable(message: str) -> ApiError:
    return ApiError(code=422, reason="Invalid", message=message)


def page_not_found(path: str) -> ApiError:
    return ApiError(
        code=404, reason="NotFound", message=f"the server could not find the requested resource ({path})"
    )
