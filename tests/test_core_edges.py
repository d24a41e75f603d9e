"""The exactly-once core's rare paths, on the real emulator: a step that meets contention
itself, a claim lost just before a rejection or a failure is recorded, Firestore failing
while a claim is given back, a transaction whose first read is a query, a rollback that
fails, and a lease that cannot be released at shutdown. Each is reached by doing to
Firestore what a racing attempt or an outage would."""

import logging
from typing import Any

import pytest
from flask.testing import FlaskClient
from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.services.firestore.client import FirestoreClient
from google.cloud.firestore_v1.transaction import Transaction

from qjobs.firestore_client import RpcBudget
from qjobs.ledger import Claim, Ledger
from qjobs.shutdown import ActiveRuns
from qjobs.transactions import TransactionReads, run_transaction
from tests.support import MEMORY, PROBE, PROBE_MAIN, AppFactory, Deliver, error_of, new_message_id


@pytest.fixture
def probe_client(make_client: AppFactory, db: firestore.Client) -> FlaskClient:
    return make_client(PROBE_MAIN)


def taken_over(db: firestore.Client, message_id: str) -> None:
    """What another attempt does when it takes a message over: it rewrites the entry, so
    the fence of the attempt that held it no longer matches."""
    db.collection("jobs").document(message_id).update({"claimToken": "another-attempt"})


def test_a_step_whose_own_query_meets_contention_runs_again(
    deliver: Deliver, db: firestore.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """memory-sync's step queries the messages inside the claim transaction; an Aborted there
    is contention like any other (the transaction runs again), never the job's failure."""
    db.collection("conversations").document("c-edge").set({"userId": "u-edge"})
    messages = db.collection("conversations", "c-edge", "messages")
    messages.document("m1").set({"role": "user", "content": "I'm vegan.", "createdAt": firestore.SERVER_TIMESTAMP})
    run_query = FirestoreClient.run_query
    aborted: list[bool] = []

    def aborting_once(api: FirestoreClient, request: Any = None, **kwargs: Any) -> Any:
        if isinstance(request, dict) and request.get("transaction") and not aborted:
            aborted.append(True)
            raise exceptions.Aborted("Transaction lock timeout")  # type: ignore[no-untyped-call]
        return run_query(api, request=request, **kwargs)

    monkeypatch.setattr(FirestoreClient, "run_query", aborting_once)
    message_id = new_message_id()
    response = deliver(
        MEMORY, {"userId": "u-edge", "conversationId": "c-edge", "syncType": "incremental"}, message_id=message_id
    )
    assert aborted == [True], "the step's query met contention once"
    assert response.status_code == 200 and response.json is not None and response.json["processedMessages"] == 1
    entry = db.collection("jobs").document(message_id).get().to_dict() or {}
    assert entry["status"] == "succeeded" and entry["attempts"] == 1


def test_a_rejection_whose_claim_was_lost_is_claim_lost(
    deliver: Deliver, probe_client: FlaskClient, db: firestore.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    reject = Ledger.reject

    def after_a_takeover(ledger: Ledger, claim: Claim, code: str, message: str) -> None:
        taken_over(db, claim.delivery.message_id)
        reject(ledger, claim, code, message)

    monkeypatch.setattr(Ledger, "reject", after_a_takeover)
    message_id = new_message_id()
    response = deliver(
        PROBE, {"marker": "lost-reject", "mode": "permanent"}, message_id=message_id, test_client=probe_client
    )
    assert error_of(response)[:2] == (409, "claim_lost")
    entry = db.collection("jobs").document(message_id).get().to_dict() or {}
    assert entry["status"] == "running" and entry["claimToken"] == "another-attempt", "nothing of it landed"


@pytest.mark.parametrize("how", ["claim_lost", "firestore_down"])
def test_a_failure_that_cannot_be_recorded_still_answers_500(
    *,
    deliver: Deliver,
    probe_client: FlaskClient,
    db: firestore.Client,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    how: str,
) -> None:
    """Giving the claim back is best effort: when another attempt took the message over,
    or Firestore is what failed, the answer is still 500 (QStash retries) and the lease
    simply runs out."""
    fail = Ledger.fail

    def unrecordable(ledger: Ledger, claim: Claim, code: str, message: str, writes: Any = None) -> None:
        if how == "firestore_down":
            raise exceptions.ServiceUnavailable("Firestore is down")  # type: ignore[no-untyped-call]
        taken_over(db, claim.delivery.message_id)
        fail(ledger, claim, code, message, writes)

    monkeypatch.setattr(Ledger, "fail", unrecordable)
    message_id = new_message_id()
    with caplog.at_level(logging.WARNING, logger="qjobs"):
        response = deliver(
            PROBE, {"marker": f"fail-{how}", "mode": "fail"}, message_id=message_id, test_client=probe_client
        )
    assert error_of(response)[:2] == (500, "job_failed")
    entry = db.collection("jobs").document(message_id).get().to_dict() or {}
    assert entry["status"] == "running", "the failure was not recorded over the entry"
    warned = [r for r in caplog.records if r.getMessage() == "could not record the failure"]
    assert len(warned) == (1 if how == "firestore_down" else 0)


def test_a_transaction_whose_first_read_is_a_query_begins_with_it(db: firestore.Client) -> None:
    db.collection("edge-items").document("a").set({"kind": "x", "n": 1})
    rpc = RpcBudget(5).kwargs()

    def count_then_write(reads: TransactionReads) -> int:
        found = reads.query(db.collection("edge-items").where(filter=FieldFilter("kind", "==", "x")))
        reads.transaction.set(db.collection("edge-items").document("count"), {"n": len(found)})
        return len(found)

    value, transaction = run_transaction(db, rpc, count_then_write, attempts=2)
    assert value == 1 and len(transaction.write_results or []) == 1
    assert db.collection("edge-items").document("count").get().get("n") == 1


def test_a_rollback_that_fails_does_not_hide_the_error(db: firestore.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rolling back only releases locks sooner; if it fails, the error that stopped the
    transaction is what the caller gets."""

    def failing_rollback(transaction: Transaction) -> None:
        raise exceptions.ServiceUnavailable("rollback lost")  # type: ignore[no-untyped-call]

    monkeypatch.setattr(Transaction, "_rollback", failing_rollback)

    def read_then_fail(reads: TransactionReads) -> None:
        reads.documents([db.collection("edge-items").document("a")])
        raise ValueError("the job's own error")

    with pytest.raises(ValueError, match="the job's own error"):
        run_transaction(db, RpcBudget(5).kwargs(), read_then_fail, attempts=2)


def test_a_lease_that_cannot_be_released_at_shutdown_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    released: list[str] = []
    runs = ActiveRuns()

    def unreachable() -> None:
        raise exceptions.ServiceUnavailable("Firestore is down")  # type: ignore[no-untyped-call]

    runs.add(unreachable)
    runs.add(lambda: released.append("second"))
    with caplog.at_level(logging.ERROR):
        assert runs.release_all() == 2
    assert released == ["second"] and runs.count() == 0
    assert [r.getMessage() for r in caplog.records] == ["could not release a lease at shutdown"]
