"""Places a traveller feels strongly about: loves, names as a favourite, longs to return to
("I absolutely love Lisbon!", "Lisbon is still my favourite city in the world", "I'd love to
go back to Kyoto"), or never wants to see again ("I never want to see Cancún again").

Each is a mention of the list category `destinations`, value `{place, stance}` with stance
`love` or `avoid`: a standing attitude, so a stated preference. A place merely named, or
planned for this trip ("We'd love to see the Prado in Madrid"), is no destination here: the
summary keeps it as a plan. Places are found by qjobs.memory.places (a gazetteer).
"""

import re
from collections.abc import Iterator

from qjobs.memory.clauses import Clause
from qjobs.memory.finders import Mention
from qjobs.memory.places import find_places

LOVE_BEFORE = re.compile(
    r"\b(?:love|loved|loves|adore|adored|adores|miss|missed|misses)\s+(?!to\b)(?:(?!to\b)\w+\s+){0,2}$"
)
"""A liking right before the place ("love Lisbon", "absolutely adore old Porto"), but not a
wish for this trip ("love to see ...")."""
RETURN_BEFORE = re.compile(r"\b(?:back|return(?:ing)?|revisit(?:ing)?)\s+(?:to\s+)?$")
LONGING = re.compile(
    r"\b(?:love|want|wanna|long|longing|dream|dreaming|can'?t wait|cannot wait|hope|hoping|would like|'d like|miss)\b"
)
FAVOURITE = re.compile(r"\bfavou?rite\b")
AVOID_BEFORE = re.compile(r"\b(?:hate|hated|hates|avoid|avoiding|detest|detested)\s+(?:\w+\s+){0,1}$")
NEVER_AGAIN = re.compile(
    r"\bnever\b.*\bagain\b|\bnever again\b"
    r"|\b(?:not|never|won'?t|will not|don'?t want to)\s+(?:be\s+)?(?:going|go|come|get)\s+back\b"
    r"|\bnever (?:want|wanna|going) to (?:see|visit|go to)\b"
)
"""Never wanting to see a place again, in any order ("never again Cancún", "I'm not going back to ...")."""

CONFIDENCE = 0.9


def destinations(clause: Clause) -> Iterator[Mention]:
    """The places in a clause the user states a stance on."""
    lowered = clause.lowered
    for place in find_places(clause.text):
        stance = stance_on(lowered, place.start, place.end)
        if stance is not None:
            value = {"place": place.name, "stance": stance}
            yield Mention("destinations", value, place.start, place.end, "fixed", CONFIDENCE)


def stance_on(lowered: str, start: int, end: int) -> str | None:
    """ "love", "avoid" or None for the place at start:end of a lower-cased clause."""
    before = lowered[:start]
    if NEVER_AGAIN.search(lowered) or AVOID_BEFORE.search(before):
        return "avoid"
    if LOVE_BEFORE.search(before) or FAVOURITE.search(lowered):
        return "love"
    if RETURN_BEFORE.search(before) and LONGING.search(before):
        return "love"
    return None
