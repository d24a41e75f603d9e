"""Structured logs in Cloud Logging's JSON-lines format, one line per delivery.

`StructuredLogHandler` writes to stdout without a client or credentials. The trace of a
request's lines (`logging.googleapis.com/trace`) comes from its `traceparent` or
`X-Cloud-Trace-Context` header, but only of the documented shape (`RequestTrace`): the
handler's own filter would copy any run of word characters from the latter, 8,000 of
them or mojibake, into every line. Only ids, codes and timings are logged: never the
signature, the body or anything personal in it.
"""

import logging
import re
import sys
import traceback
from dataclasses import dataclass
from typing import Any, TextIO

import flask
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
    handler.filters.insert(0, RequestTrace(project))  # before the handler's own, which respects it
    root.addHandler(handler)
    root.setLevel(level)
    logger.setLevel(level)


TRACEPARENT = re.compile(r"(?!ff)[0-9a-f]{2}-(?!0{32})([0-9a-f]{32})-(?!0{16})([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?")
"""W3C trace context: version-traceid-parentid-flags (https://www.w3.org/TR/trace-context/)."""
CLOUD_TRACE_CONTEXT = re.compile(r"([0-9a-fA-F]{32})(?:/([0-9]{1,20}))?(?:;o=([01]))?")
"""`TRACE_ID[/SPAN_ID][;o=OPTIONS]`: 32 hex digits, a decimal span, 1 when traced
(https://cloud.google.com/trace/docs/trace-context#legacy-http-header)."""


class RequestTrace(logging.Filter):
    """Names the trace of a log line written while a request is served, from its headers
    of the documented shapes only (`traceparent` first, then `X-Cloud-Trace-Context`), and
    no trace otherwise. It sets the record's `trace`, `span_id` and `trace_sampled`, which
    the handler's own filter then takes instead of reading the headers itself."""

    def __init__(self, project: str | None) -> None:
        super().__init__()
        self.project = project

    def filter(self, record: logging.LogRecord) -> bool:
        if flask.has_request_context() and not hasattr(record, "trace"):
            trace, span, sampled = request_trace(flask.request.headers)
            record.trace = f"projects/{self.project}/traces/{trace}" if trace and self.project else trace
            record.span_id, record.trace_sampled = span, sampled
        return True


def request_trace(headers: Any) -> tuple[str | None, str | None, bool]:
    """(trace id, span id as 16 hex digits, sampled) of a request, or no trace."""
    parent = TRACEPARENT.fullmatch(headers.get("traceparent", "").strip())
    if parent:
        return parent[1], parent[2], bool(int(parent[3], 16) & 1)
    context = CLOUD_TRACE_CONTEXT.fullmatch(headers.get("X-Cloud-Trace-Context", ""))
    if context:
        span = int(context[2] or 0)
        return context[1].lower(), f"{span:016x}" if 0 < span < 2**64 else None, context[3] == "1"
    return None, None, False


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
