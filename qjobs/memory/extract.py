"""Travel preferences stated in a user's message, found by one readable table of rules.

Deterministic, English, no network. `Extractor` is the seam: a model-based extractor can
replace `RuleExtractor` without the job changing, as long as it returns `Statement`s.

How a rule reads a clause (a sentence, or a part of one split at `but`, `;`, ...):
- `pattern` finds the thing (a diet, a seat, an interest ...).
- `polarity` says how the clause's wording turns a mention into a statement:
  `plain`: stated unless negated ("I'm vegan" / "I'm not vegan any more");
  `fixed`: the pattern carries its own meaning ("we never eat meat");
  `choice`: like `plain`, but only where the user chooses ("book me an aisle seat", "we
  prefer apartments"), since a mere mention ("our hotel is near the station") is no
  preference;
  `liking`: needs a liking ("we love museums") or a dislike ("I hate museums");
  `aversion`: for things to avoid: "no red-eyes" adds, "I don't mind layovers" removes.
- The clause must speak of the user: first person ("I", "we", "my" ...) or a request
  ("book me ...", "keep it ...", "no ...").
Scalar categories take `set` (and a negation withdraws the value); list categories take
`add` and `remove`.
"""

import re
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Op = Literal["set", "add", "remove"]
Polarity = Literal["plain", "fixed", "choice", "liking", "aversion"]

LIST_CATEGORIES = frozenset({"dietary", "interests", "avoid"})
SCALAR_CATEGORIES = frozenset({"seat", "cabinClass", "accommodation", "budget", "homeAirport"})
CATEGORIES = LIST_CATEGORIES | SCALAR_CATEGORIES


@dataclass(frozen=True)
class Statement:
    """One preference stated in one message."""

    category: str
    op: Op
    value: Any
    confidence: float
    text: str


class Extractor(Protocol):
    def extract(self, text: str) -> list[Statement]: ...


@dataclass(frozen=True)
class Rule:
    category: str
    value: str
    pattern: str
    polarity: Polarity = "plain"
    confidence: float = 0.9


