"""What a delivery cannot cost less than: the same Firestore work done by the client directly.

A fresh notify-collaborators job of the lean design is one plain read (the ledger entry and
the recipients' user documents), then one transaction that reads the ledger entry, the
token entry, the event and the inbox entries in one BatchGet and commits the mark, the
token, the event and the inbox entries. A duplicate is one plain read of the entry. The
service's figures are compared with these plus one HTTP round trip to the same server.
"""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import firestore

RECIPIENTS = 5


def fresh_job(db: firestore.Client, n: int) -> None:
    key = uuid.uuid4().hex
    entry = db.collection("floorJobs").document(f"msg_{key}")
    token = db.collection("floorTokens").document(key)
    event = db.collection("floorEvents").document(key)
    users = [db.collection("floorUsers").document(f"user-{n}-{k}") for k in range(RECIPIENTS)]
    inbox = [user.collection("notifications").document(key) for user in users]
    list(db.get_all([entry, *users]))
    now = datetime.now(UTC)

    @firestore.transactional
    def commit(transaction: Any) -> None:
        list(transaction.get_all([entry, token, event, *inbox]))
        transaction.set(entry, {"job": "floor", "status": "succeeded", "result": {"notified": RECIPIENTS}})
        transaction.set(token, {"messageId": entry.id, "expireAt": now + timedelta(minutes=6)})
        transaction.create(event, {"tripId": f"trip-{n}", "recipientIds": [u.id for u in users], "occurredAt": now})
        for ref in inbox:
            transaction.create(ref, {"tripId": f"trip-{n}", "message": "Dates moved to June", "read": False})

    commit(db.transaction())


def duplicate(db: firestore.Client, message_id: str) -> None:
    db.collection("floorJobs").document(message_id).get()


def finished_entry(db: firestore.Client) -> str:
    message_id = f"msg_{uuid.uuid4().hex}"
    db.collection("floorJobs").document(message_id).set({"status": "succeeded", "result": {}})
    return message_id
