"""The extraction table, the preference fold and the summary fold, without Firestore."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from qjobs.memory.extract import RuleExtractor
from qjobs.memory.preferences import StoredStatement, fold
from qjobs.memory.summary import SUMMARY_MAX_CHARS, SummaryState, apply_message, keywords, summary_text

EXTRACTOR = RuleExtractor()


def found(text: str) -> list[tuple[str, str, Any]]:
    return [(s.category, s.op, s.value) for s in EXTRACTOR.extract(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I'm vegan", [("dietary", "add", "vegan")]),
        ("we never eat meat", [("dietary", "add", "vegetarian")]),
        (
            "My husband is coeliac and I'm lactose intolerant",
            [("dietary", "add", "gluten_free"), ("dietary", "add", "dairy_free")],
        ),
        ("We only eat halal food", [("dietary", "add", "halal")]),
        ("book me an aisle seat", [("seat", "set", "aisle")]),
        ("I prefer a window seat", [("seat", "set", "window")]),
        ("I always fly premium economy", [("cabinClass", "set", "premium_economy")]),
        ("We'd rather stay in a B&B", [("accommodation", "set", "bed_and_breakfast")]),
        ("We prefer apartments over hotels", [("accommodation", "set", "apartment")]),
        ("I fly out of Boston Logan (BOS)", [("homeAirport", "set", "BOS")]),
        (
            "keep it under $2,000 for the whole trip",
            [("budget", "set", {"amount": 2000, "currency": "USD", "per": "trip"})],
        ),
        (
            "Our budget is about 150 euros per night",
            [("budget", "set", {"amount": 150, "currency": "EUR", "per": "night"})],
        ),
        ("We're on a tight budget", [("budget", "set", {"level": "budget"})]),
        ("no red-eyes please", [("avoid", "add", "red_eye_flights")]),
        ("Direct flights only", [("avoid", "add", "layovers")]),
        (
            "We love museums and hiking, but I hate crowds.",
            [("interests", "add", "museums"), ("interests", "add", "hiking"), ("avoid", "add", "crowds")],
        ),
    ],
)
def test_ordinary_phrasing_is_understood(text: str, expected: list[tuple[str, str, Any]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I'm not vegetarian any more", [("dietary", "remove", "vegetarian")]),
        ("I don't want an aisle seat", [("seat", "remove", "aisle")]),
        ("I'm fine with layovers", [("avoid", "remove", "layovers")]),
        ("I don't like beaches", [("interests", "remove", "beaches")]),
        ("I'm no longer gluten free", [("dietary", "remove", "gluten_free")]),
    ],
)
def test_negations_withdraw(text: str, expected: list[tuple[str, str, Any]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Is the vegan place open late?",
        "Our hotel is near the station.",
        "The museum was closed.",
        "Lisbon has great beaches.",
        "The flight had an aisle and a window.",
        "What does a business class ticket cost?",
        "",
    ],
)
def test_mentions_that_state_nothing_about_the_user(text: str) -> None:
    assert found(text) == []


def statement(
    category: str, op: str, value: Any, minute: int, *, conversation: str = "c1", message: str = "m"
) -> StoredStatement:
    stated = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)
    return StoredStatement(category, op, value, 0.9, stated, conversation, f"{message}{minute}", 0)


def test_a_later_statement_overrides_an_earlier_one() -> None:
    derived = fold("seat", [statement("seat", "set", "aisle", 2), statement("seat", "set", "window", 1)])
    assert derived is not None and derived["value"] == "aisle" and derived["sourceMessageId"] == "m2"


def test_a_negation_withdraws_only_the_value_it_names() -> None:
    assert fold("seat", [statement("seat", "set", "aisle", 1), statement("seat", "remove", "aisle", 2)]) is None
    kept = fold("seat", [statement("seat", "set", "window", 1), statement("seat", "remove", "aisle", 2)])
    assert kept is not None and kept["value"] == "window"


def test_lists_add_and_remove_in_order_across_conversations() -> None:
    statements = [
        statement("dietary", "add", "vegetarian", 1, conversation="c1"),
        statement("dietary", "add", "halal", 2, conversation="c2"),
        statement("dietary", "remove", "vegetarian", 3, conversation="c1"),
        statement("dietary", "add", "vegetarian", 0, conversation="c3"),
    ]
    derived = fold("dietary", statements)
    assert derived is not None and derived["value"] == ["halal"] and derived["sourceConversationId"] == "c1"
    assert fold("dietary", statements[-2:]) is None


def test_the_summary_keeps_the_request_decisions_and_questions_in_the_users_words() -> None:
    state = SummaryState()
    apply_message(state, "user", "Hi there. We want to plan a trip to Lisbon in June.", "m1", "t1")
    apply_message(state, "assistant", "Let's book the Ritz! Where do you fly from?", "m2", "t2")
    apply_message(state, "user", "Let's go with the apartment in Alfama. Do we need visas?", "m3", "t3")
    assert summary_text(state) == (
        "Request: We want to plan a trip to Lisbon in June.\n"
        "Decisions: Let's go with the apartment in Alfama.\n"
        "Open questions: Do we need visas?"
    )
    assert state.message_count == 3
    assert keywords(state)[:3] == ["plan", "trip", "lisbon"]
    assert "ritz" not in keywords(state) and "the" not in keywords(state)


def test_keywords_rank_by_frequency_then_first_use() -> None:
    state = SummaryState()
    apply_message(state, "user", "Porto or Lisbon? Lisbon trams, Lisbon food, Porto wine.", "m1", "t1")
    assert keywords(state)[:2] == ["lisbon", "porto"]


def test_the_summary_is_capped() -> None:
    state = SummaryState()
    for n in range(40):
        apply_message(
            state, "user", f"Let's decide on option {n} with a long explanation " + "x" * 200 + ".", f"m{n}", "t"
        )
    assert len(summary_text(state)) <= SUMMARY_MAX_CHARS
    assert len(keywords(state)) <= 20


def test_the_state_round_trips_through_json() -> None:
    state = SummaryState()
    apply_message(state, "user", "We want to visit Rome in May. Let's book it. Any tips?", "m1", "t1")
    assert SummaryState.from_json(state.to_json()) == state
