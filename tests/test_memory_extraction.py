"""Extraction and the summary fold, without Firestore: ordinary phrasing, the requests real
users make while planning, questions, negations with a scope, and open choices."""

import itertools
import re
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qjobs.memory.extract import RuleExtractor, overlaps, split_sentences
from qjobs.memory.summary import (
    MAX_TERMS,
    SUMMARY_MAX_CHARS,
    Note,
    SummaryState,
    apply_message,
    keywords,
    keywords_of,
    note_id,
    summary_text,
)

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


# ---------------------------------------------------------------- the summary fold, rule by rule


def test_a_plan_names_a_place_or_a_date_and_the_latest_five_are_kept() -> None:
    state = SummaryState()
    apply_message(state, "user", "We want a trip to Japan.", "m0", "t0")
    places = ["Tokyo", "Kyoto", "Osaka", "Nara", "Kobe", "Hakone", "Nikko"]
    for n, place in enumerate(places, start=1):
        apply_message(state, "user", f"Day {n} is in {place}.", f"m{n}", f"t{n}")
    apply_message(state, "user", "The last week is August.", "m9", "t9")
    assert [note.text for note in state.plans] == [
        "Day 4 is in Nara.",
        "Day 5 is in Kobe.",
        "Day 6 is in Hakone.",
        "Day 7 is in Nikko.",
        "The last week is August.",
    ]
    assert summary_text(state) == (
        "Request: We want a trip to Japan.\n"
        "Plans: Day 4 is in Nara. Day 5 is in Kobe. Day 6 is in Hakone. Day 7 is in Nikko. The last week is August."
    )


def test_without_a_request_the_users_first_sentence_stands_for_it() -> None:
    state = SummaryState()
    apply_message(state, "assistant", "Hello! Where to?", "m0", "t0")
    assert summary_text(state) == "", "nothing the user said yet"
    apply_message(state, "user", "Hello there. Lisbon sounds lovely.", "m1", "t1")
    apply_message(state, "user", "Something calm. Maybe Porto later.", "m2", "t2")
    assert summary_text(state) == "Request: Hello there.\nPlans: Lisbon sounds lovely.", "a place named is a plan"
    assert SummaryState.from_json(state.to_json()) == state, "a state without a request round-trips too"


def test_one_request_per_conversation_and_notes_say_where_they_came_from() -> None:
    state = SummaryState()
    notes = apply_message(
        state, "user", "I want to visit Rome. We also want to visit Naples. Let's book it.", "m1", "t1"
    )
    assert [(note.kind, note.text, note.message_id, note.stated_at, note.position) for note in notes] == [
        ("request", "I want to visit Rome.", "m1", "t1", 0),
        ("plan", "We also want to visit Naples.", "m1", "t1", 1),
        ("decision", "Let's book it.", "m1", "t1", 2),
    ]
    later = apply_message(state, "user", "Help me plan a trip to Milan.", "m2", "t2")
    assert [(note.kind, note.message_id) for note in later] == [("plan", "m2")], "the request is already known"
    assert state.request is not None and state.request.text == "I want to visit Rome."


def test_a_message_adds_at_most_twenty_notes() -> None:
    content = " ".join(f"Stop {n} is in Rome." for n in range(25))
    notes = apply_message(SummaryState(), "user", content, "m1", "t1")
    assert [note.position for note in notes] == list(range(20))


def test_several_notes_of_a_kind_read_as_one_line() -> None:
    state = SummaryState()
    apply_message(state, "user", "We want a trip to Peru. Let's take the train. We'll fly back.", "m1", "t1")
    assert summary_text(state) == ("Request: We want a trip to Peru.\nDecisions: Let's take the train. We'll fly back.")


def test_a_summary_at_the_cap_is_whole_and_one_over_it_ends_in_an_ellipsis() -> None:
    def summary_of(request: str) -> str:
        return summary_text(SummaryState(request=Note("request", request, "m1", "t1", 0)))

    prefix = len("Request: ")
    exact = "a" * (SUMMARY_MAX_CHARS - prefix)
    assert summary_of(exact) == f"Request: {exact}"
    over = summary_of("b" * SUMMARY_MAX_CHARS)
    assert len(over) == SUMMARY_MAX_CHARS and over.endswith("b…")
    spaced = summary_of("c" * (SUMMARY_MAX_CHARS - prefix - 3) + "   " + "d" * 10)
    assert spaced.endswith("c…"), "no space left before the ellipsis"


