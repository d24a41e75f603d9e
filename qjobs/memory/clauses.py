"""Reading a clause the way extraction needs it: does it ask something (and so state
nothing), does the user choose or state a habit in it, which words does a negation govern,
and which categories does the user leave open ("any price range", "business or economy").

A message is split into sentences, and a sentence into clauses at `;`, `:` and contrasts
("but", "though" ...), so that "I don't need a flight, but I want a hotel" keeps the
negation with the flight. Reply particles at the start of a clause ("No,", "Not now,",
"No thanks,") answer the other side and negate nothing that follows.
"""

import re
from dataclasses import dataclass
from functools import cached_property

SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|(?<=[a-z][.!?])(?=[A-Z])|\n+")
CLAUSE_BREAK = re.compile(
    r"[;:]|,?\s+\b(?:but|though|although|however|whereas)\b\s*|\s+-\s+"
    r"|,?\s+and\s+(?=(?:is|are|does|do|did|was|were|would|will|can|could|has|have)\s+(?:it|they|their|the|this|that|its)\b"
    r"|(?:what|how|where|when|which|who)\b)"
)
"""Clauses part at contrasts, and where a question is joined on ("... and is it expensive?")."""
FILLERS = re.compile(
    r"^(?:(?:yes|yeah|yep|yup|ok|okay|sure|great|perfect|fine|cool|alright|all right|thanks|thank you|thanks a lot"
    r"|and|also|so|then|now|well|oh|hey|hi|hello|good|right|awesome|excellent|noted|got it|i see|sounds good"
    r"|that(?:'s| is) (?:right|correct|fine|great|good|perfect)|that works|please|actually|instead)\b[,.!]?\s*)+",
    re.IGNORECASE,
)
REPLY_PARTICLES = re.compile(
    r"^(?:(?:no|nope|nah)(?:,? thank(?:s| you))?\s*(?:[,.!]|$)|(?:no|nope|nah),? thank(?:s| you)\b[,.!]?"
    r"|(?:no|nope|nah)(?=\s+(?:i|i'd|i'm|we|we'd|please|let's|let me|just|can|could|would)\b)"
    r"|not (?:now|yet|really|right now|at the moment|for now|today|this time)\b[,.!]?"
    r"|(?:that's|that is) not (?:it|right|correct|what i want(?:ed)?)\b[,.!]?)\s*",
    re.IGNORECASE,
)
"""A reply to the other side ("No,", "Not now,", "No thanks"), not a negation of what follows;
"no" followed by a word ("no red-eyes") is no reply."""
EMBEDDED_QUESTION = re.compile(
    r"\bwould you say\b|\bdo you know (?!of\b)"
    r"|\b(?:tell me|let me know|check|see|know|find out|wonder(?:ing)?|ask(?:ing)?|curious|confirm|verify|sure)\b"
    r"(?:\s+\S+){0,3}?\s+(?:if|whether)\b|\bwhether\b|\bor not\b"
    r"|\b(?:tell me|let me know|know|find out|ask|check)\s+(?:how|what|which|when|where|who)\b"
)
WH_QUESTION = re.compile(
    r"^(?:what|which|how|where|when|who|whose|why)\b(?!\s+(?:else|other|about|some other))"
    r"(?!(?:\s+\w+){0,2}\s+(?:are|is) (?:there|nearby|available|around)\b)"
)
EXISTENCE = re.compile(
    r"\b(?:if|whether) there(?:'s| is| are)\b|^what(?:\s+\w+){0,2}\s+(?:are|is) (?:there|nearby|available|around)\b"
)
"""Asking whether something exists ("see if there is a museum", "what hotels are nearby") is
asking for it."""
ABOUT_PRICE = re.compile(r"^(?:the\s+)?(?:price|prices|cost|rating|class)\b.*\?$")
"""A fragment asking about a property ("Price extravagant?")."""
AUX_QUESTION = re.compile(
    r"^(?:is|are|was|were|does|do|did|has|have|had|would|will|should|can|could|may|might|shall)\s+(?P<subject>[\w']+)"
)
ASKING_SUBJECTS = frozenset({"you", "u", "ya", "there", "i", "we", "anyone", "someone", "somebody"})
THING_SUBJECTS = frozenset(
    {
        "it",
        "this",
        "that",
        "these",
        "those",
        "they",
        "their",
        "them",
        "its",
        "the",
        "he",
        "she",
        "his",
        "her",
        "a",
        "an",
    }
)
"""After an auxiliary, ASKING_SUBJECTS make a request ("can you find ...", "are there any
..."), THING_SUBJECTS a question about a thing ("is it economy?", "do they have ...?")."""

