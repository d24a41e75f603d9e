"""The ledger (`jobs/{messageId}`) that makes at-least-once deliveries run exactly once.

A delivery claims its message in a transaction; the claim carries a fresh token and a
lease. Every later write of that attempt (pages, the outcome) is a precondition-guarded
update of the ledger document, conditioned on the update time the attempt last wrote, so
an attempt that outlived its lease and was taken over can no longer write anything: one
round trip per commit, no extra read. The `jti` of every accepted token is recorded with
the claim, so a captured request re-sent under a new message id is refused.
"""

import hashlib
import math
import random
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.base_document import DocumentSnapshot
from google.cloud.firestore_v1.document import DocumentReference

from qjobs.jobs import MAX_WRITES_PER_COMMIT, PageBuilder, ValueT, Write

RUNNING, SUCCEEDED, FAILED, REJECTED = "running", "succeeded", "failed", "rejected"
CONTENTION_RETRY_AFTER_SECONDS = 2
PAGE_ATTEMPTS = 5
CLAIM_ATTEMPTS = 2


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


def decide(entry: dict[str, Any] | None, delivery: Delivery, now: datetime) -> int:
    """The attempt number to claim with, or the ledger's answer raised."""
    if entry is None:
        return 1
    answer_finished(entry, delivery)
    if entry.get("status") == RUNNING:
        lease = entry.get("leaseExpiresAt")
        if lease is not None and lease > now:
            remaining = math.ceil((lease - now).total_seconds())
            raise InProgress(max(1, remaining), "another attempt holds the lease")
    return int(entry.get("attempts", 0)) + 1


