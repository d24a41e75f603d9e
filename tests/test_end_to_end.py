"""The whole loop: the official SDKs publish to the local broker, which delivers (signed,
retried, flow-controlled, dead-lettered) to the service running as a real server process,
which works on the Firestore emulator. Delays are scaled by SCALE."""

import itertools
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from google.cloud import firestore
from qstash.message import PublishResponse

from qjobs.devtools.broker import DEV_TOKEN
from qjobs.publish import publish_memory_sync, publish_notify_collaborators
from qjobs.trip_events import doc_id
from tests.loop import SCALE, Loop
from tests.support import (
    ROOT,
    encode,
    qstash_headers,
    wait_until,
)

pytestmark = [pytest.mark.processes, pytest.mark.timeout(90), pytest.mark.usefixtures("mailbox_emptied")]

SLACK = 0.5
NODE_PROJECT = ROOT / "tests" / "js"


def notify(**fields: Any) -> dict[str, Any]:
    return {"tripId": "trip-1", "event": "trip_updated", "collaboratorIds": ["u1", "u2"], "message": "Moved", **fields}


def add_conversation(db: firestore.Client, conversation: str, count: int, user: str = "u1") -> None:
    db.collection("conversations").document(conversation).set({"userId": user})
    start = datetime(2026, 5, 1, tzinfo=UTC)
    batch = db.batch()
    for n in range(count):
        ref = db.collection("conversations", conversation, "messages").document(f"m{n:05d}")
        content = ["I'm vegan.", "Book me an aisle seat.", "We love museums."][n % 3]
        batch.set(ref, {"role": "user", "content": content, "createdAt": start + timedelta(minutes=n)})
    batch.commit()


def ledger(db: firestore.Client, message_id: str) -> dict[str, Any]:
    return db.collection("jobs").document(message_id).get().to_dict() or {}


def test_both_jobs_published_through_the_broker_succeed(loop: Loop, db: firestore.Client) -> None:
    add_conversation(db, "c1", 9)
    sent = publish_notify_collaborators(notify(), publisher=loop.publisher)
    synced = publish_memory_sync(
        {"userId": "u1", "conversationId": "c1", "syncType": "incremental"}, publisher=loop.publisher
    )
    loop.wait(sent.message_id, synced.message_id)
    assert ledger(db, sent.message_id)["status"] == ledger(db, synced.message_id)["status"] == "succeeded"
    assert len(list(db.collection("users/u2/notifications").stream())) == 1
    assert {doc.id for doc in db.collection("users/u1/preferences").stream()} >= {"dietary", "seat", "interests"}


def test_a_transient_failure_is_retried_on_the_products_backoff_and_completes_once(
    loop: Loop, db: firestore.Client
) -> None:
    db.collection("users").document("u1").set({"email": "ada@example.test"})
    db.collection("users").document("u2").set({"email": "grace@example.test"})
    loop.smtp.mailbox.refuse_times["grace@example.test"] = 2
    sent = publish_notify_collaborators(notify(), publisher=loop.publisher)
    loop.wait(sent.message_id)
    first, second, third = loop.starts(sent.message_id)
    assert 10 * SCALE <= second - first < 10 * SCALE + SLACK, "min(300000, 10000 * pow(2, retried)) for retried 0"
    assert 20 * SCALE <= third - second < 20 * SCALE + SLACK, "... and for retried 1"
    assert len(loop.smtp.mailbox.to("ada@example.test")) == len(loop.smtp.mailbox.to("grace@example.test")) == 1
    entry = ledger(db, sent.message_id)
    assert entry["status"] == "succeeded" and entry["attempts"] == 3 and entry["result"]["email"]["sent"] == 2


def test_a_validation_error_is_attempted_once_dead_lettered_and_recorded(loop: Loop, db: firestore.Client) -> None:
    bad = loop.publish_raw(
        "/api/jobs/notify-collaborators",
        notify(event="trip_exploded"),
        retries=3,
        failure_callback=loop.server.url + "/api/jobs/failed",
    )
    wait_until(lambda: db.collection("deadLetters").document(bad).get().exists, "the failure callback's record")
    assert len(loop.starts(bad)) == 1
    record = db.collection("deadLetters").document(bad).get().to_dict() or {}
    assert (record["job"], record["status"], record["retried"], record["maxRetries"]) == (
        "notify-collaborators",
        489,
        0,
        3,
    )
    assert "validation_failed" in record["answer"]
    assert not db.collection("jobs").document(bad).get().exists, "refused before the ledger"


