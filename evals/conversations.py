"""`make eval-memory`'s conversation set: what memory-sync remembers of whole trip-planning
conversations, against what a traveller would expect it to remember.

The single turns of evals/memory.py show whether the extractor reads a sentence; they cannot
show whose preference it is, budgets given in pieces, a standing change against a one-trip
choice, or the places of the trip, which only a conversation has. evals/conversations.jsonl
holds conversations written for this project (couples, families, friends, business trips),
each with the memory a careful traveller would expect: written from the conversation and the
data model (docs/memory-sync.md), never from what the code derives, so features still being
built count as misses rather than vanishing from the score. How they are written:
- `preferences`: the user's own ("I", "we", a request with no subject), stated or chosen for the
  trip (with no stated value, a choice is the preference, as the fold has it); questions and the
  assistant's words state nothing, nor does a mere mention ("get back to the hotel").
- `companions`: what the user says of another person, under the relation as holders.py names it
  ("my mum" is `mother`, "the kids" `kids`); a pronoun is the person it refers to, even one
  named in an earlier message.
- `destinations`: places the user loves, names as a favourite or longs to return to (`love`),
  or never wants to see again (`avoid`); not places the user would love to see on this trip.
- `recentChoice`: a choice for this trip after a stated preference it differs from ("always
  aisle" then "a window on that one"), shaped as the category's value.
- `plans`: the towns, cities, regions and countries this trip goes to, as the user writes them
  ("Vegas", "NYC"; compared without case, accents or "Saint"/"St."), not where the traveller
  sets off from nor places only asked about, loved or ruled out.

Each conversation's memory is derived in process, without Firestore, by the functions the job
itself runs: every message is extracted as qjobs.memory.pages does (messages one minute apart,
statements with their position and memory id), each holder's statements are folded per
category (the user's into preferences, each companion's into that person's values), the
documents' `recentChoice` fields are read, and the summary fold runs over every message; the
places named in its Plans notes are the trip's plans (qjobs.memory.places, when it exists).

Scored by field kind (preferences, companions, destinations, recentChoice, plans): precision
and recall over (conversation, key, value) facts, one fact per list item and per budget facet,
and the conversations whose memory matches in every kind. A tool: it prints, never asserts.

    .venv/bin/python -m evals.conversations [--show misses]
"""

import argparse
import importlib
import json
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeAlias

from qjobs.memory import pages
from qjobs.memory.finders import CURRENCY_SYMBOLS, CURRENCY_WORDS, PER
from qjobs.memory.holders import RELATIONS, SELF, UNKNOWN
from qjobs.memory.preferences import StoredStatement, fold
from qjobs.memory.summary import SummaryState, apply_message
from qjobs.memory.vocabulary import AIRLINES, CATEGORIES, LIST_CATEGORIES, RULES

DEFAULT_DATA = Path(__file__).resolve().parent / "conversations.jsonl"
KINDS = ("preferences", "companions", "destinations", "recentChoice", "plans")
ROLES = frozenset({"user", "assistant"})
MIN_MESSAGES, MAX_MESSAGES = 4, 20
STARTED = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
"""The first message's `createdAt`; each later one is a minute after the one before, so that
statements fold in the order they were said."""

Fact: TypeAlias = tuple[str, ...]
Memory: TypeAlias = dict[str, Any]
"""A conversation's memory, shaped as a conversation's `expect`: one entry per kind."""

STANCES = {"airlines": ("prefer", "avoid"), "destinations": ("love", "avoid")}
"""The list categories whose value is a dict of stances (each a list of items)."""
BUDGET_LEVELS = frozenset({"budget", "mid_range", "luxury"})
PERIODS = frozenset({"trip", *(name for name, _ in PER)})
CURRENCIES = frozenset({*CURRENCY_SYMBOLS.values(), *CURRENCY_WORDS.values()})
IATA = re.compile(r"[A-Z]{3}")
OWN_CATEGORIES = frozenset(CATEGORIES - {"destinations"})
"""The categories of `preferences` (destinations are a kind of their own)."""
HOLDER_CATEGORIES = OWN_CATEGORIES | {"destinations"}
"""A companion's categories: a partner may love a place too."""


