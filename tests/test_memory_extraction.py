"""Extraction and the summary fold, without Firestore: ordinary phrasing, the requests real
users make while planning, questions, negations with a scope, and open choices."""

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qjobs.memory.extract import RuleExtractor
from qjobs.memory.summary import SUMMARY_MAX_CHARS, SummaryState, apply_message, keywords, summary_text

EXTRACTOR = RuleExtractor()


def found(text: str) -> list[tuple[str, str, Any]]:
    return [(s.category, s.op, s.value) for s in EXTRACTOR.extract(text)]


def with_basis(text: str) -> list[tuple[str, str, Any, str]]:
    return [(s.category, s.op, s.value, s.basis) for s in EXTRACTOR.extract(text)]


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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Find me economy flights from SFO.",
            [("cabinClass", "set", "economy", "choice"), ("homeAirport", "set", "SFO", "choice")],
        ),
        ("I always fly premium economy", [("cabinClass", "set", "premium_economy", "stated")]),
        ("I prefer a window seat", [("seat", "set", "window", "stated")]),
        ("I'd prefer a window seat this time", [("seat", "set", "window", "choice")]),
        ("I'm vegan", [("dietary", "add", "vegan", "stated")]),
        (
            "I'm vegan and I fly out of Boston Logan (BOS).",
            [("dietary", "add", "vegan", "stated"), ("homeAirport", "set", "BOS", "stated")],
        ),
        (
            "My husband is coeliac, so find us a gluten-free place.",
            [("dietary", "add", "gluten_free", "stated"), ("dietary", "add", "gluten_free", "choice")],
        ),
        ("Find me a vegetarian restaurant", [("dietary", "add", "vegetarian", "choice")]),
        ("Can you find me a reasonably priced place to eat?", [("budget", "set", {"level": "mid_range"}, "choice")]),
        ("Can you find me a house to stay in?", [("accommodation", "set", "apartment", "choice")]),
        ("I'm leaving from Atlanta next Thursday.", [("homeAirport", "set", "ATL", "choice")]),
        ("My home airport is BOS", [("homeAirport", "set", "BOS", "stated")]),
        ("Please search for NYC to LAX.", [("homeAirport", "set", "NYC", "choice")]),
        ("Premium economy, please.", [("cabinClass", "set", "premium_economy", "choice")]),
        ("Let's go with the apartment in Alfama.", [("accommodation", "set", "apartment", "choice")]),
        ("Find me a Historical Landmark to visit.", [("interests", "add", "history", "choice")]),
        ("Is there a museum nearby?", [("interests", "add", "museums", "choice")]),
        ("Can you see if there is a child-friendly museum?", [("interests", "add", "museums", "choice")]),
        ("Are there any Economy class tickets left?", [("cabinClass", "set", "economy", "choice")]),
    ],
)
def test_choices_made_while_planning_are_statements_with_their_basis(
    text: str, expected: list[tuple[str, str, Any, str]]
) -> None:
    assert with_basis(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Is it economy?",
        "Do they have vegetarian options?",
        "How pricey are they?",
        "Can you tell me if the restaurant is costly?",
        "Is this a redeye flight?",
        "What is their price range?",
        "Yes, that works. Is it an inexpensive restaurant?",
        "Can I get their address and is it average priced?",
        "Would you say the price range is not very costly?",
        "Price extravagant?",
        "I'd like to find a restaurant.",
        "Find me a restaurant where I can listen to live music.",
    ],
)
def test_a_question_or_a_plain_request_states_nothing(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("No, not now. I need to find a hotel.", [("accommodation", "set", "hotel")]),
        ("No, not now, I need to find a hotel.", [("accommodation", "set", "hotel")]),
        ("No I want Business class seats.", [("cabinClass", "set", "business")]),
        ("I don't need a flight, but I want an aisle seat.", [("seat", "set", "aisle")]),
        ("I'm not looking for a hotel.", [("accommodation", "remove", "hotel")]),
        ("I'm not sure when we leave yet so please find us a hotel.", [("accommodation", "set", "hotel")]),
        ("I do not want anything too extravagant.", [("budget", "set", {"level": "mid_range"})]),
        ("Find something not very costly.", [("budget", "set", {"level": "mid_range"})]),
        ("I don't mind if it's expensive.", [("budget", "set", {"level": "luxury"})]),
        ("no red-eyes please", [("avoid", "add", "red_eye_flights")]),
    ],
)
def test_a_negation_governs_only_what_follows_it_closely(text: str, expected: list[tuple[str, str, Any]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Either business or economy is fine.", []),
        ("Business or economy.", []),
        ("Both business and economy are fine.", []),
        ("Find me Economy tickets from any airline.", [("cabinClass", "set", "economy")]),
        ("I need a place to eat in any price range.", []),
        ("This is just for 1 person, and seating doesn't matter.", []),
        ("Find me some Korean food, I do not care too much about price, something cheap maybe.", []),
    ],
)
def test_what_the_user_leaves_open_gets_nothing(text: str, expected: list[tuple[str, str, Any]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Book me on Delta Airlines.", [("airlines", "add", {"airline": "delta", "stance": "prefer"})]),
        ("I never fly Spirit Airlines.", [("airlines", "add", {"airline": "spirit", "stance": "avoid"})]),
        ("Find a flight, but not on United Airlines.", [("airlines", "add", {"airline": "united", "stance": "avoid"})]),
        ("We land in the United States on Monday.", []),
        ("I'm looking for a 4 star hotel.", [("hotelClass", "set", 4), ("accommodation", "set", "hotel")]),
        ("Find me a five-star restaurant.", []),
        ("We'd like a cheap hostel.", [("budget", "set", {"level": "budget"}), ("accommodation", "set", "hostel")]),
        ("Find me a fancy place to eat.", [("budget", "set", {"level": "luxury"})]),
        ("Something affordable, please.", [("budget", "set", {"level": "mid_range"})]),
        ("I want a mall in SF.", [("interests", "add", "shopping")]),
        ("Non meat food will be great.", [("dietary", "add", "vegetarian")]),
        ("I'll be leaving from Vegas.", [("homeAirport", "set", "LAS")]),
        ("I need a bus from San Francisco to LA.", []),
    ],
)
def test_vocabulary_from_real_phrasing(text: str, expected: list[tuple[str, str, Any]]) -> None:
    assert found(text) == expected


@settings(max_examples=300)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_extraction_is_total_and_deterministic(text: str) -> None:
    """Whatever a user types, extraction answers the same statements twice and never fails:
    a page transaction may run it again."""
    first = EXTRACTOR.extract(text)
    assert first == EXTRACTOR.extract(text)
    assert all(s.basis in ("stated", "choice") and s.op in ("set", "add", "remove") for s in first)


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
