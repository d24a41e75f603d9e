"""`qjobs jobs show|list`: the ledger (`jobs/{messageId}`), as an operator reads it.

A job done in one transaction (its effects only Firestore writes: notify-collaborators
without channels, memory-sync of one page, the failure callback) never shows `running`:
its entry goes from absent to `succeeded`, `failed` or `rejected` in one commit. Only a
job working outside the transaction (sending email, paging) holds `running` with a lease.
"""

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.query import Query

from handlers.failure_callback import DEAD_LETTERS
from qjobs.cli.common import CliError, Commands, Environment, add_command, print_fields, print_json, print_table
from qjobs.config import Settings

STATUSES = ("running", "succeeded", "failed", "rejected")
COLUMNS = ("messageId", "job", "status", "attempts", "updatedAt", "error")


def add_parser(commands: Commands) -> None:
    parser = add_command(commands, "jobs", "read the ledger: one message, or a list", __doc__)
    verbs = parser.add_subparsers(dest="verb", metavar="show|list", required=True)
    show = add_command(verbs, "show", "a message's ledger entry and its dead-letter record", __doc__)
    show.add_argument("message_id", metavar="MESSAGE_ID")
    show.add_argument("--json", action="store_true", help="print it as JSON")
    show.set_defaults(run=run_show)
    listing = add_command(verbs, "list", "the latest ledger entries, newest first", __doc__)
    listing.add_argument("--job", help="only this job, e.g. memory-sync")
    listing.add_argument("--status", choices=STATUSES, help="only this status (running: see above)")
    listing.add_argument("--since", help="updated at or after: an ISO 8601 time, or an age such as 2h or 3d")
    listing.add_argument("--limit", type=int, default=20, help="at most this many (default 20, at most 500)")
    listing.add_argument("--json", action="store_true", help="print them as JSON")
    listing.set_defaults(run=run_list)


def ledger(env: Environment, db: firestore.Client) -> Any:
    return db.collection(env.get("LEDGER_COLLECTION", Settings.model_fields["ledger_collection"].default))


def run_show(args: argparse.Namespace, env: Environment) -> int:
    db = env.firestore()
    entry = ledger(env, db).document(args.message_id).get()
    letter = db.collection(DEAD_LETTERS).document(args.message_id).get()
    if not entry.exists and not letter.exists:
        raise CliError(f"no ledger entry and no dead-letter record for {args.message_id}")
    shown = {"messageId": args.message_id, "ledger": entry.to_dict() if entry.exists else None}
    shown["deadLetter"] = letter.to_dict() if letter.exists else None
    if args.json:
        print_json(shown)
        return 0
    print(f"message {args.message_id}")
    if entry.exists:
        print("ledger:")
        print_fields(entry.to_dict() or {}, "  ")
    else:
        print("ledger: none (refused before the ledger: a signature, the payload, or the message id)")
    if letter.exists:
        print("dead letter:")
        print_fields(letter.to_dict() or {}, "  ")
    return 0


def since_time(value: str | None, now: datetime) -> datetime | None:
    if value is None:
        return None
    units = {"m": 60, "h": 3600, "d": 86400}
    if value[:-1].isdigit() and value[-1:] in units:
        return now - timedelta(seconds=int(value[:-1]) * units[value[-1]])
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"--since must be an ISO 8601 time or an age such as 2h, not {value!r}") from None
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


def run_list(args: argparse.Namespace, env: Environment) -> int:
    if not 1 <= args.limit <= 500:
        raise CliError("--limit must be from 1 to 500")
    since = since_time(args.since, datetime.now(UTC))
    db = env.firestore()
    query = list_query(ledger(env, db), job=args.job, status=args.status, since=since, limit=args.limit)
    rows = []
    for snapshot in query.stream():
        entry = snapshot.to_dict() or {}
        rows.append({"messageId": snapshot.id, **entry, "error": (entry.get("lastError") or {}).get("code")})
    if args.json:
        print_json(rows)
    elif rows:
        print_table(rows, COLUMNS)
    else:
        print("no ledger entries match")
    return 0
