"""Structured logs in Cloud Logging's JSON-lines format, one line per delivery.

`StructuredLogHandler` writes to stdout without a client or credentials, and its filter
fills `logging.googleapis.com/trace` from the request's `traceparent` or
`X-Cloud-Trace-Context` header. Only ids, codes and timings are logged: never the
signature, the body or anything personal in it.
"""

import logging
import sys
import traceback
from dataclasses import dataclass
from typing import Any, TextIO

from google.cloud.logging_v2.handlers import StructuredLogHandler

LOGGER_NAME = "qjobs"
ERROR_EVENT_TYPE = "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"

logger = logging.getLogger(LOGGER_NAME)


def configure_logging(level: str, project: str | None, stream: TextIO | None = None) -> None:
    """Route the service's logs (and the root logger's) through one structured handler;
    calling it again replaces the handler rather than adding a second one."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, StructuredLogHandler)]:
        root.removeHandler(handler)
    handler = StructuredLogHandler(project_id=project, stream=stream or sys.stdout)  # type: ignore[no-untyped-call]
    root.addHandler(handler)
    root.setLevel(level)
    logger.setLevel(level)


def flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


@dataclass
class DeliveryLog:
    """The fields of a delivery's one log line, filled in as the pipeline learns them."""

    path: str
    job: str | None = None
    message_id: str | None = None
    attempt: int | None = None
    retried: int | None = None
    status: int = 0
    outcome: str = ""
    error: str | None = None
    reason: str | None = None
    ignored_fields: list[str] | None = None

    def fields(self, duration_ms: float) -> dict[str, Any]:
        values = {
            "event": "job_delivery",
            "path": self.path,
            "job": self.job,
            "messageId": self.message_id,
            "attempt": self.attempt,
            "retried": self.retried,
            "status": self.status,
            "outcome": self.outcome,
            "durationMs": round(duration_ms, 1),
            "error": self.error,
            "reason": self.reason,
            "ignoredFields": self.ignored_fields,
        }
        return {name: value for name, value in values.items() if value is not None}


def log_delivery(record: DeliveryLog, duration_ms: float, failure: BaseException | None = None) -> None:
    fields = record.fields(duration_ms)
    summary = f"{record.job or record.path} {record.outcome} {record.status}"
    if failure is None:
        level = logging.WARNING if record.status >= 400 else logging.INFO
        logger.log(level, summary, extra={"json_fields": fields})
        return
    # Error Reporting groups entries whose message holds a stack trace and whose
    # @type names a reported error event.
    trace = "".join(traceback.format_exception(failure))
    fields["@type"] = ERROR_EVENT_TYPE
    logger.error(f"{summary}\n{trace}", extra={"json_fields": fields})
