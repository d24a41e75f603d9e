"""A preference is derived, never stored as truth: the fold of every statement the user
made about its category, across all conversations, in (statedAt, conversationId,
messageId, position) order.

What the user states ("I prefer aisle seats") decides: a later stated preference overrides
an earlier one, and a negation withdraws it. What the user chose while planning ("book me
an aisle seat") never overrides a stated preference; without one, the value chosen most
often wins (a tie goes to the most recent), with a confidence that grows with the number
of conversations it was chosen in. A list category (dietary, interests ...) decides each
of its items that way. A fold that ends empty means no preference document at all.

`budget` keeps its facets side by side: the level ("mid-range") and the amount ("4000 EUR
per trip") are decided separately and combined, so that a level statement keeps a standing
amount and the other way round. A choice made after the deciding statement that differs
from the value is kept beside it as `recentChoice` (per item for a list): the traveller
asked for it on that trip, without changing what they prefer. The fold is only ever of
one holder's statements (the user's, or one companion's).
"""

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from qjobs.memory.extract import LIST_CATEGORIES

SUPPORT_IDS = 5
"""How many of the latest supporting memory ids the derived document lists."""


@dataclass(frozen=True)
class StoredStatement:
    category: str
    op: str
    value: Any
    confidence: float
    stated_at: datetime
    conversation_id: str
    message_id: str
    position: int
    basis: str = "stated"
    memory_id: str = ""
    holder: str = "self"

    def order(self) -> tuple[datetime, str, str, int]:
        return (self.stated_at, self.conversation_id, self.message_id, self.position)

    @property
    def stated(self) -> bool:
        return self.basis != "choice"

    @classmethod
    def from_memory(cls, memory: dict[str, Any], memory_id: str = "") -> "StoredStatement":
        """A memory entry; one written before `basis` (or `holder`) existed reads as the
        user's stated one. Raises KeyError, TypeError or ValueError for a malformed one."""
        return cls(
            category=str(memory["category"]),
            op=str(memory["op"]),
            value=memory["value"],
            confidence=float(memory.get("confidence", 0.5)),
            stated_at=memory["statedAt"],
            conversation_id=str(memory["conversationId"]),
            message_id=str(memory["messageId"]),
            position=int(memory.get("position", 0)),
            basis=str(memory.get("basis") or "stated"),
            memory_id=memory_id,
            holder=str(memory.get("holder") or "self"),
        )


def statement_of(memory: dict[str, Any], memory_id: str = "") -> StoredStatement | None:
    """The statement a memory entry records, or None for one a fold cannot use (no op, no
    time, a confidence that is no number): the memories are the app's store, which anyone
    may edit, and one bad entry must not stop every later sync of the user."""
    try:
        statement = StoredStatement.from_memory(memory, memory_id)
    except (KeyError, TypeError, ValueError):
        return None
    usable = isinstance(statement.stated_at, datetime) and statement.op in ("set", "add", "remove")
    return statement if usable and math.isfinite(statement.confidence) else None


@dataclass
class Verdict:
    """What the statements about one value (or one list item) come to."""

    value: Any
    basis: str
    confidence: float
    supporters: list[StoredStatement] = field(default_factory=list)

    @property
    def latest(self) -> StoredStatement:
        return self.supporters[-1]


def choice_confidence(conversations: int) -> float:
    """0.5 for a value chosen in one conversation, 0.65, 0.8, then 0.9 from four on."""
    return round(min(0.9, 0.35 + 0.15 * conversations), 2)


def key_of(value: Any) -> str:
    """A value's identity: an airline, or a place, is one item whatever its stance."""
    if isinstance(value, dict) and "airline" in value:
        return str(value["airline"])
    if isinstance(value, dict) and "place" in value:
        return str(value["place"]).casefold()
    return json.dumps(value, sort_keys=True)


def same_value(first: Any, second: Any) -> bool:
    return json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def recent_choice(statements: list[StoredStatement], verdict: Verdict) -> StoredStatement | None:
    """The latest choice made after the deciding statement, when it differs from the value."""
    decided_at = verdict.latest.order()
    later = [s for s in statements if not s.stated and s.op in ("set", "add") and s.order() > decided_at]
    if not later or same_value(later[-1].value, verdict.value):
        return None
    return later[-1]


def recent_choice_field(choice: StoredStatement) -> dict[str, Any]:
    return {"value": choice.value, "conversationId": choice.conversation_id, "statedAt": choice.stated_at}


def decide(statements: list[StoredStatement]) -> Verdict | None:
    """The verdict on one scalar category, or on one item of a list (its statements ordered).
    A stated withdrawal also voids the choices of that value made before it."""
    stated = [s for s in statements if s.stated]
    verdict = stated_verdict(stated)
    if verdict is not None:
        return verdict
    withdrawn = {key_of(s.value): s.order() for s in stated if s.op == "remove"}
    choices = [
        s
        for s in statements
        if not s.stated and (key_of(s.value) not in withdrawn or s.order() > withdrawn[key_of(s.value)])
    ]
    return chosen_verdict(choices)


