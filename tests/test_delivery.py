"""Exactly-once behaviour of deliveries through the app, with a probe job whose
behaviour each payload chooses (tests/apps/probe_main.py)."""

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.services.firestore.client import FirestoreClient
from google.cloud.firestore_v1.transaction import Transaction

from qjobs import runner as runner_module
from tests.support import (
    NOTIFY,
    NOTIFY_PAYLOAD,
    PROBE,
    PROBE_MAIN,
    AppFactory,
    Deliver,
    all_at_once,
    delivery_log_lines,
    error_of,
    in_background,
    new_message_id,
    retrying_409,
    wait_until,
)


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
    slow = in_background(lambda: deliver(PROBE, payload, message_id=message_id, test_client=probe_client))
    wait_until(lambda: db.collection("jobs").document(message_id).get().exists, "the first copy claimed")
    busy = deliver(PROBE, payload, message_id=message_id, test_client=probe_client)
    assert error_of(busy)[:2] == (409, "in_progress")
    assert 1 <= int(busy.headers["Retry-After"]) <= 300
    assert slow.result(timeout=30).status_code == 200 and runs(db, "busy") == 1


@pytest.mark.parametrize("contended", ["read", "commit"])
def test_a_contended_claim_is_409_with_retry_after_and_writes_nothing(
    deliver: Deliver,
    probe_client: FlaskClient,
    db: firestore.Client,
    monkeypatch: pytest.MonkeyPatch,
    contended: str,
) -> None:
    """Firestore aborts a transaction that waited too long for a lock another holds, at a
    read inside it or at its commit; the claim must answer 409 (QStash retries), never 500."""

    read_documents = FirestoreClient.batch_get_documents

    def aborted_read(api: FirestoreClient, request: Any = None, **kwargs: Any) -> Any:
        """A read inside a transaction (one that begins it, or one in it) waits, then aborts."""
        if isinstance(request, dict) and (request.get("new_transaction") or request.get("transaction")):
            raise exceptions.Aborted("Transaction lock timeout")  # type: ignore[no-untyped-call]
        return read_documents(api, request=request, **kwargs)

    def aborted_commit(transaction: Transaction) -> Any:
        """As the server does: the transaction ends, and the commit answers Aborted."""
        client = transaction._client
        client._firestore_api.rollback(request={"database": client._database_string, "transaction": transaction._id})
        raise exceptions.Aborted("Transaction lock timeout")  # type: ignore[no-untyped-call]

    if contended == "read":
        monkeypatch.setattr(FirestoreClient, "batch_get_documents", aborted_read)
    else:
        monkeypatch.setattr(Transaction, "_commit", aborted_commit)
    message_id = new_message_id()
    busy = deliver(PROBE, {"marker": "contended"}, message_id=message_id, test_client=probe_client)
    assert error_of(busy)[:2] == (409, "in_progress")
    assert busy.headers["Retry-After"] == "2"
    assert list(db.collection("jobs").stream()) == [] and runs(db, "contended") == 0
    monkeypatch.undo()
    retried = deliver(PROBE, {"marker": "contended"}, message_id=message_id, retried=1, test_client=probe_client)
    assert retried.status_code == 200 and counter(db, "contended") == 1


def test_the_same_message_id_with_another_body_is_489(
    deliver: Deliver, probe_client: FlaskClient, db: firestore.Client
) -> None:
    message_id = new_message_id()
    assert deliver(PROBE, {"marker": "a"}, message_id=message_id, test_client=probe_client).status_code == 200
    reused = deliver(PROBE, {"marker": "b"}, message_id=message_id, test_client=probe_client)
    assert error_of(reused)[:2] == (489, "message_id_reused")
    assert reused.headers["Upstash-NonRetryable-Error"] == "true"
    assert runs(db, "b") == 0


