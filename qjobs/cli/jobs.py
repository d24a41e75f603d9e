"""`qjobs jobs show|list`: the ledger (`jobs/{messageId}`), as an operator reads it, with
the failure callback's record (`deadLetters/{messageId}`) of a message QStash gave up on.

A failed attempt reads `retrying` while QStash will try the message again, and `failed`
once that is final; `jobs show` says which, and when the next attempt is due.
"""

import argparse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_document import DocumentSnapshot
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.query import Query

from handlers import ROUTES
from handlers.failure_callback import DEAD_LETTERS
from qjobs.cli.common import (
    CliError,
    Commands,
    Environment,
    add_command,
    bounded_int,
    print_fields,
    print_json,
    print_table,
    safe_id,
    time_text,
)
from qjobs.config import Settings
from qjobs.devtools.broker.expression import delay_ms, parse
from qjobs.jobs import PublishPolicy
from qjobs.ledger import FAILED, REJECTED, RUNNING, SUCCEEDED

RETRYING = "retrying"
STATUSES = (RUNNING, SUCCEEDED, RETRYING, FAILED, REJECTED)
COLUMNS = ("messageId", "job", "status", "attempts", "updatedAt", "error")
AGE_UNITS = {"m": 60, "h": 3600, "d": 86400}

SHOW_DESCRIPTION = """\
Print a message's ledger entry field by field (status, attempts, lease, last error, the
job's result) under what its status means now, and the failure callback's record
(`deadLetters/{messageId}`) if QStash gave up on it. A message refused before the ledger
(a bad signature, payload or message id) has only the latter.
"""

LIST_DESCRIPTION = """\
The latest ledger entries, newest first, optionally of one job, one status, or since a
time (an ISO 8601 time, UTC unless it names its zone, or an age such as 30m, 2h or 3d).

`succeeded`: done. `rejected`: the job refused the message for good (489). `retrying`: an
attempt failed and QStash will try again (the job's publishing policy has retries left,
and no failure callback reported that QStash gave up); `jobs show` says when. `failed`:
the last attempt failed and QStash gave up (its last retry, or a dead-letter record).
`running`: a run holds the message's lease.

A job done in one transaction (its effects only Firestore writes: notify-collaborators
without channels, memory-sync of one page, the failure callback) never shows `running`:
its entry goes from absent to `succeeded`, `failed` or `rejected` in one commit. Only a
job working outside the transaction (sending email, paging) holds `running` with a lease.
"""


def add_parser(commands: Commands) -> None:
    parser = add_command(commands, "jobs", "read the ledger: one message, or a list", __doc__ or "")
    verbs = parser.add_subparsers(dest="verb", metavar="show|list", required=True)
    show = add_command(verbs, "show", "a message's ledger entry and its dead-letter record", SHOW_DESCRIPTION)
    show.add_argument("message_id", metavar="MESSAGE_ID", type=safe_id)
    show.add_argument("--json", action="store_true", help="print it as JSON")
    show.set_defaults(run=run_show)
    listing = add_command(verbs, "list", "the latest ledger entries, newest first", LIST_DESCRIPTION)
    listing.add_argument("--job", choices=job_names(), help="only this job")
    listing.add_argument("--status", choices=STATUSES, help="only this status (see above)")
    listing.add_argument(
        "--since", type=since, help="updated at or after: an ISO 8601 time, or an age such as 2h or 3d"
    )
    listing.add_argument(
        "--limit", type=bounded_int(1, 500), default=20, help="at most this many (default 20, at most 500)"
    )
    listing.add_argument("--json", action="store_true", help="print them as JSON")
    listing.set_defaults(run=run_list)


def job_names() -> list[str]:
    return sorted(ROUTES[path].name for path in ROUTES)


def policy_of(job: str) -> PublishPolicy | None:
    return next((ROUTES[path].policy for path in ROUTES if ROUTES[path].name == job), None)


def ledger(env: Environment, db: firestore.Client) -> Any:
    return db.collection(env.get("LEDGER_COLLECTION", Settings.model_fields["ledger_collection"].default))


# ------------------------------------------------------------ what an entry means now


@dataclass(frozen=True)
class Standing:
    """What a message's ledger entry means now: the ledger's status, except that a failed
    attempt QStash will retry is `retrying`, with when the next attempt is due."""

    status: str
    next_attempt_at: datetime | None = None
    explanation: str | None = None


def standing(entry: Mapping[str, Any] | None, *, dead_lettered: bool) -> Standing:
    """`entry` is the ledger's document (None when the message has none); `dead_lettered`
    whether `deadLetters/{messageId}` exists. Whether QStash retries a failed attempt is
    judged by the job's publishing policy (its retries, and its `Upstash-Retry-Delay` for
    when): QStash does not tell the service how many retries a message was published with."""
    if entry is None:
        return Standing(FAILED, explanation="QStash gave up on it: see the dead-letter record")
    status = str(entry.get("status"))
    if status != FAILED:
        return Standing(status)
    if dead_lettered:
        return Standing(FAILED, explanation="QStash gave up on it: see the dead-letter record")
    policy = policy_of(str(entry.get("job")))
    if policy is None:
        return Standing(FAILED, explanation="QStash may retry it: this job's retries are QStash's, not a policy's")
    retried = int(entry.get("retried") or 0)
    if retried >= policy.retries:
        return Standing(
            FAILED, explanation=f"its last retry ({retried} of {policy.retries}) failed: QStash gives up on it"
        )
    return retrying(entry, policy, retried)


