"""One page of a memory sync: what it reads (through the transaction it runs in) and what
it writes.

A page takes the messages after the summary's cursor, folds them into the summary, makes
a memory entry of every preference statement and note, and re-derives the preferences of
the categories it touched from all of the user's statements. It has no side effects: it
runs inside a transaction, which Firestore may run again.
"""

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.document import DocumentReference

from qjobs.jobs import MAX_WRITES_PER_COMMIT, Reads, Write
from qjobs.memory.derived import Touched, rederive_writes
from qjobs.memory.extract import CATEGORIES, Extractor, RuleExtractor, Statement
from qjobs.memory.preferences import StoredStatement
from qjobs.memory.summary import (
    MAX_NOTES_PER_MESSAGE,
    Note,
    SummaryState,
    apply_message,
    keywords,
    keywords_of,
    note_id,
    summary_text,
)

EXTRACTOR: Extractor = RuleExtractor()
MAX_STATEMENTS_PER_MESSAGE = 30
MEMORY_WRITE_BUDGET = MAX_WRITES_PER_COMMIT - 2 - 1 - len(CATEGORIES)
"""A page's memory writes, leaving room for the ledger's two (entry and token), the
summary and every preference; a page also counts one write per holder its statements
name (a companion's document) against it."""


EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
"""Firestore's earliest timestamp: `createdAt >= EARLIEST` matches every timestamp and
nothing else, since a range filter only matches values of its own type."""


@dataclass(frozen=True)
class Message:
    id: str
    role: str
    content: str
    created_at: datetime


@dataclass
class Page:
    """What one page transaction did, or (summed with `add`) a whole sync."""

    processed: int = 0
    preferences: int = 0
    memories: int = 0
    cursor: dict[str, Any] | None = None
    done: bool = True
    replay: bool = False
    """The sync must forget the conversation and replay it: a full sync, or a cursor that
    no query can continue from (see `continuable`)."""

    def add(self, page: "Page") -> None:
        self.processed += page.processed
        self.preferences += page.preferences
        self.memories += page.memories
        self.cursor = page.cursor or self.cursor


@dataclass
class Sync:
    """The references and settings one sync works with."""

    db: firestore.Client
    page_size: int
    user_id: str
    conversation_id: str
    sync_type: str
    forgotten: Touched = field(default_factory=set)
    """(holder, category) pairs whose statements a full sync removed, re-derived with its first page."""
    user: DocumentReference = field(init=False)
    conversation: DocumentReference = field(init=False)
    summary: DocumentReference = field(init=False)

    def __post_init__(self) -> None:
        self.user = self.db.collection("users").document(self.user_id)
        self.conversation = self.db.collection("conversations").document(self.conversation_id)
        self.summary = self.user.collection("conversationSummaries").document(self.conversation_id)


def build_page(reads: Reads, run: Sync) -> tuple[list[Write], Page]:
    """Reads (through the transaction) and the writes of the next page. No side effects:
    Firestore may run it again when the transaction is contended."""
    summary = reads.documents([run.summary])[run.summary.path]
    state = SummaryState.from_json(summary.get("state") if summary else None)
    cursor = summary.get("cursor") if summary else None
    fetched = read_messages(reads, run, cursor)
    memories, page = fit_page(fetched, state, run.conversation_id)
    if not page and summary is not None and not run.forgotten:
        return [], Page(cursor=cursor)
    memory_writes = [Write(run.user.collection("memories").document(m.id), m.data) for m in memories]
    fresh = {memory.id: memory.statement for memory in memories if memory.statement is not None}
    touched = {(statement.holder, statement.category) for statement in fresh.values()} | run.forgotten
    preference_writes, changed = rederive_writes(reads, run.user, touched, fresh)
    new_cursor = {"createdAt": page[-1].created_at, "messageId": page[-1].id} if page else cursor
    writes = [*memory_writes, *preference_writes, Write(run.summary, summary_fields(run, state, new_cursor))]
    done = len(page) == len(fetched) and len(fetched) < run.page_size
    return writes, Page(len(page), changed, len(memory_writes), new_cursor, done)


def continuable(summary: dict[str, Any] | None) -> bool:
    """Whether a stored summary can be continued from: none yet, or one whose state reads
    back and whose cursor is absent or rests on a timestamp and a message id. Earlier
    versions could leave the cursor on a string (a malformed message's `createdAt`), after
    every timestamp, where no later message would ever be found; a summary someone edited
    by hand may not read at all. Either is rebuilt by replaying the conversation."""
    if summary is None:
        return True
    cursor = summary.get("cursor")
    if cursor is not None and not (
        isinstance(cursor, dict)
        and isinstance(cursor.get("createdAt"), datetime)
        and isinstance(cursor.get("messageId"), str)
    ):
        return False
    try:
        SummaryState.from_json(summary.get("state"))
    except (TypeError, ValueError, KeyError, AttributeError):
        return False
    return True