def test_the_same_message_id_for_another_job_is_489(
    deliver: Deliver, probe_client: FlaskClient, db: firestore.Client
) -> None:
    """One body that both jobs accept: only the job tells the two messages apart."""
    message_id = new_message_id()
    body = {**NOTIFY_PAYLOAD, "marker": "shared"}
    assert deliver(PROBE, body, message_id=message_id, test_client=probe_client).status_code == 200
    reused = deliver(NOTIFY, body, message_id=message_id, test_client=probe_client)
    assert error_of(reused)[:2] == (489, "message_id_reused")
    assert list(db.collection_group("notifications").stream()) == []
    assert db.collection("jobs").document(message_id).get().get("job") == "probe"


@pytest.mark.parametrize("pages_by", [None, "commit", "transaction"])
def test_an_attempt_that_outlived_its_lease_is_taken_over_and_its_writes_refused(
    deliver: Deliver, make_client: AppFactory, db: firestore.Client, pages_by: str | None
) -> None:
    """The first attempt sleeps past its lease; the next delivery takes the message over and
    finishes it; the first then wakes and tries to commit (its final writes, a page, or a
    page transaction) and is refused, so nothing of it lands."""
    client = make_client(PROBE_MAIN, JOB_LEASE_SECONDS="0.5")
    message_id = new_message_id()
    payload: dict[str, Any] = {"marker": "stale", "mode": "sleep_first", "seconds": 1.5}
    if pages_by:
        payload.update(pages=2, pagesBy=pages_by)
    stale = in_background(lambda: deliver(PROBE, payload, message_id=message_id, test_client=client))
    entry = db.collection("jobs").document(message_id)
    wait_until(lambda: entry.get().exists, "the first attempt claimed")
    time.sleep(0.6)
    fresh = deliver(PROBE, payload, message_id=message_id, retried=1, test_client=client)
    assert fresh.status_code == 200 and fresh.json is not None and fresh.json["attempt"] == 2
    assert error_of(stale.result(timeout=30))[:2] == (409, "claim_lost")
    assert counter(db, "stale") == 1
    assert {doc.get("attempt") for doc in db.collection("pages").stream()} == ({2} if pages_by else set())
    stored = entry.get().to_dict() or {}
    assert stored["status"] == "succeeded" and stored["attempts"] == 2 and stored["result"]["attempt"] == 2


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
    again = deliver(PROBE, payload, message_id=message_id, retried=1, test_client=probe_client)
    assert error_of(first)[:2] == error_of(again)[:2] == (489, "probe_rejected")
    assert first.headers["Upstash-NonRetryable-Error"] == again.headers["Upstash-NonRetryable-Error"] == "true"
    entry = db.collection("jobs").document(message_id).get().to_dict() or {}
    assert entry["status"] == "rejected" and entry["attempts"] == 1
    assert entry["lastError"] == {"code": "probe_rejected", "message": "the probe refuses this payload"}
    assert runs(db, "p") == 1 and counter(db, "p") == 0


@pytest.mark.parametrize("mode", ["sleep", "pure"])
def test_concurrent_copies_on_threads_run_once(
    deliver: Deliver, make_client: AppFactory, db: firestore.Client, mode: str
) -> None:
    """A job under a claim (sleeping while it holds it) and a job done in its transaction."""
    message_id = new_message_id()
    payload = {"marker": "threads", "mode": mode, "seconds": 0.3}
    client = make_client(PROBE_MAIN)

    def copy() -> Any:
        return retrying_409(lambda: deliver(PROBE, payload, message_id=message_id, test_client=client))

    answers = all_at_once([copy] * 4)
    assert runs(db, "threads") == (1 if mode == "sleep" else 0) and counter(db, "threads") == 1
    assert [answer.status_code for answer in answers] == [200] * 4
    assert sorted(answer.json["duplicate"] for answer in answers) == [False, True, True, True]


