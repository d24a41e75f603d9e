"""What a job is to the pipeline.

A job knows nothing of HTTP, signatures or the ledger. It names the documents it needs,
and its `step` decides, from what was read, what to write: the pipeline runs the step
inside the one transaction that also claims the message, so the job's writes commit
atomically with the ledger's mark and its token, in one commit.

- A job whose effects are only Firestore writes answers `Done`: its writes and its
  result; the message is finished in that commit and never shows `running`.
- A job with effects outside Firestore (an email, a webhook) or more work than one commit
  answers `Proceed`: its first writes commit with a claim (status `running`, a lease), then
  `finish` runs outside the transaction and its writes commit with the success mark,
  fenced by the claim so that an attempt that outlived its lease can write nothing.

`step` runs inside a transaction, which Firestore may run again under contention: it
reads only through its context and has no side effects of its own.
"""

import importlib
import importlib.util
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from google.cloud import firestore
from google.cloud.firestore_v1.base_document import DocumentSnapshot
from google.cloud.firestore_v1.batch import WriteBatch
from google.cloud.firestore_v1.document import DocumentReference
from google.cloud.firestore_v1.query import Query
from google.cloud.firestore_v1.transaction import Transaction
from pydantic import BaseModel

from qjobs.config import Settings
from qjobs.firestore_writes import set_write

MAX_WRITES_PER_COMMIT = 500

PayloadT = TypeVar("PayloadT", bound=BaseModel)
ValueT = TypeVar("ValueT")
Data = dict[str, Any]


@dataclass(frozen=True)
class Write:
    """One document write, applied to a batch or a transaction by whoever commits it."""

    ref: DocumentReference
    data: dict[str, Any] | None
    merge: bool = False
    create: bool = False
    """Only if the document does not exist yet: otherwise the whole commit fails
    (`AlreadyExists`), so two racing attempts cannot both believe they created it."""

    def apply(self, target: WriteBatch | Transaction) -> None:
        if self.data is None:
            target.delete(self.ref)
            return
        built = set_write(self.ref, self.data, merge=self.merge, create=self.create)
        if built is not None:
            target._add_write_pbs([built])
        elif self.create:
            target.create(self.ref, self.data)
        else:
            target.set(self.ref, self.data, merge=self.merge)


class Reads(Protocol):
    """Reads through the transaction a step or a page runs in. Each document is read at
    most once per transaction: the ones the job declared come with the first read."""

    def documents(self, refs: Sequence[DocumentReference]) -> dict[str, Data | None]:
        """The documents' data by path (None for a missing one); one BatchGet for those
        not read yet in this transaction, none if all were."""
        ...

    def query(self, query: Query) -> list[DocumentSnapshot[Any]]: ...


@dataclass(frozen=True)
class Attempt:
    number: int
    """1 for a message never seen, then one more per earlier attempt that failed or was
    given back."""
    now: datetime
    lease_until: datetime
    """When a claim this attempt takes (by proceeding) would run out."""


@dataclass(frozen=True)
class StepContext:
    settings: Settings
    db: firestore.Client
    message_id: str
    attempt: Attempt
    reads: Reads
    prefetched: Mapping[str, Data | None]
    """Documents the job's `prefetch` named, read by path without isolation before the
    transaction (a user's settings, say): never locked by the job's transaction."""

    def document(self, ref: DocumentReference) -> Data | None:
        """A document the job declared in `reads` (no round trip), or read now if not."""
        return self.reads.documents([ref])[ref.path]


@dataclass(frozen=True)
class Done:
    """The job is finished: commit its writes with the success mark and `result`."""

    writes: list[Write]
    result: dict[str, Any]
    """Stored in the ledger and answered to duplicates: keep it small."""


@dataclass(frozen=True)
class Proceed:
    """Commit `writes` with a claim on the message, then call `finish(payload, state, ctx)`."""

    writes: list[Write]
    state: Any = None


@dataclass
class JobResult:
    """What `finish` hands back: its last writes, committed with the success mark."""

    result: dict[str, Any] = field(default_factory=dict)
    writes: list[Write] = field(default_factory=list)


