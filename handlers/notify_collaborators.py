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
with the failure, so that QStash's retry attempts only what is still pending. A run long
enough to need it commits outcomes on the way, renewing its claim (`Progress`).
"""

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from google.cloud.firestore_v1.document import DocumentReference
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from qjobs.channels import channel_state, is_pending
from qjobs.channels.email import Email, EmailChannel, message_id_for
from qjobs.channels.setup import Channels
from qjobs.channels.trip_email import TripEmail, render, trip_url
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
    RetryLater,
    StepContext,
    Write,
)
from qjobs.safe_id import SafeId
from qjobs.trip_events import (
    Plan,
    Recipient,
    Refs,
    address_problem,
    candidates_of,
    email_on,
    event_writes,
    make_plan,
    new_inbox_entries,
    take_deliveries,
    wording_refs,
)

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


LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""Control characters (C0, DEL, C1) and Unicode's line and paragraph separators: what
could end a header line or hide in one."""


def _one_line(value: str) -> str:
    if LINE_BREAKING.search(value):
        raise PydanticCustomError("control_characters", "must not contain control characters or line breaks")
    return value


ONE_LINE = (
    AfterValidator(_one_line),
    Field(json_schema_extra={"pattern": "^[^\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029]*$"}),
)
"""The rule of text that may travel in a header once encoded: any Unicode but control
characters and line breaks (the same rule as a JSON-schema pattern, for the contract)."""


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
    tripTitle: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), *ONE_LINE] | None
    ) = Field(None, description="the trip's title as the event happened, for emails (else trips/{tripId}.title)")
    idempotencyKey: Annotated[str, StringConstraints(min_length=8, max_length=200), *ONE_LINE] | None = None


# ---------------------------------------------------------------- what the job reads


def prefetch(payload: NotifyCollaboratorsPayload, ctx: ReadContext) -> list[DocumentReference]:
    """Users' settings and addresses need no isolation, and the app writes them: read
    them outside the transaction so that it never locks them."""
    refs = Refs.of(payload, ctx.db, ctx.message_id)
    users = [refs.user(uid) for uid in candidates_of(payload)]
    if not email_on(ctx.settings):
        return users
    return [*users, *wording_refs(refs, payload.tripId, payload.tripTitle, payload.actorId)]


def reads(payload: NotifyCollaboratorsPayload, ctx: ReadContext) -> list[DocumentReference]:
    refs = Refs.of(payload, ctx.db, ctx.message_id)
    return [refs.event, *(refs.inbox(uid) for uid in candidates_of(payload))]


# ---------------------------------------------------------------- the plan


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
    """Attempt every pending delivery; the outcomes not committed on the way (`Progress`)
    commit with the success mark, or with the failure when some must be tried again, and
    either way the event is let go."""
    channels = Channels.from_settings(ctx.settings)
    progress = Progress(plan, ctx)
    emails_due = sum(1 for recipient in plan.recipients if is_pending(recipient.email))
    if channels.email:
        deliver_emails(plan, channels.email, progress)
    if channels.webhook and is_pending(plan.event["webhook"]):
        progress.before_send()
        plan.event["webhook"] = channels.webhook.deliver(plan.event["webhook"], plan.refs.key, webhook_body(plan.event))
    writes = [
        *progress.writes,
        Write(plan.refs.event, {"webhook": plan.event["webhook"], "deliveringBy": None}, merge=True),
    ]
    if plan.pending(channels):
        raise RetryLater(outage(plan, channels, emails_due), writes)
    return JobResult(result=summary(plan, channels), writes=writes)


