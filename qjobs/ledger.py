"""The ledger (`jobs/{messageId}`) that makes at-least-once deliveries run exactly once.

A message is decided in one transaction (qjobs.claim) that reads its entry and marks it:
`succeeded` with the job's writes, or `running` with a claim (a fresh token and a lease)
for a job that continues outside the transaction. Every later write of a claimed attempt
(pages, the outcome) is a precondition-guarded update of the entry, conditioned on the
update time the attempt last wrote, so an attempt that outlived its lease and was taken
over can no longer write anything: one round trip per commit, no extra read. The `jti` of
every accepted token is recorded with the mark, so a captured request re-sent under a new
message id is refused.
"""

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.batch import WriteBatch
from google.cloud.firestore_v1.document import DocumentReference
from google.cloud.firestore_v1.transaction import Transaction

from qjobs.firestore_writes import fenced_update
from qjobs.jobs import MAX_WRITES_PER_COMMIT, Data, PageBuilder, ValueT, Write
from qjobs.transactions import TransactionReads, by_path, data_of, read_one, run_transaction

RUNNING, SUCCEEDED, FAILED, REJECTED = "running", "succeeded", "failed", "rejected"
CONTENTION_RETRY_AFTER_SECONDS = 2
PAGE_ATTEMPTS = 5
CLAIM_ATTEMPTS = 3
LEDGER_WRITES = 2
"""The entry and the token entry share a commit with the job's writes."""


@dataclass(frozen=True)
class Delivery:
    """What the pipeline knows of one verified delivery."""

    message_id: str
    job: str
    body_sha256: str
    retried: int
    jti: str
    token_valid_until: datetime


@dataclass
class Claim:
    delivery: Delivery
    token: str
    attempt: int
    update_time: Any
    """The ledger document's update time after this attempt's last write: the fence."""
    ended: bool = False
    """Set once the attempt gave the message back: nothing more may be written under it."""


class LedgerAnswer(Exception):
    """The ledger decided the delivery without running the job."""


class AlreadySucceeded(LedgerAnswer):
    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__("already succeeded")
        self.result = result


class AlreadyRejected(LedgerAnswer):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class InProgress(LedgerAnswer):
    def __init__(self, retry_after_seconds: int, reason: str) -> None:
        super().__init__(reason)
        self.retry_after_seconds = retry_after_seconds


class MessageIdReused(LedgerAnswer):
    pass


class TokenReplayed(LedgerAnswer):
    pass


class ClaimLost(Exception):
    """Another attempt took the message over: this attempt's writes were refused."""


def token_doc_id(jti: str) -> str:
    """Token ids are the issuer's text, not safe ids: their hash is."""
    return hashlib.sha256(jti.encode()).hexdigest()


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def decide(entry: Data | None, delivery: Delivery, now: datetime) -> int:
    """The attempt number to take the message with, or the ledger's answer raised."""
    if entry is None:
        return 1
    answer_finished(entry, delivery)
    raise_if_running(entry, now)
    return int(entry.get("attempts", 0)) + 1


def answer_finished(entry: Data, delivery: Delivery) -> None:
    """Raise the stored answer when the message is finished or its id was reused."""
    if entry.get("bodySha256") != delivery.body_sha256 or entry.get("job") != delivery.job:
        raise MessageIdReused("the message id was already used for another body or job")
    if entry.get("status") == SUCCEEDED:
        raise AlreadySucceeded(dict(entry.get("result") or {}))
    if entry.get("status") == REJECTED:
        error = entry.get("lastError") or {}
        raise AlreadyRejected(str(error.get("code", "rejected")), str(error.get("message", "")))


def raise_if_running(entry: Data, now: datetime) -> None:
    """Another attempt holds a lease that has not run out yet."""
    lease = entry.get("leaseExpiresAt")
    if entry.get("status") == RUNNING and lease is not None and lease > now:
        remaining = math.ceil((lease - now).total_seconds())
        raise InProgress(max(1, remaining), "another attempt holds the lease")


def check_commit_size(writes: Sequence[Write], ledger_writes: int = 1) -> None:
    """A job's writes share a commit with the ledger's, and Firestore takes 500."""
    if len(writes) + ledger_writes > MAX_WRITES_PER_COMMIT:
        raise ValueError(f"{len(writes)} writes do not fit one commit; commit them in pages")