# fmt: off
RULES: tuple[Rule, ...] = (
    # dietary (list)
    Rule("dietary", "vegan",             r"\bvegans?\b"),
    Rule("dietary", "vegetarian",        r"\bvegetarians?\b|\bveggie\b"),
    Rule("dietary", "vegetarian",        r"\b(?:never|don'?t|do not|won'?t|can'?t) eat (?:any )?meat\b|\bmeat[- ]free\b", "fixed"),
    Rule("dietary", "pescatarian",       r"\bpesc[ae]tarians?\b|\bonly eat fish\b"),
    Rule("dietary", "halal",             r"\bhalal\b"),
    Rule("dietary", "kosher",            r"\bkosher\b"),
    Rule("dietary", "gluten_free",       r"\bgluten[- ]free\b|\bc(?:o)?eliac\b|\bgluten intoleran\w*"),
    Rule("dietary", "dairy_free",        r"\bdairy[- ]free\b|\blactose[- ]intoleran\w*"),
    Rule("dietary", "dairy_free",        r"\b(?:no|can'?t (?:have|eat)|don'?t (?:eat|do)) dairy\b", "fixed"),
    Rule("dietary", "nut_free",          r"\bnut[- ]free\b|\bnut allerg\w*|\ballergic to (?:pea)?nuts\b"),
    # seat (scalar)
    Rule("seat", "window",               r"\bwindow seats?\b|\bby the window\b", "choice"),
    Rule("seat", "aisle",                r"\baisle(?: seats?)?\b", "choice"),
    # cabinClass (scalar); premium economy before economy: a matched span is used once
    Rule("cabinClass", "premium_economy", r"\bpremium economy\b", "choice"),
    Rule("cabinClass", "economy",        r"\beconomy\b|\bcoach\b", "choice"),
    Rule("cabinClass", "business",       r"\bbusiness class\b|\bfly business\b|\bin business\b", "choice"),
    Rule("cabinClass", "first",          r"\bfirst class\b", "choice"),
    # accommodation (scalar)
    Rule("accommodation", "bed_and_breakfast", r"\bb ?& ?bs?\b|\bbed and breakfasts?\b", "choice"),
    Rule("accommodation", "hostel",      r"\bhostels?\b", "choice"),
    Rule("accommodation", "apartment",   r"\bapartments?\b|\bairbnbs?\b|\bholiday rentals?\b|\bvacation rentals?\b", "choice"),
    Rule("accommodation", "resort",      r"\bresorts?\b|\ball[- ]inclusive\b", "choice"),
    Rule("accommodation", "camping",     r"\bcamping\b|\bcampsites?\b", "choice"),
    Rule("accommodation", "hotel",       r"\bhotels?\b", "choice"),
    # interests (list): need a liking or a dislike
    Rule("interests", "museums",         r"\bmuseums?\b|\bgaller(?:y|ies)\b", "liking"),
    Rule("interests", "hiking",          r"\bhik(?:e|es|ing)\b|\btrekking\b", "liking"),
    Rule("interests", "beaches",         r"\bbeach(?:es)?\b", "liking"),
    Rule("interests", "food",            r"\bfood\b|\bfoodies?\b|\bcuisine\b|\brestaurants?\b", "liking"),
    Rule("interests", "nightlife",       r"\bnightlife\b|\bclubbing\b|\bbars\b", "liking"),
    Rule("interests", "architecture",    r"\barchitecture\b", "liking"),
    Rule("interests", "wine",            r"\bwines?\b|\bvineyards?\b|\bwineries\b", "liking"),
    Rule("interests", "skiing",          r"\bski(?:ing)?\b|\bsnowboard(?:ing)?\b", "liking"),
    Rule("interests", "shopping",        r"\bshopping\b", "liking"),
    Rule("interests", "history",         r"\bhistory\b|\bhistoric(?:al)? sites?\b", "liking"),
    # avoid (list)
    Rule("avoid", "red_eye_flights",     r"\bred[- ]?eyes?(?: flights?)?\b|\bovernight flights?\b", "aversion"),
    Rule("avoid", "layovers",            r"\blayovers?\b|\bconnections\b|\bstopovers?\b", "aversion"),
    Rule("avoid", "layovers",            r"\bdirect flights? only\b|\bonly direct flights?\b|\bnon-?stop only\b", "fixed"),
    Rule("avoid", "crowds",              r"\bcrowds?\b|\bcrowded\b|\btourist traps?\b", "aversion"),
    Rule("avoid", "early_flights",       r"\bearly (?:morning )?flights?\b", "aversion"),
)
# fmt: on

FIRST_PERSON = re.compile(r"\b(?:i|i'm|im|i'd|i've|i'll|we|we're|we'd|we've|we'll|me|my|our|us)\b")
REQUEST = re.compile(
    r"^(?:(?:also|and|oh|then|so|ok|okay),? )*(?:please |pls )?"
    r"(?:book|keep|get|find|make|no|avoid|give|put|reserve|nothing|only)\b|\bplease\b|\bonly\b"
)
NEGATION = re.compile(
    r"\b(?:not|no longer|never|don'?t|doesn'?t|isn'?t|aren'?t|wasn'?t|won'?t|can'?t|stopped|quit|no more)\b"
    r"|\bany ?more\b"
)
CHOICE = re.compile(
    r"\b(?:prefer|prefers|want|wants|like|love|book|booking|stay|staying|always|usually|only|rather|give me|get me|need|fly|flying|put me|reserve|please)\b"
)
LIKING = re.compile(
    r"\b(?:love|loves|like|likes|enjoy|enjoys|into|interested in|fan of|keen on|big on|adore|passionate about|want to (?:see|do|go|try))\b"
)
DISLIKE = re.compile(
    r"\b(?:hate|hates|dislike|dislikes|can'?t stand|not (?:a fan of|into|interested in)|don'?t (?:like|enjoy|care for))\b"
)
TOLERANCE = re.compile(
    r"\b(?:don'?t mind|do not mind|fine with|ok(?:ay)? with|happy with|no problem with|(?:are|is) fine)\b"
)
AVERSION = re.compile(
    r"\b(?:no|avoid|avoiding|hate|without|skip|never|don'?t want|do not want|dislike|rather not|not|minimi[sz]e)\b"
)
CLAUSE_BREAK = re.compile(r"[;:]|,?\s+\b(?:but|though|although|however|whereas)\b\s*|(?<=[.!?])\s+")


