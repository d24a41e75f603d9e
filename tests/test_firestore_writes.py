"""The write messages qjobs.firestore_writes builds are, byte for byte, the ones the client
library builds for the same call; what it does not build, it leaves to the library."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1.types import write as write_types

from qjobs.firestore_writes import fenced_update, set_write
from qjobs.jobs import Write

NOW = datetime(2026, 11, 28, 19, 2, 41, 430960, tzinfo=UTC)
READ_BACK = DatetimeWithNanoseconds(2026, 11, 28, 19, 2, 41, nanosecond=430960123, tzinfo=UTC)  # type: ignore[no-untyped-call]
DOCUMENTS: list[dict[str, Any]] = [
    {"tripId": "trip-1", "read": False, "attempts": 3, "ratio": 0.5, "none": None},
    {"createdAt": firestore.SERVER_TIMESTAMP, "message": "Dates moved", "actorId": None},
    {"runs": firestore.Increment(1), "score": firestore.Increment(0.5), "marker": "m"},
    {"delivery": {"email": {"status": "pending", "attempts": 0, "lastError": None, "sentAt": NOW}}},
    {"recipientIds": ["u1", "u2"], "empty": [], "nothing": {}, "nested": [{"a": 1}, [1, 2]]},
    {"at": NOW, "read": READ_BACK, "local": datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))},
    {"result": {"notified": 2, "email": {"sent": 1, "failed": 0}, "webhook": "sent"}, "expireAt": NOW},
    {"value": {"amount": 2000, "currency": "USD", "per": "trip"}, "keywords": ["budget", "usd"]},
]


@pytest.fixture(scope="module")
def db() -> firestore.Client:
    """A client that never connects: building writes needs none."""
    return firestore.Client(project="p", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]


def library_write(db: firestore.Client, call: str, data: dict[str, Any], **options: Any) -> Any:
    batch = db.batch()
    getattr(batch, call)(db.collection("things").document("t1"), data, **options)
    (built,) = batch._write_pbs
    return write_types.Write.pb(built)


@pytest.mark.parametrize("data", DOCUMENTS, ids=[f"doc{n}" for n in range(len(DOCUMENTS))])
@pytest.mark.parametrize("how", ["set", "merge", "create"])
def test_a_write_is_the_message_the_library_builds(db: firestore.Client, data: dict[str, Any], how: str) -> None:
    ref = db.collection("things").document("t1")
    built = set_write(ref, data, merge=how == "merge", create=how == "create")
    assert built is not None
    options = {"merge": True} if how == "merge" else {}
    expected = library_write(db, "create" if how == "create" else "set", data, **options)
    assert write_types.Write.pb(built).SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )


def test_a_fenced_update_is_the_message_the_library_builds(db: firestore.Client) -> None:
    """Update times Firestore answers are in microseconds (the library keeps no more)."""
    ref = db.collection("things").document("t1")
    fields = {"status": "succeeded", "updatedAt": NOW, "leaseExpiresAt": None, "result": {"n": 1}}
    update_time = DatetimeWithNanoseconds(2026, 11, 28, 19, 2, 41, nanosecond=430960000, tzinfo=UTC)  # type: ignore[no-untyped-call]
    built = fenced_update(ref, fields, update_time)
    option = db.write_option(last_update_time=update_time)
    expected = library_write(db, "update", fields, option=option)
    assert write_types.Write.pb(built) == expected


@pytest.mark.parametrize(
    "data",
    [
        {"a.b": 1},
        {"`x`": 1},
        {"nested": {"at": firestore.SERVER_TIMESTAMP}},
        {"ref": object()},
        {"gone": firestore.DELETE_FIELD},
    ],
    ids=["dotted", "quoted", "nested-transform", "unknown-type", "delete-field"],
)
def test_what_it_does_not_build_is_left_to_the_library(db: firestore.Client, data: dict[str, Any]) -> None:
    ref = db.collection("things").document("t1")
    assert set_write(ref, data) is None


def test_a_write_falls_back_to_the_library_for_what_is_not_built_here(db: firestore.Client) -> None:
    batch = db.batch()
    Write(db.collection("things").document("t1"), {"nested": {"at": firestore.SERVER_TIMESTAMP}}, merge=True).apply(
        batch
    )
    assert write_types.Write.pb(batch._write_pbs[0]) == library_write(
        db, "set", {"nested": {"at": firestore.SERVER_TIMESTAMP}}, merge=True
    )