def test_keywords_keep_short_words_and_drop_trailing_apostrophes() -> None:
    state = SummaryState()
    apply_message(state, "user", "A spa day, the kids' zoo, then spa again.", "m1", "t1")
    assert keywords(state) == ["spa", "day", "kids", "zoo"]
    assert keywords_of("The spa, the kids' zoo and the spa again") == ["spa", "kids", "zoo"]


def test_a_notes_keywords_are_its_first_ten_distinct_words() -> None:
    cities = ["lisbon", "porto", "faro", "braga", "evora", "sintra", "coimbra", "nazare", "tavira", "lagos", "obidos"]
    assert keywords_of(" ".join(["lisbon", *cities])) == cities[:10]
    assert keywords_of(" ".join(cities), 3) == ["lisbon", "porto", "faro"]


def test_a_notes_id_is_stable_and_names_its_conversation_message_and_place() -> None:
    """The memory index is written with this id: a sync run twice writes each note once."""
    note = Note("plan", "Day 1 is in Rome.", "m1", "t1", 0)
    assert note_id("c1", note) == note_id("c1", Note("plan", "Changed wording.", "m1", "t9", 0))
    others = {
        note_id("c2", note),
        note_id("c1", Note("plan", note.text, "m2", "t1", 0)),
        note_id("c1", Note("plan", note.text, "m1", "t1", 1)),
    }
    assert note_id("c1", note) not in others and len(others) == 3
    assert re.fullmatch(r"[0-9a-f]{40}", note_id("c1", note))


def test_a_state_stored_without_its_note_lists_reads_with_empty_ones() -> None:
    state = SummaryState.from_json('{"message_count": 2, "first_sentence": null, "request": null, "terms": {}}')
    assert state == SummaryState(message_count=2)
    assert SummaryState.from_json(None) == SummaryState.from_json("") == SummaryState()


# ---------------------------------------------------------------- extraction, rule by rule (real user turns)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Keep it under $2k.", [("budget", "set", {"amount": 2000, "currency": "USD", "per": "trip"}, "choice")]),
        (
            "Our budget is $99.50 a night.",
            [("budget", "set", {"amount": 99.5, "currency": "USD", "per": "night"}, "choice")],
        ),
        (
            "Find a hotel under $200 a night.",
            [
                ("accommodation", "set", "hotel", "choice"),
                ("budget", "set", {"amount": 200, "currency": "USD", "per": "night"}, "choice"),
            ],
        ),
        (
            "Find me economy flights from BUR.",
            [("cabinClass", "set", "economy", "choice"), ("homeAirport", "set", "BUR", "choice")],
        ),
        ("Prices from USD 300 and I fly out of Boston.", [("homeAirport", "set", "BOS", "stated")]),
        ("Show me flights from USD 300.", []),
        (
            "Surely, I am leaving to Sydney, NSW on 13th of this month from LAX.",
            [("homeAirport", "set", "LAX", "choice")],
        ),
        (
            "Can you please search some flights available? "
            "I will be leaving from Portland, OR and would prefer Economy class.",
            [("homeAirport", "set", "PDX", "choice"), ("cabinClass", "set", "economy", "choice")],
        ),
        ("I avoid Spirit Airlines.", [("airlines", "add", {"airline": "spirit", "stance": "avoid"}, "choice")]),
        (
            "We won't fly United Airlines again.",
            [("airlines", "add", {"airline": "united", "stance": "avoid"}, "choice")],
        ),
        (
            "I am flying to Paris, France with 4 people. I prefer Delta Airlines.",
            [("airlines", "add", {"airline": "delta", "stance": "prefer"}, "stated")],
        ),
        (
            "I would like to travel Economy through Delta Airlines.",
            [
                ("cabinClass", "set", "economy", "choice"),
                ("airlines", "add", {"airline": "delta", "stance": "prefer"}, "choice"),
            ],
        ),
        (
            "I need a room in a two star hotel",
            [("accommodation", "set", "hotel", "choice"), ("hotelClass", "set", 2, "choice")],
        ),
        (
            "Okay thanks. Can you find me a hotel out there? I'd like to 3 rooms at a hotel with at least 1 star.",
            [("accommodation", "set", "hotel", "choice"), ("hotelClass", "set", 1, "choice")],
        ),
    ],
)
def test_open_values_are_read_from_real_requests(text: str, expected: list[tuple[str, str, Any, str]]) -> None:
    """Amounts (a thousand as `k`, cents kept), airport codes no table knows, words that only
    look like codes (`USD`), airlines beside other values, star ratings."""
    assert with_basis(text) == expected