@dataclass(frozen=True)
class Conversation:
    id: str
    messages: tuple[tuple[str, str], ...]
    """(role, content) in the order they were said."""
    expect: Memory


def load(path: Path) -> list[Conversation]:
    """The conversations of a JSONL file; ValueError names the first that is not valid, so
    that a typo in an expectation is never scored as a miss."""
    conversations = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            found = problems(row)
            if found:
                raise ValueError(f"{path}:{number}: {'; '.join(found)}")
            messages = tuple((message["role"], message["content"]) for message in row["messages"])
            expect = {kind: row["expect"].get(kind, [] if kind == "plans" else {}) for kind in KINDS}
            conversations.append(Conversation(row["id"], messages, expect))
    repeated = sorted(name for name, count in Counter(c.id for c in conversations).items() if count > 1)
    if repeated:
        raise ValueError(f"{path}: ids used more than once: {', '.join(repeated)}")
    return conversations


# ---------------------------------------------------------------- what a row may say


def problems(row: Any) -> list[str]:
    """What is wrong with one row of the file (nothing, for a valid one)."""
    if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not row["id"]:
        return ["a row needs an id"]
    found = [f"{row['id']}: {problem}" for problem in message_problems(row.get("messages"))]
    expect = row.get("expect")
    if not isinstance(expect, dict):
        return [*found, f"{row['id']}: no expect"]
    found += [f"{row['id']}: unknown kind {kind}" for kind in expect if kind not in KINDS]
    checks: list[tuple[str, list[str]]] = [
        ("preferences", categories_problems(expect.get("preferences", {}), OWN_CATEGORIES)),
        ("companions", companions_problems(expect.get("companions", {}))),
        ("destinations", value_problems("destinations", expect.get("destinations", {}))),
        ("recentChoice", categories_problems(expect.get("recentChoice", {}), HOLDER_CATEGORIES)),
        ("plans", places_problems(expect.get("plans", []))),
    ]
    return found + [f"{row['id']}: {kind}: {problem}" for kind, kinds_problems in checks for problem in kinds_problems]


def message_problems(messages: Any) -> list[str]:
    if not isinstance(messages, list) or not MIN_MESSAGES <= len(messages) <= MAX_MESSAGES:
        return [f"needs {MIN_MESSAGES} to {MAX_MESSAGES} messages"]
    found = [
        f"message {n}: needs a role ({', '.join(sorted(ROLES))}) and text"
        for n, message in enumerate(messages)
        if not isinstance(message, dict)
        or message.get("role") not in ROLES
        or not isinstance(message.get("content"), str)
        or not message["content"].strip()
    ]
    if not any(isinstance(message, dict) and message.get("role") == "user" for message in messages):
        found.append("no user message")
    return found


def categories_problems(preferences: Any, known: frozenset[str]) -> list[str]:
    if not isinstance(preferences, dict):
        return ["not a map of categories"]
    found = [f"unknown category {category}" for category in preferences if category not in known]
    for category, value in preferences.items():
        found += value_problems(category, value) if category in known else []
    return found


def companions_problems(companions: Any) -> list[str]:
    if not isinstance(companions, dict):
        return ["not a map of relations"]
    relations = set(RELATIONS.values())
    found = [f"unknown relation {relation}" for relation in companions if relation not in relations]
    for relation, preferences in companions.items():
        found += [f"{relation}: {problem}" for problem in categories_problems(preferences, HOLDER_CATEGORIES)]
        if preferences == {}:
            found.append(f"{relation}: no preferences")
    return found


