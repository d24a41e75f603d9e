"""notify-collaborators against the real emulator, a real SMTP server and a real HTTP
receiver."""

import contextlib
import itertools
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from flask.testing import FlaskClient
from google.cloud import firestore
from standardwebhooks import Webhook

from handlers import notify_collaborators
from qjobs.channels import email
from qjobs.devtools.emulator import free_port
from qjobs.trip_events import doc_id, make_plan
from tests.receivers import SmtpServer, WebhookReceiver, self_signed_certificate, start_smtp, start_tls_smtp
from tests.support import (
    NOTIFY,
    AppFactory,
    Deliver,
    all_at_once,
    delivery_log_lines,
    encode,
    error_of,
    in_background,
    new_message_id,
    qstash_headers,
    start_server,
    wait_until,
)

WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SENDER = "Trips <notifications@trips.example.test>"


def payload(**fields: Any) -> dict[str, Any]:
    return {
        "tripId": "trip-1",
        "event": "trip_updated",
        "collaboratorIds": ["u1", "u2"],
        "message": "Dates moved to June",
        **fields,
    }


def inbox(db: firestore.Client, uid: str) -> list[dict[str, Any]]:
    return [doc.to_dict() or {} for doc in db.collection("users", uid, "notifications").stream()]


def entry(db: firestore.Client, key: str, uid: str) -> dict[str, Any]:
    return db.collection("users", uid, "notifications").document(doc_id(key, uid)).get().to_dict() or {}


def add_user(db: firestore.Client, uid: str, **fields: Any) -> None:
    db.collection("users").document(uid).set(fields)


# ---------------------------------------------------------------- inbox only


def test_recipients_exclude_the_actor_and_those_who_muted(deliver: Deliver, db: firestore.Client) -> None:
    add_user(db, "u2", notificationPreferences={"mutedTrips": ["trip-1"]})
    add_user(db, "u3", notificationPreferences={"mutedEvents": ["trip_updated"]})
    add_user(db, "u4", notificationPreferences={"mutedTrips": ["trip-9"], "mutedEvents": ["trip_deleted"]})
    message_id = new_message_id()
    ids = ["u1", "u2", "u3", "u4", "u5", "u4"]
    response = deliver(NOTIFY, payload(collaboratorIds=ids, actorId="u1"), message_id=message_id)
    assert response.json == {
        "ok": True,
        "messageId": message_id,
        "duplicate": False,
        "notified": 2,
        "skipped": 3,
        "email": "disabled",
        "webhook": "disabled",
    }
    assert [uid for uid in ("u1", "u2", "u3", "u4", "u5") if inbox(db, uid)] == ["u4", "u5"]
    stored = entry(db, message_id, "u5")
    assert {name: stored[name] for name in ("tripId", "event", "message", "actorId", "read", "messageId")} == {
        "tripId": "trip-1",
        "event": "trip_updated",
        "message": "Dates moved to June",
        "actorId": "u1",
        "read": False,
        "messageId": message_id,
    }
    assert stored["idempotencyKey"] is None and stored["createdAt"] is not None
    assert stored["delivery"]["email"]["status"] == "skipped" and stored["delivery"]["email"]["reason"] == "disabled"


ODD_VALUES = [5, True, 1.5, None, b"trip-1", {"trip-1": True, "trip_updated": True}]


@pytest.mark.parametrize(
    ("trips", "events"),
    [
        *((odd, odd) for odd in ODD_VALUES),
        ("trip-10,trip-2", "trip_updated_not"),
        (["trip-10", 5, None, {"id": "trip-1"}], ["trip_updated_not", True]),
    ],
    ids=["int", "bool", "float", "null", "bytes", "map", "strings", "lists-without-a-match"],
)
def test_a_mute_setting_that_is_not_a_list_of_strings_mutes_nothing(
    deliver: Deliver, db: firestore.Client, trips: Any, events: Any
) -> None:
    """The app writes users' documents: a mute list is a list of strings matched exactly;
    anything else mutes nothing (a string is not searched for the id), and one user's odd
    settings never keep the others from being notified."""
    add_user(db, "u1", notificationPreferences={"mutedTrips": trips, "mutedEvents": events})
    add_user(db, "u3", notificationPreferences={"mutedTrips": [5, "trip-1", None]})
    response = deliver(NOTIFY, payload(collaboratorIds=["u1", "u2", "u3"]))
    assert response.status_code == 200, response.json
    assert response.json is not None and (response.json["notified"], response.json["skipped"]) == (2, 1)
    assert [uid for uid in ("u1", "u2", "u3") if inbox(db, uid)] == ["u1", "u2"]


def test_without_channels_the_job_is_one_atomic_commit(deliver: Deliver, db: firestore.Client) -> None:
    message_id = new_message_id()
    assert deliver(NOTIFY, payload(), message_id=message_id).status_code == 200
    ledger = db.collection("jobs").document(message_id).get()
    assert ledger.get("status") == "succeeded" and ledger.get("attempts") == 1
    assert ledger.get("job") == "notify-collaborators" and ledger.get("result")["notified"] == 2
    documents = [
        db.collection("users", uid, "notifications").document(doc_id(message_id, uid)).get() for uid in ("u1", "u2")
    ]
    event = db.collection("notificationEvents").document(doc_id(message_id)).get()
    assert {snapshot.update_time for snapshot in [*documents, event]} == {ledger.update_time}


def test_a_duplicate_delivery_writes_nothing_new(deliver: Deliver, db: firestore.Client) -> None:
    message_id = new_message_id()
    first = deliver(NOTIFY, payload(), message_id=message_id)
    before = entry(db, message_id, "u1")
    second = deliver(NOTIFY, payload(), message_id=message_id, retried=1)
    assert second.json == {**(first.json or {}), "duplicate": True}
    assert len(inbox(db, "u1")) == 1 and entry(db, message_id, "u1") == before


