"""The failure callback: QStash's report on a dead-lettered message, verified like any
delivery, kept in deadLetters/{sourceMessageId}, and never touching the ledger."""

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore
from hypothesis import given
from hypothesis import strategies as st

from handlers import ROUTES
from handlers.failure_callback import job_of
from tests.support import PUBLIC_BASE_URL, Deliver, error_of, new_message_id

FAILED = "/api/jobs/failed"
SOURCE = "msg_2KxeGR9cDDdbyiHZvbJqGZ"


def report(**fields: Any) -> dict[str, Any]:
    """A failure-callback body as QStash sends it, numbers as strings as it sometimes does."""
    answer = b'{"error":"conversation_not_found","message":"the conversation does not exist"}'
    return {
        "status": "489",
        "header": {"Upstash-Nonretryable-Error": ["true"], "Content-Type": ["application/json"]},
        "body": base64.b64encode(answer).decode(),
        "retried": "0",
        "maxRetries": "3",
        "dlqId": "1725323658779-0",
        "sourceMessageId": SOURCE,
        "url": PUBLIC_BASE_URL + "/api/jobs/memory-sync",
        "method": "POST",
        "sourceHeader": {"Content-Type": ["application/json"]},
        "sourceBody": base64.b64encode(b'{"userId":"u1","conversationId":"gone","syncType":"full"}').decode(),
        "createdAt": "1725323658779",
        **fields,
    }


def record(db: firestore.Client) -> dict[str, Any]:
    return db.collection("deadLetters").document(SOURCE).get().to_dict() or {}


def test_a_report_is_kept_under_its_source_message(deliver: Deliver, db: firestore.Client) -> None:
    message_id = new_message_id()
    before = datetime.now(UTC)
    response = deliver(FAILED, report(), message_id=message_id)
    assert response.json == {
        "ok": True,
        "messageId": message_id,
        "duplicate": False,
        "sourceMessageId": SOURCE,
        "job": "memory-sync",
    }
    kept = record(db)
    assert {name: kept[name] for name in ("job", "dlqId", "status", "retried", "maxRetries", "callbackMessageId")} == {
        "job": "memory-sync",
        "dlqId": "1725323658779-0",
        "status": 489,
        "retried": 0,
        "maxRetries": 3,
        "callbackMessageId": message_id,
    }
    assert kept["answer"] == '{"error":"conversation_not_found","message":"the conversation does not exist"}'
    assert kept["publishedAt"] == datetime(2024, 9, 3, 0, 34, 18, 779000, tzinfo=UTC)
    assert before - timedelta(seconds=5) <= kept["reportedAt"] <= datetime.now(UTC) + timedelta(seconds=5)
    assert kept["expireAt"] - kept["reportedAt"] == timedelta(days=30)
    assert "sourceBody" not in kept and "gone" not in str(kept), "the message's own body is not copied"


def test_the_report_never_touches_the_ledger(deliver: Deliver, db: firestore.Client) -> None:
    entry = db.collection("jobs").document(SOURCE)
    entry.set({"status": "running", "job": "memory-sync", "claimToken": "t"})
    before = entry.get().update_time
    assert deliver(FAILED, report()).status_code == 200
    assert entry.get().update_time == before
    no_entry = report(sourceMessageId="msg_refusedBeforeTheLedger")
    assert deliver(FAILED, no_entry).status_code == 200
    assert not db.collection("jobs").document("msg_refusedBeforeTheLedger").get().exists


def test_a_repeated_callback_changes_nothing(deliver: Deliver, db: firestore.Client) -> None:
    message_id = new_message_id()
    first = deliver(FAILED, report(), message_id=message_id)
    written = db.collection("deadLetters").document(SOURCE).get().update_time
    again = deliver(FAILED, report(), message_id=message_id, retried=1)
    assert again.json == {**(first.json or {}), "duplicate": True}
    assert db.collection("deadLetters").document(SOURCE).get().update_time == written


def test_a_report_for_a_url_this_service_does_not_serve_has_no_job(deliver: Deliver, db: firestore.Client) -> None:
    response = deliver(FAILED, report(url="https://elsewhere.example.test/hook", body="not base64 at all!"))
    assert response.json is not None and response.json["job"] is None
    assert record(db)["job"] is None and record(db)["answer"] == "not base64 at all!"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"hello": "world"}, "sourceMessageId"),
        (report(sourceMessageId="../jobs/x"), "sourceMessageId"),
        (report(status="not a number"), "status"),
        (report(retried=-1), "retried"),
        (report(url=""), "url"),
    ],
)
def test_a_body_that_is_not_a_report_is_489(
    deliver: Deliver, db: firestore.Client, body: dict[str, Any], field: str
) -> None:
    response = deliver(FAILED, body)
    assert error_of(response)[:2] == (489, "validation_failed")
    assert field in [detail["field"] for detail in (response.json or {})["details"]]
    assert list(db.collection("deadLetters").stream()) == []


def test_the_answer_kept_is_the_first_500_characters(deliver: Deliver, db: firestore.Client) -> None:
    """Characters, not bytes: an answer in a script of two-byte characters keeps 500 of them."""
    answer = "é" * 499 + "→ and the rest is cut"
    assert deliver(FAILED, report(body=base64.b64encode(answer.encode()).decode())).status_code == 200
    assert record(db)["answer"] == answer[:500]


def test_the_record_holds_the_fields_the_readme_lists_and_no_other(deliver: Deliver, db: firestore.Client) -> None:
    assert deliver(FAILED, report()).status_code == 200
    kept = record(db)
    assert set(kept) == {
        "job",
        "url",
        "dlqId",
        "status",
        "answer",
        "retried",
        "maxRetries",
        "publishedAt",
        "reportedAt",
        "callbackMessageId",
        "expireAt",
    }
    assert kept["url"] == PUBLIC_BASE_URL + "/api/jobs/memory-sync"


@pytest.mark.parametrize(
    "url", ["http://[::1", "http://[bad]/x", "http://jobs\uff03.example.test/api/jobs/memory-sync"]
)
def test_a_report_whose_url_does_not_parse_is_kept_without_a_job(
    deliver: Deliver, db: firestore.Client, url: str
) -> None:
    """QStash reports the URL the message was published to, whatever it was: the report is
    still worth keeping (its dlqId is what a replay needs), so a URL that cannot be split
    (an unclosed IPv6 bracket, a host that normalises to a `#`) names no job, like a URL
    this service does not serve, rather than failing the callback on every retry."""
    message_id = new_message_id()
    response = deliver(FAILED, report(url=url), message_id=message_id)
    assert response.status_code == 200, response.json
    assert response.json is not None and response.json["job"] is None
    kept = record(db)
    assert kept["job"] is None and kept["url"] == url and kept["dlqId"] == "1725323658779-0"
    assert db.collection("jobs").document(message_id).get().get("status") == "succeeded"


@given(st.text(max_size=60) | st.builds(lambda tail: "http://" + tail, st.text(max_size=40)))
def test_any_url_names_a_job_or_none(url: str) -> None:
    assert job_of(url) in {None, *(job.name for job in ROUTES.values())}
