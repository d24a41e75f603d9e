"""The path every delivery takes, one small step per check (docs/architecture.md).

route -> capped body -> signature -> message id -> payload -> ledger claim -> job ->
outcome recorded -> one JSON response and one log line.
Nothing before the claim writes to Firestore.
"""

import json
import logging
import threading
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import flask
from pydantic import BaseModel, ValidationError

from qjobs import ledger as ledger_module
from qjobs.config import Settings
from qjobs.errors import ApiError, non_retryable, validation_details
from qjobs.firestore_client import BoundedClient, RpcBudget
from qjobs.http import error_response, header_detail, json_response, read_capped_body, signed_url
from qjobs.jobs import JobSpec
from qjobs.ledger import Delivery, Ledger
from qjobs.logs import UNTIL_SENT, DeliveryLog, log_delivery, write_deferred
from qjobs.numbers import ascii_natural
from qjobs.runner import JobRunner, shutting_down
from qjobs.safe_id import is_safe_id
from qjobs.shutdown import ActiveRuns, Shutdown
from qjobs.signature import SignatureError, VerifiedToken, verify_signature

log = logging.getLogger(__name__)

HEALTH_PATH = "/health"
JOB_METHOD = "POST"
MAX_JSON_DEPTH = 64
"""The deepest nesting of a body, the object itself counting as one level. Python's parser
gives up (RecursionError) about a thousand levels down, how far depending on the stack of
the moment; no payload needs more than a few, and Firestore stores no more than 20."""


class Services:
    """Per-process Firestore client and ledger, made on first use: the app module is
    imported in gunicorn's master before it forks, where no connection may be opened."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.budget = RpcBudget(settings.firestore_timeout_seconds)
        self._lock = threading.Lock()
        self._ledger: Ledger | None = None

    def ledger(self) -> Ledger:
        with self._lock:
            if self._ledger is None:
                db = BoundedClient(self.budget, project=self.settings.google_cloud_project)
                self._ledger = Ledger(
                    db,
                    collection=self.settings.ledger_collection,
                    token_collection=self.settings.token_collection,
                    lease=timedelta(seconds=self.settings.job_lease_seconds),
                    retention=timedelta(days=self.settings.ledger_retention_days),
                    rpc=self.budget.kwargs(),
                )
            return self._ledger


class Pipeline:
    def __init__(self, settings: Settings, routes: Mapping[str, JobSpec[Any]], services: Services) -> None:
        self.settings = settings
        self.routes = routes
        self.services = services
        self.active = ActiveRuns()
        self.shutdown = Shutdown(self.active, settings.shutdown_grace_seconds)

    def handle(self, request: flask.Request) -> flask.Response:
        if request.path == HEALTH_PATH:
            return self._health(request)
        # gunicorn closes a response once it has sent it: the first lines of a process can
        # wait for that, so that loading the logging library does not delay the answer.
        until_sent = UNTIL_SENT.set(request.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/"))
        try:
            response = self._answer(request)
        finally:
            UNTIL_SENT.reset(until_sent)
        response.call_on_close(write_deferred)
        return response

    def _answer(self, request: flask.Request) -> flask.Response:
        record = DeliveryLog(path=request.path)
        started = time.monotonic()
        failure: BaseException | None = None
        try:
            response = self._deliver(request, record)
        except ApiError as error:
            response = error_response(error)
            record.error = record.error or error.code
        except Exception as error:
            failure = error
            response = error_response(job_failed())
            record.error, record.outcome = "job_failed", record.outcome or "failed"
        record.status = response.status_code
        record.outcome = record.outcome or ("refused" if response.status_code >= 400 else "ok")
        log_delivery(record, (time.monotonic() - started) * 1000, failure)
        return response

    def _health(self, request: flask.Request) -> flask.Response:
        if request.method not in ("GET", "HEAD"):
            return error_response(method_not_allowed("GET, HEAD"))
        return json_response(200, {"status": "ok"})

    def _deliver(self, request: flask.Request, record: DeliveryLog) -> flask.Response:
        job = self._route(request)
        record.job = job.name
        if self.shutdown.draining.is_set():
            raise shutting_down()
        body = read_capped_body(request, self.settings.max_body_bytes)
        token = self._verify(request, body, record)
        message_id = require_message_id(request)
        record.message_id = message_id
        record.retried = retried_count(request)
        payload = parse_payload(body, job.payload_model)
        record.ignored_fields = ignored_fields(payload)
        delivery = Delivery(
            message_id=message_id,
            job=job.name,
            body_sha256=ledger_module.body_sha256(body),
            retried=record.retried,
            jti=token.jti,
            token_valid_until=token.valid_until(self.settings.clock_tolerance_seconds),
        )
        return self._run_once(job, payload, delivery, record)

    def _route(self, request: flask.Request) -> JobSpec[Any]:
        job = self.routes.get(request.path)
        if job is None:
            raise ApiError(404, "not_found", f"no job is served at {request.path}")
        if request.method != JOB_METHOD:
            raise method_not_allowed(JOB_METHOD)
        return job

    def _verify(self, request: flask.Request, body: bytes, record: DeliveryLog) -> VerifiedToken:
        signature = request.headers.get("Upstash-Signature")
        if not signature:
            raise ApiError(401, "missing_signature", "the Upstash-Signature header is required")
        keys = self.settings.keys_for_region(request.headers.get("upstash-region"))
        try:
            return verify_signature(
                signature,
                body=body,
                url=signed_url(request, self.settings),
                keys=keys.all(),
                leeway=self.settings.clock_tolerance_seconds,
            )
        except SignatureError as error:
            record.reason = error.reason
            raise invalid_signature(error.reason, error.message) from None

    def _run_once(
        self, job: JobSpec[Any], payload: BaseModel, delivery: Delivery, record: DeliveryLog
    ) -> flask.Response:
        runner = JobRunner(self.settings, self.services.ledger(), self.active, self.shutdown)
        try:
            result = runner.run(job, payload, delivery, record)
        except ledger_module.LedgerAnswer as answer:
            return ledger_answer_response(answer, delivery, record)
        return json_response(200, success_body(delivery.message_id, result, duplicate=False))


def job_failed() -> ApiError:
    return ApiError(500, "job_failed", "the job failed; QStash will retry it")


def method_not_allowed(allowed: str) -> ApiError:
    return ApiError(405, "method_not_allowed", f"use {allowed}", headers={"Allow": allowed})


def invalid_signature(reason: str, message: str) -> ApiError:
    return ApiError(
        401,
        "invalid_signature",
        "the Upstash-Signature header does not verify",
        [header_detail("Upstash-Signature", reason, message)],
    )


def require_message_id(request: flask.Request) -> str:
    message_id = request.headers.get("Upstash-Message-Id", "")
    if not is_safe_id(message_id):
        raise non_retryable(
            "missing_message_id",
            "Upstash-Message-Id must be present and a safe document id",
            [
                header_detail(
                    "Upstash-Message-Id",
                    "missing" if not message_id else "unsafe_id",
                    "1-128 letters, digits or _ - . : @",
                )
            ],
        )
    return message_id


def retried_count(request: flask.Request) -> int:
    """`Upstash-Retried`, or 0 when it is absent or not ASCII digits: the count only steers
    the duplicate check's first read and the log, so a garbled one is read as a first attempt."""
    return ascii_natural(request.headers.get("Upstash-Retried")) or 0


