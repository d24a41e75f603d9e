"""`python -m qjobs.devtools.seed`: a sample user and conversation in `make run`'s emulator,
so that memory-sync and notify-collaborators have something to work on locally."""

import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from google.cloud import firestore

from qjobs.devtools.run_local import EMULATOR_HOST_FILE, LOCAL_PROJECT

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
    batch.set(db.collection("users").document("u1"), {"email": "ada@example.test"})
    batch.set(db.collection("users").document("u2"), {"notificationPreferences": {"mutedEvents": ["trip_deleted"]}})
    batch.set(db.collection("conversations").document("c1"), {"userId": "u1", "title": "Lisbon", "createdAt": start})
    for n, (role, content) in enumerate(MESSAGES):
        ref = db.collection("conversations", "c1", "messages").document(f"m{n}")
        batch.set(ref, {"role": role, "content": content, "createdAt": start + timedelta(minutes=n)})
    batch.commit()
    print(f"seeded users u1, u2 and conversation c1 ({len(MESSAGES)} messages) at {host}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
