"""notify-collaborators: tell a trip's collaborators that something happened to the trip.

The business event is keyed by `idempotencyKey` (or, without one, the message id), so a
dead-letter replay, which arrives under a new message id, finds the event already there:
its recipients, inbox entries and channel outcomes are reused and nothing is sent twice.

The recipients' user documents (mute settings, addresses) are read before the
transaction, without isolation; the event and the inbox entries are read in it. Without
external channels the job is done in the transaction: the event record and the inbox
entries commit with the ledger's success mark. With channels, the same commit holds the
claim and the deliveries `pending`; `finish` attempts each pending delivery and its
outcomes commit with the success mark, or, when some failed for a reason a retry can fix,
with the failure, so that QStash's retry attempts only what is still pending.
"""

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from google.cloud import firestore
from google.cloud.firestore_v1.document import DocumentReference
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from qjobs.channels import DeliveryState, channel_state, is_pending, next_state
from qjobs.channels.email import Email, EmailChannel, message_id_for
from qjobs.channels.setup import Channels
from qjobs.channels.webhook import WebhookChannel
from qjobs.jobs import (
    Busy,
    Data,
    Done,
    JobContext,
    JobResult,
    JobSpec,
    Proceed,
    ReadContext,
    RetryLater,
    StepContext,
    Write,
)
from qjobs.safe_id import SafeId

EVENTS_COLLECTION = "notificationEvents"
MAX_RECIPIENTS = 100

Event = Literal[
    "trip_created",
    "trip_updated",
    "trip_shared",
    "trip_deleted",
    "collaborator_added",
    "collaborator_removed",
    "collaborator_role_changed",
]

SUBJECTS: dict[str, str] = {
    "trip_created": "A trip was created",
    "trip_updated": "A trip was updated",
    "trip_shared": "A trip was shared with you",
    "trip_deleted": "A trip was deleted",
    "collaborator_added": "A collaborator joined a trip",
    "collaborator_removed": "A collaborator left a trip",
    "collaborator_role_changed": "A collaborator's role changed",
}


def _distinct_collaborators(ids: list[str]) -> list[str]:
    distinct = list(dict.fromkeys(ids))
    if not 1 <= len(distinct) <= MAX_RECIPIENTS:
        raise PydanticCustomError(
            "collaborator_count",
            "must hold 1-{limit} distinct ids, not {count}",
            {"limit": 100, "count": len(distinct)},
        )
    return distinct


class NotifyCollaboratorsPayload(BaseModel):
    model_config = ConfigDict(extra="allow")

    tripId: SafeId
    event: Event
    collaboratorIds: Annotated[
        list[SafeId],
        AfterValidator(_distinct_collaborators),
        Field(json_schema_extra={"minItems": 1, "description": "1-100 distinct ids; duplicates are removed first"}),
    ]
    message: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
    actorId: SafeId | None = None
    idempotencyKey: Annotated[str, StringConstraints(min_length=8, max_length=200)] | None = None


