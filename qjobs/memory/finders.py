"""Mentions of open values in a clause: an amount of money, an origin airport, an airline, a
hotel's star rating. The fixed vocabulary is found by vocabulary.RULES; these need a small
parser each. A finder says where the value is and what it is; whether the clause states it
is decided in extract.py, as for every other mention."""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from qjobs.memory.clauses import Clause
from qjobs.memory.vocabulary import (
    AIRLINES,
    AIRLINES_NEEDING_CONTEXT,
    CITY_AIRPORTS,
    STAR_WORDS,
    STARS,
    STAY,
    Polarity,
)


@dataclass(frozen=True)
class Mention:
    category: str
    value: Any
    start: int
    end: int
    polarity: Polarity
    confidence: float
    habitual: bool = False
    """The wording itself states a standing preference ("my home airport is ...")."""


# ---------------------------------------------------------------- amounts

CURRENCY_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY"}
CURRENCY_WORDS = {
    "usd": "USD", "dollars": "USD", "dollar": "USD", "bucks": "USD",
    "eur": "EUR", "euros": "EUR", "euro": "EUR",
    "gbp": "GBP", "pounds": "GBP", "pound": "GBP", "quid": "GBP",
    "jpy": "JPY", "yen": "JPY", "chf": "CHF", "cad": "CAD", "aud": "AUD",
}  # fmt: skip
AMOUNT = re.compile(
    r"(?P<symbol>[$€£¥])\s?(?P<amount>\d[\d,]*(?:\.\d+)?)\s?(?P<thousands>k\b)?"
    r"|(?<![\d,.])(?P<amount2>\d[\d,]*(?:\.\d+)?)\s?(?P<thousands2>k\b)?\s?(?P<word>usd|dollars?|bucks|eur|euros?|gbp|pounds?|quid|jpy|yen|chf|cad|aud)\b",
    re.IGNORECASE,
)
BUDGET_CUE = re.compile(
    r"\b(?:under|below|max(?:imum)?|budget|no more than|at most|up to|around|about|spend|keep it|less than|cap)\b"
)
PER = (
    ("night", re.compile(r"\b(?:per|a|each|/)\s?night\b|\bnightly\b")),
    ("day", re.compile(r"\b(?:per|a|each|/)\s?day\b|\bdaily\b")),
    ("person", re.compile(r"\b(?:per|a|each)\s?(?:person|head)\b|\bpp\b|\beach(?: of us)?\b|\bapiece\b")),
)


def amounts(clause: Clause) -> Iterator[Mention]:
    """An amount with a budget word ("under $2,000", "our budget is 150 euros a night")."""
    match = AMOUNT.search(clause.text)
    if match is None or not BUDGET_CUE.search(clause.lowered):
        return
    amount = parse_amount(match.group("amount") or match.group("amount2"))
    if match.group("thousands") or match.group("thousands2"):
        amount *= 1000
    currency = CURRENCY_SYMBOLS.get(match.group("symbol") or "") or CURRENCY_WORDS[match.group("word").lower()]
    per = next((name for name, pattern in PER if pattern.search(clause.lowered)), "trip")
    value = {"amount": amount, "currency": currency, "per": per}
    yield Mention("budget", value, match.start(), match.end(), "given", 0.9)


def parse_amount(text: str) -> int | float:
    number = float(text.replace(",", ""))
    return int(number) if number.is_integer() else number


# ---------------------------------------------------------------- origin airport

