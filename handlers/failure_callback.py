"""The failure callback: QStash's report on a message it gave up on, kept on record.

Producers publish every job with `Upstash-Failure-Callback` pointing here (qjobs.publish).
When QStash dead-letters a message (a `489`, or the last retry failed) it POSTs a report,
signed like any delivery, and this job writes `deadLetters/{sourceMessageId}`: which job,
its dead-letter id, how the destination last answered, how often it was tried, and when.

It never touches `jobs/{id}`: the ledger entry may belong to a run that still holds its
lease, and a message refused before the ledger (`validation_failed`, `invalid_json`) has
none. The report's copy of the message body is not kept: it may hold personal content,
and QStash's dead-letter queue has it for as long as a replay needs it.
"""

import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import urlsplit

from google.cloud.firestore_v1.document import DocumentReference
from pydantic import BaseModel, ConfigDict, Field

from handlers import ROUTES
from qjobs.jobs import Done, JobSpec, ReadContext, StepContext, Write
from qjobs.numbers import NonNegativeInt64 as NonNegative
from qjobs.safe_id import SafeId

DEAD_LETTERS = "deadLetters"
ANSWER_EXCERPT_CHARS = 500


class FailureReport(BaseModel):
    """QStash's failure-callback body; numbers may arrive as strings."""

    model_config = ConfigDict(extra="allow")

    sourceMessageId: SafeId
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    status: NonNegative | None = Field(None, description="the destination's last HTTP status")
    body: str | None = Field(None, description="the destination's last answer, base64")
    retried: NonNegative = 0
    maxRetries: NonNegative = 0
    dlqId: Annotated[str, Field(max_length=200)] | None = None
    createdAt: NonNegative | None = Field(None, description="when the message was published, in ms since the epoch")


class FailureCallbackResult(BaseModel):
    sourceMessageId: str
    job: str | None = Field(description="the job the message was for, or null for a URL this service does not serve")


def record_ref(payload: FailureReport, ctx: ReadContext | StepContext) -> DocumentReference:
    ref: DocumentReference = ctx.db.collection(DEAD_LETTERS).document(payload.sourceMessageId)
    return ref


def reads(payload: FailureReport, ctx: ReadContext) -> list[DocumentReference]:
    return [record_ref(payload, ctx)]


def step(payload: FailureReport, ctx: StepContext) -> Done:
    job = job_of(payload.url)
    now = ctx.attempt.now
    record = {
        "job": job,
        "url": payload.url,
        "dlqId": payload.dlqId,
        "status": payload.status,
        "answer": answer_excerpt(payload.body),
        "retried": payload.retried,
        "maxRetries": payload.maxRetries,
        "publishedAt": published_at(payload.createdAt),
        "reportedAt": now,
        "callbackMessageId": ctx.message_id,
        "expireAt": now + timedelta(days=ctx.settings.dead_letter_retention_days),
    }
    result = FailureCallbackResult(sourceMessageId=payload.sourceMessageId, job=job)
    return Done([Write(record_ref(payload, ctx), record)], result.model_dump())


def job_of(url: str) -> str | None:
    """The job served at the URL's path (a report names the full URL it was published to).

    QStash reports whatever URL the message was published to, so it may not parse
    (`http://[::1`: urlsplit raises ValueError). Such a report is still kept, since its
    dlqId is what a replay needs, with no job, as for a URL this service does not serve:
    refusing it would dead-letter the report itself and leave no record at all."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    return ROUTES[path].name if path in ROUTES else None


def answer_excerpt(body: str | None) -> str | None:
    """The start of the destination's answer, as text: enough to see why it failed."""
    if body is None:
        return None
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raw = body.encode()
    return raw[: ANSWER_EXCERPT_CHARS * 4].decode("utf-8", "replace")[:ANSWER_EXCERPT_CHARS]


def published_at(created_ms: int | None) -> datetime | None:
    if created_ms is None:
        return None
    try:
        return datetime.fromtimestamp(created_ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


JOB = JobSpec(
    name="failure-callback",
    payload_model=FailureReport,
    result_model=FailureCallbackResult,
    reads=reads,
    step=step,
)