def test_a_whole_amount_is_an_integer() -> None:
    """Firestore keeps what it is given: 2000, not 2000.0, is what the user said."""
    (statement,) = EXTRACTOR.extract("Keep it under $2,000 for the whole trip.")
    assert type(statement.value["amount"]) is int


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I'm not sure, an aisle seat please.", [("seat", "set", "aisle", "choice")]),
        ("Not an aisle seat.", [("seat", "remove", "aisle", "choice")]),
        ("I don't think I want a window seat.", [("seat", "remove", "window", "choice")]),
        ("Find me things to do, but no museums.", [("interests", "remove", "museums", "choice")]),
        ("Or maybe economy, business class even.", [("cabinClass", "set", "economy", "choice")]),
        (
            "I'd like business class and then economy on the way back, or so.",
            [("cabinClass", "set", "business", "choice")],
        ),
        ("LA. Also, can you make those seats Premium Economy.", [("cabinClass", "set", "premium_economy", "choice")]),
        ("No, make it premium economy.", [("cabinClass", "set", "premium_economy", "choice")]),
    ],
)
def test_scope_of_a_negation_and_of_an_or_in_real_phrasing(
    text: str, expected: list[tuple[str, str, Any, str]]
) -> None:
    """A negation reaches four words within its phrase, from the clause's first word on; an
    `or` leaves a category open only between its two values; openers are not words of the clause."""
    assert with_basis(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Direct flights only.", [("avoid", "add", "layovers", "stated")]),
        ("I don't like beaches.", [("interests", "remove", "beaches", "stated")]),
        ("I want to go to a free museum in SF.", [("interests", "add", "museums", "stated")]),
        (
            "I want to see some live music, can you look at various dates for a concert I might like to see?",
            [("interests", "add", "music", "stated")],
        ),
        ("Could you suggest anymore affordable restaurants?", [("budget", "set", {"level": "mid_range"}, "choice")]),
        ("That sounds like a redeye. When does it land?", []),
        ("I want to find somewhere to eat. It needs to serve alcohol and it doesn't matter if it's pricey.", []),
    ],
)
def test_what_a_liking_a_fixed_habit_or_an_aside_states(text: str, expected: list[tuple[str, str, Any, str]]) -> None:
    assert with_basis(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Keep it under $2k.",
        "Find a hotel under $200 a night.",
        "Surely, I am leaving to Sydney, NSW on 13th of this month from LAX.",
        "I prefer Delta Airlines.",
        "I need a room in a two star hotel",
        "Can you find me something economical to eat in Pleasanton.",
        "We love museums and hiking, but I hate crowds.",
    ],
)
def test_every_statement_carries_a_confidence_and_its_sentence(text: str) -> None:
    statements = EXTRACTOR.extract(text)
    assert statements
    for statement in statements:
        assert isinstance(statement.confidence, float) and 0 < statement.confidence <= 1, statement
        assert statement.text in split_sentences(text), statement


def test_a_span_of_text_is_read_once_and_spans_that_only_touch_do_not_overlap() -> None:
    """Spans are half-open: a rule may start where a finder's mention ends, or end where it starts."""
    used = [(10, 20)]
    assert not overlaps((20, 25), used) and not overlaps((5, 10), used)
    assert overlaps((15, 25), used) and overlaps((5, 11), used) and overlaps((12, 18), used)
    assert overlaps((19, 20), used) and overlaps((10, 30), used)


