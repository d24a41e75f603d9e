"""The preference fold, without Firestore: stated preferences decide, choices count when
nothing is stated, and the derived document says what supports it."""

from datetime import UTC, datetime, timedelta
from typing import Any

from qjobs.memory.preferences import StoredStatement, fold


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