ASKS = re.compile(
    r"\b(?:want|wants|wanna|need|needs|wish|hope|hoping|prefer|prefers|preferred|preferably|preferable|rather"
    r"|would like|'d like|would love|'d love|looking (?:\w+ )?(?:for|out for|to)|look(?:ing)? for|search(?:ing)?|locate"
    r"|interested in|in the mood for|craving|go with|settle for|choose|pick|book|booking|reserve|find|finding"
    r"|get|buy|purchase|rent|renting|show|suggest|recommend|try|help|can you|could you|would you|will you"
    r"|let'?s|make (?:it|sure)|change (?:it|to)|switch|take|pull up|give me|put me|keep it|plan(?:ning)? (?:to|on)"
    r"|have to|has to|must|gotta|please|should be|should have|needs to be|will work|would work|works for (?:me|us)"
    r"|will do|would do|as long as)\b"
)
TRAVEL = re.compile(
    r"\b(?:travel(?:l?ing|s)?|fly(?:ing)?|flies|leav(?:e|ing)|depart(?:ing|s)?|going|heading|stay(?:ing)?"
    r"|visit(?:ing)?|return(?:ing)?)\b"
)
APPROVES = re.compile(
    r"\b(?:be|is|are|sounds?|seems?)\s+(?:(?:really|very|so|just|perfectly)\s+)?(?:good|great|fine|perfect|ideal|nice"
    r"|fun|better|best|ok(?:ay)?|lovely|wonderful|preferred|preferable|acceptable|excellent)\b"
)
OPEN_REQUEST = re.compile(
    r"^(?:any(?:thing|where|one)?|some(?:thing|where|place)|some place|other|another|a different|maybe|perhaps"
    r"|possibly|preferably|ideally|just|only|how about|what about|what else|what other|in)\b"
)
VERB = re.compile(
    r"\b(?:is|are|was|were|be|been|being|am|has|have|had|do|does|did|can|could|will|would|should|may|might"
    r"|must|shall|need|want|like|love|go|get|find|book|i|we|you|they|it)\b|'s\b|'re\b|'m\b|'ve\b|'d\b|'ll\b"
)
"""A clause without any of these is a fragment: an answer to the assistant ("March 8th on
Economy.", "Premium economy, please."), which in a user's message is a choice."""
HABIT = re.compile(
    r"\b(?:always|usually|generally|normally|typically|tend to|every time|whenever|as a rule|by default|never"
    r"|all the time|from now on|going forward|from here on(?: in| out)?|(?:in|for the) future|on every (?:trip|flight)"
    r"|never again)\b|(?<!would )(?<!'d )\b(?:prefer|prefers|love|loves|like|likes|enjoy|enjoys|adore|hate|hates"
    r"|dislike|dislikes|can'?t stand)\b"
    r"(?! (?:to|if) (?:find|book|get|search|look|make|reserve|buy|purchase|rent|see)\b)"
)
"""A standing preference ("I always ...", "I prefer ...") rather than a choice for one trip."""
FIRST_PERSON = re.compile(r"\b(?:i|i'm|im|i'd|i've|i'll|we|we're|we'd|we've|we'll|me|my|our|us)\b")
LIKING = re.compile(
    r"(?<!would )(?<!'d )\b(?:love|loves|like|likes|enjoy|enjoys|into|interested in|fan of|keen on|big on|adore"
    r"|passionate about|fond of|obsessed with|mad about|crazy about|huge fans? of)\b"
    r"|\bwant to (?:see|do|go|try|visit)\b"
)
DISLIKE = re.compile(
    r"\b(?:hate|hates|dislike|dislikes|can'?t stand|not (?:a fan of|into|interested in)"
    r"|don'?t (?:like|enjoy|care for))\b"
)
TOLERANCE = re.compile(
    r"\b(?:don'?t mind|do not mind|fine with|ok(?:ay)? with|happy with|no problem with|(?:are|is) fine)\b"
)
AVERSION = re.compile(
    r"\b(?:no|avoid|avoids|avoiding|hate|hates|without|skip|never|don'?t want|do not want|doesn'?t want|dislike"
    r"|dislikes|rather not|not|minimi[sz]e)\b"
)
IDENTITY = re.compile(
    r"\b(?:i'?m|i am|we'?re|we are|(?:my|our) \w+(?: \w+)? (?:is|are|has|have)|(?:i|we) (?:only |mostly |strictly )?eat"
    r"|(?:i|we) (?:keep|follow|have|went)|(?:i|we)'?ve been|being"
    r"|(?:he|she|they)(?:'s|'re| is| are| has| have)|(?:he|she) (?:only |mostly |strictly )?eats)\s+(?:\S+\s+){0,3}$"
)
"""What someone is, right before the value ("I'm vegan", "my husband is coeliac", "we only eat
...", "she has a nut allergy": whose it is, holders.py tells)."""
THIRD_PERSON = re.compile(r"\b(?:he|she|they|he's|she's|they're)\b|\b(?:my|our|the) \w+")
"""Someone other than the user is the clause's subject: an identity stated about them counts."""
NEGATION = re.compile(
    r"\b(?:not|no|never|don'?t|doesn'?t|isn'?t|aren'?t|wasn'?t|won'?t|can'?t|cannot|stopped|quit|no more"
    r"|no longer|nothing)\b"
)
NEGATION_AFTER = re.compile(r"^[^,;]*?\b(?:any ?more|no longer)\b")
SCOPE_BREAK = re.compile(r",|\band\b|\bor\b|\bthen\b")
PHRASE_BREAK = re.compile(
    r"(?:,|\band\b|\bor\b|\bthen\b|\bbut\b)\s*(?=(?:i|we|i'm|we're|i'd|we'd|my|our|he|she|they)\b)"
)
"""Where a new subject starts a phrase of its own."""
NEGATION_REACH = 4
"""A negation governs a value at most this many words after it, within one phrase."""

