"""Mentions of a kind of place that name something else: part of a proper name ("Garden Curry
House", "the Tate Gallery"), a place already chosen that the user refers back to ("get back to
the hotel by 6pm"), or a thing whose attribute the user asks about ("the hotel type and its
address", "the phone number for the museum"). None of them says what kind of place the user
wants, so they state nothing about accommodation or interests.

Only those two categories are filtered: a capitalised "Business Class" or "Vegan" is still
the user's word for what they want.
"""

import re

from qjobs.memory.finders import Mention

FILTERED = frozenset({"accommodation", "interests"})

CAPITALISED = re.compile(
    r"(?!(?:I|I'[a-z]+|A|An|The|Any|Some|This|That|These|Those|My|Our|Your|Find|Book|Show|Get|Search|Look|Please"
    r"|Yes|No|Ok|Okay|What|Which|Is|Are|Can|Could|Would|Will|Do|Does|Let's|Also|And|Great|Cool|Nice|Thanks"
    r"|Sure|Maybe|Perhaps|How|Where|When|Now|Then|So|Well|Hi|Hello|Hey)\b)[A-Z][\w'&-]*"
)
"""A capitalised word that may be part of a name: not "I", nor a word capitalised because it
opens a sentence ("A Museum would be fun")."""
WORD = re.compile(r"[\w'&-]+")
BACK_REFERENCE = re.compile(
    r"\b(?:back to|get to|go to|return to|from|reach|leave|leaving|near|next to|close to|at|by|to) the\s+$"
)
"""A definite place the user is going to or from: one already chosen."""
ATTRIBUTE_AFTER = re.compile(
    r"^(?:'s)?\s+(?:type(?!\s+(?:of\s+)?(?:places?|attractions?|spots?|venues?|things?|ones?))"
    r"|address|addresses|phone|phone number|number|postcode|post code|name|names|area|location"
    r"|website|entrance fee|fee|reference|opening hours|hours|availability|details|info|information)\b"
)
ATTRIBUTE_BEFORE = re.compile(
    r"\b(?:type|address|phone|phone number|number|postcode|post code|name|area|location|website|entrance fee|fee"
    r"|reference|opening hours|hours|details|info|information) (?:of|for|at) (?:the|that|this|your) $"
)


def names_something_else(text: str, mention: Mention) -> bool:
    """Whether the mention at `mention.start:mention.end` of `text` (the clause as written)
    names something other than the kind of place the user wants."""
    if mention.category not in FILTERED:
        return False
    lowered = text.lower()
    before, after = lowered[: mention.start], lowered[mention.end :]
    return (
        in_proper_name(text, mention.start, mention.end)
        or BACK_REFERENCE.search(before) is not None
        or ATTRIBUTE_AFTER.search(after) is not None
        or ATTRIBUTE_BEFORE.search(before) is not None
    )


def in_proper_name(text: str, start: int, end: int) -> bool:
    """The words at start:end are capitalised and stand in a longer run of capitalised words
    ("Garden Curry House", "the Tate Gallery cafe"); a run that is only the mention is the
    user's own capitalised word for the kind ("a Historical Landmark")."""
    words = [(match.start(), match.end(), match.group()) for match in WORD.finditer(text)]
    inside = [index for index, (first, last, _) in enumerate(words) if first < end and start < last]
    if not inside or not all(CAPITALISED.fullmatch(words[index][2]) for index in inside):
        return False
    run_start, run_end = inside[0], inside[-1]
    while run_start > 0 and CAPITALISED.fullmatch(words[run_start - 1][2]):
        run_start -= 1
    while run_end + 1 < len(words) and CAPITALISED.fullmatch(words[run_end + 1][2]):
        run_end += 1
    return run_start < inside[0] or run_end > inside[-1]
