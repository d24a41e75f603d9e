"""Errors that become HTTP answers, and the errors a job may raise.

QStash retries every answer but a 2xx or a 489 with `Upstash-NonRetryable-Error: true`,
so the status an error maps to decides whether the message is retried or dead-lettered.
"""

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

NON_RETRYABLE_STATUS = 489
NON_RETRYABLE_HEADER = "Upstash-NonRetryable-Error"


@dataclass(frozen=True)
class ErrorDetail:
    field: str
    code: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


@dataclass
class ApiError(Exception):
    """An answer other than success, carrying everything the response needs."""

    status: int
    code: str
    message: str
    details: list[ErrorDetail] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)
        if self.status == NON_RETRYABLE_STATUS:
            self.headers.setdefault(NON_RETRYABLE_HEADER, "true")

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details:
            body["details"] = [detail.as_json() for detail in self.details]
        return body


def validation_details(error: ValidationError) -> list[ErrorDetail]:
    """One detail per broken rule of a payload model, with the field's dotted path."""
    return [
        ErrorDetail(
            field=".".join(str(part) for part in issue["loc"]) or "(body)",
            code=issue["type"],
            message=issue["msg"].removeprefix("Value error, "),
        )
        for issue in error.errors(include_url=False, include_input=False)
    ]


def non_retryable(code: str, message: str, details: list[ErrorDetail] | None = None) -> ApiError:
    """A client mistake that no retry can fix: QStash dead-letters it at once."""
    return ApiError(NON_RETRYABLE_STATUS, code, message, details or [])


class PermanentJobError(Exception):
    """Raised by a job when retrying can never succeed (for example, the data it needs is
    not there); the message is recorded as rejected and dead-lettered, not retried."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
