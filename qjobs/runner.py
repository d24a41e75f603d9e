"""Running one verified delivery's job against the ledger.

One plain read answers most duplicates (qjobs.ledger.preread); one transaction decides the
rest and runs the job's step (qjobs.claim). The plain read is skipped for a first delivery
of a job that prefetches nothing: such a delivery is almost always new, and the
transaction's first read is the entry anyway. A job that asked to proceed then finishes
under its claim: its run is registered so that SIGTERM can give its lease back, and its
writes commit fenced. Contention that outlasts those writes' own tries (a batch has none,
a page transaction five) is no failure: the claim is given back and the delivery answered
`409 in_progress`, as the claim's own contention is.
"""

import logging
from typing import Any

from pydantic import BaseModel

from qjobs.claim import Claimed, Failed, Finished, Rejected, claim_and_step
from qjobs.config import Settings
from qjobs.errors import ApiError, PermanentJobError, non_retryable
from qjobs.jobs import (
    Attempt,
    Done,
    JobContext,
    JobSpec,
    JobStopped,
    PageBuilder,
    Proceed,
    ReadContext,
    Reads,
    RetryLater,
    StepContext,
    ValueT,
    Write,
)
from qjobs.ledger import CONTENTION_RETRY_AFTER_SECONDS, Claim, ClaimLost, Delivery, Ledger
from qjobs.logs import DeliveryLog
from qjobs.shutdown import ActiveRuns, Shutdown
from qjobs.transactions import is_contention

log = logging.getLogger(__name__)


def claim_lost() -> ApiError:
    return ApiError(409, "claim_lost", "another attempt took this message over", headers={"Retry-After": "5"})


def failed_for_now(cause: str) -> ApiError:
    """A job's finish asked to be retried later (a channel down, say): an expected failure
    with a known cause, answered without a stack trace (there is no bug to point at)."""
    return ApiError(500, "job_failed", f"the job failed; QStash will retry it ({cause})")


def contended() -> ApiError:
    """Firestore aborted a commit of the run for another's (two runs of one business object
    at once): nothing is wrong, and QStash's retry, shortly, carries on from what was
    committed. Answered as the claim's own contention is, without a stack trace."""
    return ApiError(
        409,
        "in_progress",
        "the message's writes met contention; retry shortly",
        headers={"Retry-After": str(CONTENTION_RETRY_AFTER_SECONDS)},
    )


def shutting_down() -> ApiError:
    return ApiError(503, "shutting_down", "this instance is shutting down", headers={"Retry-After": "1"})


class JobRunner:
    def __init__(self, settings: Settings, ledger: Ledger, active: ActiveRuns, shutdown: Shutdown) -> None:
        self.settings = settings
        self.ledger = ledger
        self.active = active
        self.shutdown = shutdown

    def run(self, job: JobSpec[Any], payload: BaseModel, delivery: Delivery, record: DeliveryLog) -> dict[str, Any]:
        """The job's result; or a ledger answer, an ApiError or the job's own error raised."""
        context = ReadContext(self.settings, self.ledger.db, delivery.message_id)
        prefetch = job.prefetch(payload, context)
        prefetched = self.ledger.preread(delivery, prefetch) if prefetch or delivery.retried else {}

        def step(reads: Reads, attempt: Attempt) -> Done | Proceed:
            ctx = StepContext(self.settings, self.ledger.db, delivery.message_id, attempt, reads, prefetched)
            return job.step(payload, ctx)

        outcome = claim_and_step(self.ledger, delivery, job.reads(payload, context), step)
        record.attempt = outcome.attempt
        if isinstance(outcome, Finished):
            record.outcome = "succeeded"
            return outcome.result
        if isinstance(outcome, Rejected):
            record.outcome, record.error = "rejected", outcome.code
            raise non_retryable(outcome.code, outcome.message)
        if isinstance(outcome, Failed):
            record.outcome = "failed"
            raise outcome.error
        return self._finish_claimed(job, payload, outcome, record)

    def _finish_claimed(
        self, job: JobSpec[Any], payload: BaseModel, claimed: Claimed, record: DeliveryLog
    ) -> dict[str, Any]:
        claim = claimed.claim
        if job.finish is None:
            raise TypeError(f"the job {job.name} proceeded but has no finish")
        key = self.active.add(lambda: self.ledger.release(claim, "the instance shut down during the run"))
        try:
            if self.shutdown.draining.is_set():
                # Added after the drain counted the runs: it would never give this claim back.
                raise JobStopped("claimed as the instance began to shut down")
            result = job.finish(payload, claimed.state, self._context(claim))
            self.ledger.succeed(claim, result.writes, result.result)
        except ClaimLost:
            record.outcome = "claim_lost"
            raise claim_lost() from None
        except PermanentJobError as error:
            self._reject(claim, error, record)
        except JobStopped:
            record.outcome = "stopped"
            self._give_back(claim, "abandoned", "the instance shut down during the run")
            raise shutting_down() from None
        except RetryLater as later:
            record.outcome, record.reason = "failed", str(later)
            self._give_back(claim, "job_failed", str(later), later.writes)
            raise failed_for_now(str(later)) from None
        except Exception as error:
            if is_contention(error):
                raise self._contended(claim, record) from None
            record.outcome = "failed"
            self._give_back(claim, "job_failed", type(error).__name__)
            raise
        finally:
            self.active.remove(key)
        record.outcome = "succeeded"
        return result.result

    def _reject(self, claim: Claim, error: PermanentJobError, record: DeliveryLog) -> None:
        try:
            self.ledger.reject(claim, error.code, error.message)
        except ClaimLost:
            record.outcome = "claim_lost"
            raise claim_lost() from None
        except Exception as failure:
            if is_contention(failure):
                raise self._contended(claim, record) from None
            raise
        record.outcome, record.error = "rejected", error.code
        raise non_retryable(error.code, error.message) from None

    def _contended(self, claim: Claim, record: DeliveryLog) -> ApiError:
        """Give the claim back at once, so that the retry need not wait for the lease."""
        record.outcome, record.reason = "in_progress", "contended"
        self._give_back(claim, "contended", "a commit was aborted by contention")
        return contended()

    def _give_back(self, claim: Claim, code: str, message: str, writes: list[Write] | None = None) -> None:
        """Best effort: if Firestore itself is what failed, the lease simply runs out."""
        try:
            self.ledger.fail(claim, code, message, writes)
        except ClaimLost:
            return
        except Exception as unrecorded:
            log.warning("could not record the failure", extra={"json_fields": {"error": type(unrecorded).__name__}})

    def _context(self, claim: Claim) -> JobContext:
        ledger = self.ledger

        def commit_page(writes: list[Write]) -> None:
            ledger.commit_page(claim, writes)

        def transact_page(build: PageBuilder[ValueT]) -> ValueT:
            return ledger.transact_page(claim, build)

        return JobContext(
            settings=self.settings,
            db=ledger.db,
            message_id=claim.delivery.message_id,
            attempt=claim.attempt,
            retried=claim.delivery.retried,
            rpc=ledger.rpc,
            commit_page=commit_page,
            transact_page=transact_page,
            should_stop=lambda: self.shutdown.draining.is_set() or claim.ended,
        )
