"""`qjobs erase-user USER_ID`: a privacy request, carried out.

Removes `users/{uid}` and everything under it (inbox, memories, preferences, conversation
summaries), the user's conversations and their messages (so that a later memory-sync can
rebuild nothing), the user from trip events' recipient lists, and the user's id where they
were the actor of an event (in the event and in other users' inbox entries). It works in
pages and is idempotent: run again after an interruption, it finishes; run after it
finished, it finds nothing. It asks before it starts unless given --yes. USER_ID must be a
safe id (1-128 letters, digits or _ - . : @), as every id the jobs store is.
"""

import argparse
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from qjobs.cli.common import CliError, Commands, Environment, add_command, print_json, safe_id
from qjobs.trip_events import EVENTS_COLLECTION, Refs

PAGE = 200
REMOVED = {
    "conversationDocuments": "conversation documents and their messages",
    "userDocuments": "user documents and everything under them",
    "tripEventsReceived": "trip events it received",
    "tripEventsCaused": "trip events it caused",
    "notificationsCaused": "other users' notifications it caused",
}
"""What `erase_user` counts, by the key `--json` prints (every one of them, zeros too, so
that the answer has one shape), and as the text says it. A collection added under
`users/{uid}` later is counted in userDocuments."""


def add_parser(commands: Commands) -> None:
    parser = add_command(commands, "erase-user", "erase a user's data (a privacy request)", __doc__ or "")
    parser.add_argument("user_id", metavar="USER_ID", type=safe_id)
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--json", action="store_true", help="print what was removed as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, env: Environment) -> int:
    if not args.yes and not confirmed(args.user_id):
        raise CliError("not confirmed: nothing was erased")
    removed = erase_user(env.firestore(), args.user_id)
    if args.json:
        print_json({"userId": args.user_id, "removed": {what: removed[what] for what in REMOVED}})
        return 0
    if not sum(removed.values()):
        print(f"nothing of user {args.user_id} was left to erase")
        return 0
    print(f"erased user {args.user_id}:")
    for what, count in sorted(removed.items(), key=lambda item: REMOVED[item[0]]):
        print(f"  {REMOVED[what]}: {count}")
    return 0


def confirmed(user_id: str) -> bool:
    print(
        f"This erases user {user_id}: their user document and everything under it, their conversations and "
        f"messages, and their id from trip events. Type the user id to confirm: ",
        end="",
        flush=True,
    )
    answer = sys.stdin.readline()
    if not sys.stdin.isatty():
        print()  # the answer was not typed, so no newline was echoed
    return answer.strip() == user_id


def erase_user(db: firestore.Client, uid: str, *, page: int = PAGE) -> Counter[str]:
    """What was removed, by kind (the keys of REMOVED). Each step finishes what an
    interrupted run left."""
    removed: Counter[str] = Counter()
    for conversation in pages(db.collection("conversations").where(filter=FieldFilter("userId", "==", uid)), page):
        removed["conversationDocuments"] += delete_tree(db, conversation.reference)
    removed["userDocuments"] += delete_tree(db, db.collection("users").document(uid))
    events = db.collection(EVENTS_COLLECTION)
    received = events.where(filter=FieldFilter("recipientIds", "array_contains", uid))
    for event in pages(received, page):
        event.reference.update({"recipientIds": firestore.ArrayRemove([uid])})
        removed["tripEventsReceived"] += 1
    for event in pages(events.where(filter=FieldFilter("actorId", "==", uid)), page):
        removed["notificationsCaused"] += blank_actor(db, event)
        removed["tripEventsCaused"] += 1
    return removed


def delete_tree(db: firestore.Client, document: Any) -> int:
    """Delete a document and every document under it, the document last, so that a run
    interrupted half-way leaves it for the next run to find. What was already gone counts
    nothing (`recursive_delete` of a document counts it whether it existed or not)."""
    removed = sum(db.recursive_delete(collection) for collection in document.collections())
    if document.get().exists:
        document.delete()
        removed += 1
    return removed


def pages(query: Any, size: int) -> Iterator[Any]:
    """Every document of the query, a page at a time; a page whose documents the caller
    removed is not read again, since the query no longer matches them."""
    while True:
        batch = list(query.limit(size).stream())
        yield from batch
        if len(batch) < size:
            return


def blank_actor(db: firestore.Client, event: Any) -> int:
    """Blank the actor of an event and of its recipients' inbox entries, in one commit: the
    entries are found through the event (their ids derive from its key), so no query spans
    every user's inbox."""
    refs = Refs.of_event(event.to_dict() or {}, db)
    entries = [refs.inbox(recipient) for recipient in event.get("recipientIds") or []]
    found = [entry.reference for entry in db.get_all(entries) if entry.exists]
    batch = db.batch()
    for entry in found:
        batch.update(entry, {"actorId": None})
    batch.update(event.reference, {"actorId": None})
    batch.commit()
    return len(found)
