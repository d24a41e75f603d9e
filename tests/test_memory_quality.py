"""What a traveller would expect memory-sync to remember, end to end on the emulator: whose
preference a statement is (companions), a budget kept whole, standing changes, and the
choice made for one trip beside a stated preference."""

from typing import Any

import pytest
from flask.testing import FlaskClient
from google.cloud import firestore

from qjobs.memory.extract import RuleExtractor
from tests.support import AppFactory, Deliver
from tests.test_memory_sync import Conversation, sync

pytestmark = pytest.mark.timeout(60)
EXTRACTOR = RuleExtractor()


@pytest.fixture
def paged(make_client: AppFactory, db: firestore.Client) -> FlaskClient:
    """Pages of three messages, so that a sync spans pages."""
    return make_client(MEMORY_SYNC_PAGE_SIZE="3")


def preferences(db: firestore.Client, user_id: str) -> dict[str, Any]:
    return {doc.id: doc.get("value") for doc in db.collection("users", user_id, "preferences").stream()}


def companions(db: firestore.Client, user_id: str) -> dict[str, Any]:
    return {doc.id: doc.to_dict() for doc in db.collection("users", user_id, "companions").stream()}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I'm vegetarian. My partner is gluten free, so places need to work for both of us.",
         [("vegetarian", "self"), ("gluten_free", "partner")]),
        ("My husband is vegan, I eat everything.", [("vegan", "husband")]),
        ("I'm vegan and my wife is vegetarian", [("vegan", "self"), ("vegetarian", "wife")]),
        ("We're vegetarian.", [("vegetarian", "self")]),
        ("My friend Ana is vegan.", [("vegan", "friend")]),
        ("My little sister is coeliac.", [("gluten_free", "sister")]),
    ],
)  # fmt: skip
def test_each_statement_names_whose_preference_it_is(text: str, expected: list[tuple[str, str]]) -> None:
    assert [(s.value, s.holder) for s in EXTRACTOR.extract(text) if s.category == "dietary"] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Just my mum and me. She has a nut allergy.", [("dietary", "nut_free", "mother")]),
        ("My wife doesn't eat dairy.", [("dietary", "dairy_free", "wife")]),
        ("The kids are obsessed with theme parks.", [("interests", "theme_parks", "kids")]),
        ("My dad is coming. He's 74 so we need an aisle seat for him.", [("seat", "aisle", "father")]),
    ],
)
def test_what_is_said_of_someone_else_is_theirs(text: str, expected: list[tuple[str, Any, str]]) -> None:
    assert [(s.category, s.value, s.holder) for s in EXTRACTOR.extract(text)] == expected


def test_a_pronoun_keeps_the_relation_named_before_it_and_is_nobodys_without_one() -> None:
    (business,) = EXTRACTOR.extract("My brother might come, he only flies business class.")
    assert (business.category, business.value, business.holder) == ("cabinClass", "business", "brother")
    assert [s.holder for s in EXTRACTOR.extract("He only flies business class.")] == ["unknown"]
    assert [s.holder for s in EXTRACTOR.extract("She is vegan.")] == ["unknown"], "kept, but nobody's"
    (seat,) = EXTRACTOR.extract("Book a window seat for my son.")
    assert (seat.value, seat.holder) == ("window", "son")


def test_companions_fold_apart_from_the_users_own(deliver: Deliver, paged: FlaskClient, db: firestore.Client) -> None:
    conversation = Conversation(db, "u-comp")
    conversation.append(
        [
            ("user", "I'm vegetarian. My partner is gluten free, so places need to work for both of us."),
            ("user", "My husband is vegan, I eat everything."),
            ("user", "My brother might come, he only flies business class."),
            ("user", "She hates layovers."),
        ]
    )
    assert sync(deliver, paged, conversation, "incremental").status_code == 200
    assert preferences(db, "u-comp") == {"dietary": ["vegetarian"]}
    found = companions(db, "u-comp")
    assert {holder: data["preferences"] for holder, data in found.items()} == {
        "partner": {"dietary": ["gluten_free"]},
        "husband": {"dietary": ["vegan"]},
        "brother": {"cabinClass": "business"},
    }
    assert found["partner"]["holder"] == "partner" and found["partner"]["updatedAt"] is not None
    memories = [doc.to_dict() or {} for doc in db.collection("users/u-comp/memories").stream()]
    assert {(m["value"], m["holder"]) for m in memories if m["kind"] == "preference" and m["category"] == "avoid"} == {
        ("layovers", "unknown")
    }, "kept, but nobody's preference"
    again = sync(deliver, paged, conversation, "full")
    assert again.status_code == 200 and again.json is not None and again.json["preferencesUpdated"] == 0


def test_a_budget_keeps_its_amount_and_its_level_side_by_side(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client
) -> None:
    conversation = Conversation(db, "u-budget")
    conversation.append(
        [("user", "About 4000 euros for the two of us, not counting flights. Mid-range hotels are fine.")]
    )
    assert sync(deliver, paged, conversation, "incremental").status_code == 200
    assert preferences(db, "u-budget")["budget"] == {
        "amount": 4000,
        "currency": "EUR",
        "per": "trip",
        "level": "mid_range",
    }
    conversation.append([("user", "Actually let's keep it luxury.")])
    assert sync(deliver, paged, conversation, "incremental").status_code == 200
    budget = preferences(db, "u-budget")["budget"]
    assert budget["amount"] == 4000 and budget["level"] == "luxury", "a level keeps the standing amount"