def test_a_replay_under_a_new_message_id_with_the_same_key_is_the_same_event(
    deliver: Deliver, db: firestore.Client
) -> None:
    key = "trip-1:update:42"
    first = deliver(NOTIFY, payload(idempotencyKey=key))
    replay = deliver(NOTIFY, payload(idempotencyKey=key, message="Edited text", collaboratorIds=["u1", "u2", "u3"]))
    assert first.status_code == replay.status_code == 200
    assert replay.json is not None and replay.json["notified"] == 2 and replay.json["duplicate"] is False
    assert len(inbox(db, "u1")) == len(inbox(db, "u2")) == 1 and inbox(db, "u3") == []
    assert entry(db, key, "u1")["message"] == "Dates moved to June"
    assert entry(db, key, "u1")["idempotencyKey"] == key


def test_without_a_retention_setting_notifications_are_kept(deliver: Deliver, db: firestore.Client) -> None:
    message_id = new_message_id()
    deliver(NOTIFY, payload(), message_id=message_id)
    event = db.collection("notificationEvents").document(doc_id(message_id)).get().to_dict() or {}
    assert "expireAt" not in event and "expireAt" not in entry(db, message_id, "u1")


def test_notification_retention_gives_the_event_and_its_entries_one_expiry(
    make_client: AppFactory, db: firestore.Client
) -> None:
    client = make_client(NOTIFICATION_RETENTION_DAYS="90")
    message_id, before = new_message_id(), datetime.now(UTC)
    body = encode(payload())
    client.post(NOTIFY, data=body, headers=qstash_headers(NOTIFY, body, message_id=message_id))
    event = db.collection("notificationEvents").document(doc_id(message_id)).get().to_dict() or {}
    expiries = {event["expireAt"], entry(db, message_id, "u1")["expireAt"], entry(db, message_id, "u2")["expireAt"]}
    (expiry,) = expiries
    assert before + timedelta(days=90) <= expiry <= datetime.now(UTC) + timedelta(days=90)


def test_a_hundred_recipients_in_one_job(deliver: Deliver, db: firestore.Client) -> None:
    ids = [f"user-{n:03d}" for n in range(100)]
    response = deliver(NOTIFY, payload(collaboratorIds=ids + ids[:10]))
    assert response.status_code == 200 and response.json is not None and response.json["notified"] == 100
    written = list(db.collection_group("notifications").stream())
    assert len(written) == 100


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("fields", "field", "code"),
    [
        ({"tripId": "trip/1"}, "tripId", "value_error"),
        ({"tripId": ""}, "tripId", "value_error"),
        ({"event": "trip_exploded"}, "event", "literal_error"),
        ({"collaboratorIds": []}, "collaboratorIds", "collaborator_count"),
        ({"collaboratorIds": [f"u{n}" for n in range(101)]}, "collaboratorIds", "collaborator_count"),
        ({"collaboratorIds": ["u1", "bad id"]}, "collaboratorIds.1", "value_error"),
        ({"collaboratorIds": "u1"}, "collaboratorIds", "list_type"),
        ({"message": "   "}, "message", "string_too_short"),
        ({"message": "x" * 2001}, "message", "string_too_long"),
        ({"actorId": "__actor__"}, "actorId", "value_error"),
        ({"idempotencyKey": "short"}, "idempotencyKey", "string_too_short"),
        ({"idempotencyKey": "k" * 201}, "idempotencyKey", "string_too_long"),
        ({"idempotencyKey": "trip-1:share\r\nX-Injected: 1"}, "idempotencyKey", "control_characters"),
        ({"idempotencyKey": "trip-1:share:\u2028seven"}, "idempotencyKey", "control_characters"),
        ({"idempotencyKey": "trip-1:share:\x00seven"}, "idempotencyKey", "control_characters"),
    ],
)
def test_each_rule_is_a_489_that_writes_nothing(
    deliver: Deliver, db: firestore.Client, fields: dict[str, Any], field: str, code: str
) -> None:
    response = deliver(NOTIFY, payload(**fields))
    assert error_of(response)[:2] == (489, "validation_failed")
    assert response.json is not None
    assert [(detail["field"], detail["code"]) for detail in response.json["details"]] == [(field, code)]
    assert list(db.collections()) == []


def test_the_event_error_lists_the_allowed_values(deliver: Deliver, db: firestore.Client) -> None:
    response = deliver(NOTIFY, payload(event="trip_exploded"))
    message = (response.json or {})["details"][0]["message"]
    for event in ("trip_created", "trip_shared", "collaborator_role_changed"):
        assert event in message


def test_a_message_is_trimmed(deliver: Deliver, db: firestore.Client) -> None:
    message_id = new_message_id()
    deliver(NOTIFY, payload(message="  Dates moved  "), message_id=message_id)
    assert entry(db, message_id, "u1")["message"] == "Dates moved"