def split_sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+|\n+", text.strip())
    return [part.strip() for part in parts if part.strip()]


class RuleExtractor:
    def __init__(self, rules: tuple[Rule, ...] = RULES) -> None:
        self.rules = [(rule, re.compile(rule.pattern)) for rule in rules]

    def extract(self, text: str) -> list[Statement]:
        statements: list[Statement] = []
        for sentence in split_sentences(text):
            for clause in (part.strip() for part in CLAUSE_BREAK.split(sentence)):
                if clause:
                    statements.extend(self._clause(clause, sentence))
        return dedupe(statements)

    def _clause(self, clause: str, sentence: str) -> list[Statement]:
        lowered = clause.lower()
        about_user = FIRST_PERSON.search(lowered) or REQUEST.search(lowered)
        if not (about_user or "budget" in lowered):
            return []
        found = budget_statements(clause, sentence)
        if not about_user:
            return found
        found += airport_statements(clause, sentence)
        matches = sorted(self._rule_matches(lowered, sentence), key=lambda match: match[0])
        return found + [statement for _, statement in matches]

    def _rule_matches(self, clause: str, sentence: str) -> list[tuple[int, Statement]]:
        """Statements with where they start; a scalar category keeps only its first
        mention ("we prefer apartments over hotels" is about apartments)."""
        used: list[tuple[int, int]] = []
        matches: dict[tuple[str, str], tuple[int, Statement]] = {}
        for rule, pattern in self.rules:
            match = pattern.search(clause)
            if match is None or overlaps(match.span(), used):
                continue
            op = decide_op(rule, clause, match.start())
            if op is None:
                continue
            used.append(match.span())
            key = (rule.category, rule.category if rule.category in SCALAR_CATEGORIES else rule.value)
            if key not in matches or match.start() < matches[key][0]:
                matches[key] = (match.start(), Statement(rule.category, op, rule.value, rule.confidence, sentence))
        return list(matches.values())