def test_a_standing_change_replaces_the_stated_preference(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client
) -> None:
    conversation = Conversation(db, "u-standing")
    conversation.append(
        [("user", "I always prefer a window seat."), ("user", "Actually, put me in an aisle seat from now on.")]
    )
    assert sync(deliver, paged, conversation, "incremental").status_code == 200
    seat = db.collection("users/u-standing/preferences").document("seat").get()
    assert (seat.get("value"), seat.get("basis")) == ("aisle", "stated")
    assert "recentChoice" not in (seat.to_dict() or {})


def test_a_choice_for_one_trip_is_kept_beside_the_stated_preference_until_a_later_one_is_stated(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client
) -> None:
    conversation = Conversation(db, "u-recent")
    conversation.append(
        [("user", "I always prefer a window seat."), ("user", "On that flight I'd rather have an aisle seat.")]
    )
    assert sync(deliver, paged, conversation, "incremental").status_code == 200
    seat = db.collection("users/u-recent/preferences").document("seat").get().to_dict() or {}
    assert seat["value"] == "window"
    assert seat["recentChoice"]["value"] == "aisle" and seat["recentChoice"]["conversationId"] == conversation.id
    conversation.append([("user", "I prefer window seats.")])
    assert sync(deliver, paged, conversation, "incremental").status_code == 200
    seat = db.collection("users/u-recent/preferences").document("seat").get().to_dict() or {}
    assert seat["value"] == "window" and "recentChoice" not in seat, "a later stated preference clears it"


@pytest.mark.parametrize(
    "text",
    [
        "Dinner at Garden Curry House sounds good",
        "Let's meet at the Tate Gallery cafe",
        "I just need to get back to the hotel by 6pm",
        "The taxi should take me from the hotel to the college",
        "Could you tell me the hotel type and its address?",
        "Yes, the hotel type please",
        "I'd like the phone number for the museum",
    ],
)
def test_a_kind_of_place_named_for_something_else_states_nothing(text: str) -> None:
    """Part of a proper name, a place already chosen, an attribute asked about."""
    assert [
        (s.category, s.value) for s in EXTRACTOR.extract(text) if s.category in ("accommodation", "interests")
    ] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("No guesthouses, just hotels please",
         [("accommodation", "remove", "bed_and_breakfast"), ("accommodation", "set", "hotel")]),
        ("I need a room, ideally a guesthouse with parking", [("accommodation", "set", "bed_and_breakfast")]),
        ("The hotel should be a guesthouse", [("accommodation", "set", "bed_and_breakfast")]),
        ("An expensive hotel will work", [("budget", "set", {"level": "luxury"}), ("accommodation", "set", "hotel")]),
        ("As long as it's cheap", [("budget", "set", {"level": "budget"})]),
        ("A Museum would be fun.", [("interests", "add", "museums")]),
        ("Is there any Historical Landmark?", [("interests", "add", "history")]),
    ],
)  # fmt: skip
def test_alternatives_and_request_forms_without_a_request_verb(text: str, expected: list[tuple[str, str, Any]]) -> None:
    assert [(s.category, s.op, s.value) for s in EXTRACTOR.extract(text)] == expected


def test_places_loved_and_avoided_are_destinations_and_the_later_stance_wins(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client
) -> None:
    conversation = Conversation(db, "u-places")
    conversation.append(
        [
            ("user", "I absolutely love Lisbon!"),
            ("user", "I never want to see Cancún again."),
            ("user", "I'd love to go back to Kyoto someday."),
            ("user", "Honestly I hated Kyoto last time, too crowded."),
            ("user", "My wife loves Paris."),
        ]
    )
    assert sync(deliver, paged, conversation, "incremental").status_code == 200
    destinations = db.collection("users/u-places/preferences").document("destinations").get().to_dict() or {}
    assert destinations["value"] == {"love": ["Lisbon"], "avoid": ["Cancun", "Kyoto"]}
    assert [item["value"] for item in destinations["items"]] == [
        {"place": "Lisbon", "stance": "love"},
        {"place": "Cancun", "stance": "avoid"},
        {"place": "Kyoto", "stance": "avoid"},
    ], "one item per place, in the order first named; the later stated stance wins"
    assert companions(db, "u-places")["wife"]["preferences"] == {"destinations": {"love": ["Paris"], "avoid": []}}


@pytest.mark.parametrize("sentence", ["In Madrid we'd love to see the Prado.", "We'd love to see the Prado in Madrid."])
def test_places_planned_for_this_trip_are_the_summarys_plans_however_the_sentence_is_ordered(
    deliver: Deliver, paged: FlaskClient, db: firestore.Client, sentence: str
) -> None:
    conversation = Conversation(db, "u-plans")
    conversation.append([("user", "We want to plan a trip to Spain in June."), ("user", sentence)])
    assert sync(deliver, paged, conversation, "incremental").status_code == 200
    summary = db.collection("users/u-plans/conversationSummaries").document(conversation.id).get().get("summary")
    assert f"Plans: {sentence}" in summary
    assert not db.collection("users/u-plans/preferences").document("destinations").get().exists, "a plan is no stance"


def test_an_amount_each_is_per_person() -> None:
    (budget,) = [s for s in EXTRACTOR.extract("Budget around $400 each for the house.") if s.category == "budget"]
    assert budget.value == {"amount": 400, "currency": "USD", "per": "person"}
