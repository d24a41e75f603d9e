"""The one transaction that decides a message: begin, one BatchGet (the ledger entry, the
token entry and the documents the job declared), the decision, the job's step, and one
commit of the ledger's mark, the token and the job's writes.

The step is the job's own code run inside the transaction, so whatever it raises is
decided here too: a `PermanentJobError` commits `rejected`; any other error commits
`failed` with `lastError` and none of the job's writes (the error is raised again after
the commit, for the answer and the log); only contention aborts the transaction, to be
run again.
"""

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions
from google.cloud.firestore_v1.document import DocumentReference

from qjobs.errors import PermanentJobError
from qjobs.jobs import Attempt, Busy, Done, Proceed, Reads, Write
from qjobs.ledger import (
    CLAIM_ATTEMPTS,
    CONTENTION_RETRY_AFTER_SECONDS,
    FAILED,
    LEDGER_WRITES,
    REJECTED,
    RUNNING,
    SUCCEEDED,
    Claim,
    Delivery,
    InProgress,
    Ledger,
    TokenReplayed,
    check_commit_size,
    decide,
)
from qjobs.transactions import TransactionReads, is_contention, run_transaction


@dataclass(frozen=True)
class Finished:
    attempt: int
    result: dict[str, Any]


@dataclass(frozen=True)
class Rejected:
    attempt: int
    code: str
    message: str


@dataclass(frozen=True)
class Failed:
    attempt: int
    error: Exception


@dataclass(frozen=True)
class Claimed:
    attempt: int
    claim: Claim
    state: Any


Outcome = Finished | Rejected | Failed | Claimed
Step = Callable[[Reads, Attempt], Done | Proceed]
"""The job's step, given the transaction's reads and the attempt it claims."""


def claim_and_step(ledger: Ledger, delivery: Delivery, refs: Sequence[DocumentReference], step: Step) -> Outcome:
    """Decide the message in one transaction; contention past the retries is `InProgress`."""
    try:
        outcome, transaction = run_transaction(
            ledger.db, ledger.rpc, lambda reads: _decide_in(reads, ledger, delivery, refs, step), CLAIM_ATTEMPTS
        )
    except exceptions.Aborted:
        raise InProgress(CONTENTION_RETRY_AFTER_SECONDS, "contended") from None
    if isinstance(outcome, Claimed):
        outcome.claim.update_time = (transaction.write_results or [])[0].update_time
    return outcome


def _decide_in(
    reads: TransactionReads, ledger: Ledger, delivery: Delivery, refs: Sequence[DocumentReference], step: Step
) -> Outcome:
    entry_ref, token_ref = ledger.entry_ref(delivery.message_id), ledger.token_ref(delivery.jti)
    transaction = reads.transaction
    read = reads.snapshots_of([entry_ref, token_ref, *refs])
    entry, token = read[entry_ref.path], read[token_ref.path]
    if token.exists and (token.to_dict() or {}).get("messageId") != delivery.message_id:
        raise TokenReplayed("the signature was already used for another message")
    stored = entry.to_dict() if entry.exists else None
    now = ledger.clock()
    attempt = decide(stored, delivery, now)
    first_seen = (stored or {}).get("firstSeenAt", now)
    outcome, writes, fields = _run_step(step, reads, attempt, ledger, delivery)
    Write(entry_ref, ledger.entry_fields(delivery, attempt, first_seen, **fields)).apply(transaction)
    if not token.exists:
        Write(token_ref, {"messageId": delivery.message_id, "expireAt": delivery.token_valid_until}).apply(transaction)
    for write in writes:
        write.apply(transaction)
    return outcome


def _run_step(
    step: Step, reads: TransactionReads, attempt: int, ledger: Ledger, delivery: Delivery
) -> tuple[Outcome, list[Write], dict[str, Any]]:
    """The outcome, the job's writes, and the entry's fields that record it."""
    try:
        decision = step(reads, Attempt(attempt, ledger.clock(), ledger.lease_ends()))
        check_commit_size(decision.writes, LEDGER_WRITES)
    except Busy as busy:
        raise InProgress(busy.retry_after_seconds, str(busy)) from None
    except PermanentJobError as error:
        return Rejected(attempt, error.code, error.message), [], _ended(REJECTED, error.code, error.message)
    except Exception as error:
        if is_contention(error):
            raise
        return Failed(attempt, error), [], _ended(FAILED, "job_failed", type(error).__name__)
    if isinstance(decision, Done):
        return Finished(attempt, decision.result), decision.writes, {"status": SUCCEEDED, "result": decision.result}
    token = secrets.token_urlsafe(16)
    claim = Claim(delivery, token, attempt, update_time=None)
    fields = {"status": RUNNING, "claimToken": token, "leaseExpiresAt": ledger.lease_ends()}
    return Claimed(attempt, claim, decision.state), decision.writes, fields


def _ended(status: str, code: str, message: str) -> dict[str, Any]:
    return {"status": status, "lastError": {"code": code, "message": message}}
