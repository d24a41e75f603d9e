"""Travel preferences in a user's message: what the user states ("I always fly premium
economy", "I'm vegan") and what they choose while planning ("find me economy flights from
SFO", "a reasonably priced place"), each a `Statement` with its `basis`.

Deterministic, English, no network and no side effects (a page transaction may run it
again). `Extractor` is the seam: a model-based extractor can replace `RuleExtractor`
without the job changing, as long as it returns `Statement`s.

A clause (clauses.py) that asks about something states nothing ("is it economy?", "do they
have vegetarian options?"). In one that does not, every mention of a value (vocabulary.py's
rules, finders.py's open values) becomes a statement as its rule's polarity says; a
negation withdraws only the values it governs; a category the user leaves open ("any price
range", "business or economy is fine") gets nothing. Scalar categories take `set` (and a
negation withdraws the value), list categories `add` and `remove`.
"""

import itertools
import re
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from qjobs.memory.clauses import AVERSION, DISLIKE, LIKING, TOLERANCE, Clause, clauses, split_sentences
from qjobs.memory.destinations import destinations
from qjobs.memory.finders import FINDERS, Mention
from qjobs.memory.holders import SELF, holder_of
from qjobs.memory.references import names_something_else
from qjobs.memory.vocabulary import CATEGORIES, LIST_CATEGORIES, RULES, SCALAR_CATEGORIES, Rule

__all__ = [
    "CATEGORIES",
    "LIST_CATEGORIES",
    "SCALAR_CATEGORIES",
    "Extractor",
    "RuleExtractor",
    "Statement",
    "split_sentences",
]

MAX_MESSAGE_CHARS = 10_000
"""A message is read for preferences up to here (its summary notes are cut shorter still):
a longer one is pasted text, not something a traveller says."""

Op = Literal["set", "add", "remove"]
Basis = Literal["stated", "choice"]


@dataclass(frozen=True)
class Statement:
    """One preference in one message: stated as the user's own, or chosen for one trip."""

    category: str
    op: Op
    value: Any
    confidence: float
    text: str
    basis: Basis = "stated"
    holder: str = SELF
    """Whose preference: "self" (the user, or "we"), a relation as the user named it
    ("partner", "son", "friend"), or "unknown" (holders.py)."""


class Extractor(Protocol):
    def extract(self, text: str) -> list[Statement]: ...


class RuleExtractor:
    def __init__(self, rules: tuple[Rule, ...] = RULES) -> None:
        self.rules = rules
        self.pattern = re.compile("|".join(f"(?P<r{n}>{rule.pattern})" for n, rule in enumerate(rules)))
        """Every rule in one pass, leftmost first; where two rules match at one place, the
        one earlier in the table wins ("premium economy" is not also "economy")."""

    def extract(self, text: str) -> list[Statement]:
        statements: list[Statement] = []
        for clause in clauses(text[:MAX_MESSAGE_CHARS]):
            if not clause.question:
                statements += statements_of(clause, self.mentions(clause))
        return dedupe(statements)

    def mentions(self, clause: Clause) -> list[Mention]:
        """Every value mentioned, in order; a span of text is read once."""
        found: list[Mention] = []
        used: list[tuple[int, int]] = []
        for finder in (*FINDERS, destinations):
            for mention in finder(clause):
                found.append(mention)
                used.append((mention.start, mention.end))
        for match in self.pattern.finditer(clause.lowered):
            if not overlaps(match.span(), used):
                rule = self.rules[int(str(match.lastgroup)[1:])]
                found.append(Mention(rule.category, rule.value, *match.span(), rule.polarity, rule.confidence))
        wanted = [mention for mention in found if not names_something_else(clause.text, mention)]
        return sorted(wanted, key=lambda mention: mention.start)


