"""The preference fold, without Firestore: stated preferences decide, choices count when
nothing is stated, and the derived document says what supports it."""

from datetime import UTC, datetime, timedelta
from typing import Any

from qjobs.memory.preferences import StoredStatement, fold, statement_of


def statement(
    category: str,
    op: str,
    value: Any,
    minute: int,
    *,
    conversation: str = "c1",
    message: str = "m",
    basis: str = "stated",
) -> StoredStatement:
    stated = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)
    return StoredStatement(
        category, op, value, 0.9, stated, conversation, f"{message}{minute}", 0, basis, f"mem-{conversation}-{minute}"
    )


def chose(category: str, op: str, value: Any, minute: int, conversation: str = "c1") -> StoredStatement:
    return statement(category, op, value, minute, conversation=conversation, basis="choice")


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
    assert derived is not None and derived["value"] == ["halal"] and derived["sourceConversationId"] == "c2"
    assert fold("dietary", statements[-2:]) is None


def test_a_choice_never_overrides_a_stated_preference() -> None:
    derived = fold(
        "seat", [statement("seat", "set", "aisle", 1), *(chose("seat", "set", "window", m) for m in (2, 3, 4))]
    )
    assert derived is not None and (derived["value"], derived["basis"]) == ("aisle", "stated")
    assert derived["support"] == {"count": 1, "memoryIds": ["mem-c1-1"]}


def test_without_a_stated_preference_the_value_chosen_most_often_wins() -> None:
    choices = [chose("cabinClass", "set", "economy", 1), chose("cabinClass", "set", "business", 2)]
    choices.append(chose("cabinClass", "set", "economy", 3, "c2"))
    derived = fold("cabinClass", choices)
    assert derived is not None and (derived["value"], derived["basis"]) == ("economy", "choice")
    assert derived["support"] == {"count": 2, "memoryIds": ["mem-c2-3", "mem-c1-1"]}
    assert derived["sourceConversationId"] == "c2"


def test_a_tie_between_choices_goes_to_the_most_recent() -> None:
    derived = fold("seat", [chose("seat", "set", "aisle", 1), chose("seat", "set", "window", 2)])
    assert derived is not None and derived["value"] == "window"
    derived = fold("seat", [chose("seat", "set", "window", 1), chose("seat", "set", "aisle", 2)])
    assert derived is not None and derived["value"] == "aisle"


def test_confidence_grows_with_the_conversations_a_choice_was_made_in() -> None:
    def confidence(*conversations: str) -> float:
        derived = fold("seat", [chose("seat", "set", "aisle", n, c) for n, c in enumerate(conversations)])
        assert derived is not None
        return float(derived["confidence"])

    assert confidence("c1") == confidence("c1", "c1") == 0.5
    assert confidence("c1") < confidence("c1", "c2") < confidence("c1", "c2", "c3") <= 0.9
    assert confidence(*(f"c{n}" for n in range(10))) == 0.9


def test_a_stated_withdrawal_voids_the_choices_before_it_only() -> None:
    earlier = [chose("dietary", "add", "vegan", 1), statement("dietary", "remove", "vegan", 2)]
    assert fold("dietary", earlier) is None
    later = fold("dietary", [*earlier, chose("dietary", "add", "vegan", 3)])
    assert later is not None and later["value"] == ["vegan"] and later["basis"] == "choice"


def test_a_list_says_the_basis_of_each_item() -> None:
    derived = fold(
        "interests",
        [
            statement("interests", "add", "museums", 1),
            chose("interests", "add", "history", 2),
            chose("interests", "add", "history", 3, "c2"),
        ],
    )
    assert derived is not None and derived["value"] == ["museums", "history"] and derived["basis"] == "stated"
    assert [(item["value"], item["basis"], item["count"]) for item in derived["items"]] == [
        ("museums", "stated", 1),
        ("history", "choice", 2),
    ]
    assert derived["support"]["count"] == 3


def test_airlines_are_preferred_or_avoided_and_the_latest_stance_wins() -> None:
    def flown(name: str, stance: str) -> dict[str, str]:
        return {"airline": name, "stance": stance}

    statements = [
        chose("airlines", "add", flown("delta", "prefer"), 1),
        statement("airlines", "add", flown("spirit", "avoid"), 2),
    ]
    derived = fold("airlines", statements)
    assert derived is not None and derived["value"] == {"prefer": ["delta"], "avoid": ["spirit"]}
    derived = fold("airlines", [*statements, statement("airlines", "add", flown("delta", "avoid"), 3)])
    assert derived is not None and derived["value"] == {"prefer": [], "avoid": ["spirit", "delta"]}


