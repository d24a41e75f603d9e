"""`qjobs send`, `publish` and `dlq` through the whole loop: the local broker, the service as
a server process, the emulator and an SMTP server (tests/loop.py)."""

import json
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore

from qjobs.devtools.broker import DEV_TOKEN
from tests.cli import Ran, bad_usage, one_line_error, qjobs
from tests.loop import Loop
from tests.support import CURRENT_KEY, NOTIFY, NOTIFY_PAYLOAD, wait_until

pytestmark = [pytest.mark.processes, pytest.mark.timeout(90), pytest.mark.usefixtures("mailbox_emptied")]
Capture = pytest.CaptureFixture[str]
NOTIFY_FLAGS = ["--trip-id=trip-1", "--event=trip_updated", "--collaborator-ids", "u1", "u2", "--message=Moved"]


@pytest.fixture(autouse=True)
def operator_environment(loop: Loop, monkeypatch: pytest.MonkeyPatch) -> None:
    """What an operator exports: the broker as QStash, the service's base URL and its key."""
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", CURRENT_KEY)
    monkeypatch.setenv("QSTASH_URL", loop.broker.url)
    monkeypatch.setenv("QSTASH_TOKEN", DEV_TOKEN)
    monkeypatch.setenv("JOBS_BASE_URL", loop.server.url)


def ok(ran: Ran) -> Ran:
    assert ran.status == 0, ran
    return ran


def status_of(db: firestore.Client, message_id: str) -> Any:
    entry = db.collection("jobs").document(message_id).get()
    return entry.get("status") if entry.exists else None


# --- send ------------------------------------------------------------------------------


def test_send_signs_like_qstash_and_a_copy_is_a_duplicate(
    loop: Loop, db: firestore.Client, capsys: Capture, tmp_path: Path
) -> None:
    body = tmp_path / "notify.json"
    body.write_text(json.dumps(NOTIFY_PAYLOAD))
    first = ok(qjobs(capsys, "send", NOTIFY, "--body", str(body), "--json")).json()
    assert first["status"] == 200 and first["answer"]["duplicate"] is False and first["answer"]["notified"] == 2
    again = qjobs(capsys, "send", NOTIFY, "--body", "-", "--message-id", first["messageId"], stdin=body.read_text())
    status_line, answer = again.out.splitlines()
    assert (again.status, status_line) == (0, f"200 {first['messageId']}")
    assert json.loads(answer)["duplicate"] is True
    assert len(list(db.collection("users/u2/notifications").stream())) == 1