def test_a_job_done_in_its_transaction_never_shows_running(
    deliver: Deliver, probe_client: FlaskClient, db: firestore.Client
) -> None:
    message_id = new_message_id()
    response = deliver(PROBE, {"marker": "pure", "mode": "pure"}, message_id=message_id, test_client=probe_client)
    assert response.json == {"ok": True, "messageId": message_id, "duplicate": False, "marker": "pure", "attempt": 1}
    entry = db.collection("jobs").document(message_id).get()
    assert entry.create_time == entry.update_time, "the entry was written once, finished"
    assert entry.get("status") == "succeeded" and entry.get("claimToken") is None and entry.get("attempts") == 1
    assert counter(db, "pure") == 1


def test_a_step_that_raises_writes_nothing_of_its_own_and_is_recorded_failed(
    deliver: Deliver, probe_client: FlaskClient, db: firestore.Client
) -> None:
    message_id = new_message_id()
    payload = {"marker": "pure-fail", "mode": "pure_fail"}
    failed = deliver(PROBE, payload, message_id=message_id, test_client=probe_client)
    assert error_of(failed)[:2] == (500, "job_failed")
    entry = db.collection("jobs").document(message_id).get().to_dict() or {}
    assert entry["status"] == "failed" and entry["attempts"] == 1 and entry["leaseExpiresAt"] is None
    assert entry["lastError"] == {"code": "job_failed", "message": "RuntimeError"}
    assert counter(db, "pure-fail") == 0 and len(list(db.collection("jobTokens").stream())) == 1
    retried = deliver(PROBE, payload, message_id=message_id, retried=1, test_client=probe_client)
    assert retried.status_code == 500 and db.collection("jobs").document(message_id).get().get("attempts") == 2


def test_a_step_that_finds_the_message_can_never_succeed_is_rejected_in_its_transaction(
    deliver: Deliver, probe_client: FlaskClient, db: firestore.Client
) -> None:
    message_id = new_message_id()
    payload = {"marker": "pure-permanent", "mode": "pure_permanent"}
    first = deliver(PROBE, payload, message_id=message_id, test_client=probe_client)
    again = deliver(PROBE, payload, message_id=message_id, retried=1, test_client=probe_client)
    assert error_of(first)[:2] == error_of(again)[:2] == (489, "probe_rejected")
    entry = db.collection("jobs").document(message_id).get()
    assert entry.create_time == entry.update_time and entry.get("status") == "rejected"
    assert counter(db, "pure-permanent") == 0


def test_after_sigterm_new_deliveries_are_turned_away(
    deliver: Deliver, probe_client: FlaskClient, db: firestore.Client
) -> None:
    pipeline = sys.modules["probe_main"].jobs.pipeline
    pipeline.shutdown.begin()
    response = deliver(PROBE, {"marker": "late"}, test_client=probe_client)
    assert error_of(response)[:2] == (503, "shutting_down")
    assert response.headers["Retry-After"] == "1"
    assert runs(db, "late") == 0 and list(db.collection("jobs").stream()) == []


