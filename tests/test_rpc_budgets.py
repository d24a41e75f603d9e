"""Firestore round trips per delivery, counted where the client library makes them: each
one is a network round trip in production, so the count is part of the design
(docs/architecture.md walks the path RPC by RPC). Each test asserts the exact calls, and
that their number is the one docs/performance.md's table states (the one place the docs
give it): transactions begin with their first read, and a job that prefetches nothing
skips the plain read on a first delivery."""

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from google.cloud import firestore

from qjobs.devtools.rpcs import RpcLog, counting_rpcs
from qjobs.memory.pages import EXTRACTOR
from tests.receivers import WebhookReceiver, start_smtp
from tests.support import MEMORY, NOTIFY, ROOT, AppFactory, Deliver, new_message_id

RECIPIENTS = [f"u{n}" for n in range(5)]
STATEMENTS = [
    "I'm vegan and I fly out of Boston Logan (BOS).",
    "Book me an aisle seat.",
    "Keep it under $2,000 for the whole trip.",
    "We love museums and hiking.",
    "Let's go with the apartment in Alfama.",
]


def documented_round_trips(delivery: str) -> str:
    """The "round trips" cell of docs/performance.md's table for `delivery`."""
    table = (ROOT / "docs" / "performance.md").read_text().split("## Round trips per delivery", 1)[1]
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] == delivery:
            return cells[1]
    raise AssertionError(f"docs/performance.md has no round-trip row for {delivery!r}")


def documented(delivery: str) -> int:
    return int(documented_round_trips(delivery))


def notify_payload() -> dict[str, Any]:
    return {"tripId": "trip-1", "event": "trip_updated", "collaboratorIds": RECIPIENTS, "message": "Dates moved"}


@pytest.fixture
def rpcs() -> Iterator[RpcLog]:
    with counting_rpcs() as log:
        yield log


def warm(deliver: Deliver, client: FlaskClient) -> None:
    """The first delivery of a process also makes its Firestore client: not a delivery's cost."""
    deliver(NOTIFY, {**notify_payload(), "tripId": "warm-up"}, test_client=client)


def counted(rpcs: RpcLog, send: Any) -> tuple[Any, dict[str, int]]:
    rpcs.reset()
    response = send()
    return response, dict(rpcs.calls)


def test_a_fresh_notify_without_channels_is_three_round_trips(
    deliver: Deliver, client: FlaskClient, db: firestore.Client, rpcs: RpcLog
) -> None:
    warm(deliver, client)
    response, calls = counted(rpcs, lambda: deliver(NOTIFY, notify_payload()))
    assert response.status_code == 200
    assert calls == {"BatchGetDocuments": 2, "Commit": 1}
    assert sum(calls.values()) == documented("fresh notify-collaborators, inbox only")


@pytest.mark.usefixtures("client")
@pytest.mark.parametrize(("retried", "call"), [(1, "GetDocument"), (0, "BatchGetDocuments")], ids=["retry", "copy"])
def test_a_duplicate_of_a_finished_message_is_one_round_trip(
    deliver: Deliver, rpcs: RpcLog, retried: int, call: str
) -> None:
    """QStash delivers a finished message again mostly as a retry (its answer was lost): the
    entry alone, by a unary read. A copy on its first attempt reads the users with it."""
    message_id = new_message_id()
    assert deliver(NOTIFY, notify_payload(), message_id=message_id).status_code == 200
    response, calls = counted(rpcs, lambda: deliver(NOTIFY, notify_payload(), message_id=message_id, retried=retried))
    assert response.json is not None and response.json["duplicate"] is True
    assert calls == {call: 1}
    as_what = "a retry" if retried else "a copy of a first attempt"
    assert sum(calls.values()) == documented(f"a duplicate of a finished message, as {as_what}")


def test_a_retry_of_an_unfinished_message_reads_the_users_after_the_entry(
    deliver: Deliver, client: FlaskClient, rpcs: RpcLog
) -> None:
    warm(deliver, client)
    response, calls = counted(rpcs, lambda: deliver(NOTIFY, notify_payload(), retried=1))
    assert response.status_code == 200
    assert calls == {"GetDocument": 1, "BatchGetDocuments": 2, "Commit": 1}
    assert documented_round_trips("a retry of an unfinished message") == "its first delivery's + 1"
    assert sum(calls.values()) == documented("fresh notify-collaborators, inbox only") + 1


