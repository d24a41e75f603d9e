"""The ledger's claims, answers and fence, on the real emulator."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.transaction import Transaction

from qjobs.claim import Claimed, Failed, Finished, claim_and_step
from qjobs.firestore_client import RpcBudget
from qjobs.jobs import Done, Proceed, Write
from qjobs.ledger import (
    AlreadyRejected,
    AlreadySucceeded,
    Claim,
    ClaimLost,
    Delivery,
    InProgress,
    Ledger,
    MessageIdReused,
    TokenReplayed,
    body_sha256,
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def take(ledger: Ledger, delivery: Delivery) -> Claim:
    """Take the message for a job that proceeds under a claim (nothing of its own to write)."""
    outcome = claim_and_step(ledger, delivery, [], lambda reads, attempt: Proceed([]))
    assert isinstance(outcome, Claimed)
    return outcome.claim


@pytest.fixture
def ledger(db: firestore.Client, clock: Clock) -> Ledger:
    return Ledger(
        db,
        collection="jobs",
        token_collection="jobTokens",
        lease=timedelta(seconds=60),
        retention=timedelta(days=7),
        rpc=RpcBudget(5).kwargs(),
        clock=clock,
    )


def delivery(jti: str = "jti-1", message_id: str = "msg_1", body: bytes = b"{}", retried: int = 0) -> Delivery:
    return Delivery(
        message_id=message_id,
        job="probe",
        body_sha256=body_sha256(body),
        retried=retried,
        jti=jti,
        token_valid_until=datetime(2026, 1, 1, 0, 6, tzinfo=UTC),
    )


def entry(db: firestore.Client, message_id: str = "msg_1") -> dict[str, Any]:
    return db.collection("jobs").document(message_id).get().to_dict() or {}


def test_a_claim_records_a_running_attempt(ledger: Ledger, db: firestore.Client, clock: Clock) -> None:
    claim = take(ledger, delivery(retried=2))
    stored = entry(db)
    assert claim.attempt == 1
    assert stored["status"] == "running" and stored["attempts"] == 1 and stored["retried"] == 2
    assert stored["claimToken"] == claim.token
    assert stored["leaseExpiresAt"] == clock.now + timedelta(seconds=60)
    assert stored["expireAt"] == clock.now + timedelta(days=7)
    assert stored["bodySha256"] == body_sha256(b"{}")
    token = db.collection("jobTokens").document(ledger.token_ref("jti-1").id).get().to_dict()
    assert token == {"messageId": "msg_1", "expireAt": datetime(2026, 1, 1, 0, 6, tzinfo=UTC)}


def test_success_commits_the_jobs_writes_with_the_mark(ledger: Ledger, db: firestore.Client) -> None:
    claim = take(ledger, delivery())
    ledger.succeed(claim, [Write(db.collection("things").document("a"), {"n": 1})], {"count": 1})
    assert entry(db)["status"] == "succeeded" and entry(db)["result"] == {"count": 1}
    assert db.collection("things").document("a").get().to_dict() == {"n": 1}
    with pytest.raises(AlreadySucceeded) as caught:
        ledger.preread(delivery(jti="jti-2"), [])
    assert caught.value.result == {"count": 1}
    with pytest.raises(AlreadySucceeded):
        take(ledger, delivery(jti="jti-3"))


def test_a_live_lease_answers_in_progress_with_the_time_left(ledger: Ledger, clock: Clock) -> None:
    take(ledger, delivery())
    clock.advance(45.5)
    with pytest.raises(InProgress) as caught:
        take(ledger, delivery(jti="jti-2"))
    assert caught.value.retry_after_seconds == 15


def test_an_expired_lease_is_taken_over_and_the_stale_run_is_fenced(
    ledger: Ledger, db: firestore.Client, clock: Clock
) -> None:
    stale = take(ledger, delivery())
    clock.advance(61)
    fresh = take(ledger, delivery(jti="jti-2"))
    assert fresh.attempt == 2
    with pytest.raises(ClaimLost):
        ledger.succeed(stale, [Write(db.collection("things").document("stale"), {"by": "stale"})], {})
    with pytest.raises(ClaimLost):
        ledger.commit_page(stale, [Write(db.collection("things").document("stale-page"), {"by": "stale"})])
    assert not db.collection("things").document("stale").get().exists
    assert not db.collection("things").document("stale-page").get().exists
    ledger.succeed(fresh, [Write(db.collection("things").document("fresh"), {"by": "fresh"})], {})
    assert entry(db)["status"] == "succeeded" and entry(db)["attempts"] == 2


def page_of(db: firestore.Client, name: str) -> Any:
    """A page builder that reads nothing and writes one document."""
    return lambda transaction: ([Write(db.collection("things").document(name), {"by": name})], None)


def test_a_page_transaction_of_a_taken_over_attempt_writes_nothing(
    ledger: Ledger, db: firestore.Client, clock: Clock
) -> None:
    stale = take(ledger, delivery())
    ledger.transact_page(stale, page_of(db, "stale-before"))
    clock.advance(61)
    fresh = take(ledger, delivery(jti="jti-2"))
    with pytest.raises(ClaimLost):
        ledger.transact_page(stale, page_of(db, "stale-after"))
    assert not db.collection("things").document("stale-after").get().exists
    ledger.transact_page(fresh, page_of(db, "fresh"))
    ledger.succeed(fresh, [], {})
    assert entry(db)["status"] == "succeeded" and entry(db)["claimToken"] == fresh.token


def test_no_page_of_any_kind_commits_after_the_claim_was_given_back(ledger: Ledger, db: firestore.Client) -> None:
    claim = take(ledger, delivery())
    assert ledger.release(claim, "the instance shut down during the run")
    with pytest.raises(ClaimLost):
        ledger.transact_page(claim, page_of(db, "page-transaction"))
    with pytest.raises(ClaimLost):
        ledger.commit_page(claim, [Write(db.collection("things").document("page"), {"n": 1})])
    with pytest.raises(ClaimLost):
        ledger.succeed(claim, [Write(db.collection("things").document("final"), {"n": 1})], {})
    assert list(db.collection("things").stream()) == []
    assert entry(db)["status"] == "failed" and entry(db)["lastError"]["code"] == "abandoned"
    assert ledger.release(claim, "again") is False


def test_first_seen_survives_every_later_claim(ledger: Ledger, db: firestore.Client, clock: Clock) -> None:
    first_seen = clock.now
    ledger.fail(take(ledger, delivery()), "job_failed", "RuntimeError")
    clock.advance(30)
    take(ledger, delivery(jti="jti-2", retried=1))
    clock.advance(61)
    taken_over = take(ledger, delivery(jti="jti-3", retried=2))
    assert taken_over.attempt == 3
    assert entry(db)["firstSeenAt"] == first_seen and entry(db)["updatedAt"] == clock.now


def test_pages_renew_the_lease_and_keep_the_fence(ledger: Ledger, db: firestore.Client, clock: Clock) -> None:
    claim = take(ledger, delivery())
    clock.advance(50)
    ledger.commit_page(claim, [Write(db.collection("things").document("p1"), {"page": 1})])
    assert entry(db)["leaseExpiresAt"] == clock.now + timedelta(seconds=60)
    clock.advance(50)
    with pytest.raises(InProgress):
        take(ledger, delivery(jti="jti-2"))
    ledger.succeed(claim, [], {"pages": 1})
    assert entry(db)["status"] == "succeeded"


def test_a_failed_attempt_is_retried_with_the_next_attempt_number(ledger: Ledger, db: firestore.Client) -> None:
    first = take(ledger, delivery())
    ledger.fail(first, "job_failed", "RuntimeError")
    assert entry(db)["lastError"] == {"code": "job_failed", "message": "RuntimeError"}
    second = take(ledger, delivery(jti="jti-2", retried=1))
    assert second.attempt == 2 and entry(db)["retried"] == 1 and entry(db)["lastError"] is None


def test_a_rejected_message_stays_rejected(ledger: Ledger) -> None:
    ledger.reject(take(ledger, delivery()), "not_found", "nothing there")
    with pytest.raises(AlreadyRejected) as caught:
        ledger.preread(delivery(jti="jti-2"), [])
    assert (caught.value.code, caught.value.message) == ("not_found", "nothing there")


def test_a_message_id_with_another_body_is_refused(ledger: Ledger) -> None:
    ledger.succeed(take(ledger, delivery()), [], {})
    with pytest.raises(MessageIdReused):
        ledger.preread(delivery(jti="jti-2", body=b'{"other": 1}'), [])
    take(ledger, delivery(message_id="msg_2", jti="jti-3"))
    with pytest.raises(MessageIdReused):
        take(ledger, delivery(message_id="msg_2", jti="jti-4", body=b"[]"))


def test_a_token_opens_one_message_only(ledger: Ledger, db: firestore.Client) -> None:
    ledger.succeed(take(ledger, delivery()), [], {})
    with pytest.raises(TokenReplayed):
        take(ledger, delivery(message_id="msg_forged"))
    assert not db.collection("jobs").document("msg_forged").get().exists


def test_a_commit_over_the_firestore_limit_is_refused_before_sending(ledger: Ledger, db: firestore.Client) -> None:
    claim = take(ledger, delivery())
    writes = [Write(db.collection("things").document(str(n)), {"n": n}) for n in range(500)]
    with pytest.raises(ValueError, match="pages"):
        ledger.succeed(claim, writes, {})
    assert entry(db)["status"] == "running"


@pytest.mark.parametrize("page_by", ["commit", "transaction"])
def test_a_page_renews_the_lease(ledger: Ledger, db: firestore.Client, clock: Clock, page_by: str) -> None:
    """A run longer than the lease in total keeps its message as long as its pages come
    within a lease of each other: a second attempt at 100 s, 50 s after a page, is turned away."""
    claim = take(ledger, delivery())
    clock.advance(50)
    write = Write(db.collection("pages").document("renewing"), {"page": 1})
    if page_by == "commit":
        ledger.commit_page(claim, [write])
    else:
        ledger.transact_page(claim, lambda reads: ([write], None))
    clock.advance(50)
    with pytest.raises(InProgress) as caught:
        take(ledger, delivery(jti="jti-2", retried=1))
    assert caught.value.retry_after_seconds == 10
    assert entry(db)["leaseExpiresAt"] == datetime(2026, 1, 1, 0, 1, 50, tzinfo=UTC)


def writing(db: firestore.Client, count: int) -> Any:
    """A step that is done, with `count` writes of its own."""
    return lambda reads, attempt: Done(
        [Write(db.collection("things").document(str(n)), {"n": n}) for n in range(count)], {"count": count}
    )


def test_a_step_done_in_the_transaction_commits_at_most_498_writes(ledger: Ledger, db: firestore.Client) -> None:
    """The entry and the token share the commit: 498 of the job's own writes fit Firestore's
    500, and one more fails the attempt (recorded `failed`) with none of them applied."""
    fits = claim_and_step(ledger, delivery(), [], writing(db, 498))
    assert isinstance(fits, Finished) and fits.result == {"count": 498}
    assert len(list(db.collection("things").select([]).stream())) == 498
    over = claim_and_step(ledger, delivery(message_id="msg_2", jti="jti-2"), [], writing(db, 499))
    assert isinstance(over, Failed) and entry(db, "msg_2")["status"] == "failed"
    assert entry(db, "msg_2")["lastError"]["code"] == "job_failed"
    assert len(list(db.collection("things").select([]).stream())) == 498


def test_a_page_under_a_claim_commits_at_most_499_writes(ledger: Ledger, db: firestore.Client) -> None:
    """A fenced page shares its commit with the entry's update only."""
    claim = take(ledger, delivery())
    ledger.commit_page(claim, [Write(db.collection("things").document(str(n)), {"n": n}) for n in range(499)])
    assert len(list(db.collection("things").select([]).stream())) == 499