def places_problems(places: Any) -> list[str]:
    if not isinstance(places, list) or not all(isinstance(place, str) and place.strip() for place in places):
        return ["not a list of place names"]
    return []


def vocabulary(category: str) -> frozenset[Any]:
    """The values the rule table gives a category (seat, dietary, interests ...)."""
    return frozenset(rule.value for rule in RULES if rule.category == category and isinstance(rule.value, str))


def value_problems(category: str, value: Any) -> list[str]:  # noqa: PLR0911 - one answer per kind of value
    """What is wrong with a value a category cannot take (docs/memory-sync.md's table)."""
    if category in STANCES:
        stances = STANCES[category]
        if not isinstance(value, dict) or not set(value) <= set(stances):
            return [f"{category}: a map of {' / '.join(stances)} to lists"]
        items = [item for stance in value.values() for item in (stance if isinstance(stance, list) else [None])]
        if category == "airlines":
            known = set(AIRLINES.values())
            return [f"airlines: unknown airline {item!r}" for item in items if item not in known]
        return places_problems(items)
    if category == "budget":
        return budget_problems(value)
    if category == "hotelClass":
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 5
        return [] if ok else [f"hotelClass: {value!r} is not 1 to 5 stars"]
    if category == "homeAirport":
        return [] if isinstance(value, str) and IATA.fullmatch(value) else [f"homeAirport: {value!r} is no IATA code"]
    known_values = vocabulary(category)
    if category in LIST_CATEGORIES:
        if not isinstance(value, list) or not value:
            return [f"{category}: a non-empty list"]
        return [f"{category}: unknown value {item!r}" for item in value if item not in known_values]
    return [] if value in known_values else [f"{category}: unknown value {value!r}"]


def budget_problems(value: Any) -> list[str]:
    if not isinstance(value, dict) or not value or not set(value) <= {"amount", "currency", "per", "level"}:
        return ["budget: a map of amount, currency, per and level"]
    amount = value.get("amount", 1)
    valid = {
        "amount": isinstance(amount, int | float) and not isinstance(amount, bool) and amount > 0,
        "currency": value.get("currency", "USD") in CURRENCIES,
        "per": value.get("per", "trip") in PERIODS,
        "level": value.get("level", "budget") in BUDGET_LEVELS,
    }
    return [f"budget: {facet} {value[facet]!r}" for facet in value if not valid[facet]]


# ---------------------------------------------------------------- what memory-sync derives


def derive(conversation: Conversation) -> Memory:
    """The conversation's memory as memory-sync derives it, with no store: the same
    extraction, statements, folds and summary as a full sync of this one conversation."""
    statements: list[StoredStatement] = []
    state = SummaryState()
    for message in messages_of(conversation):
        found = pages.extract(message)
        for position, statement in enumerate(found):
            stored = pages.statement_memory(conversation.id, message, position, statement).statement
            if stored is not None:
                statements.append(stored)
        apply_message(state, message.role, message.content, message.id, message.created_at.isoformat())
    own = folded(statements, SELF)
    companions = {
        holder: {category: document["value"] for category, document in folded(statements, holder).items()}
        for holder in sorted({s.holder for s in statements} - {SELF, UNKNOWN})
    }
    destinations = own.pop("destinations", None)
    recent = {category: choice for category, document in own.items() if (choice := recent_choice(document))}
    if destinations is not None and (choice := recent_choice(destinations)):
        recent["destinations"] = choice
    return {
        "preferences": {category: document["value"] for category, document in own.items()},
        "companions": {holder: values for holder, values in companions.items() if values},
        "destinations": destinations["value"] if destinations else {},
        "recentChoice": recent,
        "plans": plan_places(state),
    }


def messages_of(conversation: Conversation) -> list[pages.Message]:
    return [
        pages.Message(f"m{n:05d}", role, content, STARTED + timedelta(minutes=n))
        for n, (role, content) in enumerate(conversation.messages)
    ]