def overlaps(span: tuple[int, int], used: list[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in used)


def decide_op(rule: Rule, clause: str, at: int) -> Op | None:  # noqa: PLR0911 - one return per polarity
    """What the clause states about the rule's value: set/add, remove, or nothing."""
    positive: Op = "add" if rule.category in LIST_CATEGORIES else "set"
    if rule.polarity == "fixed":
        return positive
    if rule.polarity == "liking":
        if DISLIKE.search(clause):
            return "remove"
        return positive if LIKING.search(clause) else None
    if rule.polarity == "aversion":
        if TOLERANCE.search(clause):
            return "remove"
        return positive if AVERSION.search(clause) else None
    if rule.polarity == "choice" and not CHOICE.search(clause):
        return None
    before, after = clause[:at], clause[at:]
    negated = NEGATION.search(before) is not None or re.search(r"\bany ?more\b|\bno longer\b", after) is not None
    return "remove" if negated else positive


# ---------------------------------------------------------------- budget and airport

CURRENCY_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY"}
CURRENCY_WORDS = {
    "usd": "USD", "dollars": "USD", "dollar": "USD", "bucks": "USD",
    "eur": "EUR", "euros": "EUR", "euro": "EUR",
    "gbp": "GBP", "pounds": "GBP", "pound": "GBP", "quid": "GBP",
    "jpy": "JPY", "yen": "JPY", "chf": "CHF", "cad": "CAD", "aud": "AUD",
}  # fmt: skip
AMOUNT = re.compile(
    r"(?P<symbol>[$€£¥])\s?(?P<amount>\d[\d,]*(?:\.\d+)?)\s?(?P<thousands>k\b)?"
    r"|(?P<amount2>\d[\d,]*(?:\.\d+)?)\s?(?P<thousands2>k\b)?\s?(?P<word>usd|dollars?|bucks|eur|euros?|gbp|pounds?|quid|jpy|yen|chf|cad|aud)\b",
    re.IGNORECASE,
)
BUDGET_CUE = re.compile(
    r"\b(?:under|below|max(?:imum)?|budget|no more than|at most|up to|around|about|spend|keep it|less than|cap)\b"
)
PER = (
    ("night", re.compile(r"\b(?:per|a|each|/)\s?night\b|\bnightly\b")),
    ("day", re.compile(r"\b(?:per|a|each|/)\s?day\b|\bdaily\b")),
    ("person", re.compile(r"\b(?:per|a|each)\s?(?:person|head)\b|\bpp\b|\beach of us\b")),
)
LEVELS = (
    (
        "luxury",
        re.compile(r"\bluxury\b|\bluxurious\b|\bsplurge\b|\bfive[- ]star\b|\b5[- ]star\b|\bmoney is no object\b"),
    ),
    ("mid_range", re.compile(r"\bmid[- ]range\b|\bmoderate budget\b|\bmid[- ]priced\b")),
    (
        "budget",
        re.compile(
            r"\bon a (?:tight |shoestring )?budget\b|\bbudget travel\b|\bas cheap as possible\b|\bbackpacking\b"
        ),
    ),
)
AIRPORT_CUE = re.compile(
    r"\b(?:fly(?:ing)? (?:out of|from)|depart(?:ing)? from|leav(?:e|ing) from|home airport|nearest airport|closest airport|based (?:near|at)|live near)\b"
)
IATA = re.compile(r"\b([A-Z]{3})\b")
NOT_AIRPORTS = frozenset({"USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "THE", "AND", "FYI", "ASAP"})


def budget_statements(clause: str, sentence: str) -> list[Statement]:
    lowered = clause.lower()
    match = AMOUNT.search(clause)
    if match and BUDGET_CUE.search(lowered):
        amount = parse_amount(match.group("amount") or match.group("amount2"))
        if match.group("thousands") or match.group("thousands2"):
            amount *= 1000
        currency = CURRENCY_SYMBOLS.get(match.group("symbol") or "") or CURRENCY_WORDS[match.group("word").lower()]
        per = next((name for name, pattern in PER if pattern.search(lowered)), "trip")
        value = {"amount": amount, "currency": currency, "per": per}
        return [Statement("budget", "set", value, 0.9, sentence)]
    for level, pattern in LEVELS:
        if pattern.search(lowered):
            return [Statement("budget", "set", {"level": level}, 0.7, sentence)]
    return []


def parse_amount(text: str) -> int | float:
    number = float(text.replace(",", ""))
    return int(number) if number.is_integer() else number


def airport_statements(clause: str, sentence: str) -> list[Statement]:
    if not AIRPORT_CUE.search(clause.lower()):
        return []
    codes = [code for code in IATA.findall(clause) if code not in NOT_AIRPORTS]
    return [Statement("homeAirport", "set", codes[0], 0.9, sentence)] if codes else []


def dedupe(statements: list[Statement]) -> list[Statement]:
    """One statement per (category, op, value) and message: the first wording wins."""
    seen: set[tuple[str, str, str]] = set()
    unique = []
    for statement in statements:
        key = (statement.category, statement.op, repr(statement.value))
        if key not in seen:
            seen.add(key)
            unique.append(statement)
    return unique