def answer_finished(entry: dict[str, Any], delivery: Delivery) -> None:
    """Raise the stored answer when the message is finished or its id was reused."""
    if entry.get("bodySha256") != delivery.body_sha256 or entry.get("job") != delivery.job:
        raise MessageIdReused("the message id was already used for another body or job")
    if entry.get("status") == SUCCEEDED:
        raise AlreadySucceeded(dict(entry.get("result") or {}))
    if entry.get("status") == REJECTED:
        error = entry.get("lastError") or {}
        raise AlreadyRejected(str(error.get("code", "rejected")), str(error.get("message", "")))


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

    def answer_if_finished(self, delivery: Delivery) -> None:
        """One plain read: most duplicates are copies of a finished message."""
        snapshot = self.entry_ref(delivery.message_id).get(**self.rpc)
        if snapshot.exists:
            answer_finished(snapshot.to_dict() or {}, delivery)

    def claim(self, delivery: Delivery) -> Claim:
        token = secrets.token_urlsafe(16)
        try:
            attempt, transaction = self._transact(lambda tx: self._claim_in(tx, delivery, token), CLAIM_ATTEMPTS)
        except (exceptions.Aborted, ValueError) as error:
            if is_contention(error):
                raise InProgress(CONTENTION_RETRY_AFTER_SECONDS, "contended") from None
            raise
        results = transaction.write_results or []
        return Claim(delivery, token, attempt, results[0].update_time)

    def _transact(self, function: Callable[[Any], ValueT], attempts: int) -> tuple[ValueT, Any]:
        """Run `function` in a transaction, again (after a jittered pause) when a read inside
        it was aborted by contention, which the client itself retries only at commit."""
        for attempt in range(1, attempts + 1):
            transaction = self.db.transaction()
            try:
                value: ValueT = firestore.transactional(function)(transaction)
            except (exceptions.Aborted, ValueError) as error:
                if attempt == attempts or not is_contention(error):
                    raise
                time.sleep(random.uniform(0.05, 0.25) * attempt)  # noqa: S311 - jitter, not security
                continue
            return value, transaction
        raise AssertionError("unreachable")

    def _claim_in(self, transaction: Any, delivery: Delivery, token: str) -> int:
        entry_ref, token_ref = self.entry_ref(delivery.message_id), self.token_ref(delivery.jti)
        snapshots = _by_path(transaction.get_all([entry_ref, token_ref], **self.rpc))
        entry, used_token = snapshots[entry_ref.path], snapshots[token_ref.path]
        if used_token.exists and (used_token.to_dict() or {}).get("messageId") != delivery.message_id:
            raise TokenReplayed("the signature was already used for another message")
        now = self.clock()
        attempt = decide(entry.to_dict() if entry.exists else None, delivery, now)
        first_seen = (entry.to_dict() or {}).get("firstSeenAt", now) if entry.exists else now
        transaction.set(entry_ref, self._running_fields(delivery, token, attempt, first_seen, now))
        if not used_token.exists:
            transaction.set(
                token_ref,
                {"messageId": delivery.message_id, "expireAt": delivery.token_valid_until},
            )
        return attempt

    def _running_fields(
        self, delivery: Delivery, token: str, attempt: int, first_seen: datetime, now: datetime
    ) -> dict[str, Any]:
        return {
            "job": delivery.job,
            "status": RUNNING,
            "attempts": attempt,
            "retried": delivery.retried,
            "bodySha256": delivery.body_sha256,
            "claimToken": token,
            "leaseExpiresAt": now + self.lease,
            "firstSeenAt": first_seen,
            "updatedAt": now,
            "completedAt": None,
            "lastError": None,
            "result": None,
            "expireAt": now + self.retention,
        }

    def commit_page(self, claim: Claim, writes: list[Write]) -> None:
        now = self.clock()
        self._fenced_commit(claim, writes, {"updatedAt": now, "leaseExpiresAt": now + self.lease})

    def succeed(self, claim: Claim, writes: list[Write], result: dict[str, Any]) -> None:
        now = self.clock()
        self._fenced_commit(
            claim,
            writes,
            {
                "status": SUCCEEDED,
                "result": result,
                "completedAt": now,
                "updatedAt": now,
                "leaseExpiresAt": None,
                "expireAt": now + self.retention,
            },
            ends_claim=True,
        )

    def reject(self, claim: Claim, code: str, message: str) -> None:
        now = self.clock()
        self._fenced_commit(
            claim,
            [],
            {
                "status": REJECTED,
                "lastError": {"code": code, "message": message},
                "completedAt": now,
                "updatedAt": now,
                "leaseExpiresAt": None,
                "expireAt": now + self.retention,
            },
            ends_claim=True,
        )

    def fail(self, claim: Claim, code: str, message: str) -> None:
        """Give the message back for QStash's retry: the lease ends now, and so does the
        claim (a run still going, say at shutdown, can no longer commit)."""
        now = self.clock()
        self._fenced_commit(
            claim,
            [],
            {
                "status": FAILED,
                "lastError": {"code": code, "message": message},
                "updatedAt": now,
                "leaseExpiresAt": now,
            },
            ends_claim=True,
        )

    def transact_page(self, claim: Claim, build: PageBuilder[ValueT]) -> ValueT:
        if claim.ended:
            raise ClaimLost("this attempt already gave the message back")
        entry_ref = self.entry_ref(claim.delivery.message_id)

        def page(transaction: Any) -> ValueT:
            writes, value = build(transaction)
            check_commit_size(writes)
            for write in writes:
                write.apply(transaction)
            now = self.clock()
            fence = self.db.write_option(last_update_time=claim.update_time)
            transaction.update(entry_ref, {"updatedAt": now, "leaseExpiresAt": now + self.lease}, option=fence)
            return value

        try:
            value, transaction = self._transact(page, PAGE_ATTEMPTS)
        except exceptions.FailedPrecondition:
            raise ClaimLost("another attempt took this message over") from None
        claim.update_time = (transaction.write_results or [])[-1].update_time
        return value

    def release(self, claim: Claim, reason: str) -> bool:
        """Give back the lease of a run this process abandons; False when the run had
        already finished or lost its claim (nothing to give back)."""
        try:
            self.fail(claim, "abandoned", reason)
        except ClaimLost:
            return False
        return True

    def _fenced_commit(
        self, claim: Claim, writes: list[Write], ledger_fields: dict[str, Any], *, ends_claim: bool = False
    ) -> None:
        if claim.ended:
            raise ClaimLost("this attempt already gave the message back")
        check_commit_size(writes)
        batch = self.db.batch()
        for write in writes:
            write.apply(batch)
        fence = self.db.write_option(last_update_time=claim.update_time)
        batch.update(self.entry_ref(claim.delivery.message_id), ledger_fields, option=fence)
        try:
            results = batch.commit(**self.rpc)
        except exceptions.FailedPrecondition:
            raise ClaimLost("another attempt took this message over") from None
        claim.ended = ends_claim
        if not ends_claim:
            claim.update_time = results[-1].update_time


def is_contention(error: Exception) -> bool:
    """The client retries `Aborted` only at commit; a read that waited too long on another
    transaction's lock raises it from inside the transaction instead."""
    return isinstance(error, exceptions.Aborted) or isinstance(error.__cause__, exceptions.Aborted)


def check_commit_size(writes: list[Write]) -> None:
    """A job's writes share a commit with the ledger's update, and Firestore takes 500."""
    if len(writes) + 1 > MAX_WRITES_PER_COMMIT:
        raise ValueError(f"{len(writes)} writes do not fit one commit; commit them in pages")


def _by_path(snapshots: Iterable[DocumentSnapshot[Any]]) -> dict[str, DocumentSnapshot[Any]]:
    return {snapshot.reference.path: snapshot for snapshot in snapshots}