@pytest.mark.parametrize(
    "text",
    ["I love museums and I hate crowds.", "I hate crowds and I love museums.", "I love beaches, and I hate crowds."],
)
def test_a_negation_does_not_reach_a_like_in_another_clause_of_the_sentence(text: str) -> None:
    """docs/memory-sync.md: a negation governs only what follows it closely, within one
    phrase. Joined by "and", the like and the dislike are two phrases."""
    assert not [s for s in EXTRACTOR.extract(text) if s.category == "interests" and s.op == "remove"]


def test_past_the_term_limit_the_least_used_words_are_forgotten() -> None:
    state = SummaryState()
    apply_message(state, "user", "Zebras, zebras and more zebras.", "m1", "t1")
    rare = ["q" + "".join(letters) for letters in itertools.product(string.ascii_lowercase, repeat=3)][:MAX_TERMS]
    apply_message(state, "user", " ".join(rare), "m2", "t2")
    assert len(state.terms) == MAX_TERMS and keywords(state)[0] == "zebras"
    assert rare[-1] not in state.terms, "among words used once, the latest first used goes"


def test_a_state_stored_before_words_were_counted_reads_its_count_from_the_terms() -> None:
    stored = SummaryState.from_json('{"message_count": 1, "terms": {"lisbon": [2, 0], "porto": [1, 2]}}')
    assert stored.words_seen == 3
    assert SummaryState.from_json('{"message_count": 1}') == SummaryState(message_count=1)


# ---------------------------------------------------------------- whose, which and what a clause states


def holders_of(text: str) -> list[tuple[str, Any, str]]:
    return [(s.category, s.value, s.holder) for s in EXTRACTOR.extract(text)]


def test_each_clause_is_read_where_it_stands_in_its_sentence() -> None:
    """Whose a value is depends on the words before it in the sentence: a clause repeated later
    in the sentence, or a request for someone after a comma, must not borrow them."""
    assert holders_of("window seat, but my wife wants a window seat too") == [
        ("seat", "window", "self"),
        ("seat", "window", "wife"),
    ]
    assert holders_of("Book me an aisle seat, and for my wife a window seat.") == [
        ("seat", "aisle", "self"),
        ("seat", "window", "wife"),
    ]


def test_a_second_value_replaces_the_first_only_when_the_words_between_them_say_so() -> None:
    assert found("We prefer apartments over hotels, ideally near the beach") == [
        ("accommodation", "set", "apartment")
    ], "the 'ideally' after both values prefers neither"
    assert found("I want a hotel, ideally not a hostel") == [
        ("accommodation", "set", "hotel"),
        ("accommodation", "remove", "hostel"),
    ], "a withdrawal after the value does not replace it"
    assert found("a window seat, just not an aisle seat") == [("seat", "set", "window"), ("seat", "remove", "aisle")]


def test_a_mention_that_states_nothing_does_not_hide_the_values_after_it() -> None:
    assert found("Nothing expensive, a hotel please") == [("accommodation", "set", "hotel")]


def test_what_a_place_offers_is_nobodys_identity() -> None:
    """ "vegan" said of a restaurant or a hotel is what it serves, not what someone is."""
    assert found("The restaurant has vegan options.") == []
    assert found("The hotel is vegan friendly") == []


def test_a_dislike_is_scoped_to_its_phrase() -> None:
    assert found("I love museums, I hate crowds") == [("interests", "add", "museums"), ("avoid", "add", "crowds")]
    assert found("I love beaches, I hate shopping") == [
        ("interests", "add", "beaches"),
        ("interests", "remove", "shopping"),
    ]
    assert found("Hate shopping malls") == [("interests", "remove", "shopping")], "a dislike that opens the message"


def test_a_place_loved_or_avoided_is_no_plan() -> None:
    for text in ("I absolutely love Lisbon!", "We hated Cancun."):
        state = SummaryState()
        apply_message(state, "user", f"We need a hotel. {text}", "m1", "t1")
        assert summary_text(state) == "Request: We need a hotel.", text
    state = SummaryState()
    apply_message(state, "user", "We need a hotel. In Madrid we would love to see the Prado.", "m1", "t1")
    assert summary_text(state) == "Request: We need a hotel.\nPlans: In Madrid we would love to see the Prado."