def test_send_reports_a_refusal_with_status_1_and_prints_the_answer(
    loop: Loop, db: firestore.Client, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = qjobs(capsys, "send", NOTIFY, "--body", '{"tripId": "trip-1"}')
    assert refused.status == 1 and refused.out.startswith("489 msg_") and "validation_failed" in refused.out
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", "sig_notTheServicesKeyNotTheServices00")
    forged = qjobs(capsys, "send", NOTIFY, "--body", json.dumps(NOTIFY_PAYLOAD))
    assert forged.status == 1 and forged.out.startswith("401 ") and "invalid_signature" in forged.out
    assert list(db.collection("jobs").stream()) == []


def test_send_to_a_service_that_does_not_answer_fails_in_one_line(capsys: Capture) -> None:
    argv = ["send", NOTIFY, "--body", "{}", "--service", "http://127.0.0.1:9"]
    assert "cannot reach http://127.0.0.1:9" in one_line_error(qjobs(capsys, *argv))


# --- publish ---------------------------------------------------------------------------


def test_publish_notify_collaborators_with_a_flag_per_field(loop: Loop, db: firestore.Client, capsys: Capture) -> None:
    published = ok(qjobs(capsys, "publish", "notify-collaborators", *NOTIFY_FLAGS, "--actor-id=u1", "--json")).json()
    loop.wait(published["messageId"])
    assert status_of(db, published["messageId"]) == "succeeded"
    assert published["idempotencyKey"].startswith("notify-") and published["deduplicated"] is False
    (entry,) = db.collection("users/u2/notifications").stream()
    assert (entry.get("message"), entry.get("actorId")) == ("Moved", "u1")
    sent = loop.broker.broker.messages[published["messageId"]]
    assert (sent.retries, sent.label) == (3, "notify-collaborators"), "published with the job's policy"
    again = qjobs(capsys, "publish", "notify-collaborators", *NOTIFY_FLAGS, "--idempotency-key", "trip-1:x:1")
    twice = qjobs(capsys, "publish", "notify-collaborators", *NOTIFY_FLAGS, "--idempotency-key", "trip-1:x:1")
    assert again.out.split()[3] == twice.out.split()[3] and "(a duplicate of an earlier publish" in twice.out


def test_publish_memory_sync_with_a_revision_and_a_delay(loop: Loop, db: firestore.Client, capsys: Capture) -> None:
    db.collection("conversations").document("c1").set({"userId": "u1"})
    flags = ["--user-id=u1", "--conversation-id=c1", "--sync-type=full", "--revision=m00041", "--delay=1s", "--json"]
    published = ok(qjobs(capsys, "publish", "memory-sync", *flags)).json()
    again = ok(qjobs(capsys, "publish", "memory-sync", *flags)).json()
    assert again == {**published, "deduplicated": True}
    loop.wait(published["messageId"])
    assert status_of(db, published["messageId"]) == "succeeded"
    assert loop.broker.broker.messages[published["messageId"]].flow is not None


def test_publish_refuses_a_bad_payload_as_bad_usage_and_sends_nothing(loop: Loop, capsys: Capture) -> None:
    before = len(loop.broker.broker.messages)
    bad = qjobs(capsys, "publish", "notify-collaborators", *NOTIFY_FLAGS[:3], "not an id!", "--message=Moved")
    assert "argument --collaborator-ids: must be 1-128 letters" in bad_usage(bad)
    assert len(loop.broker.broker.messages) == before


def test_publish_without_a_token_says_where_to_find_one(capsys: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QSTASH_TOKEN")
    assert "QSTASH_TOKEN" in one_line_error(qjobs(capsys, "publish", "notify-collaborators", *NOTIFY_FLAGS))


# --- dlq -------------------------------------------------------------------------------


def empty_the_dlq(loop: Loop) -> None:
    loop.broker.broker.dead_letters.clear()


def test_an_empty_dlq_and_an_unknown_id(loop: Loop, capsys: Capture) -> None:
    empty_the_dlq(loop)
    assert ok(qjobs(capsys, "dlq", "list")).out == "the dead-letter queue is empty\n"
    assert ok(qjobs(capsys, "dlq", "list", "--json")).json() == {"messages": [], "cursor": None}
    for verb in ("show", "replay", "delete"):
        assert "no dead-lettered message 1-nope" in one_line_error(qjobs(capsys, "dlq", verb, "1-nope"))


def test_a_dead_lettered_job_is_listed_shown_replayed_without_repeating_effects_and_deleted(
    loop: Loop, db: firestore.Client, capsys: Capture
) -> None:
    empty_the_dlq(loop)
    db.collection("users").document("u1").set({"email": "ada@example.test"})
    db.collection("users").document("u2").set({"email": "grace@example.test"})
    loop.smtp.mailbox.refuse["grace@example.test"] = "450 4.2.1 Mailbox busy, try later"
    body = {**NOTIFY_PAYLOAD, "idempotencyKey": "trip-1:update:dlq"}
    source = loop.publish_raw(NOTIFY, body, retries=0, failure_callback=loop.server.url + "/api/jobs/failed")
    wait_until(lambda: db.collection("deadLetters").document(source).get().exists, "dead-lettered")

    (row,) = ok(qjobs(capsys, "dlq", "list", "--json")).json()["messages"]
    assert (row["messageId"], row["job"], row["status"]) == (source, "notify-collaborators", 500)
    table = ok(qjobs(capsys, "dlq", "list", f"--url={loop.server.url}{NOTIFY}")).out.splitlines()
    assert table[1].split()[:4] == [row["dlqId"], source, "notify-collaborators", "500"]
    assert ok(qjobs(capsys, "dlq", "list", "--status=489")).out == "no dead-lettered message matches\n"
    shown = ok(qjobs(capsys, "dlq", "show", row["dlqId"], "--json")).json()
    assert json.loads(shown["body"])["collaboratorIds"] == ["u1", "u2"]
    readable = ok(qjobs(capsys, "jobs", "show", source)).out
    assert "dead letter:" in readable and "  status: 500" in readable

    del loop.smtp.mailbox.refuse["grace@example.test"]
    replays = [ok(qjobs(capsys, "dlq", "replay", row["dlqId"], "--json")).json() for _ in range(2)]
    ids = [replay["messageId"] for replay in replays]
    assert len({source, *ids}) == 3, "a replay is a new message: no deduplication id"
    loop.wait(*ids)
    assert [status_of(db, message_id) for message_id in ids] == ["succeeded", "succeeded"]
    mailbox = loop.smtp.mailbox
    assert len(mailbox.to("ada@example.test")) == len(mailbox.to("grace@example.test")) == 1, "each email once"
    assert [len(list(db.collection("users", uid, "notifications").stream())) for uid in ("u1", "u2")] == [1, 1]
    replayed = loop.broker.broker.messages[ids[0]]
    assert (replayed.retries, replayed.retry_delay, replayed.label, replayed.failure_callback) == (
        3,
        "min(300000, 10000 * pow(2, retried))",
        "notify-collaborators",
        loop.server.url + "/api/jobs/failed",
    ), "replayed with the job's policy, though published by hand without it"

    assert (
        ok(qjobs(capsys, "dlq", "delete", row["dlqId"])).out == f"deleted {row['dlqId']} from the dead-letter queue\n"
    )
    assert ok(qjobs(capsys, "dlq", "list")).out == "the dead-letter queue is empty\n"
    assert "no dead-lettered message" in one_line_error(qjobs(capsys, "dlq", "delete", row["dlqId"]))