def read_messages(reads: Reads, run: Sync, cursor: dict[str, Any] | None) -> list[Message]:
    """The next page of timestamped messages. A message whose `createdAt` is missing or of
    another type is never read: Firestore orders values by type first, so it would sit
    before or after every timestamp, and a cursor resting on it would hide every later message."""
    messages = run.conversation.collection("messages")
    query = (
        messages.where(filter=FieldFilter("createdAt", ">=", EARLIEST))
        .order_by("createdAt")
        .order_by("__name__")
        .limit(run.page_size)
    )
    if cursor:
        query = query.start_after(
            {"createdAt": cursor["createdAt"], "__name__": messages.document(cursor["messageId"])}
        )
    return [message_of(doc.id, doc.to_dict() or {}) for doc in reads.query(query)]


def message_of(message_id: str, data: dict[str, Any]) -> Message:
    """A stored message, read defensively: malformed content or role is applied as well as
    it can be rather than failing every retry of the sync (the query returns timestamps only)."""
    content, created = data.get("content"), data.get("createdAt")
    return Message(
        id=message_id,
        role=str(data.get("role", "")),
        content=content if isinstance(content, str) else "",
        created_at=created if isinstance(created, datetime) else EARLIEST,
    )


@dataclass(frozen=True)
class Memory:
    """A memory entry to write, with the statement it records (for preference entries)."""

    id: str
    data: dict[str, Any]
    statement: StoredStatement | None = None


def fit_page(messages: list[Message], state: SummaryState, conversation_id: str) -> tuple[list[Memory], list[Message]]:
    """Fold messages into `state` until the page's memory writes could pass the budget;
    the memory entries to write and the messages taken."""
    memories: list[Memory] = []
    taken: list[Message] = []
    holders: set[str] = set()
    for message in messages:
        found = extract(message)
        holders_after = holders | {statement.holder for statement in found}
        if taken and len(memories) + len(found) + MAX_NOTES_PER_MESSAGE + len(holders_after) > MEMORY_WRITE_BUDGET:
            break
        holders = holders_after
        notes = apply_message(state, message.role, message.content, message.id, message.created_at.isoformat())
        memories += [
            statement_memory(conversation_id, message, position, found[position]) for position in range(len(found))
        ]
        memories += [note_memory(conversation_id, message, note) for note in notes]
        taken.append(message)
    return memories, taken


def extract(message: Message) -> list[Statement]:
    """Preferences come from the user's own messages only."""
    if message.role != "user" or not message.content:
        return []
    return EXTRACTOR.extract(message.content)[:MAX_STATEMENTS_PER_MESSAGE]


def statement_memory(conversation_id: str, message: Message, position: int, statement: Statement) -> Memory:
    key = f"preference\x00{conversation_id}\x00{message.id}\x00{position}"
    memory_id = hashlib.sha256(key.encode()).hexdigest()[:40]
    stored = StoredStatement(
        category=statement.category,
        op=statement.op,
        value=statement.value,
        confidence=statement.confidence,
        stated_at=message.created_at,
        conversation_id=conversation_id,
        message_id=message.id,
        position=position,
        basis=statement.basis,
        memory_id=memory_id,
        holder=statement.holder,
    )
    data = {
        "kind": "preference",
        "category": statement.category,
        "op": statement.op,
        "value": statement.value,
        "confidence": statement.confidence,
        "basis": statement.basis,
        "holder": statement.holder,
        "text": statement.text,
        "keywords": preference_keywords(statement),
        "conversationId": conversation_id,
        "messageId": message.id,
        "statedAt": message.created_at,
        "position": position,
    }
    return Memory(memory_id, data, stored)


def preference_keywords(statement: Statement) -> list[str]:
    """The category and the value, not the rest of the sentence: a search for "vegan"
    should find the statement about being vegan, not every statement said next to it."""
    value = statement.value
    parts = [str(part) for part in value.values()] if isinstance(value, dict) else [str(value)]
    words = [statement.category.lower()]
    for part in parts:
        words += [part.lower(), *part.lower().split("_")]
    return list(dict.fromkeys(word for word in words if word))


def note_memory(conversation_id: str, message: Message, note: Note) -> Memory:
    data = {
        "kind": note.kind,
        "text": note.text,
        "keywords": keywords_of(note.text),
        "conversationId": conversation_id,
        "messageId": message.id,
        "statedAt": message.created_at,
        "position": note.position,
    }
    return Memory(note_id(conversation_id, note), data)


# ---------------------------------------------------------------- summary


def summary_fields(run: Sync, state: SummaryState, cursor: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "summary": summary_text(state),
        "keywords": keywords(state),
        "messageCount": state.message_count,
        "lastMessageAt": cursor["createdAt"] if cursor else None,
        "cursor": cursor,
        "syncType": run.sync_type,
        "updatedAt": firestore.SERVER_TIMESTAMP,
        "state": state.to_json(),
    }
