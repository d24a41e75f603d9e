"""memory-sync: bring a user's memory up to date after a conversation.

Statements are the source of truth: every preference a user message states becomes a
memory entry, and `users/{uid}/preferences/{category}` is re-derived from all of the
user's statements of that category. The conversation's summary is a fold over its
messages (qjobs.memory.summary), so incremental syncs and one full sync agree; one page of it is
qjobs.memory.pages.

`incremental` reads the messages after the summary's cursor, one page per transaction: the
transaction re-reads the cursor, so two syncs racing on one conversation never skip or
double-apply a message. The first page runs in the transaction that claims the message
(most syncs are one page, finished in that commit); later pages are transactions of their
own under the claim. `full` first removes the conversation's memories and summary, then
replays it from its first message the same way.
"""

from datetime import UTC, datetime
from typing import Any, Literal

from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.document import DocumentReference
from pydantic import BaseModel, ConfigDict, Field

from qjobs.errors import PermanentJobError
from qjobs.jobs import (
    Data,
    Done,
    JobContext,
    JobResult,
    JobSpec,
    JobStopped,
    Proceed,
    PublishPolicy,
    ReadContext,
    StepContext,
    Write,
)
from qjobs.memory.derived import Touched
from qjobs.memory.holders import SELF
from qjobs.memory.pages import MEMORY_WRITE_BUDGET, Page, Sync, build_page, continuable
from qjobs.safe_id import SafeId


class MemorySyncPayload(BaseModel):
    model_config = ConfigDict(extra="allow")

    userId: SafeId
    conversationId: SafeId
    syncType: Literal["full", "incremental"]


class Cursor(BaseModel):
    createdAt: str = Field(description="RFC 3339 time of the last message applied")
    messageId: str


class MemorySyncResult(BaseModel):
    """What a delivery answers (and the ledger keeps for duplicates)."""

    syncType: Literal["full", "incremental"]
    processedMessages: int
    preferencesUpdated: int
    memoriesWritten: int
    cursor: Cursor | None


def reads(payload: MemorySyncPayload, ctx: ReadContext) -> list[DocumentReference]:
    run = sync_of(payload, ctx)
    return [run.conversation, run.summary]


def step(payload: MemorySyncPayload, ctx: StepContext) -> Done | Proceed:
    """The first page, in the transaction that claims the message; the sync is done in its
    commit when that page is the last."""
    run = sync_of(payload, ctx)
    check_conversation(run, ctx.document(run.conversation))
    summary = ctx.document(run.summary)
    if payload.syncType == "full" or not continuable(summary):
        return Proceed([], Page(done=False, replay=True))
    writes, page = build_page(ctx.reads, run)
    if page.done:
        return Done(writes, result_of(payload, page))
    return Proceed(writes, page)


def finish(payload: MemorySyncPayload, first: Page, ctx: JobContext) -> JobResult:
    """The pages after the first, each a transaction of its own under the claim."""
    run = sync_of(payload, ctx)
    totals = Page(cursor=first.cursor, done=False)
    totals.add(first)
    if first.replay:
        run.forgotten = forget_conversation(run, ctx)
    while not totals.done:
        if ctx.should_stop():
            raise JobStopped("stopped between two pages; the cursor keeps what was done")
        page = ctx.transact_page(lambda reads: build_page(reads, run))
        run.forgotten = set()
        if not page.done and page.cursor == totals.cursor:
            raise RuntimeError("a page left the cursor where it was: stopping rather than paging forever")
        totals.add(page)
        totals.done = page.done
    return JobResult(result=result_of(payload, totals))


def result_of(payload: MemorySyncPayload, totals: "Page") -> dict[str, Any]:
    result = MemorySyncResult(
        syncType=payload.syncType,
        processedMessages=totals.processed,
        preferencesUpdated=totals.preferences,
        memoriesWritten=totals.memories,
        cursor=cursor_json(totals.cursor),
    )
    return result.model_dump()


def check_conversation(run: Sync, conversation: Data | None) -> None:
    if conversation is None:
        raise PermanentJobError("conversation_not_found", "the conversation does not exist")
    if conversation.get("userId") != run.user_id:
        raise PermanentJobError("conversation_forbidden", "the conversation belongs to another user")


# ---------------------------------------------------------------- full: forget, then replay


def forget_conversation(run: Sync, ctx: JobContext) -> Touched:
    """Remove the conversation's memories and summary; the (holder, category) pairs its
    statements touched are re-derived by the replay's first page, so that a preference this
    conversation still states is not deleted and written again."""
    query = run.user.collection("memories").where(filter=FieldFilter("conversationId", "==", run.conversation_id))
    memories = list(query.stream(**ctx.rpc))
    statements = [doc.to_dict() or {} for doc in memories]
    touched = {
        (str(data.get("holder") or SELF), str(data.get("category")))
        for data in statements
        if data.get("kind") == "preference"
    }
    refs = [run.summary, *(doc.reference for doc in memories)]
    for start in range(0, len(refs), MEMORY_WRITE_BUDGET):
        ctx.commit_page([Write(ref, None) for ref in refs[start : start + MEMORY_WRITE_BUDGET]])
    return touched


def sync_of(payload: MemorySyncPayload, ctx: ReadContext | StepContext | JobContext) -> Sync:
    return Sync(ctx.db, ctx.settings.memory_sync_page_size, payload.userId, payload.conversationId, payload.syncType)


def cursor_json(cursor: dict[str, Any] | None) -> Cursor | None:
    if cursor is None:
        return None
    created = cursor["createdAt"]
    text = created.astimezone(UTC).isoformat().replace("+00:00", "Z") if isinstance(created, datetime) else str(created)
    return Cursor(createdAt=text, messageId=cursor["messageId"])


POLICY = PublishPolicy(retries=3, retry_delay="min(600000, 30000 * pow(2, retried))", timeout_seconds=300)
"""3 retries, 30 s doubling to at most 10 min; a sync may page for minutes, within the lease."""

JOB = JobSpec(
    name="memory-sync",
    payload_model=MemorySyncPayload,
    result_model=MemorySyncResult,
    reads=reads,
    step=step,
    finish=finish,
    policy=POLICY,
)
