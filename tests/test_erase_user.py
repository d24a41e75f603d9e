"""`qjobs erase-user` on the emulator, over data the jobs themselves wrote: everything of
the user goes, nothing of anyone else does, an interrupted run finishes when run again,
and a finished one finds nothing."""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.batch import WriteBatch
from google.cloud.firestore_v1.client import Client
from google.cloud.firestore_v1.document import DocumentReference

from qjobs.cli import erase
from qjobs.trip_events import EVENTS_COLLECTION
from tests.cli import one_line_error, qjobs
from tests.support import MEMORY, NOTIFY, ROOT, Deliver, new_message_id

Capture = pytest.CaptureFixture[str]
U1_DOCUMENTS = ("users/u1", "conversations/c1", "conversations/c2")


def of_u1(path: str) -> bool:
    """One of u1's documents, or a document under one."""
    return any(path == document or path.startswith(document + "/") for document in U1_DOCUMENTS)


def conversation(db: firestore.Client, conversation_id: str, user_id: str) -> None:
    db.collection("conversations").document(conversation_id).set({"userId": user_id})
    start = datetime(2026, 5, 1, tzinfo=UTC)
    for n, line in enumerate(["I'm vegan.", "Book me an aisle seat.", "We love museums."]):
        ref = db.collection("conversations", conversation_id, "messages").document(f"m{n}")
        ref.set({"role": "user", "content": line, "createdAt": start + timedelta(minutes=n)})


def ok(deliver: Deliver, path: str, payload: dict[str, Any]) -> None:
    answer = deliver(path, payload, message_id=new_message_id())
    assert answer.status_code == 200, answer.json


@pytest.fixture
def people(deliver: Deliver, db: firestore.Client) -> None:
    """u1's memory from two conversations, an event u1 caused (u2 and u3 told), an event
    u1 was told of, and u2's own memory: all written by the jobs."""
    for uid in ("u1", "u2", "u3"):
        db.collection("users").document(uid).set({"email": f"{uid}@example.test"})
    for conversation_id, uid in (("c1", "u1"), ("c2", "u1"), ("c3", "u2")):
        conversation(db, conversation_id, uid)
        ok(deliver, MEMORY, {"userId": uid, "conversationId": conversation_id, "syncType": "full"})
    caused = {"collaboratorIds": ["u1", "u2", "u3"], "actorId": "u1", "idempotencyKey": "trip-1:caused"}
    told = {"collaboratorIds": ["u1", "u3"], "actorId": "u2", "idempotencyKey": "trip-1:told"}
    for fields in (caused, told):
        ok(deliver, NOTIFY, {"tripId": "trip-1", "event": "trip_updated", "message": "Moved", **fields})


def everything(db: firestore.Client) -> dict[str, dict[str, Any]]:
    """Every document in the database, by path (the ledger aside)."""
    found: dict[str, dict[str, Any]] = {}

    def walk(collection: Any) -> None:
        for snapshot in collection.list_documents():
            doc = snapshot.get()
            if doc.exists:
                found[snapshot.path] = doc.to_dict() or {}
            for child in snapshot.collections():
                walk(child)

    for collection in db.collections():
        if collection.id != "jobs":
            walk(collection)
    return found


def mentions(data: Any, uid: str) -> bool:
    return uid in json.dumps(data, default=str)


def test_everything_of_the_user_goes_and_nothing_of_anyone_else(
    people: None, db: firestore.Client, capsys: Capture
) -> None:
    before = everything(db)
    assert any(path.startswith("users/u1/memories/") for path in before), "memory-sync wrote u1's memory"
    ran = qjobs(capsys, "erase-user", "u1", "--yes", "--json")
    after = everything(db)
    assert ran.status == 0
    assert [path for path in after if of_u1(path)] == []
    assert [path for path, data in after.items() if mentions(data, "u1")] == []
    kept = {path for path in before if not of_u1(path)}
    assert set(after) == kept, "nothing of anyone else was removed"
    for path in kept:
        changed = {name for name in before[path] if before[path][name] != after[path].get(name)}
        assert changed <= {"actorId", "recipientIds"}, (path, changed)
    events = {doc.get("idempotencyKey"): doc.to_dict() or {} for doc in db.collection(EVENTS_COLLECTION).stream()}
    assert events["trip-1:caused"]["actorId"] is None and events["trip-1:caused"]["recipientIds"] == ["u2", "u3"]
    assert events["trip-1:told"]["recipientIds"] == ["u3"] and events["trip-1:told"]["actorId"] == "u2"
    removed = ran.json()["removed"]
    assert removed["conversationDocuments"] == 2 * (1 + 3)
    assert removed["tripEventsReceived"] == removed["tripEventsCaused"] == 1
    assert removed["notificationsCaused"] == 2