def folded(statements: list[StoredStatement], holder: str) -> dict[str, dict[str, Any]]:
    """The derived document of each category one holder has statements in (none for a fold
    that comes to nothing)."""
    held = [statement for statement in statements if statement.holder == holder]
    categories = sorted({statement.category for statement in held})
    documents = {category: fold(category, [s for s in held if s.category == category]) for category in categories}
    return {category: document for category, document in documents.items() if document is not None}


def recent_choice(document: dict[str, Any]) -> Any:
    """A derived document's `recentChoice`, shaped as its value: a scalar's value, a budget's
    facets, a list's items (a map of stances for airlines and destinations); None without."""
    if "recentChoice" in document:
        return document["recentChoice"]["value"]
    chosen = [item["recentChoice"]["value"] for item in document.get("items", []) if "recentChoice" in item]
    if not chosen:
        return None
    category = document["category"]
    if category in STANCES:
        name = "airline" if category == "airlines" else "place"
        return {
            stance: [value[name] for value in chosen if value.get("stance") == stance]
            for stance in STANCES[category]
            if any(value.get("stance") == stance for value in chosen)
        }
    return chosen


def plan_places(state: SummaryState) -> list[str] | None:
    """The places named in the summary's Plans notes, in order; None while there is no
    gazetteer (qjobs.memory.places is being written)."""
    try:
        places = importlib.import_module("qjobs.memory.places")
        found = [place.name for note in state.plans for place in places.find_places(note.text)]
    except ImportError:
        return None
    return list(dict.fromkeys(found))


# ---------------------------------------------------------------- facts and scores


def facts(kind: str, value: Any) -> set[Fact]:
    """The facts of one kind of a memory: one per scalar, list item, stance item and budget facet."""
    if kind == "plans":
        return {(place_key(place),) for place in value or ()}
    if kind == "destinations":
        return {fact[1:] for fact in category_facts("destinations", value)}
    if kind == "companions":
        return {
            (relation, *fact)
            for relation, preferences in value.items()
            for category, category_value in preferences.items()
            for fact in category_facts(category, category_value)
        }
    return {fact for category, category_value in value.items() for fact in category_facts(category, category_value)}


def category_facts(category: str, value: Any) -> set[Fact]:
    if category in STANCES:
        key = place_key if category == "destinations" else str
        return {(category, stance, key(item)) for stance, items in value.items() for item in items}
    if category == "budget":
        return {(category, facet, shown(facet_value)) for facet, facet_value in value.items()}
    if isinstance(value, list):
        return {(category, shown(item)) for item in value}
    return {(category, shown(value))}


def shown(value: Any) -> str:
    """A value as a fact holds it: 4000 and 4000.0 are one amount."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def place_key(name: str) -> str:
    """A place's name as compared: "São Paulo", "Sao Paulo" and "sao paulo" are one, as are
    "St. Lucia" and "Saint Lucia"."""
    folded_name = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    words = re.sub(r"[.\s]+", " ", folded_name.casefold()).strip()
    return re.sub(r"^saint ", "st ", words)


@dataclass
class Counts:
    found: int = 0
    missed: int = 0
    wrong: int = 0

    @property
    def precision(self) -> float | None:
        said = self.found + self.wrong
        return self.found / said if said else None

    @property
    def recall(self) -> float | None:
        wanted = self.found + self.missed
        return self.found / wanted if wanted else None

    def add(self, expected: set[Fact], derived: set[Fact]) -> None:
        self.found += len(expected & derived)
        self.missed += len(expected - derived)
        self.wrong += len(derived - expected)


@dataclass
class Mismatch:
    """One conversation's facts that differ, by kind: expected and not derived, derived and not expected."""

    conversation: str
    missing: dict[str, set[Fact]]
    extra: dict[str, set[Fact]]


