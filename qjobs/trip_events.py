"""A trip event's documents: the event record, its recipients' inbox entries, and which
message delivers it.

The event is keyed by its business key (the producer's `idempotencyKey`, or the message
id), so a dead-letter replay under a new message id finds the same documents. Everything
here is decided from documents already read: it runs inside a transaction.
"""

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from google.cloud import firestore
from google.cloud.firestore_v1.document import DocumentReference

from qjobs.channels import DeliveryState, channel_state, is_pending
from qjobs.channels.email import deliverable_address
from qjobs.channels.setup import Channels
from qjobs.config import Settings
from qjobs.jobs import Busy, Data, StepContext, Write

EVENTS_COLLECTION = "notificationEvents"


class TripEvent(Protocol):
    """What a producer says happened (the job's payload)."""

    @property
    def tripId(self) -> str: ...  # noqa: N802 - the payload's field names
    @property
    def event(self) -> str: ...
    @property
    def collaboratorIds(self) -> list[str]: ...  # noqa: N802
    @property
    def message(self) -> str: ...
    @property
    def actorId(self) -> str | None: ...  # noqa: N802
    @property
    def idempotencyKey(self) -> str | None: ...  # noqa: N802
    @property
    def tripTitle(self) -> str | None: ...  # noqa: N802


def doc_id(*parts: str) -> str:
    """A document id from any text: business keys may hold characters ids may not."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Refs:
    """The documents of one business event; each reference made once (a delivery asks for
    each several times, and making one costs more than reading the cache)."""

    db: firestore.Client
    key: str
    _made: dict[tuple[str, str], DocumentReference] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, payload: TripEvent, db: firestore.Client, message_id: str) -> "Refs":
        return cls(db, payload.idempotencyKey or message_id)

    @classmethod
    def of_event(cls, event: Data, db: firestore.Client) -> "Refs":
        """The documents of a recorded event (it keeps the key it was filed under)."""
        return cls(db, event.get("idempotencyKey") or event["messageId"])

    @property
    def event(self) -> DocumentReference:
        return self._ref("event", "", lambda: self.db.collection(EVENTS_COLLECTION).document(doc_id(self.key)))

    def user(self, uid: str) -> DocumentReference:
        return self._ref("user", uid, lambda: self.db.collection("users").document(uid))

    def trip(self, trip_id: str) -> DocumentReference:
        return self._ref("trip", trip_id, lambda: self.db.collection("trips").document(trip_id))

    def inbox(self, uid: str) -> DocumentReference:
        return self._ref(
            "inbox", uid, lambda: self.user(uid).collection("notifications").document(doc_id(self.key, uid))
        )

    def _ref(self, kind: str, uid: str, make: Callable[[], DocumentReference]) -> DocumentReference:
        ref = self._made.get((kind, uid))
        if ref is None:
            ref = self._made[(kind, uid)] = make()
        return ref


def candidates_of(payload: TripEvent) -> list[str]:
    return [uid for uid in payload.collaboratorIds if uid != payload.actorId]


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
    trip: Data = field(default_factory=dict)
    """`trips/{tripId}`, read only for an email's wording (its `title`), and only when the
    event carries no title of its own."""
    actor: Data = field(default_factory=dict)
    """`users/{actorId}`, read only for an email's wording (its `displayName`)."""

    def pending(self, channels: Channels) -> int:
        """Deliveries still to attempt on the channels that are on (a channel turned off since
        leaves its deliveries pending, and the event done)."""
        emails = sum(1 for r in self.recipients if is_pending(r.email)) if channels.email else 0
        return emails + int(channels.webhook is not None and is_pending(self.event.get("webhook")))


def make_plan(payload: TripEvent, ctx: StepContext) -> Plan:
    refs = Refs.of(payload, ctx.db, ctx.message_id)
    stored = ctx.document(refs.event)
    if stored is not None:
        uids = [str(uid) for uid in stored.get("recipientIds") or []]
        users = users_of(ctx, refs, uids)
        event, is_new = stored, False
    else:
        users = users_of(ctx, refs, candidates_of(payload))
        uids = [uid for uid in candidates_of(payload) if not muted(users[uid], payload)]
        skipped = len(payload.collaboratorIds) - len(uids)
        event = new_event(payload, ctx.message_id, uids, skipped=skipped, expire_at=retention_end(ctx))
        is_new = True
    inboxes = ctx.reads.documents([refs.inbox(uid) for uid in uids])
    recipients = [Recipient(uid, users[uid], refs.inbox(uid), inboxes[refs.inbox(uid).path]) for uid in uids]
    plan = Plan(refs, event, is_new, recipients)
    if email_on(ctx.settings):
        plan.trip, plan.actor = wording_of(ctx, refs, event)
    return plan