class Busy(Exception):
    """Raised by `step` when another message is doing this business event's work (a
    dead-letter replay racing its original, say): nothing is written, and the delivery is
    answered `409` with `Retry-After`, so it comes back when that work is done."""

    def __init__(self, retry_after_seconds: int, reason: str) -> None:
        super().__init__(reason)
        self.retry_after_seconds = retry_after_seconds


class RetryLater(Exception):
    """Raised by `finish` when part of the work failed for a reason a retry can fix: its
    `writes` (the outcomes so far) commit with the failure, and QStash retries."""

    def __init__(self, message: str, writes: list[Write]) -> None:
        super().__init__(message)
        self.writes = writes


class JobStopped(Exception):
    """Raised by `finish` when `should_stop()` turned true between two pieces of work."""


class PageCommitter(Protocol):
    def __call__(self, writes: list[Write]) -> None: ...


PageBuilder = Callable[[Reads], tuple[list[Write], ValueT]]


class PageTransactor(Protocol):
    def __call__(self, build: PageBuilder[ValueT]) -> ValueT: ...


@dataclass(frozen=True)
class JobContext:
    """What `finish` works with, outside the transaction, under the claim."""

    settings: Settings
    db: firestore.Client
    message_id: str
    attempt: int
    retried: int
    rpc: dict[str, Any]
    """`retry` and `timeout` keyword arguments for every Firestore call the job makes."""
    commit_page: PageCommitter
    """Commit writes now, atomically with a renewal of the claim's lease; refused (and the
    job stopped) if another attempt has taken the message over."""
    transact_page: PageTransactor
    """Like `commit_page`, for a page whose content depends on what it reads: `build` reads
    through the given `Reads` (and nothing else: it may run several times) and returns the
    writes and a value; they commit atomically with the lease renewal."""
    should_stop: Callable[[], bool]
    """True once the instance is shutting down: a job working in pieces stops between two
    of them (raising `JobStopped`) and lets QStash's retry carry on from what it committed."""


def no_documents(payload: Any, ctx: "ReadContext") -> list[DocumentReference]:
    return []


@dataclass(frozen=True)
class ReadContext:
    """What a job knows when it names the documents it needs."""

    settings: Settings
    db: firestore.Client
    message_id: str


@dataclass(frozen=True)
class PublishPolicy:
    """How QStash is to deliver a job: the product's retry policy, and a timeout that keeps
    the lease rule (a run shorter than the timeout, the timeout within the request timeout)."""

    retries: int
    retry_delay: str
    """QStash's `Upstash-Retry-Delay`: milliseconds, an expression over `retried` (from 0)."""
    timeout_seconds: int


@dataclass(frozen=True)
class JobSpec(Generic[PayloadT]):
    name: str
    payload_model: type[PayloadT]
    result_model: type[BaseModel]
    """The shape of the result, published in docs/openapi.yaml."""
    reads: Callable[[PayloadT, ReadContext], Sequence[DocumentReference]]
    """Documents `step` needs, read in the transaction's first BatchGet with the ledger entry."""
    step: Callable[[PayloadT, StepContext], Done | Proceed]
    prefetch: Callable[[PayloadT, ReadContext], Sequence[DocumentReference]] = no_documents
    """Documents read before the transaction, in the same round trip as the duplicate check."""
    finish: Callable[[PayloadT, Any, JobContext], JobResult] | None = None
    """Required when `step` can answer `Proceed`."""
    policy: PublishPolicy | None = None
    """How producers publish it (qjobs.publish); None for a job only QStash sends."""


class JobRoutes(Mapping[str, JobSpec[Any]]):
    """Path -> the `JOB` of a module, imported on first use (once, under a lock)."""

    def __init__(self, modules: Mapping[str, str]) -> None:
        missing = [module for module in modules.values() if importlib.util.find_spec(module) is None]
        if missing:
            raise ImportError(f"no job module {', '.join(missing)}")
        self.modules = dict(modules)
        self._loaded: dict[str, JobSpec[Any]] = {}
        self._lock = threading.Lock()

    def __getitem__(self, path: str) -> JobSpec[Any]:
        job = self._loaded.get(path)
        if job is None:
            module = self.modules[path]
            with self._lock:
                job = self._loaded.get(path) or importlib.import_module(module).JOB
                self._loaded[path] = job
        return job

    def __iter__(self) -> Iterator[str]:
        return iter(self.modules)

    def __len__(self) -> int:
        return len(self.modules)