def test_republishing_a_dead_lettered_body_completes_it_without_repeating_effects(
    loop: Loop, db: firestore.Client
) -> None:
    db.collection("users").document("u1").set({"email": "ada@example.test"})
    db.collection("users").document("u2").set({"email": "grace@example.test"})
    loop.smtp.mailbox.refuse["grace@example.test"] = "450 4.2.1 Mailbox busy, try later"
    sent = publish_notify_collaborators(notify(), publisher=loop.publisher)
    wait_until(lambda: db.collection("deadLetters").document(sent.message_id).get().exists, "dead-lettered")
    assert len(loop.starts(sent.message_id)) == 4, "the first attempt and three retries"
    del loop.smtp.mailbox.refuse["grace@example.test"]
    (letter,) = loop.qstash.dlq.list(filter={"message_id": sent.message_id}).messages
    replay = loop.qstash.message.publish(url=letter.url, body=letter.body, content_type="application/json")
    assert isinstance(replay, PublishResponse) and replay.message_id != sent.message_id
    loop.wait(replay.message_id)
    assert ledger(db, replay.message_id)["status"] == "succeeded"
    assert len(loop.smtp.mailbox.to("ada@example.test")) == len(loop.smtp.mailbox.to("grace@example.test")) == 1
    key = str(sent.idempotency_key)
    assert [len(list(db.collection("users", uid, "notifications").stream())) for uid in ("u1", "u2")] == [1, 1]
    assert (
        db.collection("users/u2/notifications").document(doc_id(key, "u2")).get().get("delivery")["email"]["status"]
        == "sent"
    )


def test_one_deduplication_id_published_twice_delivers_once(loop: Loop, db: firestore.Client) -> None:
    first = publish_notify_collaborators(notify(idempotencyKey="trip-1:update:dedup"), publisher=loop.publisher)
    again = publish_notify_collaborators(notify(idempotencyKey="trip-1:update:dedup"), publisher=loop.publisher)
    assert (first.deduplicated, again.deduplicated, again.message_id) == (False, True, first.message_id)
    loop.wait(first.message_id)
    assert len(loop.starts(first.message_id)) == 1 and len(list(db.collection("jobs").stream())) == 1


def test_two_memory_syncs_of_one_conversation_never_overlap(loop: Loop, db: firestore.Client) -> None:
    add_conversation(db, "c-busy", 150)
    payload = {"userId": "u1", "conversationId": "c-busy", "syncType": "full"}
    sent = [publish_memory_sync(payload, publisher=loop.publisher) for _ in range(3)]
    loop.wait(*(published.message_id for published in sent))
    ids = {published.message_id for published in sent}
    runs = sorted((a.started, a.ended) for a in loop.broker.broker.attempts if a.message_id in ids)
    assert len(runs) == 3
    assert all(later_start >= earlier_end for (_, earlier_end), (later_start, _) in itertools.pairwise(runs))
    assert all(ledger(db, message_id)["status"] == "succeeded" for message_id in ids)


def test_a_forged_delivery_straight_to_the_service_is_refused(loop: Loop, db: firestore.Client) -> None:
    body = encode(notify())
    url = loop.server.url + "/api/jobs/notify-collaborators"
    forged = qstash_headers(
        "/api/jobs/notify-collaborators", body, key="sig_notTheBrokersKeyNotTheBrokersKey00", base_url=loop.server.url
    )
    unsigned = {name: value for name, value in forged.items() if name != "Upstash-Signature"}
    answers = [requests.post(url, data=body, headers=headers, timeout=30) for headers in (forged, unsigned)]
    assert [(answer.status_code, answer.json()["error"]) for answer in answers] == [
        (401, "invalid_signature"),
        (401, "missing_signature"),
    ]
    assert list(db.collection("jobs").stream()) == []


def test_the_javascript_sdk_publishes_through_the_broker(loop: Loop, db: firestore.Client) -> None:
    add_conversation(db, "c-js", 3)
    env = {**os.environ, "QSTASH_URL": loop.broker.url, "QSTASH_TOKEN": DEV_TOKEN, "JOBS_BASE_URL": loop.server.url}
    published = subprocess.run(
        ["node", "publish.mjs"], cwd=NODE_PROJECT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    answers = {line["job"]: line["messageId"] for line in map(json.loads, published.stdout.splitlines())}
    loop.wait(*answers.values())
    assert {job: ledger(db, message_id)["status"] for job, message_id in answers.items()} == {
        "notify-collaborators": "succeeded",
        "memory-sync": "succeeded",
    }
    synced = loop.broker.broker.messages[answers["memory-sync"]]
    assert synced.flow is not None and synced.flow.parallelism == 1 and synced.label == "memory-sync"
    assert synced.retry_delay == "min(600000, 30000 * pow(2, retried))" and synced.timeout == 300
