"""notify-collaborators: tell a trip's collaborators that something happened to the trip.

The business event is keyed by `idempotencyKey` (or, without one, the message id), so a
dead-letter replay, which arrives under a new message id, finds the event already there:
its recipients, inbox entries and channel outcomes are reused and nothing is sent twice.

Without external channels the job is one atomic commit (event record, inbox entries, the
ledger's success mark). With channels, the inbox entries are committed first with their
deliveries `pending`; each pending delivery is then attempted and its outcome recorded, and
a temporary failure fails the job so QStash's retry attempts only what is still pending.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Annotated, Any, Literal

from google.cloud import firestore
from google.cloud.firestore_v1.document import DocumentReference
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from qjobs.channels import SendResult
from qjobs.channels.email import Email, Mailer, SmtpServer, mailer
from qjobs.channels.webhook import post_webhook
from qjobs.config import Settings
from qjobs.jobs import JobContext, JobResult, JobSpec, Write
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


class DeliveriesPending(Exception):
    """Some deliveries failed for a reason a retry can fix: fail the job so QStash retries."""


def doc_id(*parts: str) -> str:
    """A document id from any text: business keys may hold characters ids may not."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:40]


@dataclass
class Recipient:
    uid: str
    user: dict[str, Any]
    ref: DocumentReference
    inbox: dict[str, Any] | None
    """The stored inbox entry, or None while it is still to be written."""


@dataclass
class Plan:
    """What this business event is and what of it is already done."""

    key: str
    event_ref: DocumentReference
    event: dict[str, Any]
    is_new: bool
    recipients: list[Recipient]
    writes: list[Write] = field(default_factory=list)


@dataclass(frozen=True)
class EmailChannel:
    server: SmtpServer
    sender: str
    unsubscribe_url: str | None
    timeout: float


@dataclass(frozen=True)
class WebhookChannel:
    url: str
    secret: str
    timeout: float


@dataclass(frozen=True)
class Channels:
    email: EmailChannel | None
    webhook: WebhookChannel | None

    @classmethod
    def from_settings(cls, settings: Settings) -> "Channels":
        server, sender = settings.smtp_server, settings.email_from
        url, secret = settings.collaborator_webhook_url, settings.collaborator_webhook_secret
        return cls(
            email=EmailChannel(server, sender, settings.email_unsubscribe_url, settings.smtp_timeout_seconds)
            if server and sender
            else None,
            webhook=WebhookChannel(url, secret, settings.webhook_timeout_seconds) if url and secret else None,
        )


def notify(payload: NotifyCollaboratorsPayload, ctx: JobContext) -> JobResult:
    channels = Channels.from_settings(ctx.settings)
    plan = make_plan(payload, ctx)
    plan.writes = first_writes(plan, ctx, channels)
    if channels.email is None and channels.webhook is None:
        return JobResult(result=summary(plan, channels), writes=plan.writes)
    if plan.writes:
        ctx.commit_page(plan.writes)
    outcome_writes, pending = deliver(plan, channels)
    if pending:
        ctx.commit_page(outcome_writes)
        raise DeliveriesPending(f"{pending} deliveries failed temporarily")
    return JobResult(result=summary(plan, channels), writes=outcome_writes)


def make_plan(payload: NotifyCollaboratorsPayload, ctx: JobContext) -> Plan:
    key = payload.idempotencyKey or ctx.message_id
    event_ref = ctx.db.collection(EVENTS_COLLECTION).document(doc_id(key))
    stored = event_ref.get(**ctx.rpc)
    candidates = stored.get("recipientIds") if stored.exists else candidates_of(payload)
    users, inboxes = read_users_and_inboxes(ctx, key, candidates)
    if stored.exists:
        event = stored.to_dict() or {}
        recipients = list(candidates)
    else:
        recipients = [uid for uid in candidates if not muted(users[uid], payload)]
        event = new_event(payload, ctx.message_id, recipients, skipped=len(payload.collaboratorIds) - len(recipients))
    return Plan(
        key=key,
        event_ref=event_ref,
        event=event,
        is_new=not stored.exists,
        recipients=[Recipient(uid, users[uid], inboxes[uid][0], inboxes[uid][1]) for uid in recipients],
    )


def candidates_of(payload: NotifyCollaboratorsPayload) -> list[str]:
    return [uid for uid in payload.collaboratorIds if uid != payload.actorId]


def read_users_and_inboxes(
    ctx: JobContext, key: str, uids: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[DocumentReference, dict[str, Any] | None]]]:
    """One round trip for every recipient's user document and inbox entry."""
    user_refs = {uid: ctx.db.collection("users").document(uid) for uid in uids}
    inbox_refs = {uid: ref.collection("notifications").document(doc_id(key, uid)) for uid, ref in user_refs.items()}
    snapshots = {
        snapshot.reference.path: snapshot
        for snapshot in ctx.db.get_all([*user_refs.values(), *inbox_refs.values()], **ctx.rpc)
    }
    users = {uid: _data(snapshots.get(ref.path)) or {} for uid, ref in user_refs.items()}
    inboxes = {uid: (ref, _data(snapshots.get(ref.path))) for uid, ref in inbox_refs.items()}
    return users, inboxes


def _data(snapshot: Any) -> dict[str, Any] | None:
    return (snapshot.to_dict() or {}) if snapshot is not None and snapshot.exists else None


