"""Exactly-once behaviour of deliveries through the app, with a probe job whose
behaviour each payload chooses (tests/apps/probe_main.py)."""

import sys
import threading
from typing import Any

import pytest
from flask.testing import FlaskClient
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from tests.conftest import AppFactory, Deliver
from tests.support import PROBE, PROBE_MAIN, error_of, new_message_id, retrying_409


@pytest.fixture
def probe_client(make_client: AppFactory, db: firestore.Client) -> FlaskClient:
    return make_client(PROBE_MAIN)


def runs(db: firestore.Client, marker: str) -> int:
    return len(list(db.collection("runs").where(filter=FieldFilter("marker", "==", marker)).stream()))


def counter(db: firestore.Client, marker: str) -> Any:
    snapshot = db.collection("counters").document(marker).get()
    return snapshot.get("runs") if snapshot.exists else 0


def test_a_duplicate_is_answered_with_the_stored_result(
    deliver: Deliver, probe_client: FlaskClient, db: firestore.Client
) -> None:
    message_id = new_message_id()
    first = deliver(PROBE, {"marker": "dup"}, message_id=message_id, test_client=probe_client)
    second = deliver(PROBE, {"marker": "dup"}, message_id=message_id, retried=1, test_client=probe_client)
    assert first.json == {"ok": True, "messageId": message_id, "duplicate": False, "marker": "dup", "attempt": 1}
    assert second.json == {**first.json, "duplicate": True}
    assert runs(db, "dup") == 1 and counter(db, "dup") == 1


def test_a_failed_run_answers_500_and_the_retry_runs_again(
    deliver: Deliver, probe_client: FlaskClient, db: firestore.Client
) -> None:
    message_id = new_message_id()
    failed = deliver(PROBE, {"marker": "f", "mode": "fail"}, message_id=message_id, test_client=probe_client)
    assert error_of(failed)[:2] == (500, "job_failed")
    entry = db.collection("jobs").document(message_id).get().to_dict() or {}
    assert entry["status"] == "failed" and entry["lastError"] == {"code": "job_failed", "message": "RuntimeError"}
    assert counter(db, "f") == 0
    retried = deliver(PROBE, {"marker": "f", "mode": "fail"}, message_id=message_id, test_client=probe_client)
    assert retried.status_code == 500
    assert (db.collection("jobs").document(message_id).get().to_dict() or {})["attempts"] == 2


def test_a_message_being_processed_is_answered_409_with_retry_after(
    deliver: Deliver, probe_client: FlaskClient, db: firestore.Client
) -> None:
    message_id = new_message_id()
    payload = {"marker": "busy", "mode": "sleep", "seconds": 1.5}
    answers: list[Any] = []
    slow = threading.Thread(
        target=lambda: answers.append(deliver(PROBE, payload, message_id=message_id, test_client=probe_client))
    )
    slow.start()
    while not db.collection("jobs").document(message_id).get().exists:
        threading.Event().wait(0.02)
    busy = deliver(PROBE, payload, message_id=message_id, test_client=probe_client)
    slow.join()
    assert error_of(busy)[:2] == (409, "in_progress")
    assert 1 <= int(busy.headers["Retry-After"]) <= 300
    assert answers[0].status_code == 200 and runs(db, "busy") == 1


def test_the_same_message_id_with_another_body_is_489(
    deliver: Deliver, probe_client: FlaskClient, db: firestore.Client
) -> None:
    message_id = new_message_id()
    assert deliver(PROBE, {"marker": "a"}, message_id=message_id, test_client=probe_client).status_code == 200
    reused = deliver(PROBE, {"marker": "b"}, message_id=message_id, test_client=probe_client)
    assert error_of(reused)[:2] == (489, "message_id_reused")
    assert reused.headers["Upstash-NonRetryable-Error"] == "true"
    assert runs(db, "b") == 0


def test_a_paged_job_commits_each_page_and_marks_success_once(
    deliver: Deliver, probe_client: FlaskClient, db: firestore.Client
) -> None:
    response = deliver(PROBE, {"marker": "paged", "mode": "pages", "pages": 3}, test_client=probe_client)
    assert response.status_code == 200
    assert sorted(doc.id for doc in db.collection("pages").stream()) == ["paged-0", "paged-1", "paged-2"]
    assert counter(db, "paged") == 1


def test_a_permanent_job_error_is_rejected_once_and_for_all(
    deliver: Deliver, probe_client: FlaskClient, db: firestore.Client
) -> None:
    message_id = new_message_id()
    payload = {"marker": "p", "mode": "permanent"}
    first = deliver(PROBE, payload, message_id=message_id, test_client=probe_client)
    again = deliver(PROBE, payload, message_id=message_id, test_client=probe_client)
    assert error_of(first)[:2] == error_of(again)[:2] == (489, "probe_rejected")
    assert runs(db, "p") == 1 and counter(db, "p") == 0


def test_concurrent_copies_on_threads_run_once(deliver: Deliver, make_client: AppFactory, db: firestore.Client) -> None:
    message_id = new_message_id()
    payload = {"marker": "threads", "mode": "sleep", "seconds": 0.3}
    client = make_client(PROBE_MAIN)
    barrier = threading.Barrier(4)
    answers: list[Any] = []

    def copy() -> None:
        barrier.wait()
        answers.append(retrying_409(lambda: deliver(PROBE, payload, message_id=message_id, test_client=client)))

    threads = [threading.Thread(target=copy) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert runs(db, "threads") == 1 and counter(db, "threads") == 1
    assert [answer.status_code for answer in answers] == [200] * 4
    assert sorted(answer.json["duplicate"] for answer in answers) == [False, True, True, True]


def test_after_sigterm_new_deliveries_are_turned_away(
    deliver: Deliver, probe_client: FlaskClient, db: firestore.Client
) -> None:
    pipeline = sys.modules["probe_main"].jobs.pipeline
    pipeline.shutdown.begin()
    response = deliver(PROBE, {"marker": "late"}, test_client=probe_client)
    assert error_of(response)[:2] == (503, "shutting_down")
    assert response.headers["Retry-After"] == "1"
    assert runs(db, "late") == 0 and list(db.collection("jobs").stream()) == []