def overlaps(span: tuple[int, int], used: list[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in used)


def statements_of(clause: Clause, mentions: list[Mention]) -> list[Statement]:
    """What the clause states: one statement per mention it states, the first mention only
    for a scalar category ("we prefer apartments over hotels" is about apartments)."""
    offset = max(clause.sentence.find(clause.text), 0)
    holders = [
        holder_of(clause.message, clause.sentence.lower(), offset + mention.start, offset + mention.end)
        for mention in mentions
    ]
    left_open = open_categories(clause, mentions, holders)
    statements: list[Statement] = []
    positive: dict[tuple[str, str], tuple[int, Mention]] = {}
    """A scalar category's value stated so far in the clause, by (holder, category)."""
    for mention, holder in zip(mentions, holders, strict=True):
        key = (holder, mention.category)
        earlier = positive.get(key)
        replaces = earlier is not None and PREFERRED_INSTEAD.search(clause.between(earlier[1].end, mention.start))
        if mention.category in left_open or (earlier is not None and not replaces):
            continue
        decided = decide(clause, mention)
        if decided is None:
            continue
        op, basis, value = decided
        statement = Statement(mention.category, op, value, mention.confidence, clause.sentence, basis, holder)
        if earlier is not None and op != "remove":
            statements[earlier[0]] = statement
        else:
            statements.append(statement)
        if mention.category in SCALAR_CATEGORIES and op != "remove":
            positive[key] = (statements.index(statement), mention)
    return statements


PREFERRED_INSTEAD = re.compile(
    r"\b(?:ideally|preferably|rather|prefer(?:ably)?|instead|should be|has to be|must be|to be|just|only)\b"
)
"""Between two values of one scalar category: the later is what the user wants ("I need a
room, ideally a guesthouse", "the hotel should be a guesthouse")."""


def open_categories(clause: Clause, mentions: list[Mention], holders: list[str]) -> set[str]:
    """Categories the clause leaves open: by name ("any price range"), or by naming two
    values as alternatives ("business or economy", "either a hotel or a house"). Two values
    of two people are no alternatives ("I'm vegetarian and my partner is gluten free, so
    restaurants need to handle both")."""
    left_open = set(clause.named_open)
    for (first, first_holder), (second, second_holder) in itertools.pairwise(zip(mentions, holders, strict=True)):
        if first.category == second.category and first.value != second.value and first_holder == second_holder:
            joined = clause.between(first.end, second.start)
            if re.search(r"\bor\b|/", joined) or clause.open_choice:
                left_open.add(first.category)
    return left_open


def decide(clause: Clause, mention: Mention) -> tuple[Op, Basis, Any] | None:  # noqa: PLR0911 - one return per polarity
    """(op, basis, value) of what the clause states about the mention, or None."""
    positive: Op = "add" if mention.category in LIST_CATEGORIES else "set"
    basis: Basis = "stated" if clause.habitual or mention.habitual else "choice"
    negated = clause.negated(mention.start, mention.end) and not clause.tolerant
    if mention.category == "airlines":
        return airline(clause, mention, basis, negated)
    if mention.polarity == "fixed":
        return positive, "stated", mention.value
    if mention.polarity == "given":
        return positive, basis, mention.value
    if mention.polarity in ("liking", "interest"):
        phrase = clause.phrase_of(mention.start, mention.end)
        if DISLIKE.search(phrase):
            return "remove", "stated", mention.value
        if LIKING.search(phrase):
            return positive, "stated", mention.value
        if mention.polarity == "liking" or not clause.chooses:
            return None
        return ("remove" if negated else positive), basis, mention.value
    if mention.polarity == "aversion":
        if clause.tolerant:
            return "remove", basis, mention.value
        return (positive, basis, mention.value) if AVERSION.search(clause.lowered) else None
    if mention.polarity == "identity":
        if not (clause.first_person or clause.chooses or (clause.third_person and clause.says_identity(mention.start))):
            return None
        identity = clause.says_identity(mention.start) or (clause.first_person and not clause.chooses)
        return ("remove" if negated else positive), ("stated" if identity else basis), mention.value
    if not clause.chooses or (negated and mention.category == "budget"):
        return None  # "not expensive" withdraws no luxury: it asks for less (vocabulary reads "not very costly")
    return ("remove" if negated else positive), basis, mention.value


def airline(clause: Clause, mention: Mention, basis: Basis, negated: bool) -> tuple[Op, Basis, Any] | None:
    """An airline is preferred or avoided ("not Spirit", "I never fly Spirit again"): both
    are statements about it, so a negation changes its stance rather than withdrawing it."""
    avoided = negated or (
        AVERSION.search(clause.lowered[: mention.start]) is not None and not TOLERANCE.search(clause.lowered)
    )
    if not (clause.chooses or avoided):
        return None
    return "add", basis, {"airline": mention.value, "stance": "avoid" if avoided else "prefer"}


def dedupe(statements: list[Statement]) -> list[Statement]:
    """One statement per (category, op, value) and message: the first wording wins."""
    seen: set[tuple[str, str, str, str]] = set()
    unique = []
    for statement in statements:
        key = (statement.holder, statement.category, statement.op, repr(statement.value))
        if key not in seen:
            seen.add(key)
            unique.append(statement)
    return unique