def test_a_second_run_finds_nothing(people: None, db: firestore.Client, capsys: Capture) -> None:
    assert qjobs(capsys, "erase-user", "u1", "--yes").status == 0
    left = everything(db)
    again = qjobs(capsys, "erase-user", "u1", "--yes")
    assert (again.status, again.out) == (0, "nothing of user u1 was left to erase\n")
    assert everything(db) == left
    assert set(qjobs(capsys, "erase-user", "u1", "--yes", "--json").json()["removed"].values()) == {0}


def interrupt_after(calls: int, original: Callable[..., Any]) -> Callable[..., Any]:
    """`original`, failing as an unavailable Firestore does from its `calls + 1`th call on."""
    made = [0]

    def call(*args: Any, **kwargs: Any) -> Any:
        made[0] += 1
        if made[0] > calls:
            raise exceptions.ServiceUnavailable("connection reset")  # type: ignore[no-untyped-call]
        return original(*args, **kwargs)

    return call


INTERRUPTIONS = {
    "while deleting": (Client, "recursive_delete", 1),
    "while removing it from recipients": (DocumentReference, "update", 0),
    "while blanking it as the actor": (WriteBatch, "commit", 0),
}


@pytest.mark.parametrize("interruption", INTERRUPTIONS.values(), ids=INTERRUPTIONS.keys())
def test_an_interrupted_run_finishes_when_run_again(
    people: None, db: firestore.Client, capsys: Capture, monkeypatch: pytest.MonkeyPatch, interruption: Any
) -> None:
    owner, name, calls = interruption
    monkeypatch.setattr(erase, "PAGE", 1)
    with monkeypatch.context() as patch:
        patch.setattr(owner, name, interrupt_after(calls, getattr(owner, name)))
        failed = qjobs(capsys, "erase-user", "u1", "--yes")
    assert "cannot reach the Firestore emulator" in one_line_error(failed) and failed.err.endswith("connection reset\n")
    halfway = everything(db)
    assert any(mentions(data, "u1") for data in halfway.values()), "the interruption left work undone"
    assert qjobs(capsys, "erase-user", "u1", "--yes").status == 0
    assert [path for path, data in everything(db).items() if mentions(data, "u1") or of_u1(path)] == []


def test_pages_cover_more_documents_than_one_page(people: None, db: firestore.Client) -> None:
    for n in range(5):
        db.collection(EVENTS_COLLECTION).document(f"e{n}").set(
            {"recipientIds": ["u1", "u9"], "actorId": "u1", "idempotencyKey": f"k{n}"}
        )
    removed = erase.erase_user(db, "u1", page=2)
    assert removed["tripEventsReceived"] == 6 and removed["tripEventsCaused"] == 6
    extra = [db.collection(EVENTS_COLLECTION).document(f"e{n}").get().to_dict() for n in range(5)]
    assert extra == [{"recipientIds": ["u9"], "actorId": None, "idempotencyKey": f"k{n}"} for n in range(5)]


def test_without_yes_it_asks_and_erases_only_when_the_user_id_is_typed(
    people: None, db: firestore.Client, capsys: Capture
) -> None:
    declined = qjobs(capsys, "erase-user", "u1", stdin="y\n")
    assert declined.status == 1 and "Type the user id to confirm" in declined.out
    assert declined.err == "qjobs: error: not confirmed: nothing was erased\n"
    assert db.collection("users").document("u1").get().exists
    confirmed = qjobs(capsys, "erase-user", "u1", stdin="u1\n")
    assert confirmed.status == 0 and "erased user u1:" in confirmed.out
    assert not db.collection("users").document("u1").get().exists


def test_the_erase_queries_need_no_index_beyond_the_default_ones() -> None:
    """Its queries are single-field ones on one collection each, which Firestore serves with
    the indexes it makes for every field, unless an override in firestore.indexes.json has
    switched them off."""
    declared = json.loads((ROOT / "firestore.indexes.json").read_text())
    overrides = {(o["collectionGroup"], o["fieldPath"]) for o in declared["fieldOverrides"]}
    queried = {("conversations", "userId"), (EVENTS_COLLECTION, "recipientIds"), (EVENTS_COLLECTION, "actorId")}
    assert not queried & overrides