def test_a_run_claimed_as_sigterm_arrives_gives_its_claim_back_before_working(
    deliver: Deliver, probe_client: FlaskClient, db: firestore.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM between the claim's commit and the run's start: the drain counted no run, so
    the run itself must see the drain and give its claim back rather than work unwatched."""
    pipeline = sys.modules["probe_main"].jobs.pipeline
    claim = runner_module.claim_and_step  # type: ignore[attr-defined]

    def claim_then_sigterm(*args: Any, **kwargs: Any) -> Any:
        outcome = claim(*args, **kwargs)
        pipeline.shutdown.begin()
        return outcome

    monkeypatch.setattr(runner_module, "claim_and_step", claim_then_sigterm)
    message_id = new_message_id()
    response = deliver(PROBE, {"marker": "claimed-late"}, message_id=message_id, test_client=probe_client)
    assert error_of(response)[:2] == (503, "shutting_down")
    entry = db.collection("jobs").document(message_id).get().to_dict() or {}
    assert entry["status"] == "failed" and entry["lastError"]["code"] == "abandoned"
    assert runs(db, "claimed-late") == 0


def writes_page(write: Any) -> bool:
    return "/documents/pages/" in (write.update.name or write.delete)


def writes_counter(write: Any) -> bool:
    return "/documents/counters/" in (write.update.name or write.delete)


def rejects(write: Any) -> bool:
    return "/documents/jobs/" in write.update.name and write.update.fields["status"].string_value == "rejected"


CONTENDED_COMMITS: dict[str, tuple[dict[str, Any], Callable[[Any], bool], int, int]] = {
    # name: (probe payload, the writes whose commit aborts, commits aborted, the retry's status)
    "page-batch": ({"mode": "pages", "pages": 2, "pagesBy": "commit"}, writes_page, 1, 200),
    "page-transaction": ({"mode": "pages", "pages": 2, "pagesBy": "transaction"}, writes_page, 5, 200),
    "final-commit": ({"mode": "ok"}, writes_counter, 1, 200),
    "rejection": ({"mode": "permanent"}, rejects, 1, 489),
}


@pytest.mark.parametrize("contended", CONTENDED_COMMITS, ids=list(CONTENDED_COMMITS))
def test_contention_while_finishing_under_a_claim_gives_the_claim_back_and_is_409(
    *,
    deliver: Deliver,
    make_client: AppFactory,
    db: firestore.Client,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    contended: str,
) -> None:
    """Two runs of one business object at once (two memory-syncs of one conversation) can
    make Firestore abort a commit of a run under its claim ("Transaction lock timeout"): a
    batch is never tried again, a page transaction only five times. That is contention, not
    a failure: the claim is given back at once and the delivery answered 409 with
    Retry-After, as the claim's own contention is, logged without a stack trace; the retry
    carries on from what was committed."""
    client = make_client(PROBE_MAIN)
    mode, aborts, expected_aborts, retry_status = CONTENDED_COMMITS[contended]
    commit = FirestoreClient.commit
    aborted: list[bool] = []

    def lock_timeout(api: FirestoreClient, request: Any = None, **kwargs: Any) -> Any:
        """The commits holding such writes wait on a lock another run holds, then abort."""
        if isinstance(request, dict) and any(aborts(write) for write in request.get("writes", [])):
            aborted.append(True)
            raise exceptions.Aborted("Transaction lock timeout")  # type: ignore[no-untyped-call]
        return commit(api, request=request, **kwargs)

    monkeypatch.setattr(FirestoreClient, "commit", lock_timeout)
    message_id = new_message_id()
    payload = {"marker": f"contended-{contended}", **mode}
    response = deliver(PROBE, payload, message_id=message_id, test_client=client)
    assert error_of(response)[:2] == (409, "in_progress")
    assert response.headers["Retry-After"] == "2"
    assert len(aborted) == expected_aborts, "a batch is not tried again; a page transaction five times"
    entry = db.collection("jobs").document(message_id).get().to_dict() or {}
    assert entry["status"] == "failed" and entry["lastError"]["code"] == "contended"
    assert entry["leaseExpiresAt"] <= datetime.now(UTC), "the claim was given back: the retry need not wait"
    (line,) = delivery_log_lines(capsys.readouterr().out)
    assert (line["severity"], line["status"], line["error"], line["reason"]) == (
        "WARNING",
        409,
        "in_progress",
        "contended",
    )
    assert "Traceback" not in str(line["message"]) and "@type" not in line
    monkeypatch.undo()
    retried = deliver(PROBE, payload, message_id=message_id, retried=1, test_client=client)
    assert retried.status_code == retry_status, retried.json
    if retry_status == 200:
        assert retried.json is not None and retried.json["attempt"] == 2
        assert counter(db, payload["marker"]) == 1
