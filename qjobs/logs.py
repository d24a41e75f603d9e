"""Structured logs in Cloud Logging's JSON-lines format, one line per delivery.

`StructuredLogHandler` writes to stdout without a client or credentials. The trace of a
request's lines (`logging.googleapis.com/trace`) comes from its `traceparent` or
`X-Cloud-Trace-Context` header, but only of the documented shape (`RequestTrace`): the
handler's own filter would copy any run of word characters from the latter, 8,000 of
them or mojibake, into every line. Only ids, codes and timings are logged: never the
signature, the body or anything personal in it.

Importing that handler imports the whole google-cloud-logging client (about 40 ms), which
no delivery needs before it is answered. So the service's handler (`StructuredLogs`)
makes it on first use; under gunicorn, the lines of the deliveries answered before then
wait for their answer to be sent (`write_deferred`, run when the server closes the
response) and are then written in order, each in its own request's context: byte for byte
what writing them at once would have written (docs/performance.md, "Cold start").
"""

import contextvars
import logging
import re
import sys
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import flask

if TYPE_CHECKING:
    from google.cloud.logging_v2.handlers import StructuredLogHandler

LOGGER_NAME = "qjobs"
ERROR_EVENT_TYPE = "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"

logger = logging.getLogger(LOGGER_NAME)

UNTIL_SENT: contextvars.ContextVar[bool] = contextvars.ContextVar("qjobs_logs_until_sent", default=False)
"""True while gunicorn answers a delivery: it closes the response (PEP 3333) once the answer
is sent, which is when the pipeline has the lines kept meanwhile written (`write_deferred`).
The Flask test client leaves closing to its caller: there every line is written at once."""


def configure_logging(level: str, project: str | None, stream: TextIO | None = None) -> None:
    """Route the service's logs (and the root logger's) through one structured handler;
    calling it again replaces the handler rather than adding a second one."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, StructuredLogs)]:
        root.removeHandler(handler)
    root.addHandler(StructuredLogs(project, stream or sys.stdout))
    root.setLevel(level)
    logger.setLevel(level)


class StructuredLogs(logging.Handler):
    """google-cloud-logging's `StructuredLogHandler`, with `RequestTrace` before its own
    filter, made when the first line is written.

    A line logged while a delivery is answered (`UNTIL_SENT`) before that handler exists is
    kept, with a copy of its context (the request's, which the filters read), until
    `write_pending`, called once the answer is sent. That makes the handler (outside the
    lock: lines logged meanwhile are kept too) and writes the kept lines in the order they
    were logged. A line logged anywhere else (start-up, shutdown) makes the handler at once
    and is written after the kept ones; `flush` writes them too. So no line is lost or
    reordered, and each is what writing it at once would have written.
    """

    def __init__(self, project: str | None, stream: TextIO) -> None:
        super().__init__()
        self.project = project
        self.stream = stream
        self._structured: StructuredLogHandler | None = None
        self._making = threading.Lock()
        self._pending: list[tuple[logging.LogRecord, contextvars.Context]] = []
        self._ready = False
        """The handler exists and no line is kept: every line is written at once."""
        self._draining = False

    def emit(self, record: logging.LogRecord) -> None:  # called holding self.lock
        if not (self._ready or self._draining):
            if UNTIL_SENT.get():
                self._pending.append((_rendered(record), contextvars.copy_context()))
                return
            self._drain(self._make())
        # While draining, the handler's own diagnostic entry (logged as it writes its first
        # line) comes here too, and is written at that point, as it always was.
        (self._structured or self._make()).handle(record)

    def write_pending(self) -> None:
        """Write the kept lines, making the handler first without holding the lock."""
        if not self._ready:
            structured = self._make()
            self.acquire()
            try:
                self._drain(structured)
            finally:
                self.release()

    def flush(self) -> None:
        self.write_pending()
        if self._structured is not None:
            self._structured.flush()

    def _make(self) -> "StructuredLogHandler":
        with self._making:
            if self._structured is None:
                from google.cloud.logging_v2.handlers import StructuredLogHandler  # noqa: PLC0415 (the module's doc)

                handler = StructuredLogHandler(project_id=self.project, stream=self.stream)  # type: ignore[no-untyped-call]
                handler.filters.insert(0, RequestTrace(self.project))  # before the handler's own, which respects it
                self._structured = handler
            return self._structured

    def _drain(self, structured: "StructuredLogHandler") -> None:  # called holding self.lock
        if self._ready:
            return
        self._draining = True
        try:
            while self._pending:
                record, context = self._pending.pop(0)
                context.run(structured.handle, record)
        finally:
            self._draining = False
        self._ready = True


def _rendered(record: logging.LogRecord) -> logging.LogRecord:
    """The record with its message formatted now, in case its arguments change before it
    is written (the handler takes a mapping as the message itself, arguments or not)."""
    if record.args and not isinstance(record.msg, Mapping):
        record.msg, record.args = record.getMessage(), None
    return record


def write_deferred() -> None:
    """Write the lines kept until an answer was sent (the response's `call_on_close`)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, StructuredLogs):
            handler.write_pending()


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