def always_aborted(transaction: Transaction) -> Any:
    """Every commit loses to a lock another transaction holds, as the server ends it."""
    client = transaction._client
    client._firestore_api.rollback(request={"database": client._database_string, "transaction": transaction._id})
    raise exceptions.Aborted("Transaction lock timeout")  # type: ignore[no-untyped-call]


def test_the_deciding_transaction_is_tried_three_times_then_answers_in_progress(
    ledger: Ledger, db: firestore.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    tries = []

    def step(reads: Any, attempt: Any) -> Done:
        tries.append(attempt)
        return Done([], {})

    monkeypatch.setattr(Transaction, "_commit", always_aborted)
    with pytest.raises(InProgress) as caught:
        claim_and_step(ledger, delivery(), [], step)
    assert len(tries) == 3 and caught.value.retry_after_seconds == 2
    assert entry(db) == {}


def test_a_page_transaction_is_tried_five_times_then_fails(
    ledger: Ledger, db: firestore.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim = take(ledger, delivery())
    tries = []

    def page(reads: Any) -> tuple[list[Write], None]:
        tries.append(1)
        return [Write(db.collection("things").document("page"), {"n": 1})], None

    monkeypatch.setattr(Transaction, "_commit", always_aborted)
    with pytest.raises(exceptions.Aborted):
        ledger.transact_page(claim, page)
    assert len(tries) == 5 and not db.collection("things").document("page").get().exists


@pytest.mark.parametrize("ends", ["succeed", "reject", "fail", "release"])
def test_a_claims_token_stays_on_record_however_the_claim_ends(
    ledger: Ledger, db: firestore.Client, clock: Clock, ends: str
) -> None:
    """docs/architecture.md: `claimToken` names the latest claim after it ended, and
    `leaseExpiresAt` is the moment a claim was given back (`null` once the message is done)."""
    claim = take(ledger, delivery())
    clock.advance(5)
    if ends == "succeed":
        ledger.succeed(claim, [], {})
    elif ends == "reject":
        ledger.reject(claim, "not_found", "nothing there")
    elif ends == "fail":
        ledger.fail(claim, "job_failed", "RuntimeError")
    else:
        assert ledger.release(claim, "the instance shut down during the run")
    stored = entry(db)
    assert stored["claimToken"] == claim.token
    given_back = ends in ("fail", "release")
    assert stored["leaseExpiresAt"] == (clock.now if given_back else None)
