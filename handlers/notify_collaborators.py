"""notify-collaborators, first cut: an in-app inbox entry per collaborator.

Email, webhook, mutes and the business idempotency key come with the full job; this cut
already hands its writes back so they commit atomically with the ledger's success mark.
"""

from typing import Annotated

from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from qjobs.jobs import JobContext, JobResult, JobSpec, Write
from qjobs.safe_id import SafeId


class NotifyCollaboratorsPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tripId: SafeId
    event: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    collaboratorIds: Annotated[list[SafeId], Field(min_length=1, max_length=100)]
    message: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


def notify(payload: NotifyCollaboratorsPayload, ctx: JobContext) -> JobResult:
    recipients = sorted(set(payload.collaboratorIds))
    writes = [
        Write(
            ctx.db.collection("users", uid, "notifications").document(ctx.message_id),
            {
                "tripId": payload.tripId,
                "event": payload.event,
                "message": payload.message,
                "read": False,
                "createdAt": firestore.SERVER_TIMESTAMP,
                "messageId": ctx.message_id,
            },
        )
        for uid in recipients
    ]
    return JobResult(result={"notified": len(writes)}, writes=writes)


JOB = JobSpec(name="notify-collaborators", payload_model=NotifyCollaboratorsPayload, run=notify)