def test_unknown_fields_are_ignored_and_named_in_the_log(
    deliver: Deliver, make_client: AppFactory, db: firestore.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_client()
    response = deliver(NOTIFY, payload(priority="high", channelHints=["push"]), test_client=client)
    assert response.status_code == 200
    out = capsys.readouterr().out
    assert '"ignoredFields": ["channelHints", "priority"]' in out and '"high"' not in out


# ---------------------------------------------------------------- email


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = start_smtp()
    yield server
    server.stop()


@pytest.fixture
def mail_users(db: firestore.Client) -> None:
    add_user(db, "u1", email="ada@example.test")
    add_user(db, "u2", email="grace@example.test")
    add_user(db, "u3", email="linus@example.test", notificationPreferences={"email": False})
    add_user(db, "u4")


@pytest.fixture
def mail_client(make_client: AppFactory, mail_users: None, smtp: SmtpServer) -> FlaskClient:
    return make_client(
        SMTP_URL=smtp.url, EMAIL_FROM=SENDER, EMAIL_UNSUBSCRIBE_URL="https://trips.example.test/unsubscribe"
    )


def test_emails_carry_the_event_and_deterministic_headers(
    deliver: Deliver, mail_client: FlaskClient, smtp: SmtpServer, db: firestore.Client
) -> None:
    message_id = new_message_id()
    response = deliver(
        NOTIFY, payload(collaboratorIds=["u1", "u2", "u3", "u4"]), message_id=message_id, test_client=mail_client
    )
    assert response.json is not None and response.json["email"] == {"sent": 2, "failed": 0, "skipped": 2}
    (mail,) = smtp.mailbox.to("ada@example.test")
    assert mail["Subject"] == "A trip was updated"
    assert mail["From"] == SENDER
    assert mail["Message-ID"] == f"<{doc_id(message_id, 'u1')}@trips.example.test>"
    assert mail["List-Unsubscribe"] == "<https://trips.example.test/unsubscribe>"
    plain = mail.get_body(("plain",))
    assert plain is not None and "Dates moved to June" in plain.get_content()
    assert smtp.mailbox.to("linus@example.test") == []
    assert len(smtp.mailbox.messages) == 2
    sent = entry(db, message_id, "u1")["delivery"]["email"]
    assert sent["status"] == "sent" and sent["attempts"] == 1 and sent["sentAt"] is not None
    assert entry(db, message_id, "u3")["delivery"]["email"]["reason"] == "opted_out"
    assert entry(db, message_id, "u4")["delivery"]["email"]["reason"] == "no_address"


def test_a_collaborator_who_muted_the_event_gets_no_entry_and_no_email(
    deliver: Deliver, mail_client: FlaskClient, smtp: SmtpServer, db: firestore.Client
) -> None:
    add_user(db, "u2", email="grace@example.test", notificationPreferences={"mutedEvents": ["trip_shared"]})
    shared = deliver(NOTIFY, payload(event="trip_shared"), test_client=mail_client)
    assert shared.json is not None and (shared.json["notified"], shared.json["skipped"]) == (1, 1)
    assert smtp.mailbox.to("grace@example.test") == [] and inbox(db, "u2") == []
    assert len(smtp.mailbox.to("ada@example.test")) == 1
    updated = deliver(NOTIFY, payload(event="trip_updated"), test_client=mail_client)
    assert updated.json is not None and (updated.json["notified"], updated.json["skipped"]) == (2, 0)
    assert len(smtp.mailbox.to("grace@example.test")) == 1 and len(inbox(db, "u2")) == 1


def test_a_temporary_refusal_fails_the_job_and_the_retry_sends_only_what_is_left(
    deliver: Deliver, mail_client: FlaskClient, smtp: SmtpServer, db: firestore.Client
) -> None:
    smtp.mailbox.refuse["grace@example.test"] = "450 4.2.1 Mailbox busy, try later"
    message_id = new_message_id()
    first = deliver(NOTIFY, payload(), message_id=message_id, test_client=mail_client)
    assert error_of(first)[:2] == (500, "job_failed")
    pending = entry(db, message_id, "u2")["delivery"]["email"]
    assert pending["status"] == "pending" and pending["attempts"] == 1 and "450" in pending["lastError"]
    assert entry(db, message_id, "u1")["delivery"]["email"]["status"] == "sent"
    del smtp.mailbox.refuse["grace@example.test"]
    retry = deliver(NOTIFY, payload(), message_id=message_id, retried=1, test_client=mail_client)
    assert retry.status_code == 200
    assert retry.json is not None and retry.json["email"] == {"sent": 2, "failed": 0, "skipped": 0}
    assert len(smtp.mailbox.to("ada@example.test")) == 1 and len(smtp.mailbox.to("grace@example.test")) == 1
    assert len(inbox(db, "u1")) == len(inbox(db, "u2")) == 1
    assert entry(db, message_id, "u2")["delivery"]["email"]["attempts"] == 2


def test_a_permanent_refusal_is_recorded_and_never_retried(
    deliver: Deliver, mail_client: FlaskClient, smtp: SmtpServer, db: firestore.Client
) -> None:
    smtp.mailbox.refuse["grace@example.test"] = "550 5.1.1 No such user"
    key = "trip-1:update:permanent"
    first = deliver(NOTIFY, payload(idempotencyKey=key), test_client=mail_client)
    assert first.status_code == 200
    assert first.json is not None and first.json["email"] == {"sent": 1, "failed": 1, "skipped": 0}
    failed = entry(db, key, "u2")["delivery"]["email"]
    assert failed["status"] == "failed" and "550" in failed["lastError"]
    replay = deliver(NOTIFY, payload(idempotencyKey=key), test_client=mail_client)
    assert replay.status_code == 200 and len(smtp.mailbox.messages) == 1


def test_an_unreachable_smtp_server_fails_the_job(
    deliver: Deliver, make_client: AppFactory, db: firestore.Client
) -> None:
    add_user(db, "u1", email="ada@example.test")
    client = make_client(SMTP_URL=f"smtp://127.0.0.1:{free_port()}", EMAIL_FROM=SENDER, SMTP_TIMEOUT_SECONDS="2")
    message_id = new_message_id()
    assert error_of(deliver(NOTIFY, payload(), message_id=message_id, test_client=client))[:2] == (500, "job_failed")
    assert entry(db, message_id, "u1")["delivery"]["email"]["lastError"] == "connection: ConnectionRefusedError"


def test_an_address_that_cannot_be_a_header_is_skipped_not_a_500(
    deliver: Deliver, mail_client: FlaskClient, smtp: SmtpServer, db: firestore.Client
) -> None:
    """The app writes users' documents: an address that would break the `To` header (or
    add a `Bcc`) is never sent to, and the others still get their email. An address
    holding an RFC 2047 encoded-word (valid by the HTML rule) would be decoded into the
    header as another address, or as a line break."""
    add_user(db, "u2", email="grace@example.test\r\nBcc: eve@example.test")
    add_user(db, "u3", email="Linus <linus@example.test>")
    add_user(db, "u4", email="zoë@example.test")
    add_user(db, "u5", email="=?utf-8?q?eve=40evil.example=3E=2C=3Cx?=@example.test")
    add_user(db, "u6", email="=?utf-8?q?a=0D=0ABcc=3Aeve=40evil.example?=@example.test")
    message_id = new_message_id()
    ids = ["u1", "u2", "u3", "u4", "u5", "u6"]
    response = deliver(NOTIFY, payload(collaboratorIds=ids), message_id=message_id, test_client=mail_client)
    assert response.status_code == 200
    assert response.json is not None and response.json["email"] == {"sent": 1, "failed": 0, "skipped": 5}
    assert [mail["To"] for mail in smtp.mailbox.messages] == ["ada@example.test"]
    for uid in ("u2", "u3", "u4", "u5", "u6"):
        assert entry(db, message_id, uid)["delivery"]["email"]["reason"] == "invalid_address"


def test_odd_values_in_user_and_trip_documents_are_read_as_absent_or_invalid(
    deliver: Deliver, mail_client: FlaskClient, smtp: SmtpServer, db: firestore.Client
) -> None:
    """Every field the job reads from a document the app writes is checked for its type:
    a value of another type counts as absent (a name, a title, a setting) or as an address
    that cannot be used, never as an error that fails everyone's notification."""
    db.collection("trips").document("trip-1").set({"title": ["Lisbon"]})
    add_user(db, "u9", displayName=7)
    add_user(
        db,
        "u1",
        email="ada@example.test",
        displayName={"first": "Ada"},
        notificationPreferences={"email": "false", "mutedTrips": b"trip-1", "mutedEvents": 3},
    )
    add_user(db, "u2", email=5, notificationPreferences="off")
    add_user(db, "u3", email=False, notificationPreferences={"email": 0})
    add_user(db, "u4", email=None)
    add_user(db, "u5", email=["linus@example.test"])
    message_id = new_message_id()
    ids = ["u1", "u2", "u3", "u4", "u5"]
    response = deliver(
        NOTIFY, payload(collaboratorIds=ids, actorId="u9"), message_id=message_id, test_client=mail_client
    )
    assert response.status_code == 200, response.json
    assert response.json is not None and response.json["notified"] == 5
    assert response.json["email"] == {"sent": 1, "failed": 0, "skipped": 4}
    (mail,) = smtp.mailbox.messages
    assert mail["To"] == "ada@example.test" and mail["Subject"] == "A trip was updated"
    reasons = {uid: entry(db, message_id, uid)["delivery"]["email"]["reason"] for uid in ids[1:]}
    assert reasons == {"u2": "invalid_address", "u3": "invalid_address", "u4": "no_address", "u5": "invalid_address"}


# ---------------------------------------------------------------- webhook


def test_a_business_key_that_cannot_be_a_header_is_percent_encoded_in_the_webhook_id(
    deliver: Deliver, make_client: AppFactory, db: firestore.Client, receiver: WebhookReceiver
) -> None:
    """HTTP headers carry visible ASCII only: the key is percent-encoded (`%` too, so that
    two keys never share an id), and the signature covers the id as sent."""
    client = make_client(COLLABORATOR_WEBHOOK_URL=receiver.url, COLLABORATOR_WEBHOOK_SECRET=WEBHOOK_SECRET)
    key = "trip-1:share:\u2708 Lisbon 100%"
    response = deliver(NOTIFY, payload(idempotencyKey=key), test_client=client)
    assert response.status_code == 200 and response.json is not None and response.json["webhook"] == "sent"
    (received,) = receiver.received
    assert received.headers["webhook-id"] == "trip-1:share:%E2%9C%88%20Lisbon%20100%25"
    assert Webhook(WEBHOOK_SECRET).verify(received.body, received.headers)["tripId"] == "trip-1"
    assert entry(db, key, "u1")["idempotencyKey"] == key


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    yield server
    server.stop()


def test_the_webhook_is_signed_the_standard_webhooks_way(
    deliver: Deliver, make_client: AppFactory, db: firestore.Client, receiver: WebhookReceiver
) -> None:
    client = make_client(COLLABORATOR_WEBHOOK_URL=receiver.url, COLLABORATOR_WEBHOOK_SECRET=WEBHOOK_SECRET)
    key = "trip-1:update:hook"
    response = deliver(NOTIFY, payload(idempotencyKey=key, actorId="u9"), test_client=client)
    assert response.json is not None and response.json["webhook"] == "sent"
    (received,) = receiver.received
    body = Webhook(WEBHOOK_SECRET).verify(received.body, received.headers)
    occurred = db.collection("notificationEvents").document(doc_id(key)).get().get("occurredAt")
    assert received.headers["webhook-id"] == key
    assert body == {
        "type": "trip_updated",
        "tripId": "trip-1",
        "recipientIds": ["u1", "u2"],
        "message": "Dates moved to June",
        "actorId": "u9",
        "occurredAt": occurred.isoformat().replace("+00:00", "Z"),
    }


def test_a_receiver_that_is_down_fails_the_job_until_a_retry_gets_through(
    deliver: Deliver, make_client: AppFactory, db: firestore.Client, receiver: WebhookReceiver
) -> None:
    down_url = f"http://127.0.0.1:{free_port()}/hooks"
    message_id = new_message_id()
    down = make_client(COLLABORATOR_WEBHOOK_URL=down_url, COLLABORATOR_WEBHOOK_SECRET=WEBHOOK_SECRET)
    assert error_of(deliver(NOTIFY, payload(), message_id=message_id, test_client=down))[:2] == (500, "job_failed")
    event = db.collection("notificationEvents").document(doc_id(message_id)).get().to_dict() or {}
    assert event["webhook"]["status"] == "pending" and event["webhook"]["attempts"] == 1
    up = make_client(COLLABORATOR_WEBHOOK_URL=receiver.url, COLLABORATOR_WEBHOOK_SECRET=WEBHOOK_SECRET)
    retry = deliver(NOTIFY, payload(), message_id=message_id, retried=1, test_client=up)
    assert retry.json is not None and retry.json["webhook"] == "sent"
    (received,) = receiver.received
    assert received.json()["occurredAt"] == event["occurredAt"].isoformat().replace("+00:00", "Z")
    assert len(inbox(db, "u1")) == 1


def test_a_replay_does_not_send_the_webhook_again(
    deliver: Deliver, make_client: AppFactory, db: firestore.Client, receiver: WebhookReceiver
) -> None:
    client = make_client(COLLABORATOR_WEBHOOK_URL=receiver.url, COLLABORATOR_WEBHOOK_SECRET=WEBHOOK_SECRET)
    key = "trip-1:update:replayed"
    assert deliver(NOTIFY, payload(idempotencyKey=key), test_client=client).status_code == 200
    replay = deliver(NOTIFY, payload(idempotencyKey=key), test_client=client)
    assert replay.json is not None and replay.json["webhook"] == "sent"
    assert len(receiver.received) == 1


def test_a_receiver_refusing_for_good_is_recorded_as_failed(
    deliver: Deliver, make_client: AppFactory, db: firestore.Client, receiver: WebhookReceiver
) -> None:
    receiver.status = 410
    client = make_client(COLLABORATOR_WEBHOOK_URL=receiver.url, COLLABORATOR_WEBHOOK_SECRET=WEBHOOK_SECRET)
    response = deliver(NOTIFY, payload(), test_client=client)
    assert response.status_code == 200 and response.json is not None and response.json["webhook"] == "failed"


# ---------------------------------------------------------------- an outage in the log


def service_log(output: str) -> str:
    """The service's own lines: the SMTP server in the test (`mail.log`) logs to the same stream."""
    lines = [line for line in output.splitlines() if line.startswith("{")]
    return "\n".join(line for line in lines if logger_of(line) != "mail.log")


def logger_of(line: str) -> str:
    return str(json.loads(line).get("logging.googleapis.com/labels", {}).get("python_logger"))


@pytest.mark.usefixtures("mail_users")
def test_a_channel_outage_is_logged_with_each_channel_and_its_cause(
    deliver: Deliver,
    make_client: AppFactory,
    smtp: SmtpServer,
    db: firestore.Client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An outage is expected and retried: the line says which channel failed and why, and
    carries no stack trace (there is no bug of ours to find in one), nor any address."""
    client = make_client(
        SMTP_URL=smtp.url,
        EMAIL_FROM=SENDER,
        COLLABORATOR_WEBHOOK_URL=f"http://127.0.0.1:{free_port()}/hooks",
        COLLABORATOR_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    smtp.mailbox.refuse["grace@example.test"] = "450 4.2.1 Mailbox busy, try later"
    message_id = new_message_id()
    capsys.readouterr()
    response = deliver(NOTIFY, payload(), message_id=message_id, test_client=client)
    assert error_of(response)[:2] == (500, "job_failed")
    output = service_log(capsys.readouterr().out)
    (line,) = delivery_log_lines(output)
    assert (line["status"], line["outcome"], line["error"]) == (500, "failed", "job_failed")
    assert line["severity"] == "WARNING" and "@type" not in line
    assert line["reason"] == (
        "email: 1 of 2 pending (recipient refused (450)); webhook: connection: ConnectionRefusedError"
    )
    assert "Traceback" not in output and "grace@" not in output and "ada@" not in output
    ledger = db.collection("jobs").document(message_id).get()
    assert ledger.get("lastError") == {"code": "job_failed", "message": line["reason"]}


# ---------------------------------------------------------------- one business event, two messages at once


@pytest.fixture
def in_lockstep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs of the job each finish reading what is stored before either writes: the
    moment a dead-letter replay and its original's retry are most likely to collide."""
    barrier = threading.Barrier(2)
    runs = itertools.count()
    read_what_is_stored = make_plan

    def plan_in_lockstep(payload: Any, ctx: Any) -> Any:
        plan = read_what_is_stored(payload, ctx)
        if next(runs) < barrier.parties:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)
        return plan

    monkeypatch.setattr(notify_collaborators, "make_plan", plan_in_lockstep)


def written_once(snapshot: Any) -> bool:
    return bool(snapshot.exists and snapshot.create_time == snapshot.update_time)


@pytest.mark.usefixtures("in_lockstep")
@pytest.mark.parametrize("muted", [(), ("u1", "u2")], ids=["recipients", "everyone-muted"])
def test_two_messages_of_one_event_at_once_write_the_event_and_each_entry_once(
    deliver: Deliver, client: FlaskClient, db: firestore.Client, muted: tuple[str, ...]
) -> None:
    """Both transactions read the event absent; one commits, the other is aborted and run
    again, and then finds the event. With everyone muted the event record is the only
    write there is."""
    for uid in muted:
        add_user(db, uid, notificationPreferences={"mutedTrips": ["trip-1"]})
    key = "trip-1:update:raced"
    ids = [new_message_id(), new_message_id()]

    def send(n: int) -> Any:
        return deliver(NOTIFY, payload(idempotencyKey=key), message_id=ids[n])

    answers = all_at_once([lambda: send(0), lambda: send(1)])
    assert [answer.status_code for answer in answers] == [200, 200]
    assert [(answer.json or {})["notified"] for answer in answers] == [2 - len(muted)] * 2
    event = db.collection("notificationEvents").document(doc_id(key)).get()
    entries = [db.collection("users", uid, "notifications").document(doc_id(key, uid)).get() for uid in ("u1", "u2")]
    assert written_once(event) and event.get("messageId") in ids
    assert [written_once(entry) for entry in entries] == [not muted] * 2
    assert len(list(db.collection_group("notifications").stream())) == 2 - len(muted)


@pytest.mark.usefixtures("mail_users", "in_lockstep")
def test_two_messages_of_one_event_at_once_send_one_email_each_and_one_webhook(
    deliver: Deliver, smtp: SmtpServer, receiver: WebhookReceiver, make_client: AppFactory, db: firestore.Client
) -> None:
    """The message that commits first delivers (slowly: the SMTP server takes its time);
    the other, run again after its transaction was aborted, finds the deliveries taken and
    is answered 409 until they are done, then finds nothing left to send."""
    client = make_client(
        SMTP_URL=smtp.url,
        EMAIL_FROM=SENDER,
        COLLABORATOR_WEBHOOK_URL=receiver.url,
        COLLABORATOR_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    smtp.mailbox.delay = 0.5
    key = "trip-1:update:raced-mail"
    ids = [new_message_id(), new_message_id()]

    def send(n: int) -> Any:
        return deliver(NOTIFY, payload(idempotencyKey=key), message_id=ids[n], test_client=client)

    answers = all_at_once([lambda: send(0), lambda: send(1)])
    assert sorted(answer.status_code for answer in answers) == [200, 409]
    for waiting in [n for n in (0, 1) if answers[n].status_code == 409]:
        assert error_of(answers[waiting])[:2] == (409, "in_progress") and "Retry-After" in answers[waiting].headers
        answers[waiting] = deliver(
            NOTIFY, payload(idempotencyKey=key), message_id=ids[waiting], retried=1, test_client=client
        )
    for answer in answers:
        assert answer.status_code == 200 and answer.json is not None
        assert answer.json["email"] == {"sent": 2, "failed": 0, "skipped": 0} and answer.json["webhook"] == "sent"
    assert len(smtp.mailbox.to("ada@example.test")) == len(smtp.mailbox.to("grace@example.test")) == 1
    assert len(receiver.received) == 1
    assert len(inbox(db, "u1")) == len(inbox(db, "u2")) == 1
    event = db.collection("notificationEvents").document(doc_id(key)).get()
    assert event.get("deliveringBy") is None


# ---------------------------------------------------------------- a run longer than its lease


def slow_recipients(db: firestore.Client, count: int) -> list[str]:
    uids = [f"slow{n}" for n in range(count)]
    for uid in uids:
        add_user(db, uid, email=f"{uid}@example.test")
    return uids


def emails_each(smtp: SmtpServer, uids: list[str]) -> list[int]:
    return [len(smtp.mailbox.to(f"{uid}@example.test")) for uid in uids]


def test_a_run_that_outlives_its_first_lease_keeps_its_claim_and_sends_each_email_once(
    deliver: Deliver, make_client: AppFactory, smtp: SmtpServer, db: firestore.Client
) -> None:
    """Ten emails at 0.4 s each take twice the 2 s lease. The run commits the outcomes so
    far and renews its claim, and its hold on the event, whenever a third of the lease has
    passed, so QStash's retry and a replay under another message id, arriving after the
    first lease would have run out, are answered 409 while it works, and come back to find
    every email sent."""
    uids = slow_recipients(db, 10)
    smtp.mailbox.delay = 0.4
    client = make_client(SMTP_URL=smtp.url, EMAIL_FROM=SENDER, JOB_LEASE_SECONDS="2")
    key, first, replay = "trip-1:update:slow", new_message_id(), new_message_id()
    body = payload(collaboratorIds=uids, idempotencyKey=key)
    running = in_background(lambda: deliver(NOTIFY, body, message_id=first, test_client=client))
    ledger = db.collection("jobs").document(first)
    wait_until(lambda: ledger.get().exists, "the first delivery claimed its message")
    time.sleep(2.5)
    retry = deliver(NOTIFY, body, message_id=first, retried=1, test_client=client)
    other = deliver(NOTIFY, body, message_id=replay, test_client=client)
    assert error_of(retry)[:2] == (409, "in_progress") and error_of(other)[:2] == (409, "in_progress")
    assert not running.done(), "the first run still works"
    done = running.result(timeout=30)
    assert done.status_code == 200, done.json
    assert done.json is not None and done.json["email"] == {"sent": 10, "failed": 0, "skipped": 0}
    again = deliver(NOTIFY, body, message_id=first, retried=2, test_client=client)
    replayed = deliver(NOTIFY, body, message_id=replay, retried=1, test_client=client)
    assert again.json is not None and again.json["duplicate"] is True
    assert replayed.json is not None and replayed.json["email"]["sent"] == 10
    assert emails_each(smtp, uids) == [1] * 10
    assert db.collection("notificationEvents").document(doc_id(key)).get().get("deliveringBy") is None


def test_a_run_that_lost_its_claim_stops_sending_at_once(
    deliver: Deliver, make_client: AppFactory, smtp: SmtpServer, db: firestore.Client
) -> None:
    """One email alone takes twice the 1 s lease, so the retry takes the message over while
    it is sent; the first run finds its claim lost at the next renewal and sends nothing
    more. The email sent since its last renewal is sent twice (its outcome could not be
    recorded: the gap described in docs/notify-collaborators.md), every other one once."""
    uids = slow_recipients(db, 2)
    smtp.mailbox.delay = 2
    client = make_client(SMTP_URL=smtp.url, EMAIL_FROM=SENDER, JOB_LEASE_SECONDS="1")
    message_id, body = new_message_id(), payload(collaboratorIds=uids)
    stale = in_background(lambda: deliver(NOTIFY, body, message_id=message_id, test_client=client))
    ledger = db.collection("jobs").document(message_id)
    wait_until(lambda: ledger.get().exists, "the first delivery claimed its message")
    time.sleep(1.1)
    retry = deliver(NOTIFY, body, message_id=message_id, retried=1, test_client=client)
    assert retry.status_code == 200 and retry.json is not None and retry.json["email"]["sent"] == 2
    assert error_of(stale.result(timeout=30))[:2] == (409, "claim_lost")
    assert emails_each(smtp, uids) == [2, 1]


def test_sigterm_stops_the_sends_at_the_next_email_and_the_retry_sends_the_rest(
    *,
    deliver: Deliver,
    make_client: AppFactory,
    service_env: dict[str, str],
    smtp: SmtpServer,
    db: firestore.Client,
    tmp_path: Path,
) -> None:
    """The service as in production, sending ten slow emails, gets SIGTERM after two: it
    commits the outcomes so far and gives the message back at once (`503`), long before
    the grace period ends, instead of sending on until the lease is taken from it; the
    retry sends only what is left."""
    uids = slow_recipients(db, 10)
    smtp.mailbox.delay = 0.5
    settings = {"SMTP_URL": smtp.url, "EMAIL_FROM": SENDER}
    server = start_server({**service_env, **settings, "SHUTDOWN_GRACE_SECONDS": "20"}, tmp_path / "server.log")
    try:
        message_id, body = new_message_id(), payload(collaboratorIds=uids)
        encoded = encode(body)
        headers = qstash_headers(NOTIFY, encoded, base_url=server.url, message_id=message_id)
        sending = in_background(lambda: requests.post(server.url + NOTIFY, data=encoded, headers=headers, timeout=60))
        wait_until(lambda: len(smtp.mailbox.messages) >= 2, "two emails sent")
        stopped_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
        assert time.monotonic() - stopped_at < 5, "the sends stopped at the next email, not at the grace period's end"
        assert error_of(sending.result(timeout=30))[:2] == (503, "shutting_down")
    finally:
        server.stop(signal.SIGKILL)
    sent_before = sum(emails_each(smtp, uids))
    recorded = [entry(db, message_id, uid)["delivery"]["email"]["status"] for uid in uids]
    assert 2 <= sent_before < 10 and recorded.count("sent") == sent_before
    event = db.collection("notificationEvents").document(doc_id(message_id)).get()
    assert event.get("deliveringBy") is None, "the message gave its hold on the event back"
    retry = deliver(NOTIFY, body, message_id=message_id, retried=1, test_client=make_client(**settings))
    assert retry.status_code == 200 and retry.json is not None and retry.json["email"]["sent"] == 10
    assert emails_each(smtp, uids) == [1] * 10


# ---------------------------------------------------------------- retries of one's own hold


def test_a_retry_is_not_held_up_by_its_own_delivery_hold(
    deliver: Deliver,
    mail_client: FlaskClient,
    smtp: SmtpServer,
    db: firestore.Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fault while sending (a bug, not a refusal) leaves this message holding the event's
    deliveries until its lease would have ended; its own retry must deliver, not wait out
    that hold with 409 and spend QStash's retries."""
    send = email.Mailer.send
    calls = itertools.count()

    def failing_once(self: email.Mailer, message: email.Email) -> Any:
        if next(calls) == 0:
            raise RuntimeError("a fault in the mailer")
        return send(self, message)

    monkeypatch.setattr(email.Mailer, "send", failing_once)
    message_id = new_message_id()
    first = deliver(NOTIFY, payload(), message_id=message_id, test_client=mail_client)
    assert error_of(first)[:2] == (500, "job_failed")
    held = db.collection("notificationEvents").document(doc_id(message_id)).get().get("deliveringBy")
    assert held["messageId"] == message_id, "the fault left this message's hold in place"
    retry = deliver(NOTIFY, payload(), message_id=message_id, retried=1, test_client=mail_client)
    assert retry.status_code == 200, retry.json
    assert retry.json is not None and retry.json["email"]["sent"] == 2
    assert len(smtp.mailbox.to("ada@example.test")) == len(smtp.mailbox.to("grace@example.test")) == 1


@pytest.mark.parametrize("status", [408, 425, 429, 500, 503])
def test_a_receiver_asking_to_come_back_later_is_retried_not_failed_for_good(
    deliver: Deliver, make_client: AppFactory, db: firestore.Client, receiver: WebhookReceiver, status: int
) -> None:
    receiver.status = status
    client = make_client(COLLABORATOR_WEBHOOK_URL=receiver.url, COLLABORATOR_WEBHOOK_SECRET=WEBHOOK_SECRET)
    message_id = new_message_id()
    first = deliver(NOTIFY, payload(), message_id=message_id, test_client=client)
    assert error_of(first)[:2] == (500, "job_failed")
    event = db.collection("notificationEvents").document(doc_id(message_id)).get().to_dict() or {}
    assert event["webhook"]["status"] == "pending"
    receiver.status = 204
    retry = deliver(NOTIFY, payload(), message_id=message_id, retried=1, test_client=client)
    assert retry.json is not None and retry.json["webhook"] == "sent" and len(receiver.received) == 2


# ---------------------------------------------------------------- the SMTP connection: TLS, login, one per job


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # aiosmtpd's view of implicit TLS
@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_an_smtp_server_speaking_tls_takes_the_login_from_the_url(
    deliver: Deliver, make_client: AppFactory, db: firestore.Client, tmp_path: Path, mode: str
) -> None:
    """`smtp://...?starttls=true` upgrades the connection, `smtps://` speaks TLS from the start;
    either way the server's certificate is verified, and the user and password are read
    URL-decoded from the URL."""
    certificate = self_signed_certificate(tmp_path)
    login = ("ada@trips", "p@ss:w/rd %")
    server = start_tls_smtp(mode, certificate, login)
    try:
        add_user(db, "u1", email="ada@example.test")
        user, password = (quote(part, safe="") for part in login)
        scheme, query = ("smtps", "") if mode == "implicit" else ("smtp", "?starttls=true")
        url = f"{scheme}://{user}:{password}@127.0.0.1:{server.controller.port}{query}"
        client = make_client(SMTP_URL=url, EMAIL_FROM=SENDER, SSL_CERT_FILE=str(certificate[0]))
        response = deliver(NOTIFY, payload(), test_client=client)
        assert response.status_code == 200, response.json
        assert response.json is not None and response.json["email"]["sent"] == 1
        assert [mail["To"] for mail in server.mailbox.messages] == ["ada@example.test"]
        assert server.mailbox.logins == [login]
    finally:
        server.stop()


@pytest.mark.usefixtures("mail_users")
def test_one_smtp_connection_serves_every_recipient_of_a_job(
    deliver: Deliver, mail_client: FlaskClient, smtp: SmtpServer
) -> None:
    response = deliver(NOTIFY, payload(collaboratorIds=["u1", "u2"]), test_client=mail_client)
    assert response.json is not None and response.json["email"]["sent"] == 2
    assert len(smtp.mailbox.messages) == 2 and len(smtp.mailbox.connections) == 1


# ---------------------------------------------------------------- a channel that never answers


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """The port of a socket that takes connections (into its backlog) and never answers."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(16)
        yield int(listening.getsockname()[1])


@pytest.mark.parametrize("channel", ["email", "webhook"])
def test_a_channel_that_never_answers_fails_the_attempt_within_its_timeout(
    deliver: Deliver, make_client: AppFactory, db: firestore.Client, channel: str
) -> None:
    """`SMTP_TIMEOUT_SECONDS` and `WEBHOOK_TIMEOUT_SECONDS` bound a send: the delivery stays
    pending, the job answers `500` naming the cause, and the ledger and the log say the same."""
    add_user(db, "u1", email="ada@example.test")
    with silent_server() as port:
        if channel == "email":
            settings = {"SMTP_URL": f"smtp://127.0.0.1:{port}", "EMAIL_FROM": SENDER, "SMTP_TIMEOUT_SECONDS": "1"}
        else:
            settings = {
                "COLLABORATOR_WEBHOOK_URL": f"http://127.0.0.1:{port}/hooks",
                "COLLABORATOR_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "WEBHOOK_TIMEOUT_SECONDS": "1",
            }
        client = make_client(**settings)
        message_id = new_message_id()
        started = time.monotonic()
        response = deliver(NOTIFY, payload(collaboratorIds=["u1"]), message_id=message_id, test_client=client)
        assert time.monotonic() - started < 5
    assert error_of(response)[:2] == (500, "job_failed")
    if channel == "email":
        state = entry(db, message_id, "u1")["delivery"]["email"]
        cause = f"email: 1 of 1 pending ({state['lastError']})"
    else:
        state = db.collection("notificationEvents").document(doc_id(message_id)).get().get("webhook")
        cause = f"webhook: {state['lastError']}"
    assert state["status"] == "pending" and state["lastError"].startswith("connection: ")
    assert response.json is not None and cause in response.json["message"]
    assert db.collection("jobs").document(message_id).get().get("lastError") == {"code": "job_failed", "message": cause}


# ---------------------------------------------------------------- the payload's limits, both sides


@pytest.mark.parametrize(
    "fields",
    [
        {"message": "  " + "x" * 2000 + "\n"},
        {"tripTitle": " " + "t" * 200 + " "},
        {"idempotencyKey": "k" * 8},
        {"idempotencyKey": "\u2708" * 200},
        {"collaboratorIds": [f"u{n}" for n in range(100)] + ["u0"]},
    ],
    ids=["message-2000-after-trimming", "title-200-after-trimming", "key-8", "key-200-any-unicode", "100-distinct"],
)
def test_each_limit_itself_is_accepted(deliver: Deliver, db: firestore.Client, fields: dict[str, Any]) -> None:
    response = deliver(NOTIFY, payload(**fields))
    assert response.status_code == 200, response.json


@pytest.mark.parametrize(
    ("fields", "field", "code"),
    [
        ({"tripTitle": "t" * 201}, "tripTitle", "string_too_long"),
        ({"tripTitle": "   "}, "tripTitle", "string_too_short"),
        ({"tripTitle": "Lisbon\x7f"}, "tripTitle", "control_characters"),
        ({"tripTitle": "Lisbon\u2029June"}, "tripTitle", "control_characters"),
        ({"idempotencyKey": "trip-1:share:\x7f"}, "idempotencyKey", "control_characters"),
        ({"idempotencyKey": "trip-1:share:\x85"}, "idempotencyKey", "control_characters"),
        ({"idempotencyKey": "trip-1:share:\u2029"}, "idempotencyKey", "control_characters"),
        ({"idempotencyKey": "k" * 7}, "idempotencyKey", "string_too_short"),
    ],
    ids=["title-201", "title-blank", "title-DEL", "title-U+2029", "key-DEL", "key-C1", "key-U+2029", "key-7"],
)
def test_one_past_each_limit_is_refused(
    deliver: Deliver, db: firestore.Client, fields: dict[str, Any], field: str, code: str
) -> None:
    response = deliver(NOTIFY, payload(**fields))
    assert error_of(response)[:2] == (489, "validation_failed")
    assert response.json is not None
    assert [(detail["field"], detail["code"]) for detail in response.json["details"]] == [(field, code)]
    assert list(db.collections()) == []


def test_the_log_names_at_most_20_ignored_fields_alphabetically_each_cut_to_64_characters(
    deliver: Deliver, make_client: AppFactory, db: firestore.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    """A producer's extra fields are named in the log, never with their values, and a body
    with many or long names cannot make the line grow without bound."""
    client = make_client()
    extra = {f"field{n:02d}": n for n in range(24, -1, -1)} | {"z" * 100: "long"}
    capsys.readouterr()
    assert deliver(NOTIFY, payload(**extra), test_client=client).status_code == 200
    (line,) = delivery_log_lines(capsys.readouterr().out)
    assert line["ignoredFields"] == [f"field{n:02d}" for n in range(20)]
    deliver(NOTIFY, payload(**{"a" * 100: 1, "b": 2}), test_client=client)
    (line,) = delivery_log_lines(capsys.readouterr().out)
    assert line["ignoredFields"] == ["a" * 64, "b"]