INDIFFERENCE_WORDS = {
    "price": "budget", "cost": "budget", "budget": "budget",
    "class": "cabinClass", "seat": "cabinClass", "seating": "cabinClass", "cabin": "cabinClass",
    "airline": "airlines", "carrier": "airlines", "rating": "hotelClass", "star": "hotelClass",
}  # fmt: skip
SUBJECTS = r"(?P<what>price|cost|budget|class|seat(?:ing)?|cabin|airline|carrier|rating|star)s?(?: range)?"
INDIFFERENT = (
    re.compile(r"\b(?:any|whatever|no particular|every|all)\s+" + SUBJECTS),
    re.compile(
        r"\b" + SUBJECTS + r"\s+(?:doesn'?t|does not|don'?t|do not|won'?t|isn'?t|is not)\s+(?:really\s+)?"
        r"(?:matter|(?:an? |my )?(?:issue|concern|problem|priority|important))"
    ),
    re.compile(
        r"\b(?:don'?t|do not|doesn'?t) (?:really |much |too much )?(?:care|mind)(?: too much| much)?"
        r" (?:about|for|what|which|if|how) (?:the )?" + SUBJECTS
    ),
)
OPEN_CHOICE = re.compile(r"\beither\b|\bboth\b|\b(?:doesn'?t|does not|won'?t) matter\b|\bno preference\b|\bwhatever\b")
"""Leaves open whichever category the clause names two values of."""


def split_sentences(text: str) -> list[str]:
    return [part.strip() for part in SENTENCE_BREAK.split(text.strip()) if part.strip()]


def strip_start(text: str) -> str:
    """Without the fillers and reply particles a clause may open with."""
    previous = None
    while previous != text:
        previous = text
        text = FILLERS.sub("", text)
        text = REPLY_PARTICLES.sub("", text)
    return text