def test_support_lists_at_most_five_memory_ids_latest_first() -> None:
    derived = fold("seat", [chose("seat", "set", "aisle", minute) for minute in range(8)])
    assert derived is not None and derived["support"]["count"] == 8
    assert derived["support"]["memoryIds"] == [f"mem-c1-{minute}" for minute in (7, 6, 5, 4, 3)]


def test_a_memory_written_before_basis_existed_reads_as_stated() -> None:
    memory = {
        "category": "seat",
        "op": "set",
        "value": "aisle",
        "statedAt": datetime(2026, 1, 1, tzinfo=UTC),
        "conversationId": "c1",
        "messageId": "m1",
    }
    assert StoredStatement.from_memory(memory, "mem-1").basis == "stated"
    assert StoredStatement.from_memory({**memory, "basis": "choice"}, "mem-1").basis == "choice"


# ---------------------------------------------------------------- the fold, rule by rule


def test_a_memory_entry_reads_back_as_the_statement_that_wrote_it() -> None:
    stated = datetime(2026, 1, 1, tzinfo=UTC)
    memory = {
        "category": "budget",
        "op": "set",
        "value": {"amount": 150, "currency": "EUR", "per": "night"},
        "confidence": 0.9,
        "statedAt": stated,
        "conversationId": "c1",
        "messageId": "m1",
        "position": 2,
        "basis": "choice",
    }
    assert StoredStatement.from_memory(memory, "mem-1") == StoredStatement(
        "budget", "set", memory["value"], 0.9, stated, "c1", "m1", 2, "choice", "mem-1"
    )
    older = {name: value for name, value in memory.items() if name not in ("confidence", "position", "basis")}
    assert StoredStatement.from_memory(older) == StoredStatement(
        "budget", "set", memory["value"], 0.5, stated, "c1", "m1", 0, "stated", ""
    ), "an entry written before confidence, position and basis existed"


def test_restating_a_preference_adds_to_its_support_and_changing_it_starts_afresh() -> None:
    derived = fold("seat", [statement("seat", "set", "aisle", 1), statement("seat", "set", "aisle", 2)])
    assert derived is not None and derived["support"] == {"count": 2, "memoryIds": ["mem-c1-2", "mem-c1-1"]}
    derived = fold("seat", [statement("seat", "set", "aisle", 1), statement("seat", "set", "window", 2)])
    assert derived is not None and derived["support"] == {"count": 1, "memoryIds": ["mem-c1-2"]}


def test_a_choice_withdrawn_while_planning_stops_counting() -> None:
    choices = [chose("seat", "set", "window", 1), chose("seat", "set", "window", 2), chose("seat", "set", "aisle", 3)]
    derived = fold("seat", [*choices, chose("seat", "remove", "window", 4)])
    assert derived is not None and (derived["value"], derived["support"]["count"]) == ("aisle", 1)
    assert fold("seat", [chose("seat", "set", "window", 1), chose("seat", "remove", "window", 2)]) is None
    never_chosen = fold("seat", [chose("seat", "remove", "window", 1), chose("seat", "set", "aisle", 2)])
    assert never_chosen is not None and never_chosen["value"] == "aisle", "withdrawing what was never chosen"


def test_a_value_read_back_with_its_keys_in_another_order_is_the_same_value() -> None:
    """Firestore hands maps back in its own key order: a withdrawal must still find the value."""
    written = {"amount": 150, "currency": "EUR", "per": "night"}
    read_back = {"per": "night", "currency": "EUR", "amount": 150}
    assert fold("budget", [statement("budget", "set", written, 1), statement("budget", "remove", read_back, 2)]) is None
    derived = fold("budget", [chose("budget", "set", written, 1), chose("budget", "set", read_back, 2)])
    assert derived is not None and derived["support"]["count"] == 2


def test_numbers_fold_like_any_other_value() -> None:
    derived = fold("hotelClass", [chose("hotelClass", "set", 4, 1), chose("hotelClass", "set", 5, 2)])
    assert derived is not None and (derived["category"], derived["value"]) == ("hotelClass", 5)


def test_the_derived_document_names_its_category_confidence_and_time() -> None:
    derived = fold("seat", [statement("seat", "set", "aisle", 3)])
    assert derived is not None
    assert (derived["category"], derived["confidence"], derived["statedAt"]) == (
        "seat",
        0.9,
        datetime(2026, 1, 1, 0, 3, tzinfo=UTC),
    )
    listed = fold("interests", [chose("interests", "add", "museums", 1), statement("interests", "add", "food", 2)])
    assert listed is not None and (listed["category"], listed["confidence"]) == ("interests", 0.9)
    assert [item["confidence"] for item in listed["items"]] == [0.5, 0.9]


