"""An extractive, deterministic summary of a conversation, kept as a fold over its messages.

The summary is computed from a small state that each message updates in order, so the
state after syncing messages in any number of batches equals the state after one pass:
that is what lets `incremental` syncs read only new messages and still agree with `full`.
The user's own sentences are kept: the main request, decisions, plans (places and dates)
and questions; keywords are the most frequent non-stop words of the user's messages.
"""

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from qjobs.memory.destinations import stance_on
from qjobs.memory.extract import split_sentences
from qjobs.memory.places import find_places

SUMMARY_MAX_CHARS = 1000
MAX_KEYWORDS = 20
MAX_TERMS = 2000
KEEP_DECISIONS, KEEP_PLANS, KEEP_QUESTIONS = 5, 5, 3
MAX_NOTES_PER_MESSAGE = 20
NOTE_MAX_CHARS = 300

REQUEST_CUE = re.compile(
    r"\b(?:want|wants|plan|planning|looking for|help me|help us|trip|travel|travelling|traveling|visit|visiting|"
    r"going to|book|find|holiday|vacation|honeymoon|getaway)\b",
    re.IGNORECASE,
)
DECISION_CUE = re.compile(
    r"\b(?:let'?s|let us|we'?ll|we will|i'?ll|i will|decided|decide on|go with|going with|book it|booked|"
    r"confirm(?:ed)?|settled on|we'?re going|we are going|sounds good|that works|take the)\b",
    re.IGNORECASE,
)
MONTHS = (
    r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
    r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
DATE = re.compile(
    rf"\b(?:{MONTHS})\b|\b\d{{1,2}}[/.-]\d{{1,2}}(?:[/.-]\d{{2,4}})?\b|\b(?:20\d\d)\b|"
    r"\b(?:next|this) (?:week|weekend|month|year|summer|winter|spring|autumn|fall)\b|"
    r"\b(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b",
    re.IGNORECASE,
)
PLACE = re.compile(r"\b(?:to|in|visit|visiting|from|around|near|at)\s+(?:the\s+)?[A-Z][a-zA-Z-]+")
WORD = re.compile(r"[a-zA-Z][a-zA-Z'-]+")

STOP_WORDS = frozenset(
    """a about above after again against all also am an and any are aren't as at be because been before
    being below between both but by can can't cannot could couldn't did didn't do does doesn't doing
    don't down during each few for from further get got had hadn't has hasn't have haven't having he her
    here hers herself him himself his how i i'd i'll i'm i've if in into is isn't it it's its itself
    just let's like maybe me more most much must my myself need no nor not now of off ok okay on once
    only or other ought our ours ourselves out over own please really same she should shouldn't so some
    such than thank thanks that that's the their theirs them themselves then there there's these they
    they'd they'll they're they've this those through to too under until up us very want was wasn't we
    we'd we'll we're we've were weren't what what's when where which while who whom why will with won't
    would wouldn't yes yet you you'd you'll you're you've your yours yourself yourselves going go sure
    think know lot bit something anything one two would've could've""".split()  # noqa: SIM905 - a word list reads best as text
)


def words(text: str) -> list[str]:
    """Salient words: lower case, three letters or more, no stop words."""
    tokens = (token.lower().strip("'-") for token in WORD.findall(text))
    return [token for token in tokens if len(token) >= 3 and token not in STOP_WORDS]


def keywords_of(text: str, limit: int = 10) -> list[str]:
    return list(dict.fromkeys(words(text)))[:limit]


@dataclass
class Note:
    """A sentence of the user's that the summary keeps."""

    kind: str
    text: str
    message_id: str
    stated_at: str
    position: int


@dataclass
class SummaryState:
    message_count: int = 0
    first_sentence: Note | None = None
    request: Note | None = None
    decisions: list[Note] = field(default_factory=list)
    plans: list[Note] = field(default_factory=list)
    questions: list[Note] = field(default_factory=list)
    terms: dict[str, list[int]] = field(default_factory=dict)
    """word -> [count, position of its first use among all counted words]; at most MAX_TERMS"""
    words_seen: int = 0
    """How many words were counted, kept or not: where the next word's position starts."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> "SummaryState":
        if not text:
            return cls()
        data: dict[str, Any] = json.loads(text)
        for name in ("first_sentence", "request"):
            data[name] = Note(**data[name]) if data.get(name) else None
        for name in ("decisions", "plans", "questions"):
            data[name] = [Note(**note) for note in data.get(name, [])]
        data.setdefault("words_seen", sum(count for count, _ in data.get("terms", {}).values()))
        return cls(**data)


def classify(sentence: str, has_request: bool) -> str | None:
    """The note kind a user's sentence is, if the summary keeps it."""
    if sentence.rstrip().endswith("?"):
        return "question"
    if DECISION_CUE.search(sentence):
        return "decision"
    if not has_request and REQUEST_CUE.search(sentence):
        return "request"
    if DATE.search(sentence) or PLACE.search(sentence) or planned_places(sentence):
        return "plan"
    return None


DEPARTURE = re.compile(
    r"\b(?:from|leaving|leave|out of|depart(?:ing)?|fly(?:ing)? out of|live in|living in|based in|home in|home is"
    r"|connect(?:ing)? (?:in|through|via)|layover in|stopover in|via)\s+(?:the\s+)?$"
)
"""A place the trip leaves from or passes through, not one it is for."""


def planned_places(sentence: str) -> bool:
    """The sentence names a place the trip is for, and not as one the user loves or avoids
    (those are destinations) nor as where it leaves from: "In Madrid we'd love to see the Prado"."""
    lowered = sentence.lower()
    return any(
        stance_on(lowered, place.start, place.end) is None and DEPARTURE.search(lowered[: place.start]) is None
        for place in find_places(sentence)
    )


def notes_of(content: str, message_id: str, stated_at: str, has_request: bool) -> list[Note]:
    """The sentences of one user message that the summary keeps, in order."""
    notes: list[Note] = []
    for position, sentence in enumerate(split_sentences(content)):
        kind = classify(sentence, has_request)
        if kind is None:
            continue
        has_request = has_request or kind == "request"
        notes.append(Note(kind, sentence[:NOTE_MAX_CHARS], message_id, stated_at, position))
        if len(notes) == MAX_NOTES_PER_MESSAGE:
            break
    return notes


def apply_message(state: SummaryState, role: str, content: str, message_id: str, stated_at: str) -> list[Note]:
    """Fold one message into the state; returns the notes it added (for the memory index)."""
    state.message_count += 1
    if role != "user":
        return []
    sentences = split_sentences(content)
    if state.first_sentence is None and sentences:
        state.first_sentence = Note("request", sentences[0][:NOTE_MAX_CHARS], message_id, stated_at, 0)
    notes = notes_of(content, message_id, stated_at, state.request is not None)
    for note in notes:
        keep(state, note)
    count_terms(state, content)
    return notes


def keep(state: SummaryState, note: Note) -> None:
    if note.kind == "request":
        state.request = state.request or note
    elif note.kind == "decision":
        state.decisions = [*state.decisions, note][-KEEP_DECISIONS:]
    elif note.kind == "plan":
        state.plans = [*state.plans, note][-KEEP_PLANS:]
    elif note.kind == "question":
        state.questions = [*state.questions, note][-KEEP_QUESTIONS:]


def count_terms(state: SummaryState, content: str) -> None:
    """Count the message's words; past MAX_TERMS distinct words, the least used (the later
    first used among equals) are forgotten, so that the state stays far below Firestore's
    1 MiB per document however long the conversation. Incremental and full syncs count the
    same messages in the same order, so they forget the same words."""
    found = words(content)
    for offset, word in enumerate(found):
        entry = state.terms.setdefault(word, [0, state.words_seen + offset])
        entry[0] += 1
    state.words_seen += len(found)
    if len(state.terms) > MAX_TERMS:
        ranked = sorted(state.terms.items(), key=lambda item: (-item[1][0], item[1][1]))
        state.terms = dict(ranked[:MAX_TERMS])


def keywords(state: SummaryState) -> list[str]:
    ranked = sorted(state.terms.items(), key=lambda item: (-item[1][0], item[1][1], item[0]))
    return [word for word, _ in ranked[:MAX_KEYWORDS]]


def summary_text(state: SummaryState) -> str:
    request = state.request or state.first_sentence
    parts = [f"Request: {request.text}"] if request else []
    for title, notes in (("Decisions", state.decisions), ("Plans", state.plans), ("Open questions", state.questions)):
        if notes:
            parts.append(f"{title}: " + " ".join(note.text for note in notes))
    text = "\n".join(parts)
    return text if len(text) <= SUMMARY_MAX_CHARS else text[: SUMMARY_MAX_CHARS - 1].rstrip() + "…"


def note_id(conversation_id: str, note: Note) -> str:
    key = f"note\x00{conversation_id}\x00{note.message_id}\x00{note.position}"
    return hashlib.sha256(key.encode()).hexdigest()[:40]
