"""Read-write transactions that begin with their first read, and read each document once.

The client library starts a transaction with a round trip of its own (`BeginTransaction`).
Firestore can instead start it inside the first read (`new_transaction` on
`BatchGetDocuments`, which answers the transaction's id in its stream): every transaction
here does that, one round trip fewer per delivery. After the first read the library's
`Transaction` does the rest (later reads, queries, the writes, commit and rollback), with
the id the first read returned.

A transaction aborted by contention, at a read (a lock waited for too long) or at its
commit, runs again, naming the aborted one so that Firestore keeps its place in line.
"""

import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.base_client import _parse_batch_get, _reference_info
from google.cloud.firestore_v1.base_document import DocumentSnapshot
from google.cloud.firestore_v1.document import DocumentReference
from google.cloud.firestore_v1.query import Query
from google.cloud.firestore_v1.transaction import Transaction

from qjobs.jobs import Data

ValueT = TypeVar("ValueT")


def data_of(snapshot: DocumentSnapshot[Any] | None) -> Data | None:
    return (snapshot.to_dict() or {}) if snapshot is not None and snapshot.exists else None


def by_path(snapshots: Iterable[DocumentSnapshot[Any]]) -> dict[str, DocumentSnapshot[Any]]:
    return {snapshot.reference.path: snapshot for snapshot in snapshots}


def read_one(db: firestore.Client, ref: DocumentReference, rpc: dict[str, Any]) -> Data | None:
    """One document by the unary GetDocument: the library reads even one document through
    a BatchGet stream, which costs twice the CPU."""
    request = {"name": ref._document_path}
    try:
        document = db._firestore_api.get_document(request=request, metadata=db._rpc_metadata, **rpc)
    except exceptions.NotFound:
        return None
    data: Data = _helpers.decode_dict(document.fields, db)  # type: ignore[assignment]
    return data


def is_contention(error: BaseException) -> bool:
    """Firestore aborted the transaction for another one: at a read that waited too long
    for a lock, or at the commit."""
    return isinstance(error, exceptions.Aborted)


class TransactionReads:
    """`qjobs.jobs.Reads` over one transaction: snapshots are kept by path, so asking again
    for a document already read costs no round trip. The first read begins the transaction."""

    def __init__(self, transaction: Transaction, rpc: dict[str, Any], retry_id: bytes | None = None) -> None:
        self.transaction = transaction
        self.rpc = rpc
        self.retry_id = retry_id
        self.snapshots: dict[str, DocumentSnapshot[Any]] = {}

    def snapshots_of(self, refs: Sequence[DocumentReference]) -> dict[str, DocumentSnapshot[Any]]:
        """One BatchGet for the documents not read yet; the snapshots of all of `refs`."""
        missing = list({ref.path: ref for ref in refs if ref.path not in self.snapshots}.values())
        if missing:
            read = (
                self.transaction.get_all(missing, **self.rpc) if self.transaction.in_progress else self._begin(missing)
            )
            self.snapshots.update(by_path(read))
        return {ref.path: self.snapshots[ref.path] for ref in refs}

    def documents(self, refs: Sequence[DocumentReference]) -> dict[str, Data | None]:
        return {path: data_of(snapshot) for path, snapshot in self.snapshots_of(refs).items()}

    def query(self, query: Query) -> list[DocumentSnapshot[Any]]:
        if not self.transaction.in_progress:
            self.transaction._begin(retry_id=self.retry_id)
        return list(self.transaction.get(query, **self.rpc))

    def _begin(self, refs: Sequence[DocumentReference]) -> list[DocumentSnapshot[Any]]:
        """Read `refs` in a transaction this read begins; the transaction takes its id."""
        client = self.transaction._client
        paths, reference_map = _reference_info(list(refs))
        read_write = {"retry_transaction": self.retry_id} if self.retry_id else {}
        request = {
            "database": client._database_string,
            "documents": paths,
            "new_transaction": {"read_write": read_write},
        }
        responses = client._firestore_api.batch_get_documents(
            request=request, metadata=client._rpc_metadata, **self.rpc
        )
        snapshots = []
        for response in responses:
            if response.transaction:
                self.transaction._id = response.transaction
            if response._pb.WhichOneof("result"):
                snapshots.append(_parse_batch_get(response, reference_map, client))
        if not self.transaction.in_progress:
            raise exceptions.InternalServerError("the read did not begin a transaction")  # type: ignore[no-untyped-call]
        return snapshots


def run_transaction(
    db: firestore.Client,
    rpc: dict[str, Any],
    function: Callable[[TransactionReads], ValueT],
    attempts: int,
) -> tuple[ValueT, Transaction]:
    """Run `function` (reads through the given `TransactionReads`, then writes to its
    `transaction`) and commit, again when contention aborts it; the value and the committed
    transaction (its `write_results` in the order of the writes)."""
    retry_id: bytes | None = None
    for attempt in range(1, attempts + 1):
        reads = TransactionReads(db.transaction(), rpc, retry_id)
        transaction = reads.transaction
        try:
            value = function(reads)
            if not transaction.in_progress:
                transaction._begin(retry_id=retry_id)
            transaction._commit()
        except Exception as error:
            retry_id = transaction.id or retry_id
            _roll_back(transaction)
            if attempt == attempts or not is_contention(error):
                raise
            time.sleep(random.uniform(0.01, 0.05) * attempt)  # noqa: S311 - jitter, not security
            continue
        return value, transaction
    raise AssertionError("unreachable")


def _roll_back(transaction: Transaction) -> None:
    """Release the transaction's locks at once rather than when Firestore times it out;
    best effort, as the error that stopped it is what matters."""
    if not transaction.in_progress:
        return
    try:
        transaction._rollback()
    except exceptions.GoogleAPICallError:
        transaction._clean_up()