# ---------------------------------------------------------------- orders, ties and the ladder


def test_a_lists_items_come_in_the_order_each_was_named_since_it_was_last_withdrawn() -> None:
    """Decided: an item's place is that of the statement its value rests on first, so naming
    it again keeps its place, and withdrawing and naming it again moves it to the end."""
    named_again = [
        statement("dietary", "add", "vegan", 1),
        statement("dietary", "add", "halal", 2),
        statement("dietary", "add", "vegan", 3),
    ]
    derived = fold("dietary", named_again)
    assert derived is not None and derived["value"] == ["vegan", "halal"]
    assert [item["value"] for item in derived["items"]] == ["vegan", "halal"]
    withdrawn = [*named_again, statement("dietary", "remove", "vegan", 4), statement("dietary", "add", "vegan", 5)]
    derived = fold("dietary", withdrawn)
    assert derived is not None and derived["value"] == ["halal", "vegan"]


def test_a_withdrawn_choice_leaves_the_count() -> None:
    """Aisle chosen twice, then withdrawn as a choice: window, chosen once since, wins."""
    choices = [
        chose("seat", "set", "aisle", 1),
        chose("seat", "set", "aisle", 2),
        chose("seat", "set", "window", 3),
        chose("seat", "remove", "aisle", 4),
    ]
    derived = fold("seat", choices)
    assert derived is not None and (derived["value"], derived["support"]["count"]) == ("window", 1)


