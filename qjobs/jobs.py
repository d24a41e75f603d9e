"""What a job is to the pipeline: a payload model and a function that does the work.

A job knows nothing of HTTP, signatures or the ledger. It either hands its Firestore
writes back (the pipeline commits them atomically with the ledger's `succeeded` mark) or,
when the work is too large for one commit, commits pages itself through
`JobContext.commit_page`, each page fenced by the claim, and hands back only the last.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from google.cloud import firestore
from google.cloud.firestore_v1.batch import WriteBatch
from google.cloud.firestore_v1.document import DocumentReference
from google.cloud.firestore_v1.transaction import Transaction
from pydantic import BaseModel

from qjobs.config import Settings

MAX_WRITES_PER_COMMIT = 500

PayloadT = TypeVar("PayloadT", bound=BaseModel)


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
        elif self.create:
            target.create(self.ref, self.data)
        else:
            target.set(self.ref, self.data, merge=self.merge)


@dataclass
class JobResult:
    """`result` is stored in the ledger and answered to duplicates: keep it small."""

    result: dict[str, Any] = field(default_factory=dict)
    writes: list[Write] = field(default_factory=list)


class PageCommitter(Protocol):
    def __call__(self, writes: list[Write]) -> None: ...


ValueT = TypeVar("ValueT")
PageBuilder = Callable[[Transaction], tuple[list[Write], ValueT]]


class PageTransactor(Protocol):
    def __call__(self, build: PageBuilder[ValueT]) -> ValueT: ...


@dataclass(frozen=True)
class JobContext:
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
    """Like `commit_page`, for a page whose content depends on what it reads: `build` does
    the reads through the transaction (and nothing else: it may run several times) and
    returns the writes and a value; they commit atomically with the lease renewal."""


@dataclass(frozen=True)
class JobSpec(Generic[PayloadT]):
    name: str
    payload_model: type[PayloadT]
    result_model: type[BaseModel]
    """The shape of `JobResult.result`, published in docs/openapi.yaml."""
    run: Callable[[PayloadT, JobContext], JobResult]
