"""memory-sync, first cut: checks the conversation and records its message count.

Extraction, summaries and the memory index come with the full job; this cut exercises the
pipeline's permanent-error path (an unknown or foreign conversation is rejected, not
retried) and the atomic commit of the job's writes with the ledger's success mark.
"""

from typing import Literal

from google.cloud import firestore
from pydantic import BaseModel, ConfigDict

from qjobs.errors import PermanentJobError
from qjobs.jobs import JobContext, JobResult, JobSpec, Write
from qjobs.safe_id import SafeId


class MemorySyncPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    userId: SafeId
    conversationId: SafeId
    syncType: Literal["full", "incremental"]


def sync(payload: MemorySyncPayload, ctx: JobContext) -> JobResult:
    conversation = ctx.db.collection("conversations").document(payload.conversationId).get(**ctx.rpc)
    if not conversation.exists:
        raise PermanentJobError("conversation_not_found", "the conversation does not exist")
    if (conversation.to_dict() or {}).get("userId") != payload.userId:
        raise PermanentJobError("conversation_forbidden", "the conversation belongs to another user")
    count_query = conversation.reference.collection("messages").count()
    message_count = int(count_query.get(**ctx.rpc)[0][0].value)
    summary_ref = ctx.db.collection("users", payload.userId, "conversationSummaries").document(payload.conversationId)
    write = Write(
        summary_ref,
        {"messageCount": message_count, "syncType": payload.syncType, "updatedAt": firestore.SERVER_TIMESTAMP},
        merge=True,
    )
    result = {"syncType": payload.syncType, "processedMessages": message_count}
    return JobResult(result=result, writes=[write])


JOB = JobSpec(name="memory-sync", payload_model=MemorySyncPayload, run=sync)
