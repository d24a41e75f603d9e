"""Whose preference a statement is: the user's own ("I'm vegan", "we love museums"), or a
person the user names by their relation ("my partner is gluten free", "my friend Ana hates
layovers"), or nobody we can tell ("she's vegan" with no one named).

The holder of a mention is the last subject named before it in its sentence: "I", "we",
"my <relation>" / "our <relation>", or a pronoun, which takes the relation named last in the
message before it ("my brother might come, he only flies business"). A sentence with no
subject before the mention ("Book me an aisle seat", "vegan please") is the user's. "We",
"us" and "our" are the user's: a couple planning together states its own preferences.
"""

import bisect
import re
from functools import lru_cache

SELF = "self"
UNKNOWN = "unknown"
"""A holder the message does not tell: such a statement is kept, but is nobody's preference."""

RELATIONS: dict[str, str] = {
    "partner": "partner", "wife": "wife", "husband": "husband", "spouse": "spouse",
    "girlfriend": "girlfriend", "boyfriend": "boyfriend", "fiance": "fiance", "fiancé": "fiance",
    "fiancee": "fiance", "fiancée": "fiance",
    "son": "son", "daughter": "daughter", "kid": "kids", "kids": "kids", "child": "kids",
    "children": "kids", "baby": "baby", "toddler": "kids", "teenager": "kids", "teenagers": "kids",
    "mother": "mother", "mom": "mother", "mum": "mother", "father": "father", "dad": "father",
    "parents": "parents", "brother": "brother", "sister": "sister", "grandmother": "grandmother",
    "grandma": "grandmother", "grandfather": "grandfather", "grandpa": "grandfather",
    "grandparents": "grandparents", "aunt": "aunt", "uncle": "uncle", "cousin": "cousin",
    "niece": "niece", "nephew": "nephew", "friend": "friend", "friends": "friends",
    "colleague": "colleague", "colleagues": "colleagues", "coworker": "colleague",
    "co-worker": "colleague", "boss": "boss", "roommate": "roommate", "in-laws": "in-laws",
    "mother-in-law": "mother-in-law", "father-in-law": "father-in-law", "family": "family",
}  # fmt: skip
"""A relation as the user names it -> the holder's name (lower case, one spelling each)."""

_RELATION_WORDS = "|".join(re.escape(word) for word in sorted(RELATIONS, key=len, reverse=True))
SUBJECT = re.compile(
    rf"\b(?:my|our)\s+(?:(?:\w+)\s+)?(?P<relation>{_RELATION_WORDS})\b"
    r"|\bthe\s+(?:(?:little|older|younger|two|three)\s+)?"
    r"(?P<family>kids|children|boys|girls|little ones|baby|toddler)\b"
    r"|(?P<person>\b(?:he|she|he's|she's|his|her|him)\b)"
    r"|(?P<people>\b(?:they|they're|their|them)\b)"
    r"|(?P<self>\b(?:i|i'm|im|i'd|i've|i'll|me|we|we're|we'd|we've|we'll|us)\b)",
    re.IGNORECASE,
)
"""A subject a statement can be about. "my little sister" and "our two kids" name relations
(one word may stand between); "his", "her", "their" and objects ("for him") count as the
pronoun's person, as "for me" counts as the user."""
FOR_REACH = 80
"""How far after a mention "for my son" may stand and still name its holder."""
FOR_COMPANION = re.compile(
    rf"[^,;.!?]*?\bfor\s+(?:(?:my|our)\s+(?:(?:\w+)\s+)?(?P<relation>{_RELATION_WORDS})\b|(?P<pronoun>him|her)\b)",
    re.IGNORECASE,
)
"""A request made for someone, after what it asks for ("a window seat for my son", "an aisle
seat for him" when a relation was named before); matched
from the mention's end."""


class Holders:
    """The holders of the mentions of one message: its subjects are found once, so that each
    mention costs a lookup, not a scan of the text before it."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.subjects = list(SUBJECT.finditer(message))
        self.subject_starts = [match.start() for match in self.subjects]
        self.relations = [match for match in self.subjects if match.group("relation") or match.group("family")]
        self.relation_starts = [match.start() for match in self.relations]

    def of(self, sentence_start: int, mention_start: int, mention_end: int) -> str:
        """The holder of the mention at `mention_start:mention_end` in the message, whose
        sentence starts at `sentence_start` (offsets in the message)."""
        requested_for = self.requested_for(mention_end)
        if requested_for is not None:
            return requested_for
        first = bisect.bisect_left(self.subject_starts, sentence_start)
        last = bisect.bisect_left(self.subject_starts, mention_start)
        for subject in reversed(self.subjects[first:last]):
            if subject.end() <= mention_start:
                holder = self.holder_of_subject(subject)
                if holder is not None:
                    return holder
        return SELF

    def holder_of_subject(self, subject: re.Match[str]) -> str | None:
        """Who a subject is, or None for "they" with no one named (most often a place: "do
        they serve vegan food"), so that the search goes further back."""
        if subject.group("relation"):
            return RELATIONS[subject.group("relation").lower()]
        if subject.group("family"):
            return "baby" if subject.group("family").lower() == "baby" else "kids"
        if subject.group("self"):
            return SELF
        named = self.named_before(subject.start())
        if named is not None or subject.group("people"):
            return named
        return UNKNOWN

    def requested_for(self, mention_end: int) -> str | None:
        """The person a request names right after what it asks for ("a window seat for my son",
        "an aisle seat for him"), or None."""
        found = FOR_COMPANION.match(self.message, mention_end, mention_end + FOR_REACH)
        if found is None:
            return None
        if found.group("relation"):
            return RELATIONS[found.group("relation").lower()]
        return self.named_before(found.start("pronoun"))

    def named_before(self, position: int) -> str | None:
        """The relation named last before `position` in the message: what a pronoun there refers to."""
        index = bisect.bisect_left(self.relation_starts, position)
        if not index:
            return None
        named = self.relations[index - 1]
        return RELATIONS[named.group("relation").lower()] if named.group("relation") else "kids"


@lru_cache(maxsize=16)
def holders(message: str) -> Holders:
    return Holders(message)


def holder_of(message: str, sentence: str, start_in_sentence: int, end_in_sentence: int) -> str:
    """The holder of a mention given by its offsets in one of the message's sentences (as
    extraction sees it): "self", a relation such as "partner", or "unknown"."""
    sentence_start = max(message.find(sentence), 0)
    return holders(message).of(sentence_start, sentence_start + start_in_sentence, sentence_start + end_in_sentence)