def parse_payload(body: bytes, model: type[BaseModel]) -> BaseModel:
    """The job's payload, or `489 invalid_json` / `validation_failed`. Any JSON the parser
    cannot read is `invalid_json`: besides syntax and encoding errors (ValueError), an
    integer of more than 4300 digits (ValueError too) and nesting too deep for its stack
    (RecursionError); and nesting past MAX_JSON_DEPTH, so that the answer never depends
    on how deep the stack already was."""
    too_deep = non_retryable("invalid_json", f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(body)
    except RecursionError:
        raise too_deep from None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise non_retryable("invalid_json", "the body must be a JSON object")
    if nested_deeper_than(body, data, MAX_JSON_DEPTH):
        raise too_deep
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise non_retryable(
            "validation_failed", "the payload does not match the job's schema", validation_details(error)
        ) from None


def nested_deeper_than(body: bytes, data: object, limit: int) -> bool:
    """Whether `data` (parsed from `body`) holds containers more than `limit` deep. A body
    with no more than `limit` opening brackets cannot (counting bytes over-counts, never
    under-counts, in any of JSON's encodings), so the usual small payload is not walked."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def ignored_fields(payload: BaseModel) -> list[str] | None:
    """Names (never values) of fields the model does not know, so a producer can roll a
    new field out before the job uses it, and the log shows it arriving."""
    extra = payload.model_extra or {}
    return sorted(name[:64] for name in extra)[:20] or None


def ledger_answer_response(
    answer: ledger_module.LedgerAnswer, delivery: Delivery, record: DeliveryLog
) -> flask.Response:
    if isinstance(answer, ledger_module.AlreadySucceeded):
        record.outcome = "duplicate"
        return json_response(200, success_body(delivery.message_id, answer.result, duplicate=True))
    record.outcome = "refused"
    if isinstance(answer, ledger_module.AlreadyRejected):
        record.outcome = "rejected"
        raise non_retryable(answer.code, answer.message or "the message was rejected")
    if isinstance(answer, ledger_module.InProgress):
        record.outcome = "in_progress"
        raise ApiError(
            409,
            "in_progress",
            f"the message is being processed ({answer})",
            headers={"Retry-After": str(answer.retry_after_seconds)},
        )
    if isinstance(answer, ledger_module.MessageIdReused):
        raise non_retryable("message_id_reused", str(answer))
    record.reason = "replayed"
    raise invalid_signature("replayed", str(answer))


def success_body(message_id: str, result: dict[str, Any], *, duplicate: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"ok": True, "messageId": message_id, "duplicate": duplicate}
    body.update((name, value) for name, value in result.items() if name not in body)
    return body