def retrying(entry: Mapping[str, Any], policy: PublishPolicy, retried: int) -> Standing:
    """The next attempt is due the policy's delay after this one failed (the delay
    expression's `retried` is the failed attempt's `Upstash-Retried`, as QStash reads it)."""
    failed_at = entry.get("updatedAt")
    due = None
    if isinstance(failed_at, datetime):
        due = failed_at + timedelta(milliseconds=delay_ms(parse(policy.retry_delay), retried))
    when = f", due about {time_text(due)}" if due else ""
    explanation = f"QStash retries it: retry {retried + 1} of {policy.retries}{when}, by the job's retry policy"
    return Standing(RETRYING, due, explanation)


def dead_lettered(db: firestore.Client, message_ids: Sequence[str]) -> set[str]:
    """Which of the messages have a dead-letter record, in one read."""
    if not message_ids:
        return set()
    refs = [db.collection(DEAD_LETTERS).document(message_id) for message_id in message_ids]
    return {snapshot.id for snapshot in db.get_all(refs) if snapshot.exists}


# ------------------------------------------------------------ show


def run_show(args: argparse.Namespace, env: Environment) -> int:
    db = env.firestore()
    entry = ledger(env, db).document(args.message_id).get()
    letter = db.collection(DEAD_LETTERS).document(args.message_id).get()
    if not entry.exists and not letter.exists:
        raise CliError(f"no ledger entry and no dead-letter record for {args.message_id}")
    now = standing(entry.to_dict() if entry.exists else None, dead_lettered=letter.exists)
    shown = {
        "messageId": args.message_id,
        "status": now.status,
        "nextAttemptAt": now.next_attempt_at,
        "ledger": entry.to_dict() if entry.exists else None,
        "deadLetter": letter.to_dict() if letter.exists else None,
    }
    if args.json:
        print_json(shown)
        return 0
    print(f"message {args.message_id}")
    print(f"status: {now.status}" + (f" ({now.explanation})" if now.explanation else ""))
    if entry.exists:
        print("ledger:")
        print_fields(entry.to_dict() or {}, "  ")
    else:
        print("ledger: none (refused before the ledger: a signature, the payload, or the message id)")
    if letter.exists:
        print("dead letter:")
        print_fields(letter.to_dict() or {}, "  ")
    return 0


# ------------------------------------------------------------ list


def since(value: str) -> datetime:
    """An argparse `type`: an age (`30m`, `2h`, `3d`) before now, or an ISO 8601 time (UTC
    unless it names its zone)."""
    if value[:-1].isdigit() and value[-1:] in AGE_UNITS:
        return datetime.now(UTC) - timedelta(seconds=int(value[:-1]) * AGE_UNITS[value[-1]])
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an ISO 8601 time or an age such as 2h or 3d, not {value!r}"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def list_query(collection: Any, *, job: str | None, status: str | None, since: datetime | None, limit: int) -> Query:
    """The query `jobs list` runs; firestore.indexes.json has an index for every form of it."""
    query = collection
    if job:
        query = query.where(filter=FieldFilter("job", "==", job))
    if status:
        query = query.where(filter=FieldFilter("status", "==", status))
    if since:
        query = query.where(filter=FieldFilter("updatedAt", ">=", since))
    ordered: Query = query.order_by("updatedAt", direction=firestore.Query.DESCENDING).limit(limit)
    return ordered


def with_standings(db: firestore.Client, query: Query, page: int) -> Iterator[tuple[DocumentSnapshot[Any], Standing]]:
    """Every entry the query finds, with its standing, read a page at a time (the next page
    only when the caller asks for more): `retrying` and `failed` are both `failed` in the
    ledger, so a list of one of them may need more than one page to fill its limit. Each
    page's dead-letter records come in one read."""
    cursor: DocumentSnapshot[Any] | None = None
    while True:
        batch = list((query.start_after(cursor) if cursor else query).stream())
        failed = [snapshot.id for snapshot in batch if (snapshot.to_dict() or {}).get("status") == FAILED]
        letters = dead_lettered(db, failed)
        for snapshot in batch:
            yield snapshot, standing(snapshot.to_dict() or {}, dead_lettered=snapshot.id in letters)
        if len(batch) < page:
            return
        cursor = batch[-1]


def run_list(args: argparse.Namespace, env: Environment) -> int:
    db = env.firestore()
    stored = FAILED if args.status == RETRYING else args.status
    query = list_query(ledger(env, db), job=args.job, status=stored, since=args.since, limit=args.limit)
    rows: list[dict[str, Any]] = []
    for snapshot, now in with_standings(db, query, args.limit):
        if args.status in (None, now.status):
            rows.append({"messageId": snapshot.id, **(snapshot.to_dict() or {}), "status": now.status})
            rows[-1]["nextAttemptAt"] = now.next_attempt_at
        if len(rows) == args.limit:
            break
    if args.json:
        print_json(rows)
    elif rows:
        print_table([{**row, "error": (row.get("lastError") or {}).get("code")} for row in rows], COLUMNS)
    else:
        print("no ledger entries match")
    return 0
