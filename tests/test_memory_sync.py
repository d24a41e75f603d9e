"""memory-sync on the real emulator: the route, ownership, consistency of incremental and
full syncs (hypothesis), cross-conversation recency, races, and a long conversation."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from google.api_core import exceptions
from google.cloud import firestore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from qjobs.ledger import Ledger
from tests.support import (
    MEMORY,
    ROOT,
    AppFactory,
    Deliver,
    all_at_once,
    delivery_log_lines,
    error_of,
    new_message_id,
)

pytestmark = pytest.mark.timeout(30)
"""A sync that stops advancing its cursor would page forever: fail in seconds, not minutes."""

START = datetime(2026, 5, 1, tzinfo=UTC)
SENTENCES = [
    ("user", "We want to plan a trip to Lisbon in June."),
    ("user", "I'm vegan."),
    ("user", "I'm not vegan any more."),
    ("user", "we never eat meat"),
    ("user", "Book me an aisle seat."),
    ("user", "I prefer a window seat."),
    ("user", "I don't want an aisle seat."),
    ("user", "Keep it under $2,000 for the whole trip."),
    ("user", "No red-eyes please."),
    ("user", "I'm fine with red-eyes."),
    ("user", "We love museums and hiking."),
    ("user", "Let's go with the apartment in Alfama."),
    ("user", "Do we need visas?"),
    ("user", "I fly out of Boston Logan (BOS)."),
    ("assistant", "I'm vegan too! Let's book a window seat. Any budget?"),
    ("system", "Conversation started."),
]


LATER_SENTENCES = [
    ("user", "My partner is gluten free."),
    ("user", "My partner isn't gluten free any more."),
    ("user", "About 4000 euros for the two of us."),
    ("user", "Mid-range hotels are fine."),
    ("user", "Actually, put me in an aisle seat from now on."),
    ("user", "On that flight I'd rather have a window seat."),
    ("user", "I absolutely love Lisbon!"),
    ("user", "I never want to see Lisbon again."),
    ("user", "In Madrid we'd love to see the Prado."),
]
"""Companions, budget facets, standing changes, recent choices, destinations and plans: the
fields the incremental-equals-full invariant must hold for too."""


class Conversation:
    """A conversation in Firestore whose messages are appended one minute apart."""

    def __init__(
        self, db: firestore.Client, user_id: str, conversation_id: str | None = None, start: datetime = START
    ) -> None:
        self.db, self.user_id = db, user_id
        self.id = conversation_id or f"c-{uuid.uuid4().hex[:8]}"
        self.start, self.count = start, 0
        db.collection("conversations").document(self.id).set({"userId": user_id, "title": "Trip", "createdAt": start})

    def append(self, messages: list[tuple[str, str]]) -> None:
        for start in range(0, len(messages), 400):
            batch = self.db.batch()
            for role, content in messages[start : start + 400]:
                ref = self.db.collection("conversations", self.id, "messages").document(f"m{self.count:05d}")
                batch.set(
                    ref, {"role": role, "content": content, "createdAt": self.start + timedelta(minutes=self.count)}
                )
                self.count += 1
            batch.commit()


def sync(
    deliver: Deliver, client: FlaskClient, conversation: Conversation, sync_type: str, **signing: Any
) -> TestResponse:
    payload = {"userId": conversation.user_id, "conversationId": conversation.id, "syncType": sync_type}
    return deliver(MEMORY, payload, test_client=client, **signing)


def memory_state(db: firestore.Client, user_id: str) -> dict[str, dict[str, Any]]:
    """Everything memory-sync derives for a user, but `updatedAt` and `syncType`."""
    state: dict[str, dict[str, Any]] = {}
    for name in ("memories", "preferences", "companions", "conversationSummaries"):
        for doc in db.collection("users", user_id, name).stream():
            data = doc.to_dict() or {}
            state[f"{name}/{doc.id}"] = {k: v for k, v in data.items() if k not in ("updatedAt", "syncType")}
    return state


def preference(db: firestore.Client, user_id: str, category: str) -> Any:
    snapshot = db.collection("users", user_id, "preferences").document(category).get()
    return snapshot.get("value") if snapshot.exists else None


@pytest.fixture
def paged(make_client: AppFactory, db: firestore.Client) -> FlaskClient:
    """Pages of three messages, so that every sync below spans several pages."""
    return make_client(MEMORY_SYNC_PAGE_SIZE="3")


def test_the_route_extracts_indexes_and_summarises(deliver: Deliver, paged: FlaskClient, db: firestore.Client) -> None:
    conversation = Conversation(db, "u1", "c1")
    conversation.append(
        [SENTENCES[0], SENTENCES[1], SENTENCES[14], SENTENCES[4], SENTENCES[7], SENTENCES[11], SENTENCES[12]]
    )
    response = sync(deliver, paged, conversation, "incremental")
    assert response.status_code == 200 and response.json is not None
    assert {k: response.json[k] for k in ("syncType", "processedMessages", "preferencesUpdated", "cursor")} == {
        "syncType": "incremental",
        "processedMessages": 7,
        "preferencesUpdated": 4,
        "cursor": {"createdAt": "2026-05-01T00:06:00Z", "messageId": "m00006"},
    }
    assert preference(db, "u1", "dietary") == ["vegan"] and preference(db, "u1", "seat") == "aisle"
    assert preference(db, "u1", "budget") == {"amount": 2000, "currency": "USD", "per": "trip"}
    assert preference(db, "u1", "accommodation") == "apartment", "a decision is a choice"
    summary = db.collection("users/u1/conversationSummaries").document("c1").get().to_dict() or {}
    assert summary["summary"].startswith("Request: We want to plan a trip to Lisbon in June.")
    assert "Decisions: Let's go with the apartment in Alfama." in summary["summary"]
    assert "Open questions: Do we need visas?" in summary["summary"]
    assert summary["messageCount"] == 7 and summary["cursor"]["messageId"] == "m00006"
    assert summary["lastMessageAt"] == START + timedelta(minutes=6) and "lisbon" in summary["keywords"]
    memories = db.collection("users/u1/memories").where(
        filter=firestore.FieldFilter("keywords", "array_contains_any", ["lisbon", "vegan"])
    )
    found = sorted((doc.get("kind"), doc.get("text")) for doc in memories.stream())
    assert found == [("preference", "I'm vegan."), ("request", "We want to plan a trip to Lisbon in June.")]
    assert response.json["memoriesWritten"] == len(list(db.collection("users/u1/memories").stream()))


def test_assistant_messages_are_never_a_source(deliver: Deliver, paged: FlaskClient, db: firestore.Client) -> None:
    conversation = Conversation(db, "u2")
    conversation.append([SENTENCES[14], SENTENCES[15]])
    assert sync(deliver, paged, conversation, "full").status_code == 200
    assert list(db.collection("users/u2/preferences").stream()) == []
    assert [doc.get("kind") for doc in db.collection("users/u2/memories").stream()] == []


@pytest.mark.parametrize(
    ("owner", "code"), [(None, "conversation_not_found"), ("someone-else", "conversation_forbidden")]
)
def test_unknown_or_foreign_conversations_are_rejected_with_no_memory_written(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client, owner: str | None, code: str
) -> None:
    if owner:
        Conversation(db, owner, "c-x").append([SENTENCES[1]])
    response = deliver(MEMORY, {"userId": "u1", "conversationId": "c-x", "syncType": "full"}, test_client=paged)
    assert error_of(response)[:2] == (489, code)
    assert list(db.collection("users").document("u1").collections()) == []
    assert sorted(c.id for c in db.collections()) == sorted(
        ["jobs", "jobTokens", *(["conversations"] if owner else [])]
    )


def test_duplicate_deliveries_change_nothing(deliver: Deliver, paged: FlaskClient, db: firestore.Client) -> None:
    conversation = Conversation(db, "u3")
    conversation.append(SENTENCES[:8])
    message_id = new_message_id()
    first = sync(deliver, paged, conversation, "incremental", message_id=message_id)
    docs = {doc.reference.path: (doc.update_time, doc.to_dict()) for doc in db.collection_group("memories").stream()}
    again = sync(deliver, paged, conversation, "incremental", message_id=message_id, retried=1)
    assert again.json == {**(first.json or {}), "duplicate": True}
    assert {
        doc.reference.path: (doc.update_time, doc.to_dict()) for doc in db.collection_group("memories").stream()
    } == docs


def test_a_newer_statement_elsewhere_is_never_clobbered_and_an_older_one_never_resurrected(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client
) -> None:
    older = Conversation(db, "u4", "older", start=START)
    older.append([("user", "I'm vegan."), ("user", "Book me an aisle seat.")])
    newer = Conversation(db, "u4", "newer", start=START + timedelta(days=30))
    newer.append([("user", "I'm not vegan any more."), ("user", "I prefer a window seat.")])
    assert sync(deliver, paged, older, "incremental").status_code == 200
    assert preference(db, "u4", "dietary") == ["vegan"] and preference(db, "u4", "seat") == "aisle"
    assert sync(deliver, paged, newer, "incremental").status_code == 200
    assert preference(db, "u4", "dietary") is None and preference(db, "u4", "seat") == "window"
    assert sync(deliver, paged, older, "full").status_code == 200
    assert preference(db, "u4", "dietary") is None and preference(db, "u4", "seat") == "window"
    newer.append([("user", "Actually I'm vegan again.")])
    assert sync(deliver, paged, newer, "full").status_code == 200
    assert preference(db, "u4", "dietary") == ["vegan"]
    assert db.collection("users/u4/preferences").document("dietary").get().get("sourceConversationId") == "newer"


@settings(
    max_examples=20,
    deadline=None,
    # Every example works on a user of its own, so sharing the function's fixtures is safe.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    batches=st.lists(
        st.lists(st.sampled_from(SENTENCES + LATER_SENTENCES), min_size=0, max_size=5), min_size=1, max_size=4
    ),
)
def test_any_incremental_history_equals_one_full_sync(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client, batches: list[list[tuple[str, str]]]
) -> None:
    """Messages appended between incremental syncs, in any batches, end in the state one
    full sync of the whole conversation gives, in every field but updatedAt and syncType."""
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    conversation = Conversation(db, user_id)
    for batch in batches:
        conversation.append(batch)
        assert sync(deliver, paged, conversation, "incremental").status_code == 200
    incremental = memory_state(db, user_id)
    assert sync(deliver, paged, conversation, "full").status_code == 200
    assert memory_state(db, user_id) == incremental
    summary = incremental[f"conversationSummaries/{conversation.id}"]
    assert summary["messageCount"] == conversation.count


@pytest.mark.timeout(60)  # the emulator makes a contended transaction wait about 2 s per try
def test_racing_syncs_on_two_threads_apply_each_message_once(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client
) -> None:
    conversation = Conversation(db, "u5")
    conversation.append(SENTENCES[:9])
    answers = all_at_once([lambda: sync(deliver, paged, conversation, "incremental")] * 2)
    assert [answer.status_code for answer in answers] == [200, 200]
    assert sum((answer.json or {})["processedMessages"] for answer in answers) == 9, "each message applied once"
    raced = memory_state(db, "u5")
    assert raced[f"conversationSummaries/{conversation.id}"]["messageCount"] == 9
    assert sync(deliver, paged, conversation, "full").status_code == 200
    assert memory_state(db, "u5") == raced


def test_a_thousand_message_conversation(deliver: Deliver, client: FlaskClient, db: firestore.Client) -> None:
    conversation = Conversation(db, "u6")
    conversation.append([SENTENCES[n % len(SENTENCES)] for n in range(1000)])
    response = sync(deliver, client, conversation, "incremental")
    assert response.status_code == 200 and response.json is not None
    assert response.json["processedMessages"] == 1000
    assert response.json["cursor"]["messageId"] == "m00999"
    summary = db.collection("users/u6/conversationSummaries").document(conversation.id).get().to_dict() or {}
    assert summary["messageCount"] == 1000 and len(summary["summary"]) <= 1000 and len(summary["keywords"]) <= 20
    again = sync(deliver, client, conversation, "incremental")
    assert again.json is not None and again.json["processedMessages"] == 0


def test_the_documented_memory_query_has_its_index(deliver: Deliver, paged: FlaskClient, db: firestore.Client) -> None:
    """The query docs/memory-sync.md shows, run for real; its composite index declared."""
    conversation = Conversation(db, "u7")
    conversation.append([SENTENCES[0], SENTENCES[1], SENTENCES[10]])
    assert sync(deliver, paged, conversation, "incremental").status_code == 200
    query = (
        db.collection("users")
        .document("u7")
        .collection("memories")
        .where(filter=firestore.FieldFilter("kind", "==", "preference"))
        .where(filter=firestore.FieldFilter("keywords", "array_contains_any", ["museums", "vegan", "lisbon"]))
    )
    assert sorted(doc.get("value") for doc in query.stream()) == ["museums", "vegan"]
    declared = json.loads((ROOT / "firestore.indexes.json").read_text())["indexes"]
    fields = [[(f["fieldPath"], f.get("order") or f.get("arrayConfig")) for f in index["fields"]] for index in declared]
    assert [("kind", "ASCENDING"), ("keywords", "CONTAINS")] in fields
    assert "array_contains_any" in (ROOT / "docs" / "memory-sync.md").read_text()


def test_malformed_content_and_role_are_read_as_well_as_they_can_be(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client
) -> None:
    conversation = Conversation(db, "u8")
    conversation.append([SENTENCES[1], SENTENCES[4]])
    messages = db.collection("conversations", conversation.id, "messages")
    later = START + timedelta(hours=1)
    messages.document("x-odd-1").set({"role": "user", "content": 42, "createdAt": later})
    messages.document("x-odd-2").set({"role": None, "content": "I'm not vegan.", "createdAt": later})
    response = sync(deliver, paged, conversation, "incremental")
    assert response.status_code == 200 and response.json is not None
    assert response.json["processedMessages"] == 4
    assert response.json["cursor"] == {"createdAt": "2026-05-01T01:00:00Z", "messageId": "x-odd-2"}
    assert preference(db, "u8", "dietary") == ["vegan"], "a message of no known role states nothing"
    again = sync(deliver, paged, conversation, "incremental")
    assert again.json is not None and again.json["processedMessages"] == 0


ODD_CREATED_AT = ["2026-01-01T00:00:00Z", None, 1767225600, 1.5, True, {"seconds": 1}, ["2026"], b"\x00"]


@pytest.mark.parametrize("created_at", ODD_CREATED_AT, ids=lambda value: type(value).__name__)
def test_a_message_whose_created_at_is_not_a_timestamp_hides_no_later_message(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client, created_at: Any
) -> None:
    """Firestore orders values by type first, so such a message sits before or after every
    timestamp: it is outside the sync (never read, never counted), and cannot move the cursor."""
    conversation = Conversation(db, "u8b")
    messages = db.collection("conversations", conversation.id, "messages")
    messages.document("m1").set({"role": "user", "content": "I prefer a window seat.", "createdAt": created_at})
    first = sync(deliver, paged, conversation, "incremental")
    assert first.status_code == 200 and first.json is not None and first.json["processedMessages"] == 0
    messages.document("m2").set({"role": "user", "content": "I'm vegan.", "createdAt": START})
    second = sync(deliver, paged, conversation, "incremental")
    assert second.status_code == 200 and second.json is not None
    assert second.json["processedMessages"] == 1 and second.json["cursor"]["messageId"] == "m2"
    assert preference(db, "u8b", "dietary") == ["vegan"] and preference(db, "u8b", "seat") is None
    full = sync(deliver, paged, conversation, "full")
    assert full.json is not None and full.json["processedMessages"] == 1


def test_a_cursor_left_on_a_value_that_is_not_a_timestamp_is_replayed_from_the_start(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client
) -> None:
    """A summary whose cursor rests on a string (as earlier versions left it after a malformed
    message) cannot be continued: the next incremental sync forgets and replays the conversation."""
    conversation = Conversation(db, "u8c")
    conversation.append([SENTENCES[1], SENTENCES[4], SENTENCES[13]])
    summary = db.collection("users/u8c/conversationSummaries").document(conversation.id)
    summary.set({"cursor": {"createdAt": "zzz", "messageId": "x-odd"}, "messageCount": 99, "state": None})
    response = sync(deliver, paged, conversation, "incremental")
    assert response.status_code == 200 and response.json is not None
    assert response.json["processedMessages"] == 3 and response.json["syncType"] == "incremental"
    assert summary.get().get("messageCount") == 3 and summary.get().get("cursor")["messageId"] == "m00002"
    assert preference(db, "u8c", "seat") == "aisle"


def test_choices_across_conversations_support_a_preference_until_one_is_stated(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client
) -> None:
    def cabin() -> dict[str, Any]:
        return db.collection("users/u9/preferences").document("cabinClass").get().to_dict() or {}

    first = Conversation(db, "u9", "c-choice-1")
    first.append([("user", "Find me economy flights from SFO.")])
    assert sync(deliver, paged, first, "incremental").status_code == 200
    assert (cabin()["value"], cabin()["basis"], cabin()["confidence"]) == ("economy", "choice", 0.5)
    second = Conversation(db, "u9", "c-choice-2", start=START + timedelta(days=1))
    second.append([("user", "Economy again, please.")])
    assert sync(deliver, paged, second, "incremental").status_code == 200
    support = cabin()["support"]
    assert (cabin()["confidence"], support["count"]) == (0.65, 2)
    memories = [db.collection("users/u9/memories").document(memory_id).get() for memory_id in support["memoryIds"]]
    assert [(m.get("conversationId"), m.get("basis")) for m in memories] == [
        ("c-choice-2", "choice"),
        ("c-choice-1", "choice"),
    ], "the latest first, each a memory entry"
    third = Conversation(db, "u9", "c-choice-3", start=START + timedelta(days=2))
    third.append([("user", "I always fly business class.")])
    assert sync(deliver, paged, third, "incremental").status_code == 200
    assert (cabin()["value"], cabin()["basis"], cabin()["support"]["count"]) == ("business", "stated", 1)
    assert db.collection("users/u9/preferences").document("homeAirport").get().get("value") == "SFO"


def test_a_full_sync_after_an_edited_message_drops_what_the_conversation_no_longer_states(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client
) -> None:
    conversation = Conversation(db, "u-edit")
    conversation.append([("user", "I'm vegan.")])
    assert sync(deliver, paged, conversation, "incremental").status_code == 200
    assert preference(db, "u-edit", "dietary") == ["vegan"]
    db.collection("conversations", conversation.id, "messages").document("m00000").update({"content": "Hello there."})
    response = sync(deliver, paged, conversation, "full")
    assert response.status_code == 200 and response.json is not None and response.json["preferencesUpdated"] == 1
    assert not db.collection("users/u-edit/preferences").document("dietary").get().exists


def test_an_unchanged_preference_is_not_rewritten(deliver: Deliver, paged: FlaskClient, db: firestore.Client) -> None:
    """A full sync re-derives every category the conversation states; where the result is
    what is stored, nothing is written, and `updatedAt` keeps the time the value last changed."""
    conversation = Conversation(db, "u-same")
    conversation.append([("user", "I prefer a window seat."), ("user", "Book me an aisle seat.")])
    assert sync(deliver, paged, conversation, "incremental").status_code == 200
    seat = db.collection("users/u-same/preferences").document("seat")
    written = seat.get()
    assert written.get("value") == "window" and written.get("recentChoice")["value"] == "aisle"
    response = sync(deliver, paged, conversation, "full")
    assert response.status_code == 200 and response.json is not None
    assert response.json["processedMessages"] == 2 and response.json["preferencesUpdated"] == 0
    again = seat.get()
    assert again.get("updatedAt") == written.get("updatedAt") and again.update_time == written.update_time


# ---------------------------------------------------------------- promises of docs/memory-sync.md


def test_memory_keywords_are_the_statement_s_category_and_value_and_a_sentence_s_words_in_order(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client
) -> None:
    """Decided: a preference's keywords are its category, then each value part whole and split
    at `_`; a sentence's are its words of three letters or more, not stop words, in the order
    first used, at most ten."""
    conversation = Conversation(db, "u-words")
    conversation.append([("user", "No red-eyes please."), ("user", "We want to plan a trip to Lisbon in June.")])
    assert sync(deliver, paged, conversation, "incremental").status_code == 200
    kept = {doc.get("text"): doc.get("keywords") for doc in db.collection("users/u-words/memories").stream()}
    assert kept["No red-eyes please."] == ["avoid", "red_eye_flights", "red", "eye", "flights"]
    assert kept["We want to plan a trip to Lisbon in June."] == ["plan", "trip", "lisbon", "june"]
    question = (
        "Do museums, galleries, bridges, castles, markets, vineyards, gardens, palaces, towers and harbours open late?"
    )
    conversation.append([("user", question)])
    assert sync(deliver, paged, conversation, "incremental").status_code == 200
    asked = db.collection("users/u-words/memories").where(filter=firestore.FieldFilter("text", "==", question))
    (memory,) = asked.stream()
    assert memory.get("keywords") == [
        "museums",
        "galleries",
        "bridges",
        "castles",
        "markets",
        "vineyards",
        "gardens",
        "palaces",
        "towers",
        "harbours",
    ]


def test_a_message_added_before_the_cursor_waits_for_a_full_sync(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client
) -> None:
    conversation = Conversation(db, "u-late")
    conversation.append([("user", "Hello."), ("user", "Book me an aisle seat.")])
    assert sync(deliver, paged, conversation, "incremental").status_code == 200
    late = db.collection("conversations", conversation.id, "messages").document("m-late")
    late.set({"role": "user", "content": "I'm vegan.", "createdAt": START - timedelta(minutes=1)})
    incremental = sync(deliver, paged, conversation, "incremental")
    assert incremental.json is not None and incremental.json["processedMessages"] == 0
    assert preference(db, "u-late", "dietary") is None
    full = sync(deliver, paged, conversation, "full")
    assert full.json is not None and full.json["processedMessages"] == 3
    assert preference(db, "u-late", "dietary") == ["vegan"]


def test_a_conversation_without_messages_answers_a_null_cursor(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client
) -> None:
    response = sync(deliver, paged, Conversation(db, "u-empty"), "incremental")
    assert response.status_code == 200 and response.json is not None
    assert (response.json["processedMessages"], response.json["cursor"]) == (0, None)


def test_unknown_payload_fields_are_ignored_and_named_in_the_log(
    deliver: Deliver, make_client: AppFactory, db: firestore.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_client()
    conversation = Conversation(db, "u-extra")
    payload = {"userId": "u-extra", "conversationId": conversation.id, "syncType": "full", "priority": "high"}
    capsys.readouterr()
    assert deliver(MEMORY, payload, test_client=client).status_code == 200
    (line,) = delivery_log_lines(capsys.readouterr().out)
    assert line["ignoredFields"] == ["priority"]


def test_a_sync_that_dies_before_marking_its_success_is_finished_by_the_retry_without_applying_twice(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark after the last page is a commit of its own: a retry after it failed finds the
    cursor at the end and applies nothing."""
    conversation = Conversation(db, "u-mark")
    conversation.append(SENTENCES[:8])
    succeed = Ledger.succeed
    calls = []

    def lost_before_the_mark(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise exceptions.ServiceUnavailable("the process died here")  # type: ignore[no-untyped-call]
        return succeed(self, *args, **kwargs)

    monkeypatch.setattr(Ledger, "succeed", lost_before_the_mark)
    message_id = new_message_id()
    first = sync(deliver, paged, conversation, "incremental", message_id=message_id)
    assert error_of(first)[:2] == (500, "job_failed") and calls == [1]
    applied = memory_state(db, "u-mark")
    assert applied[f"conversationSummaries/{conversation.id}"]["messageCount"] == 8
    retry = sync(deliver, paged, conversation, "incremental", message_id=message_id, retried=1)
    assert retry.status_code == 200 and retry.json is not None and retry.json["processedMessages"] == 0
    assert memory_state(db, "u-mark") == applied
    assert db.collection("jobs").document(message_id).get().get("status") == "succeeded"


def test_a_page_holds_fewer_messages_when_their_writes_would_pass_firestore_s_500(
    deliver: Deliver, client: FlaskClient, db: firestore.Client
) -> None:
    """Two hundred messages of six statements each are 1,200 memory writes: more pages than
    `MEMORY_SYNC_PAGE_SIZE` alone would make, each commit within Firestore's 500."""
    conversation = Conversation(db, "u-dense")
    dense = "I'm vegan and gluten free. We love museums and hiking, but I hate crowds. No red-eyes please."
    conversation.append([("user", dense)] * 200)
    response = sync(deliver, client, conversation, "incremental")
    assert response.status_code == 200, response.json
    assert response.json is not None and response.json["processedMessages"] == 200
    assert response.json["memoriesWritten"] == 1200
    assert len(list(db.collection("users/u-dense/memories").select([]).stream())) == 1200


def test_the_summary_keeps_a_plan_in_its_plans_line(deliver: Deliver, paged: FlaskClient, db: firestore.Client) -> None:
    conversation = Conversation(db, "u-plans")
    conversation.append([("user", "We want to plan a trip to Lisbon in June."), ("user", "We land on June 3rd.")])
    assert sync(deliver, paged, conversation, "incremental").status_code == 200
    summary = db.collection("users/u-plans/conversationSummaries").document(conversation.id).get().get("summary")
    assert summary == "Request: We want to plan a trip to Lisbon in June.\nPlans: We land on June 3rd."