def stated_verdict(statements: list[StoredStatement]) -> Verdict | None:
    current: Verdict | None = None
    for statement in statements:
        if statement.op in ("set", "add"):
            same = current is not None and key_of(current.value) == key_of(statement.value)
            supporters = [*current.supporters, statement] if current is not None and same else [statement]
            current = Verdict(statement.value, "stated", statement.confidence, supporters)
        elif statement.op == "remove" and current is not None and key_of(current.value) == key_of(statement.value):
            current = None
    return current


def chosen_verdict(statements: list[StoredStatement]) -> Verdict | None:
    tallies: dict[str, list[StoredStatement]] = {}
    for statement in statements:
        if statement.op in ("set", "add"):
            tallies.setdefault(key_of(statement.value), []).append(statement)
        elif statement.op == "remove":
            tallies.pop(key_of(statement.value), None)
    if not tallies:
        return None
    winner = max(tallies.values(), key=lambda group: (len(group), group[-1].order()))
    conversations = len({statement.conversation_id for statement in winner})
    return Verdict(winner[-1].value, "choice", choice_confidence(conversations), winner)


def fold(category: str, statements: Iterable[StoredStatement]) -> dict[str, Any] | None:
    """The preference document's fields (without `updatedAt`), or None when there is none."""
    ordered = sorted(statements, key=StoredStatement.order)
    if category in LIST_CATEGORIES:
        return list_document(category, ordered)
    if category == "budget":
        return budget_document(ordered)
    verdict = decide(ordered)
    if verdict is None:
        return None
    derived = document(category, verdict.value, verdict.basis, verdict.confidence, verdict.supporters)
    choice = recent_choice(ordered, verdict)
    if choice is not None:
        derived["recentChoice"] = recent_choice_field(choice)
    return derived


BUDGET_FACETS = (("amount", ("amount", "currency", "per")), ("level", ("level",)))
"""A budget statement is exactly `{level}` or `{amount, currency, per}`: each is a facet."""


def facet_of(value: Any) -> str:
    return "level" if isinstance(value, dict) and "level" in value else "amount"


def budget_document(ordered: list[StoredStatement]) -> dict[str, Any] | None:
    """The budget's facets decided one by one, side by side in one value."""
    verdicts: list[Verdict] = []
    choices: list[StoredStatement] = []
    for facet, _ in BUDGET_FACETS:
        statements = [s for s in ordered if facet_of(s.value) == facet]
        verdict = decide(statements)
        if verdict is not None:
            verdicts.append(verdict)
            choice = recent_choice(statements, verdict)
            if choice is not None:
                choices.append(choice)
    if not verdicts:
        return None
    value: dict[str, Any] = {}
    for verdict in verdicts:
        value.update(verdict.value)
    supporters = sorted((s for verdict in verdicts for s in verdict.supporters), key=StoredStatement.order)
    basis = "stated" if any(verdict.basis == "stated" for verdict in verdicts) else "choice"
    confidence = max(verdict.confidence for verdict in verdicts)
    derived = document("budget", value, basis, confidence, supporters)
    if choices:
        derived["recentChoice"] = recent_choice_field(max(choices, key=StoredStatement.order))
    return derived


def list_document(category: str, ordered: list[StoredStatement]) -> dict[str, Any] | None:
    items: dict[str, list[StoredStatement]] = {}
    for statement in ordered:
        items.setdefault(key_of(statement.value), []).append(statement)
    decided = [(verdict, statements) for statements in items.values() if (verdict := decide(statements)) is not None]
    if not decided:
        return None
    decided.sort(key=lambda pair: pair[0].supporters[0].order())
    verdicts = [verdict for verdict, _ in decided]
    supporters = sorted((s for verdict in verdicts for s in verdict.supporters), key=StoredStatement.order)
    basis = "stated" if any(verdict.basis == "stated" for verdict in verdicts) else "choice"
    confidence = max(verdict.confidence for verdict in verdicts)
    derived = document(category, list_value(category, verdicts), basis, confidence, supporters)
    derived["items"] = [item(verdict, recent_choice(statements, verdict)) for verdict, statements in decided]
    return derived


def item(verdict: Verdict, choice: StoredStatement | None) -> dict[str, Any]:
    fields = {
        "value": verdict.value,
        "basis": verdict.basis,
        "confidence": verdict.confidence,
        "count": len(verdict.supporters),
    }
    if choice is not None:
        fields["recentChoice"] = recent_choice_field(choice)
    return fields


def list_value(category: str, verdicts: list[Verdict]) -> Any:
    if category == "airlines":
        return {
            stance: [v.value["airline"] for v in verdicts if v.value.get("stance") == stance]
            for stance in ("prefer", "avoid")
        }
    if category == "destinations":
        return {
            stance: [v.value["place"] for v in verdicts if v.value.get("stance") == stance]
            for stance in ("love", "avoid")
        }
    return [verdict.value for verdict in verdicts]


def document(
    category: str, value: Any, basis: str, confidence: float, supporters: list[StoredStatement]
) -> dict[str, Any]:
    latest = supporters[-1]
    return {
        "category": category,
        "value": value,
        "basis": basis,
        "confidence": confidence,
        "support": {
            "count": len(supporters),
            "memoryIds": [s.memory_id for s in reversed(supporters) if s.memory_id][:SUPPORT_IDS],
        },
        "sourceConversationId": latest.conversation_id,
        "sourceMessageId": latest.message_id,
        "statedAt": latest.stated_at,
    }