KNOWN_CODES = frozenset(CITY_AIRPORTS.values()) | {"JFK", "LGA", "EWR", "ORD", "MDW", "IAD", "DCA", "LHR", "LGW", "CDG"}
NOT_AIRPORTS = frozenset({"USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "THE", "AND", "FYI", "ASAP", "ETA"})
PLACES = "|".join(re.escape(name) for name in sorted(CITY_AIRPORTS, key=len, reverse=True))
CODES = "|".join(sorted(code.lower() for code in KNOWN_CODES))
STANDING_CUE = (
    r"fly(?:ing)? out of|home airport(?: is)?|(?:nearest|closest|local) airport(?: is)?"
    r"|based (?:in|near|at|out of)|live (?:in|near)|living (?:in|near)"
)
TRIP_CUE = (
    r"(?:(?:fly(?:ing)?|depart(?:ing|ure)?|leav(?:e|ing)|travel(?:l?ing)?|go(?:ing)?|head(?:ing)?|start(?:ing)?"
    r"|coming)\s+)?(?:out of|from)|(?:flights?|fly(?:ing)?) out|leav(?:e|ing)|depart(?:ing)?|start(?:s|ing)? (?:at|in)"
)
PLACE = rf"(?:(?P<place>{PLACES}|{CODES})(?![\w'])|(?-i:(?P<code>[A-Z]{{3}})\b))"
ORIGIN = re.compile(rf"\b(?:(?P<standing>{STANDING_CUE})|(?P<trip>{TRIP_CUE}))\s+(?:the\s+)?{PLACE}", re.IGNORECASE)
ROUTE = re.compile(
    rf"(?:^|\bfor |\bsearch |\bflights? ){PLACE}\s+to\s+(?:{PLACES}|{CODES}|(?-i:[A-Z]{{3}}))\b", re.IGNORECASE
)
"""A route named by its ends ("NYC to LAX"): the first is the origin."""
GROUND = re.compile(r"\b(?:bus(?:es)?|coach(?:es)?|trains?|drive|driving|car|cars|ride|cab|taxi|uber|lyft|ferry)\b")
"""A trip's origin is a home airport only when the trip is a flight."""


def airports(clause: Clause) -> Iterator[Mention]:
    """The first origin the clause names; a trip's only when the message is about flying."""
    for match in [*ORIGIN.finditer(clause.text), *ROUTE.finditer(clause.text)]:
        code = airport_code(match.group("place"), match.group("code"))
        standing = match.groupdict().get("standing") is not None
        if code is None or (not standing and GROUND.search(clause.message)):
            continue
        yield Mention(
            "homeAirport",
            code,
            match.start("place") if match.group("place") else match.start("code"),
            match.end(),
            "given",
            0.9,
            standing,
        )
        return


def airport_code(place: str | None, code: str | None) -> str | None:
    if place is not None:
        lowered = place.lower()
        return CITY_AIRPORTS.get(lowered) or (lowered.upper() if lowered.upper() in KNOWN_CODES else None)
    return code if code and code not in NOT_AIRPORTS else None


# ---------------------------------------------------------------- airlines

FREE_NAMES = "|".join(re.escape(n) for n in sorted(set(AIRLINES) - AIRLINES_NEEDING_CONTEXT, key=len, reverse=True))
ALL_NAMES = "|".join(re.escape(n) for n in sorted(AIRLINES, key=len, reverse=True))
CARRIER = r"(?:\s+(?:air ?lines?|airways|air))"
AIRLINE = re.compile(
    rf"\b(?:(?P<free>{FREE_NAMES}){CARRIER}?|(?P<named>{ALL_NAMES}){CARRIER}"
    rf"|(?:fly(?:ing)?|on|with|via|using|use|prefer|take|book)\s+(?P<flown>{ALL_NAMES}))\b"
    r"(?!\s+(?:states|kingdom|nations|arab|express|mail))",
    re.IGNORECASE,
)


def airlines(clause: Clause) -> Iterator[Mention]:
    for match in AIRLINE.finditer(clause.text):
        named = str(match.lastgroup)
        yield Mention("airlines", AIRLINES[match.group(named).lower()], match.start(named), match.end(), "choice", 0.8)


# ---------------------------------------------------------------- hotel class


def hotel_classes(clause: Clause) -> Iterator[Mention]:
    if not STAY.search(clause.lowered):
        return
    for match in STARS.finditer(clause.lowered):
        yield Mention("hotelClass", STAR_WORDS[match.group("stars")], match.start(), match.end(), "choice", 0.8)
        return


FINDERS = (amounts, airports, airlines, hotel_classes)