@dataclass(frozen=True)
class Clause:
    text: str
    """The clause as written, without its opening fillers and reply particles."""
    sentence: str
    message: str = ""
    """The whole message, lower case: what a clause's words refer to may be said elsewhere in it."""

    @cached_property
    def lowered(self) -> str:
        return self.text.lower()

    @cached_property
    def question(self) -> bool:
        """It asks about something rather than asking for something: it states nothing."""
        lowered = self.lowered
        if EXISTENCE.search(lowered):
            return False
        if EMBEDDED_QUESTION.search(lowered) or WH_QUESTION.search(lowered) or ABOUT_PRICE.search(lowered):
            return True
        return self.aux_subject in THING_SUBJECTS

    @cached_property
    def aux_subject(self) -> str | None:
        """The subject after an opening auxiliary ("is *it*", "can *you*"), if it opens so."""
        aux = AUX_QUESTION.search(self.lowered)
        return aux.group("subject") if aux else None

    @cached_property
    def requested(self) -> bool:
        """Asked for as a question: "can you find ...", "are there any ...", "is there a ..."."""
        return self.aux_subject in ASKING_SUBJECTS or EXISTENCE.search(self.lowered) is not None

    @cached_property
    def habitual(self) -> bool:
        return HABIT.search(self.lowered) is not None

    @cached_property
    def first_person(self) -> bool:
        return FIRST_PERSON.search(self.lowered) is not None

    @cached_property
    def third_person(self) -> bool:
        return THIRD_PERSON.search(self.lowered) is not None

    @cached_property
    def fragment(self) -> bool:
        return VERB.search(self.lowered) is None

    @cached_property
    def chooses(self) -> bool:
        """The user chooses or asks for something in it (or, a fragment, answers)."""
        lowered = self.lowered
        patterns = (ASKS, TRAVEL, APPROVES, OPEN_REQUEST, TOLERANCE)
        return self.habitual or self.fragment or self.requested or any(pattern.search(lowered) for pattern in patterns)

    @cached_property
    def tolerant(self) -> bool:
        return TOLERANCE.search(self.lowered) is not None

    @cached_property
    def named_open(self) -> frozenset[str]:
        """Categories the clause leaves open by name ("any price range", "seating doesn't matter")."""
        found = (match.group("what") for pattern in INDIFFERENT for match in pattern.finditer(self.lowered))
        return frozenset(INDIFFERENCE_WORDS[word] for word in found)

    @cached_property
    def open_choice(self) -> bool:
        return OPEN_CHOICE.search(self.lowered) is not None

    def says_identity(self, start: int) -> bool:
        return IDENTITY.search(self.lowered[:start]) is not None

    def negated(self, start: int, end: int) -> bool:
        """Whether a negation governs the words at start:end: one shortly before them in the
        same phrase, or "any more" / "no longer" after them."""
        before = self.lowered[:start]
        breaks = list(SCOPE_BREAK.finditer(before))
        phrase_start = breaks[-1].end() if breaks else 0
        for negation in NEGATION.finditer(before, phrase_start):
            if len(before[negation.end() :].split()) <= NEGATION_REACH:
                return True
        return NEGATION_AFTER.search(self.lowered[end:]) is not None

    def phrase_of(self, start: int, end: int) -> str:
        """The phrase the words at start:end stand in: between the nearest "and", "or", comma
        or "then" joined to a new subject on either side ("I love museums and I hate crowds"
        is two phrases; "museums and galleries" one)."""
        lowered = self.lowered
        breaks = list(PHRASE_BREAK.finditer(lowered))
        before = [match.end() for match in breaks if match.end() <= start]
        after = [match.start() for match in breaks if match.start() >= end]
        return lowered[(before[-1] if before else 0) : (after[0] if after else len(lowered))]

    def between(self, start: int, end: int) -> str:
        return self.lowered[start:end]


MAX_SENTENCE_CHARS = 600
"""A sentence is read up to here: no one writes a longer one to a travel assistant, and
reading clauses costs more than linear time in their length (each mention looks back
over its phrase)."""


def clauses(text: str) -> list[Clause]:
    found = []
    for whole in split_sentences(text):
        sentence = whole[:MAX_SENTENCE_CHARS]
        for part in CLAUSE_BREAK.split(sentence):
            stripped = strip_start(part.strip())
            if stripped:
                found.append(Clause(stripped, sentence, text.lower()))
    return found