class Ledger:
    def __init__(
        self,
        db: firestore.Client,
        *,
        collection: str,
        token_collection: str,
        lease: timedelta,
        retention: timedelta,
        rpc: dict[str, Any],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.collection = collection
        self.token_collection = token_collection
        self.lease = lease
        self.retention = retention
        self.rpc = rpc
        self.clock = clock

    def entry_ref(self, message_id: str) -> DocumentReference:
        return self.db.collection(self.collection).document(message_id)

    def token_ref(self, jti: str) -> DocumentReference:
        return self.db.collection(self.token_collection).document(token_doc_id(jti))

    # ------------------------------------------------------------ before the transaction

    def preread(self, delivery: Delivery, refs: Sequence[DocumentReference]) -> dict[str, Data | None]:
        """One plain read: the entry, to answer a copy of a finished message (or one whose
        lease is held) without a transaction, and `refs` (documents that need no isolation),
        whose data it returns by path.

        A first delivery (`Upstash-Retried: 0`) is almost always new, so `refs` come in the
        same BatchGet. A retry is most often a copy of a message that finished but whose
        answer was lost: the entry alone, in a unary read (no stream to set up), and `refs`
        in a second read only if the message is not finished after all."""
        entry_ref = self.entry_ref(delivery.message_id)
        if refs and delivery.retried == 0:
            snapshots = by_path(self.db.get_all([entry_ref, *refs], **self.rpc))
            self._answer_if_decided(data_of(snapshots.get(entry_ref.path)), delivery)
            return {ref.path: data_of(snapshots.get(ref.path)) for ref in refs}
        self._answer_if_decided(read_one(self.db, entry_ref, self.rpc), delivery)
        if not refs:
            return {}
        return {path: data_of(snapshot) for path, snapshot in by_path(self.db.get_all(list(refs), **self.rpc)).items()}

    def _answer_if_decided(self, entry: Data | None, delivery: Delivery) -> None:
        if entry is not None:
            answer_finished(entry, delivery)
            raise_if_running(entry, self.clock())

    # ------------------------------------------------------------ the entry's fields

    def entry_fields(self, delivery: Delivery, attempt: int, first_seen: datetime, status: str, **fields: Any) -> Data:
        """The whole entry as one attempt leaves it; `fields` set what its outcome adds."""
        now = self.clock()
        return {
            "job": delivery.job,
            "status": status,
            "attempts": attempt,
            "retried": delivery.retried,
            "bodySha256": delivery.body_sha256,
            "claimToken": None,
            "leaseExpiresAt": None,
            "firstSeenAt": first_seen,
            "updatedAt": now,
            "completedAt": now if status in (SUCCEEDED, REJECTED) else None,
            "lastError": None,
            "result": None,
            "expireAt": now + self.retention,
            **fields,
        }

    def lease_ends(self) -> datetime:
        return self.clock() + self.lease

    # ------------------------------------------------------------ under a claim: fenced writes

    def commit_page(self, claim: Claim, writes: list[Write]) -> None:
        now = self.clock()
        self._fenced_commit(claim, writes, {"updatedAt": now, "leaseExpiresAt": now + self.lease})

    def succeed(self, claim: Claim, writes: list[Write], result: dict[str, Any]) -> None:
        self._end(claim, writes, SUCCEEDED, result=result)

    def reject(self, claim: Claim, code: str, message: str) -> None:
        self._end(claim, [], REJECTED, lastError={"code": code, "message": message})

    def fail(self, claim: Claim, code: str, message: str, writes: list[Write] | None = None) -> None:
        """Give the message back for QStash's retry, with the outcomes so far in `writes`:
        the lease ends now, and so does the claim (a run still going, say at shutdown,
        can no longer commit)."""
        self._end(claim, writes or [], FAILED, lastError={"code": code, "message": message})

    def release(self, claim: Claim, reason: str) -> bool:
        """Give back the lease of a run this process abandons; False when the run had
        already finished or lost its claim (nothing to give back)."""
        try:
            self.fail(claim, "abandoned", reason)
        except ClaimLost:
            return False
        return True

    def _end(self, claim: Claim, writes: list[Write], status: str, **fields: Any) -> None:
        now = self.clock()
        ended = {"status": status, "updatedAt": now, "leaseExpiresAt": now if status == FAILED else None, **fields}
        if status != FAILED:
            ended.update(completedAt=now, expireAt=now + self.retention)
        self._fenced_commit(claim, writes, ended, ends_claim=True)

    def _fenced_commit(
        self, claim: Claim, writes: list[Write], ledger_fields: Data, *, ends_claim: bool = False
    ) -> None:
        if claim.ended:
            raise ClaimLost("this attempt already gave the message back")
        check_commit_size(writes)
        batch = self.db.batch()
        for write in writes:
            write.apply(batch)
        self._fenced_update(batch, claim, ledger_fields)
        try:
            results = batch.commit(**self.rpc)
        except exceptions.FailedPrecondition:
            raise ClaimLost("another attempt took this message over") from None
        claim.ended = ends_claim
        if not ends_claim:
            claim.update_time = results[-1].update_time

    def _fenced_update(self, target: WriteBatch | Transaction, claim: Claim, fields: Data) -> None:
        """Update the entry only while it is as this attempt last wrote it."""
        ref = self.entry_ref(claim.delivery.message_id)
        built = fenced_update(ref, fields, claim.update_time)
        if built is not None:
            target._add_write_pbs([built])
        else:
            target.update(ref, fields, option=self.db.write_option(last_update_time=claim.update_time))

    def transact_page(self, claim: Claim, build: PageBuilder[ValueT]) -> ValueT:
        if claim.ended:
            raise ClaimLost("this attempt already gave the message back")

        def page(reads: TransactionReads) -> ValueT:
            writes, value = build(reads)
            check_commit_size(writes)
            for write in writes:
                write.apply(reads.transaction)
            now = self.clock()
            self._fenced_update(reads.transaction, claim, {"updatedAt": now, "leaseExpiresAt": now + self.lease})
            return value

        try:
            value, transaction = run_transaction(self.db, self.rpc, page, PAGE_ATTEMPTS)
        except exceptions.FailedPrecondition:
            raise ClaimLost("another attempt took this message over") from None
        claim.update_time = (transaction.write_results or [])[-1].update_time
        return value