def doc_id(*parts: str) -> str:
    """A document id from any text: business keys may hold characters ids may not."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:40]


# ---------------------------------------------------------------- what the job reads


@dataclass(frozen=True)
class Refs:
    """The documents of one business event."""

    db: firestore.Client
    key: str

    @classmethod
    def of(cls, payload: NotifyCollaboratorsPayload, db: firestore.Client, message_id: str) -> "Refs":
        return cls(db, payload.idempotencyKey or message_id)

    @property
    def event(self) -> DocumentReference:
        ref: DocumentReference = self.db.collection(EVENTS_COLLECTION).document(doc_id(self.key))
        return ref

    def user(self, uid: str) -> DocumentReference:
        ref: DocumentReference = self.db.collection("users").document(uid)
        return ref

    def inbox(self, uid: str) -> DocumentReference:
        ref: DocumentReference = self.user(uid).collection("notifications").document(doc_id(self.key, uid))
        return ref


def candidates_of(payload: NotifyCollaboratorsPayload) -> list[str]:
    return [uid for uid in payload.collaboratorIds if uid != payload.actorId]


def prefetch(payload: NotifyCollaboratorsPayload, ctx: ReadContext) -> list[DocumentReference]:
    """Users' settings and addresses need no isolation, and the app writes them: read
    them outside the transaction so that it never locks them."""
    refs = Refs.of(payload, ctx.db, ctx.message_id)
    return [refs.user(uid) for uid in candidates_of(payload)]


def reads(payload: NotifyCollaboratorsPayload, ctx: ReadContext) -> list[DocumentReference]:
    refs = Refs.of(payload, ctx.db, ctx.message_id)
    return [refs.event, *(refs.inbox(uid) for uid in candidates_of(payload))]


# ---------------------------------------------------------------- the plan


@dataclass
class Recipient:
    uid: str
    user: Data
    ref: DocumentReference
    inbox: Data | None
    """The stored inbox entry, or None while it is still to be written."""

    @property
    def email(self) -> DeliveryState:
        state: DeliveryState = ((self.inbox or {}).get("delivery") or {}).get("email") or {}
        return state


@dataclass
class Plan:
    """What this business event is and what of it is already done."""

    refs: Refs
    event: Data
    is_new: bool
    recipients: list[Recipient]
    writes: list[Write] = field(default_factory=list)

    def pending(self, channels: Channels) -> int:
        """Deliveries still to attempt on the channels that are on (a channel turned off since
        leaves its deliveries pending, and the event done)."""
        emails = sum(1 for r in self.recipients if is_pending(r.email)) if channels.email else 0
        return emails + int(channels.webhook is not None and is_pending(self.event.get("webhook")))


def make_plan(payload: NotifyCollaboratorsPayload, ctx: StepContext) -> Plan:
    refs = Refs.of(payload, ctx.db, ctx.message_id)
    stored = ctx.document(refs.event)
    if stored is not None:
        uids = [str(uid) for uid in stored.get("recipientIds") or []]
        users = users_of(ctx, refs, uids)
        event, is_new = stored, False
    else:
        users = users_of(ctx, refs, candidates_of(payload))
        uids = [uid for uid in candidates_of(payload) if not muted(users[uid], payload)]
        event = new_event(payload, ctx.message_id, uids, skipped=len(payload.collaboratorIds) - len(uids))
        is_new = True
    inboxes = ctx.reads.documents([refs.inbox(uid) for uid in uids])
    recipients = [Recipient(uid, users[uid], refs.inbox(uid), inboxes[refs.inbox(uid).path]) for uid in uids]
    return Plan(refs, event, is_new, recipients)


def users_of(ctx: StepContext, refs: Refs, uids: Sequence[str]) -> dict[str, Data]:
    """The users' documents as prefetched; those a stored event names beyond the payload's
    collaborators (a replay with another list) are read in the transaction."""
    unknown = [refs.user(uid) for uid in uids if refs.user(uid).path not in ctx.prefetched]
    extra = ctx.reads.documents(unknown) if unknown else {}
    found = {**ctx.prefetched, **extra}
    return {uid: found.get(refs.user(uid).path) or {} for uid in uids}


def preferences(user: Data) -> Data:
    prefs = user.get("notificationPreferences")
    return prefs if isinstance(prefs, dict) else {}


def muted(user: Data, payload: NotifyCollaboratorsPayload) -> bool:
    prefs = preferences(user)
    return payload.tripId in (prefs.get("mutedTrips") or []) or payload.event in (prefs.get("mutedEvents") or [])


def new_event(payload: NotifyCollaboratorsPayload, message_id: str, recipients: list[str], skipped: int) -> Data:
    return {
        "tripId": payload.tripId,
        "event": payload.event,
        "message": payload.message,
        "actorId": payload.actorId,
        "idempotencyKey": payload.idempotencyKey,
        "messageId": message_id,
        "recipientIds": recipients,
        "skipped": skipped,
        "occurredAt": datetime.now(UTC),
    }


def new_inbox_entries(plan: Plan, message_id: str, channels: Channels) -> list[Write]:
    """The inbox entries that do not exist yet, created only if still absent."""
    writes: list[Write] = []
    for recipient in plan.recipients:
        if recipient.inbox is None:
            recipient.inbox = inbox_entry(plan.event, recipient, message_id, email_on=channels.email is not None)
            writes.append(Write(recipient.ref, recipient.inbox, create=True))
    return writes


def take_deliveries(plan: Plan, ctx: StepContext) -> None:
    """Make this message the one that sends the event's pending deliveries until its claim
    runs out; another message holding them is waited for, so nothing is sent twice."""
    holder = plan.event.get("deliveringBy") or {}
    until = holder.get("until")
    if holder.get("messageId") not in (None, ctx.message_id) and until is not None and until > ctx.attempt.now:
        seconds = math.ceil((until - ctx.attempt.now).total_seconds())
        raise Busy(max(1, seconds), "another message is delivering this event")
    plan.event["deliveringBy"] = {"messageId": ctx.message_id, "until": ctx.attempt.lease_until}


def event_writes(plan: Plan, delivering: bool) -> list[Write]:
    """The event record, created only if still absent, so that two racing copies of one
    business event cannot both write it; or, when this message takes its deliveries, who
    delivers it."""
    if plan.is_new:
        return [Write(plan.refs.event, plan.event, create=True)]
    if delivering:
        return [Write(plan.refs.event, {"deliveringBy": plan.event["deliveringBy"]}, merge=True)]
    return []


def inbox_entry(event: Data, recipient: Recipient, message_id: str, *, email_on: bool) -> Data:
    return {
        "tripId": event["tripId"],
        "event": event["event"],
        "message": event["message"],
        "actorId": event.get("actorId"),
        "read": False,
        "createdAt": firestore.SERVER_TIMESTAMP,
        "messageId": message_id,
        "idempotencyKey": event.get("idempotencyKey"),
        "delivery": {"email": initial_email_state(recipient.user, email_on=email_on)},
    }


def initial_email_state(user: Data, *, email_on: bool) -> DeliveryState:
    if not email_on:
        return channel_state("skipped", "disabled")
    if preferences(user).get("email") is False:
        return channel_state("skipped", "opted_out")
    if not user.get("email"):
        return channel_state("skipped", "no_address")
    return channel_state("pending", None)


# ---------------------------------------------------------------- the job


def step(payload: NotifyCollaboratorsPayload, ctx: StepContext) -> Done | Proceed:
    channels = Channels.from_settings(ctx.settings)
    plan = make_plan(payload, ctx)
    if plan.is_new:
        webhook_on = channels.webhook is not None
        plan.event["webhook"] = channel_state(
            "pending" if webhook_on else "skipped", None if webhook_on else "disabled"
        )
    inbox_writes = new_inbox_entries(plan, ctx.message_id, channels)
    delivering = plan.pending(channels) > 0
    if delivering:
        take_deliveries(plan, ctx)
    writes = [*event_writes(plan, delivering), *inbox_writes]
    return Proceed(writes, plan) if delivering else Done(writes, summary(plan, channels))


def finish(payload: NotifyCollaboratorsPayload, plan: Plan, ctx: JobContext) -> JobResult:
    """Attempt every pending delivery; the outcomes commit with the success mark, or with
    the failure when some must be tried again, and either way the event is let go."""
    channels = Channels.from_settings(ctx.settings)
    writes = deliver_emails(plan, channels.email) if channels.email else []
    if channels.webhook:
        deliver_webhook(plan, channels.webhook)
    writes.append(Write(plan.refs.event, {"webhook": plan.event["webhook"], "deliveringBy": None}, merge=True))
    pending = plan.pending(channels)
    if pending:
        raise RetryLater(f"{pending} deliveries failed temporarily", writes)
    return JobResult(result=summary(plan, channels), writes=writes)


def deliver_emails(plan: Plan, channel: EmailChannel) -> list[Write]:
    """Send every pending email over one connection; the writes recording the outcomes."""
    due = [recipient for recipient in plan.recipients if is_pending(recipient.email)]
    sendable = [recipient for recipient in due if recipient.user.get("email")]
    sent = channel.send_all([email_for(plan, recipient, channel) for recipient in sendable])
    results = {recipient.uid: result for recipient, result in zip(sendable, sent, strict=True)}
    writes = []
    for recipient in due:
        result = results.get(recipient.uid)
        no_address = {**recipient.email, "status": "skipped", "reason": "no_address"}
        state = next_state(recipient.email, result) if result else no_address
        recipient.inbox = {**(recipient.inbox or {}), "delivery": {"email": state}}
        writes.append(Write(recipient.ref, {"delivery": {"email": state}}, merge=True))
    return writes


def email_for(plan: Plan, recipient: Recipient, channel: EmailChannel) -> Email:
    event = plan.event
    return Email(
        to=str(recipient.user["email"]),
        subject=SUBJECTS.get(str(event["event"]), "A trip changed"),
        text=f"{event['message']}\n\nTrip: {event['tripId']}\n",
        message_id=message_id_for(recipient.ref.id, channel.sender),
    )


def deliver_webhook(plan: Plan, channel: WebhookChannel) -> None:
    state = plan.event["webhook"]
    if is_pending(state):
        plan.event["webhook"] = next_state(state, channel.post(plan.refs.key, webhook_body(plan.event)))


def webhook_body(event: Data) -> dict[str, Any]:
    occurred: datetime = event["occurredAt"]
    return {
        "type": event["event"],
        "tripId": event["tripId"],
        "recipientIds": list(event["recipientIds"]),
        "message": event["message"],
        "actorId": event.get("actorId"),
        "occurredAt": occurred.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }


# ---------------------------------------------------------------- the result


class EmailCounts(BaseModel):
    sent: int
    failed: int
    skipped: int


class NotifyCollaboratorsResult(BaseModel):
    """What a delivery answers (and the ledger keeps for duplicates)."""

    notified: int = Field(description="inbox entries written or already present")
    skipped: int = Field(description="collaborators left out: the actor, and those who muted the trip or event")
    email: EmailCounts | Literal["disabled"]
    webhook: Literal["sent", "failed", "disabled"]


def summary(plan: Plan, channels: Channels) -> dict[str, Any]:
    email: EmailCounts | Literal["disabled"] = "disabled"
    if channels.email is not None:
        statuses = [recipient.email.get("status") for recipient in plan.recipients]
        email = EmailCounts(
            sent=statuses.count("sent"), failed=statuses.count("failed"), skipped=statuses.count("skipped")
        )
    result = NotifyCollaboratorsResult(
        notified=len(plan.recipients),
        skipped=int(plan.event.get("skipped", 0)),
        email=email,
        webhook=webhook_summary(plan.event["webhook"]["status"]) if channels.webhook else "disabled",
    )
    return result.model_dump()


def webhook_summary(status: str) -> Literal["sent", "failed", "disabled"]:
    """An event first processed while the webhook was off keeps it off (`skipped`)."""
    return "sent" if status == "sent" else "failed" if status == "failed" else "disabled"


JOB = JobSpec(
    name="notify-collaborators",
    payload_model=NotifyCollaboratorsPayload,
    result_model=NotifyCollaboratorsResult,
    prefetch=prefetch,
    reads=reads,
    step=step,
    finish=finish,
)