@dataclass
class Report:
    conversations: int = 0
    messages: int = 0
    exact: int = 0
    places: bool = True
    """Whether plans were scored (False: qjobs.memory.places is not there yet)."""
    by_kind: dict[str, Counts] = field(default_factory=lambda: {kind: Counts() for kind in KINDS})
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def overall(self) -> Counts:
        kinds = [counts for kind, counts in self.by_kind.items() if kind != "plans" or self.places]
        return Counts(*(sum(getattr(c, name) for c in kinds) for name in ("found", "missed", "wrong")))


def score(conversations: Sequence[Conversation], deriving: Callable[[Conversation], Memory] = derive) -> Report:
    report = Report(conversations=len(conversations))
    for conversation in conversations:
        report.messages += len(conversation.messages)
        derived = deriving(conversation)
        if derived["plans"] is None:
            report.places = False
        scored = [kind for kind in KINDS if kind != "plans" or derived["plans"] is not None]
        missing, extra = {}, {}
        for kind in scored:
            expected, found = facts(kind, conversation.expect[kind]), facts(kind, derived[kind])
            report.by_kind[kind].add(expected, found)
            if expected - found:
                missing[kind] = expected - found
            if found - expected:
                extra[kind] = found - expected
        if missing or extra:
            report.mismatches.append(Mismatch(conversation.id, missing, extra))
        else:
            report.exact += 1
    return report


# ---------------------------------------------------------------- printing


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:5.1f}%"


def print_report(report: Report, name: str = "conversation set") -> None:
    expected = sum(c.found + c.missed for c in report.by_kind.values())
    print(f"\n{name}: {report.conversations} conversations, {report.messages} messages, {expected} expected facts")
    print(f"  {'kind':<14}{'precision':>10}{'recall':>9}{'found':>7}{'missed':>8}{'wrong':>7}")
    for kind, counts in [*report.by_kind.items(), ("overall", report.overall)]:
        if kind == "plans" and not report.places:
            print(f"  {kind:<14}places not available (qjobs.memory.places), not scored")
            continue
        print(
            f"  {kind:<14}{percent(counts.precision):>10}{percent(counts.recall):>9}"
            f"{counts.found:>7}{counts.missed:>8}{counts.wrong:>7}"
        )
    print(f"  exact match   {report.exact} of {report.conversations} conversations")


def print_mismatches(report: Report, category: str | None = None, limit: int | None = None) -> None:
    """Each conversation's differing facts: `-` expected but not derived, `+` derived but not expected."""
    rows = [
        (mismatch.conversation, sign, kind, fact)
        for mismatch in report.mismatches
        for sign, by_kind in (("-", mismatch.missing), ("+", mismatch.extra))
        for kind in KINDS
        for fact in sorted(by_kind.get(kind, ()))
        if category is None or category in fact
    ]
    print(f"\nconversation mismatches ({len(rows)}{f', {category}' if category else ''}; - missed, + wrong):")
    shown_for = ""
    for conversation, sign, kind, fact in rows[:limit]:
        if conversation != shown_for:
            print(f"  {conversation}")
            shown_for = conversation
        print(f"    {sign} {kind:<13} {' '.join(fact)}")


def run(path: Path, show: bool, category: str | None = None, limit: int | None = None) -> int:
    """Score the file's conversations and print the table (and the mismatches when asked)."""
    if not path.exists():
        print(f"eval-memory: no conversations at {path}", file=sys.stderr)
        return 1
    report = score(load(path))
    print_report(report)
    if show:
        print_mismatches(report, category, limit)
    return 0


def parse_args(argv: Iterable[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="eval-memory-conversations", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--show", choices=("misses",), help="list each conversation's mismatches")
    parser.add_argument("--category", help="only mismatches of this category (or relation, or kind of fact)")
    return parser.parse_args(None if argv is None else list(argv))


def main(argv: Iterable[str] | None = None) -> int:
    args = parse_args(argv)
    return run(args.data, args.show == "misses", args.category)


if __name__ == "__main__":
    sys.exit(main())