def email_on(settings: Settings) -> bool:
    return bool(settings.smtp_url and settings.email_from)


def wording_refs(refs: Refs, trip_id: str, trip_title: str | None, actor_id: str | None) -> list[DocumentReference]:
    """The documents an email's wording needs: the trip's (for its title, unless the event
    has one) and the actor's (for their name). They are prefetched with the users, in the
    same batched read: no round trip of their own."""
    trip = [] if trip_title else [refs.trip(trip_id)]
    return trip + ([refs.user(actor_id)] if actor_id else [])


def wording_of(ctx: StepContext, refs: Refs, event: Data) -> tuple[Data, Data]:
    """The trip's and the actor's documents for the event's email, or `{}` for each one
    that is not needed or does not exist."""
    trip_id, actor_id = str(event["tripId"]), event.get("actorId")
    found = known_or_read(ctx, wording_refs(refs, trip_id, event.get("tripTitle"), actor_id))
    actor = found.get(refs.user(str(actor_id)).path, {}) if actor_id else {}
    return found.get(refs.trip(trip_id).path, {}), actor


def users_of(ctx: StepContext, refs: Refs, uids: Sequence[str]) -> dict[str, Data]:
    """The users' documents by uid; see `known_or_read`."""
    found = known_or_read(ctx, [refs.user(uid) for uid in uids])
    return {uid: found[refs.user(uid).path] for uid in uids}


def known_or_read(ctx: StepContext, refs: Sequence[DocumentReference]) -> dict[str, Data]:
    """Documents by path (`{}` for a missing one), as prefetched; those a stored event names
    beyond what the payload led to prefetch (a replay with another list, say) are read in
    the transaction."""
    unknown = [ref for ref in refs if ref.path not in ctx.prefetched]
    extra = ctx.reads.documents(unknown) if unknown else {}
    found = {**ctx.prefetched, **extra}
    return {ref.path: found.get(ref.path) or {} for ref in refs}


def preferences(user: Data) -> Data:
    """`notificationPreferences`, or `{}` when it is not a map. Users' documents are the
    app's data, not ours: every field read from them is checked for its type, and a value
    of another type counts as absent, so one user's odd document never fails the event
    for everyone."""
    prefs = user.get("notificationPreferences")
    return prefs if isinstance(prefs, dict) else {}


def strings_in(value: object) -> list[str]:
    """The strings of a list field (`mutedTrips`, `mutedEvents`); anything but a list
    holds none. A string is not searched: `"trip-10"` does not hold `"trip-1"`."""
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def muted(user: Data, payload: TripEvent) -> bool:
    """The user muted the trip or the event: its id is one of the strings of the list."""
    prefs = preferences(user)
    trips, events = strings_in(prefs.get("mutedTrips")), strings_in(prefs.get("mutedEvents"))
    return payload.tripId in trips or payload.event in events


def retention_end(ctx: StepContext) -> datetime | None:
    """When a new event and its inbox entries expire (NOTIFICATION_RETENTION_DAYS), if ever."""
    days = ctx.settings.notification_retention_days
    return ctx.attempt.now + timedelta(days=days) if days else None


def new_event(
    payload: TripEvent, message_id: str, recipients: list[str], *, skipped: int, expire_at: datetime | None
) -> Data:
    kept = {"expireAt": expire_at} if expire_at else {}
    return {
        **kept,
        "tripId": payload.tripId,
        "event": payload.event,
        "message": payload.message,
        "actorId": payload.actorId,
        "idempotencyKey": payload.idempotencyKey,
        "tripTitle": payload.tripTitle,
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
    """An entry expires with its event, when the event expires."""
    kept = {"expireAt": event["expireAt"]} if event.get("expireAt") else {}
    return {
        **kept,
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
    problem = address_problem(user)
    return channel_state("skipped", problem) if problem else channel_state("pending", None)


def address_problem(user: Data) -> str | None:
    """Why a user's email cannot be sent (`no_address`: missing, null or empty;
    `invalid_address`: anything else that is not one bare address, a number or a list
    included), or None. The app writes the address: one that could break or add a header
    is never used."""
    address = user.get("email")
    if address is None or address == "":
        return "no_address"
    return None if deliverable_address(address) else "invalid_address"