class Progress:
    """The outcomes not committed yet, and the claim kept while the sends take their time.

    Many recipients or a slow SMTP server can make a run last longer than its lease
    (JOB_LEASE_SECONDS): QStash's retry would then take the message over while the run
    still works, and both would send every email. So before each send, once a third of
    the lease has passed since the claim was last renewed, the outcomes so far commit
    with a renewal of the claim (`commit_page`, fenced) and of this message's hold on the
    event (`deliveringBy`, which a replay under another message id waits for). A run that
    keeps working keeps both; a run that lost its claim learns it there (`ClaimLost`) and
    sends nothing more. A few fast sends renew nothing: their outcomes commit once, with
    the success mark.

    Once the instance is shutting down (`should_stop`), the run stops before the next
    send: the outcomes so far commit, the hold on the event is let go, and the message is
    given back (`JobStopped`), so that QStash's retry sends only what is left instead of
    what this run sent after its claim was given back at the end of the grace period."""

    def __init__(self, plan: Plan, ctx: JobContext) -> None:
        self.plan, self.ctx = plan, ctx
        self.lease = timedelta(seconds=ctx.settings.job_lease_seconds)
        self.writes: list[Write] = []

    def record(self, write: Write) -> None:
        self.writes.append(write)

    def before_send(self) -> None:
        if self.ctx.should_stop():
            self.commit(None)
            raise JobStopped("the instance is shutting down")
        held_until: datetime = self.plan.event["deliveringBy"]["until"]
        if held_until - datetime.now(UTC) <= self.lease * 2 / 3:
            self.commit({"messageId": self.ctx.message_id, "until": datetime.now(UTC) + self.lease})

    def commit(self, hold: Data | None) -> None:
        """The outcomes so far, and the hold on the event renewed (or let go: None)."""
        self.ctx.commit_page([*self.writes, Write(self.plan.refs.event, {"deliveringBy": hold}, merge=True)])
        self.plan.event["deliveringBy"] = hold
        self.writes = []


def outage(plan: Plan, channels: Channels, emails_due: int) -> str:
    """Each channel with deliveries still pending and why, for the log and the ledger:
    `email: 1 of 2 pending (recipient refused (450)); webhook: receiver answered 503`.
    Only codes, counts and exception names: never an address."""
    causes = []
    emails = [r.email for r in plan.recipients if is_pending(r.email)] if channels.email else []
    if emails:
        errors = ", ".join(sorted({str(state.get("lastError")) for state in emails}))
        causes.append(f"email: {len(emails)} of {emails_due} pending ({errors})")
    webhook = plan.event.get("webhook") or {}
    if channels.webhook and is_pending(webhook):
        causes.append(f"webhook: {webhook.get('lastError')}")
    return "; ".join(causes)


def deliver_emails(plan: Plan, channel: EmailChannel, progress: Progress) -> None:
    """Send every pending email, one after the other over one connection (those whose
    address went missing or bad since are skipped), each outcome recorded in `progress`,
    which keeps the claim before each send."""
    with channel.session() as session:
        for recipient in [recipient for recipient in plan.recipients if is_pending(recipient.email)]:
            problem = address_problem(recipient.user)
            if problem is None:
                progress.before_send()
                state = session.deliver(recipient.email, email_for(plan, recipient, channel))
            else:
                state = {**recipient.email, "status": "skipped", "reason": problem}
            recipient.inbox = {**(recipient.inbox or {}), "delivery": {"email": state}}
            progress.record(Write(recipient.ref, {"delivery": {"email": state}}, merge=True))


def email_for(plan: Plan, recipient: Recipient, channel: EmailChannel) -> Email:
    """The recipient's email: the trip named by its title (the event's, else the trip
    document's), the actor and the recipient by their display names."""
    event = plan.event
    rendered = render(
        TripEmail(
            event=str(event["event"]),
            message=str(event["message"]),
            trip_title=event.get("tripTitle") or plan.trip.get("title"),
            actor_name=plan.actor.get("displayName"),
            recipient_name=recipient.user.get("displayName"),
            trip_url=trip_url(channel.trip_url_template, str(event["tripId"])),
            unsubscribe_url=channel.unsubscribe_url,
        )
    )
    return Email(
        to=str(recipient.user["email"]),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        message_id=message_id_for(recipient.ref.id, channel.sender),
    )


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


POLICY = PublishPolicy(retries=3, retry_delay="min(300000, 10000 * pow(2, retried))", timeout_seconds=120)
"""3 retries, 10 s doubling to at most 5 min; a run takes seconds (its sends time out in 10 s each)."""

JOB = JobSpec(
    name="notify-collaborators",
    payload_model=NotifyCollaboratorsPayload,
    result_model=NotifyCollaboratorsResult,
    prefetch=prefetch,
    reads=reads,
    step=step,
    finish=finish,
    policy=POLICY,
)