def preferences(user: dict[str, Any]) -> dict[str, Any]:
    prefs = user.get("notificationPreferences")
    return prefs if isinstance(prefs, dict) else {}


def muted(user: dict[str, Any], payload: NotifyCollaboratorsPayload) -> bool:
    prefs = preferences(user)
    return payload.tripId in (prefs.get("mutedTrips") or []) or payload.event in (prefs.get("mutedEvents") or [])


def new_event(
    payload: NotifyCollaboratorsPayload, message_id: str, recipients: list[str], skipped: int
) -> dict[str, Any]:
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


def first_writes(plan: Plan, ctx: JobContext, channels: Channels) -> list[Write]:
    """The event record and the inbox entries that do not exist yet, created only if still
    absent, so that two racing copies of one business event cannot both write them."""
    writes: list[Write] = []
    webhook_on, email_on = channels.webhook is not None, channels.email is not None
    if plan.is_new:
        plan.event["webhook"] = channel_state(
            "pending" if webhook_on else "skipped", None if webhook_on else "disabled"
        )
        writes.append(Write(plan.event_ref, plan.event, create=True))
    for recipient in plan.recipients:
        if recipient.inbox is None:
            recipient.inbox = inbox_entry(plan, recipient, ctx.message_id, email_on=email_on)
            writes.append(Write(recipient.ref, recipient.inbox, create=True))
    return writes


def inbox_entry(plan: Plan, recipient: Recipient, message_id: str, *, email_on: bool) -> dict[str, Any]:
    event = plan.event
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


def initial_email_state(user: dict[str, Any], *, email_on: bool) -> dict[str, Any]:
    if not email_on:
        return channel_state("skipped", "disabled")
    if preferences(user).get("email") is False:
        return channel_state("skipped", "opted_out")
    if not user.get("email"):
        return channel_state("skipped", "no_address")
    return channel_state("pending", None)


def channel_state(status: str, reason: str | None) -> dict[str, Any]:
    return {"status": status, "reason": reason, "attempts": 0, "lastError": None, "sentAt": None}


def deliver(plan: Plan, channels: Channels) -> tuple[list[Write], int]:
    """Attempt every pending delivery; the writes recording the outcomes, and how many
    deliveries are still pending (temporarily failed)."""
    writes: list[Write] = []
    if channels.email is not None:
        writes.extend(deliver_emails(plan, channels.email))
    if channels.webhook is not None:
        writes.extend(deliver_webhook(plan, channels.webhook))
    pending = sum(1 for recipient in plan.recipients if email_state(recipient).get("status") == "pending")
    pending += int(channels.webhook is not None and plan.event["webhook"]["status"] == "pending")
    return writes, pending


def email_state(recipient: Recipient) -> dict[str, Any]:
    state: dict[str, Any] = ((recipient.inbox or {}).get("delivery") or {}).get("email") or {}
    return state


def deliver_emails(plan: Plan, channel: EmailChannel) -> Iterable[Write]:
    due = [recipient for recipient in plan.recipients if email_state(recipient).get("status") == "pending"]
    if not due:
        return []
    writes = []
    with mailer(channel.server, channel.sender, channel.unsubscribe_url, channel.timeout) as session:
        for recipient in due:
            state = send_email(session, plan, recipient, channel.sender)
            recipient.inbox = {**(recipient.inbox or {}), "delivery": {"email": state}}
            writes.append(Write(recipient.ref, {"delivery": {"email": state}}, merge=True))
    return writes


def send_email(session: Mailer, plan: Plan, recipient: Recipient, sender: str) -> dict[str, Any]:
    address = recipient.user.get("email")
    if not address:
        return {**email_state(recipient), "status": "skipped", "reason": "no_address"}
    event = plan.event
    email = Email(
        to=str(address),
        subject=SUBJECTS.get(str(event["event"]), "A trip changed"),
        text=f"{event['message']}\n\nTrip: {event['tripId']}\n",
        message_id=f"<{recipient.ref.id}@{sender_domain(sender)}>",
    )
    return next_state(email_state(recipient), session.send(email))


def sender_domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    return address.rpartition("@")[2] or "localhost"


def next_state(state: dict[str, Any], result: SendResult) -> dict[str, Any]:
    status = {"sent": "sent", "failed": "failed", "retry": "pending"}[result.outcome]
    return {
        **state,
        "status": status,
        "attempts": int(state.get("attempts") or 0) + 1,
        "lastError": result.error,
        "sentAt": datetime.now(UTC) if status == "sent" else state.get("sentAt"),
    }


def deliver_webhook(plan: Plan, channel: WebhookChannel) -> list[Write]:
    state = plan.event["webhook"]
    if state["status"] != "pending":
        return []
    result = post_webhook(
        channel.url, channel.secret, webhook_id=plan.key, payload=webhook_body(plan.event), timeout=channel.timeout
    )
    plan.event["webhook"] = next_state(state, result)
    return [Write(plan.event_ref, {"webhook": plan.event["webhook"]}, merge=True)]


def webhook_body(event: dict[str, Any]) -> dict[str, Any]:
    occurred: datetime = event["occurredAt"]
    return {
        "type": event["event"],
        "tripId": event["tripId"],
        "recipientIds": list(event["recipientIds"]),
        "message": event["message"],
        "actorId": event.get("actorId"),
        "occurredAt": occurred.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }


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
        statuses = [email_state(recipient).get("status") for recipient in plan.recipients]
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
    run=notify,
)
