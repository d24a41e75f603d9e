"""`python -m qjobs.devtools.seed`: sample users, a trip and a conversation in `make run`'s
emulator, so that memory-sync and notify-collaborators have something to work on locally.

They fit the examples the README, the banner and docs/notify-collaborators.md give, where
u1 acts on trip-1 and u1, u2 and u3 are its collaborators: u1 (Maya), who acts, is never
notified; u2 (Ada) has an address, so with email on exactly one email is sent; u3 (Grace)
turned email off, so each kind of outcome shows. u1's conversation c1 is memory-sync's.
"""

import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.cloud import firestore

from qjobs.devtools.run_local import EMULATOR_HOST_FILE, LOCAL_PROJECT

USERS: dict[str, dict[str, Any]] = {
    "u1": {"displayName": "Maya", "email": "maya@example.test"},
    "u2": {
        "displayName": "Ada",
        "email": "ada@example.test",
        "notificationPreferences": {"mutedEvents": ["trip_deleted"]},
    },
    "u3": {"displayName": "Grace", "email": "grace@example.test", "notificationPreferences": {"email": False}},
}
TRIPS = {"trip-1": {"title": "Lisbon in June"}}
MESSAGES = [
    ("user", "Hi! We want to plan a trip to Lisbon in June. I'm vegan and I fly out of Boston Logan (BOS)."),
    ("assistant", "Lisbon in June is lovely. What budget should I plan for?"),
    ("user", "Keep it under $2,000 for the whole trip. No red-eyes please, and book me an aisle seat."),
    ("assistant", "I found an apartment in Alfama and a hotel near Rossio."),
    ("user", "Let's go with the apartment in Alfama. Do we need visas?"),
]


def main() -> int:
    host = os.environ.get("FIRESTORE_EMULATOR_HOST") or (
        Path(EMULATOR_HOST_FILE).read_text().strip() if Path(EMULATOR_HOST_FILE).exists() else ""
    )
    if not host:
        print("seed: start `make run` first (or set FIRESTORE_EMULATOR_HOST)", file=sys.stderr)
        return 1
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    db = firestore.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", LOCAL_PROJECT))
    start = datetime.now(UTC) - timedelta(hours=1)
    batch = db.batch()
    for uid, user in USERS.items():
        batch.set(db.collection("users").document(uid), user)
    for trip_id, trip in TRIPS.items():
        batch.set(db.collection("trips").document(trip_id), trip)
    batch.set(db.collection("conversations").document("c1"), {"userId": "u1", "title": "Lisbon", "createdAt": start})
    for n, (role, content) in enumerate(MESSAGES):
        ref = db.collection("conversations", "c1", "messages").document(f"m{n}")
        batch.set(ref, {"role": role, "content": content, "createdAt": start + timedelta(minutes=n)})
    batch.commit()
    print(
        "seeded users u1 (Maya), u2 (Ada, ada@example.test) and u3 (Grace, email off), "
        f"trip trip-1 (Lisbon in June) and conversation c1 of u1 ({len(MESSAGES)} messages) at {host}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