def said(value: str, *, conversation: str = "c1", message: str = "m1", position: int = 0) -> StoredStatement:
    """A stated seat, all at the same instant: only the rest of the order tells them apart."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return StoredStatement("seat", "set", value, 0.9, at, conversation, message, position, "stated", value)


def test_statements_of_one_instant_are_ordered_by_conversation_then_message_then_position() -> None:
    for earlier, later in (
        (said("aisle", conversation="c1"), said("window", conversation="c2")),
        (said("aisle", message="m1"), said("window", message="m2")),
        (said("aisle", position=0), said("window", position=1)),
    ):
        for given in ([earlier, later], [later, earlier]):
            derived = fold("seat", given)
            assert derived is not None and derived["value"] == "window", (earlier, later)


def test_confidence_is_the_stated_statements_own_or_the_ladder_of_conversations() -> None:
    sure = StoredStatement("seat", "set", "aisle", 0.7, datetime(2026, 1, 1, tzinfo=UTC), "c1", "m1", 0, "stated")
    derived = fold("seat", [chose("seat", "set", "window", 0), sure])
    assert derived is not None and derived["confidence"] == 0.7
    ladder = []
    for conversations in range(1, 6):
        derived = fold("seat", [chose("seat", "set", "aisle", n, f"c{n}") for n in range(conversations)])
        assert derived is not None
        ladder.append(derived["confidence"])
    assert ladder == [0.5, 0.65, 0.8, 0.9, 0.9]


# ---------------------------------------------------------------- memory entries the fold can use


def entry(**changed: Any) -> dict[str, Any]:
    """A memory entry as memory-sync writes it, with the fields given changed (None: left out)."""
    memory = {
        "kind": "preference",
        "category": "seat",
        "op": "set",
        "value": "aisle",
        "confidence": 0.8,
        "statedAt": datetime(2026, 1, 1, tzinfo=UTC),
        "conversationId": "c1",
        "messageId": "m1",
        "position": 1,
        "basis": "stated",
        "holder": "self",
    }
    memory.update(changed)
    return {name: value for name, value in memory.items() if value is not None}


def test_each_operation_of_a_memory_entry_is_read_with_its_id() -> None:
    for op in ("set", "add", "remove"):
        read = statement_of(entry(op=op), "mem-1")
        assert read == StoredStatement(
            "seat", op, "aisle", 0.8, datetime(2026, 1, 1, tzinfo=UTC), "c1", "m1", 1, "stated", "mem-1", "self"
        )
    unnamed = statement_of(entry())
    assert unnamed is not None and unnamed.memory_id == ""


def test_a_memory_entry_says_whose_preference_it_is() -> None:
    partners = statement_of(entry(holder="partner"), "mem-1")
    assert partners is not None and partners.holder == "partner"
    older = statement_of(entry(holder=None), "mem-1")
    assert older is not None and older.holder == "self", "an entry written before holder existed is the user's"


def test_a_malformed_memory_entry_is_left_out_of_the_fold() -> None:
    """The memories are the app's store: anyone may edit one, and one bad entry must not stop
    every later sync of the user."""
    malformed = {
        "no op": entry(op=None),
        "an unknown op": entry(op="replace"),
        "no category": entry(category=None),
        "no time": entry(statedAt=None),
        "a time as text": entry(statedAt="2026-01-01T00:00:00Z"),
        "a confidence as a word": entry(confidence="high"),
        "a confidence that is no number": entry(confidence=float("nan")),
        "an endless confidence": entry(confidence=float("inf")),
        "a confidence of nothing": entry(confidence=[]),
        "a position as a word": entry(position="first"),
    }
    for why, memory in malformed.items():
        assert statement_of(memory, "mem-1") is None, why
    usable = [statement_of(memory, "mem-1") for memory in (*malformed.values(), entry(value="window"))]
    derived = fold("seat", [s for s in usable if s is not None])
    assert derived is not None and derived["value"] == "window"


# ---------------------------------------------------------------- a budget kept whole

EUROS = {"amount": 4000, "currency": "EUR", "per": "trip"}
DOLLARS = {"amount": 150, "currency": "USD", "per": "night"}


def test_a_budgets_level_and_amount_stand_side_by_side() -> None:
    """ "mid-range hotels are fine" keeps a standing "about 4000 euros" and the other way round."""
    derived = fold(
        "budget", [statement("budget", "set", EUROS, 1), statement("budget", "set", {"level": "mid_range"}, 2)]
    )
    assert derived is not None and derived["value"] == {**EUROS, "level": "mid_range"}
    assert (derived["basis"], derived["support"]["count"]) == ("stated", 2)
    assert (derived["sourceMessageId"], derived["support"]["memoryIds"]) == ("m2", ["mem-c1-2", "mem-c1-1"])
    derived = fold("budget", [statement("budget", "set", {"level": "luxury"}, 1), statement("budget", "set", EUROS, 2)])
    assert derived is not None and derived["value"] == {"level": "luxury", **EUROS}
    assert derived["sourceMessageId"] == "m2" and derived["statedAt"] == datetime(2026, 1, 1, 0, 2, tzinfo=UTC)


def test_a_later_budget_replaces_only_its_own_facet() -> None:
    derived = fold(
        "budget",
        [
            statement("budget", "set", {"level": "budget"}, 1),
            statement("budget", "set", EUROS, 2),
            statement("budget", "set", {"level": "luxury"}, 3),
            statement("budget", "set", DOLLARS, 4),
        ],
    )
    assert derived is not None and derived["value"] == {**DOLLARS, "level": "luxury"}
    assert derived["support"] == {"count": 2, "memoryIds": ["mem-c1-4", "mem-c1-3"]}


def test_withdrawing_a_budget_facet_keeps_the_other() -> None:
    amount_and_level = [statement("budget", "set", EUROS, 1), statement("budget", "set", {"level": "luxury"}, 2)]
    derived = fold("budget", [*amount_and_level, statement("budget", "remove", {"level": "luxury"}, 3)])
    assert derived is not None and derived["value"] == EUROS and derived["sourceMessageId"] == "m1"
    derived = fold("budget", [*amount_and_level, statement("budget", "remove", EUROS, 3)])
    assert derived is not None and derived["value"] == {"level": "luxury"}
    assert fold("budget", [statement("budget", "set", EUROS, 1), statement("budget", "remove", EUROS, 2)]) is None
    assert fold("budget", []) is None


def test_a_budget_is_stated_when_either_facet_is_and_as_sure_as_its_surest_facet() -> None:
    chosen_level = chose("budget", "set", {"level": "budget"}, 1)
    derived = fold("budget", [chosen_level, statement("budget", "set", EUROS, 2)])
    assert derived is not None and (derived["basis"], derived["confidence"]) == ("stated", 0.9)
    derived = fold("budget", [statement("budget", "set", EUROS, 0), chosen_level])
    assert derived is not None and (derived["basis"], derived["confidence"]) == ("stated", 0.9)
    derived = fold("budget", [chosen_level, chose("budget", "set", EUROS, 2)])
    assert derived is not None and (derived["basis"], derived["confidence"]) == ("choice", 0.5)
    assert derived["value"] == {"level": "budget", **EUROS}


def test_a_budget_chosen_for_one_trip_is_kept_beside_the_stated_one() -> None:
    stated = [statement("budget", "set", {"level": "mid_range"}, 1), statement("budget", "set", EUROS, 2)]
    derived = fold("budget", [*stated, chose("budget", "set", {"level": "luxury"}, 3, "c2")])
    assert derived is not None and derived["value"] == {"level": "mid_range", **EUROS}
    assert derived["recentChoice"] == {
        "value": {"level": "luxury"},
        "conversationId": "c2",
        "statedAt": datetime(2026, 1, 1, 0, 3, tzinfo=UTC),
    }
    both = [*stated, chose("budget", "set", DOLLARS, 3, "c2"), chose("budget", "set", {"level": "luxury"}, 4, "c3")]
    derived = fold("budget", both)
    assert derived is not None and derived["recentChoice"]["value"] == {"level": "luxury"}, "the latest choice"
    both = [*stated, chose("budget", "set", {"level": "luxury"}, 3, "c2"), chose("budget", "set", DOLLARS, 4, "c3")]
    derived = fold("budget", both)
    assert derived is not None and derived["recentChoice"]["value"] == DOLLARS, "the latest choice"
    same = fold(
        "budget", [*stated, chose("budget", "set", {"level": "mid_range"}, 3), chose("budget", "set", EUROS, 4)]
    )
    assert same is not None and "recentChoice" not in same, "choosing what is preferred is no departure from it"
    restated = fold("budget", [*stated, chose("budget", "set", DOLLARS, 3), statement("budget", "set", DOLLARS, 4)])
    assert restated is not None and "recentChoice" not in restated


# ---------------------------------------------------------------- the choice made for one trip


def test_a_choice_made_after_the_stated_preference_is_kept_beside_it() -> None:
    """ "On that flight I'd rather have an aisle seat" after "I always prefer a window seat"."""
    derived = fold("seat", [statement("seat", "set", "window", 1), chose("seat", "set", "aisle", 2, "c2")])
    assert derived is not None and (derived["value"], derived["basis"]) == ("window", "stated")
    assert derived["recentChoice"] == {
        "value": "aisle",
        "conversationId": "c2",
        "statedAt": datetime(2026, 1, 1, 0, 2, tzinfo=UTC),
    }
    assert derived["support"]["count"] == 1


def test_only_a_later_choice_that_differs_is_a_recent_choice() -> None:
    window = statement("seat", "set", "window", 2)
    cases = {
        "a choice before the statement": [chose("seat", "set", "aisle", 1), window],
        "a choice of the preferred value": [window, chose("seat", "set", "window", 3)],
        "a departure, then the preferred value again": [
            window,
            chose("seat", "set", "aisle", 3),
            chose("seat", "set", "window", 4),
        ],
        "a choice withdrawn while planning": [window, chose("seat", "remove", "aisle", 3)],
        "a stated withdrawal of another value": [window, statement("seat", "remove", "aisle", 3)],
        "a later stated preference": [window, chose("seat", "set", "aisle", 3), statement("seat", "set", "aisle", 4)],
    }
    for why, statements in cases.items():
        derived = fold("seat", statements)
        assert derived is not None and "recentChoice" not in derived, why


def test_the_latest_of_several_departures_is_the_recent_choice() -> None:
    cabins = [
        statement("cabinClass", "set", "economy", 1),
        chose("cabinClass", "set", "business", 2, "c2"),
        chose("cabinClass", "set", "first", 3, "c3"),
    ]
    derived = fold("cabinClass", cabins)
    assert derived is not None and derived["value"] == "economy"
    assert (derived["recentChoice"]["value"], derived["recentChoice"]["conversationId"]) == ("first", "c3")


def test_a_choice_read_back_with_its_keys_in_another_order_is_no_departure() -> None:
    written = {"amount": 150, "currency": "EUR", "per": "night"}
    read_back = {"per": "night", "currency": "EUR", "amount": 150}
    for stated, chosen in ((written, read_back), (read_back, written)):
        derived = fold("budget", [statement("budget", "set", stated, 1), chose("budget", "set", chosen, 2)])
        assert derived is not None and "recentChoice" not in derived


# ---------------------------------------------------------------- places the user loves or avoids


def place(name: str, stance: str) -> dict[str, str]:
    return {"place": name, "stance": stance}


def test_a_place_is_one_item_whatever_its_stance_or_case() -> None:
    derived = fold(
        "destinations",
        [
            statement("destinations", "add", place("Lisbon", "love"), 1),
            statement("destinations", "add", place("Rome", "love"), 2),
            statement("destinations", "add", place("lisbon", "avoid"), 3),
        ],
    )
    assert derived is not None and derived["value"] == {"love": ["Rome"], "avoid": ["lisbon"]}
    assert [item["value"] for item in derived["items"]] == [place("lisbon", "avoid"), place("Rome", "love")]


def test_the_budget_document_names_its_category() -> None:
    for value in (EUROS, {"level": "luxury"}):
        derived = fold("budget", [statement("budget", "set", value, 1)])
        assert derived is not None and (derived["category"], derived["value"]) == ("budget", value)