@pytest.fixture
def with_channels(make_client: AppFactory, db: firestore.Client) -> Iterator[FlaskClient]:
    """The app with email (a real SMTP server) and the webhook (a real receiver) on, and
    every recipient with an address."""
    for uid in RECIPIENTS:
        db.collection("users").document(uid).set({"email": f"{uid}@example.test"})
    smtp, receiver = start_smtp(), WebhookReceiver()
    yield make_client(
        SMTP_URL=smtp.url,
        EMAIL_FROM="Trips <trips@example.test>",
        COLLABORATOR_WEBHOOK_URL=receiver.url,
        COLLABORATOR_WEBHOOK_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    )
    smtp.stop()
    receiver.stop()


def test_a_fresh_notify_with_email_and_webhook_is_four_round_trips_and_the_sends(
    deliver: Deliver, with_channels: FlaskClient, rpcs: RpcLog
) -> None:
    client = with_channels
    warm(deliver, client)
    response, calls = counted(rpcs, lambda: deliver(NOTIFY, notify_payload(), test_client=client))
    assert response.json is not None and response.json["email"]["sent"] == 5 and response.json["webhook"] == "sent"
    assert calls == {"BatchGetDocuments": 2, "Commit": 2}
    assert sum(calls.values()) == documented("fresh notify-collaborators, email and webhook")


def add_messages(db: firestore.Client, conversation: str, first: int, count: int) -> None:
    start = datetime(2026, 5, 1, tzinfo=UTC)
    batch = db.batch()
    for n in range(first, first + count):
        ref = db.collection("conversations", conversation, "messages").document(f"m{n:03d}")
        batch.set(ref, {"role": "user", "content": STATEMENTS[n % 5], "createdAt": start + timedelta(minutes=n)})
    batch.commit()


@pytest.fixture
def synced(deliver: Deliver, client: FlaskClient, db: firestore.Client) -> dict[str, str]:
    """A conversation whose three messages are synced already."""
    db.collection("conversations").document("c1").set({"userId": "u1"})
    add_messages(db, "c1", 0, 3)
    payload = {"userId": "u1", "conversationId": "c1", "syncType": "incremental"}
    assert deliver(MEMORY, payload).status_code == 200
    return payload


def test_a_memory_sync_with_no_new_message_is_three_round_trips(
    deliver: Deliver, synced: dict[str, str], rpcs: RpcLog
) -> None:
    response, calls = counted(rpcs, lambda: deliver(MEMORY, synced))
    assert response.json is not None and response.json["processedMessages"] == 0
    assert calls == {"BatchGetDocuments": 1, "RunQuery": 1, "Commit": 1}
    assert sum(calls.values()) == documented("memory-sync, no new message")


def test_a_memory_sync_of_ten_new_messages_is_four_round_trips_and_one_per_category(
    deliver: Deliver, synced: dict[str, str], db: firestore.Client, rpcs: RpcLog
) -> None:
    add_messages(db, "c1", 3, 10)
    response, calls = counted(rpcs, lambda: deliver(MEMORY, synced))
    assert response.json is not None and response.json["processedMessages"] == 10
    categories = {statement.category for text in STATEMENTS for statement in EXTRACTOR.extract(text)}
    assert len(categories) >= 4, "the messages touch several categories"
    base = re.fullmatch(r"(\d+) \+ 1 per category they touch", documented_round_trips("memory-sync, 10 new messages"))
    assert base is not None and sum(calls.values()) == int(base.group(1)) + len(categories)
    assert calls == {"BatchGetDocuments": 2, "RunQuery": 1 + len(categories), "Commit": 1}


@pytest.mark.parametrize(("recipients", "reads"), [(RECIPIENTS, 2), (RECIPIENTS[:2], 4)], ids=["same", "others"])
def test_more_reads_in_the_transaction_only_for_a_replay_naming_other_recipients(
    deliver: Deliver, client: FlaskClient, rpcs: RpcLog, recipients: list[str], reads: int
) -> None:
    """docs/architecture.md: the transaction reads again only when what its first read found
    names more documents: a stored event whose recipients the payload did not list (their
    user documents, then their inbox entries)."""
    key = f"trip-1:replayed:{len(recipients)}"
    assert deliver(NOTIFY, {**notify_payload(), "idempotencyKey": key}).status_code == 200
    replay = {**notify_payload(), "idempotencyKey": key, "collaboratorIds": recipients}
    response, calls = counted(rpcs, lambda: deliver(NOTIFY, replay))
    assert response.json is not None and response.json["notified"] == len(RECIPIENTS)
    assert calls == {"BatchGetDocuments": reads, "Commit": 1}, calls
