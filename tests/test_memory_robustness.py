"""memory-sync on input nobody planned for: it must neither fail every retry (a 500 forever,
then the dead-letter queue) nor take unbounded time or space. Each case is a kind of input
that once did."""

import random
import string
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from google.cloud import firestore

from qjobs.memory.clauses import MAX_SENTENCE_CHARS, clauses
from qjobs.memory.extract import MAX_MESSAGE_CHARS, RuleExtractor
from qjobs.memory.finders import AMOUNT
from qjobs.memory.summary import MAX_TERMS, SummaryState, apply_message
from tests.support import AppFactory, Deliver
from tests.test_memory_sync import Conversation, preference, sync

pytestmark = pytest.mark.timeout(60)
START = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
def paged(make_client: AppFactory, db: firestore.Client) -> FlaskClient:
    return make_client(MEMORY_SYNC_PAGE_SIZE="3")


def test_reading_is_bounded_by_sentence_and_message_caps() -> None:
    """Reading a clause costs more than linear time in its length (each mention looks back
    over its phrase), and a run of digits once cost the square of its length (4,000 digits:
    1.8 s): sentences are read up to MAX_SENTENCE_CHARS and messages up to MAX_MESSAGE_CHARS."""
    read = clauses("1," * 20_000 + ". I'm vegan.")
    assert max(len(clause.sentence) for clause in read) == MAX_SENTENCE_CHARS
    assert [s.value for s in RuleExtractor().extract("I'm vegan. " + "x" * MAX_MESSAGE_CHARS + " I'm halal.")] == [
        "vegan"
    ]


def test_an_amount_is_read_from_the_start_of_its_digits_only() -> None:
    """The amount pattern may start only where a number starts, so a run of digits is
    scanned once, not once from every digit in it (and "version 1.5.6 euros" has no amount)."""
    assert [match.group(0) for match in AMOUNT.finditer("12345 euros, 1,000,000 dollars")] == [
        "12345 euros",
        "1,000,000 dollars",
    ]
    assert list(AMOUNT.finditer("version 1.5.6 euros")) == []


def test_a_long_conversation_of_distinct_words_keeps_a_bounded_summary_state() -> None:
    """Every distinct word was kept: 100 messages of 700 random words made a state over
    Firestore's 1 MiB limit, and every retry of the sync failed the same way."""
    rng = random.Random(7)  # noqa: S311 - test data, not security
    state = SummaryState()
    for n in range(100):
        text = " ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(9)) for _ in range(700))
        apply_message(state, "user", text, f"m{n}", "2026-05-01T00:00:00")
    assert len(state.terms) == MAX_TERMS and len(state.to_json()) < 100_000
    assert state.words_seen == 70_000, "positions keep counting the words that were forgotten"


def test_words_kept_are_the_most_used_and_a_full_replay_keeps_the_same() -> None:
    common = "lisbon museums " * 3
    one = SummaryState()
    messages = [common + " ".join(f"w{n}x{k}" for k in range(MAX_TERMS // 2)) for n in range(3)]
    for n, text in enumerate(messages):
        apply_message(one, "user", text, f"m{n}", "t")
    restored = SummaryState.from_json(None)
    for n, text in enumerate(messages):
        apply_message(restored, "user", text, f"m{n}", "t")
        restored = SummaryState.from_json(restored.to_json())
    assert one.to_json() == restored.to_json()
    assert {"lisbon", "museums"} <= set(one.terms)


BAD_MEMORIES: list[dict[str, Any]] = [
    {"kind": "preference", "category": "dietary", "value": "vegan"},
    {"kind": "preference", "category": "dietary", "op": "add", "value": "vegan", "statedAt": "yesterday"},
    {"kind": "preference", "category": "dietary", "op": "add", "value": "vegan", "confidence": "high"},
    {"kind": "preference", "category": "dietary", "op": "explode", "value": "vegan"},
]


@pytest.mark.parametrize("bad", BAD_MEMORIES, ids=["no-op", "string-time", "word-confidence", "unknown-op"])
def test_a_malformed_memory_entry_is_left_out_of_the_fold(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client, bad: dict[str, Any]
) -> None:
    complete = {"statedAt": START, "conversationId": "other", "messageId": "m1", "position": 0, **bad}
    db.collection("users/u-badmem/memories").document("edited-by-hand").set(complete)
    conversation = Conversation(db, "u-badmem")
    conversation.append([("user", "I'm vegetarian.")])
    response = sync(deliver, paged, conversation, "incremental")
    assert response.status_code == 200, response.json
    assert preference(db, "u-badmem", "dietary") == ["vegetarian"]


BAD_SUMMARIES: list[dict[str, Any]] = [
    {"state": "not json", "cursor": None},
    {"state": 5, "cursor": None},
    {"state": '{"unknown": 1}', "cursor": None},
    {"state": None, "cursor": {"createdAt": START}},
    {"state": None, "cursor": "m3"},
]


@pytest.mark.parametrize("bad", BAD_SUMMARIES, ids=["text", "number", "unknown-key", "no-message-id", "string"])
def test_a_summary_that_does_not_read_back_is_rebuilt(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client, bad: dict[str, Any]
) -> None:
    conversation = Conversation(db, "u-badsum")
    conversation.append([("user", "I'm vegan."), ("user", "Book me an aisle seat.")])
    db.collection("users/u-badsum/conversationSummaries").document(conversation.id).set(bad)
    response = sync(deliver, paged, conversation, "incremental")
    assert response.status_code == 200, response.json
    assert response.json is not None and response.json["processedMessages"] == 2
    assert preference(db, "u-badsum", "seat") == "aisle"
    again = sync(deliver, paged, conversation, "incremental")
    assert again.json is not None and again.json["processedMessages"] == 0


def test_a_huge_message_is_read_up_to_its_cap_and_the_sync_succeeds(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client
) -> None:
    conversation = Conversation(db, "u-huge")
    conversation.append([("user", "I'm vegan. Our seat numbers: " + "1," * 50_000)])
    response = sync(deliver, paged, conversation, "incremental")
    assert response.status_code == 200 and preference(db, "u-huge", "dietary") == ["vegan"]
