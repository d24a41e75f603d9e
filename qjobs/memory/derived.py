"""The documents memory-sync derives from statements, inside a page's transaction: the user's
preferences (`users/{uid}/preferences/{category}`, the user's own statements folded) and
each companion's (`users/{uid}/companions/{holder}`: `{holder, preferences: {category:
value}}`, the statements about that person folded the same way). A statement whose holder
is unknown is kept as a memory entry but folds into neither.

A page re-derives only the (holder, category) pairs it touched, from every statement of
that category (stored ones, with the page's fresh ones in place): one query per category,
whoever holds the statements, and one batched read of the touched documents.
"""

from typing import Any, TypeAlias

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.document import DocumentReference

from qjobs.jobs import Data, Reads, Write
from qjobs.memory.holders import SELF, UNKNOWN
from qjobs.memory.preferences import StoredStatement, fold, statement_of

Touched: TypeAlias = set[tuple[str, str]]
"""(holder, category) pairs whose derived value must be folded again."""


def rederive_writes(
    reads: Reads, user: DocumentReference, touched: Touched, fresh: dict[str, StoredStatement]
) -> tuple[list[Write], int]:
    """The writes of the derived documents that changed, and how many there are."""
    touched = {(holder, category) for holder, category in touched if holder != UNKNOWN}
    if not touched:
        return [], 0
    own = sorted(category for holder, category in touched if holder == SELF)
    companions = sorted({holder for holder, _ in touched if holder != SELF})
    preference_refs = {category: user.collection("preferences").document(category) for category in own}
    companion_refs = {holder: user.collection("companions").document(holder) for holder in companions}
    current = reads.documents([*preference_refs.values(), *companion_refs.values()])
    statements = statements_by_category(reads, user, {category for _, category in touched}, fresh)
    writes = [
        write
        for category, ref in preference_refs.items()
        if (write := preference_write(ref, current[ref.path], fold(category, held(statements[category], SELF))))
    ]
    for holder, ref in companion_refs.items():
        categories = sorted(category for who, category in touched if who == holder)
        write = companion_write(ref, current[ref.path], holder, categories, statements)
        if write is not None:
            writes.append(write)
    return writes, len(writes)


def statements_by_category(
    reads: Reads, user: DocumentReference, categories: set[str], fresh: dict[str, StoredStatement]
) -> dict[str, list[StoredStatement]]:
    """Every statement of each category, whoever holds it: the stored ones, with this page's
    fresh ones in place (a page transaction may run again over its own earlier writes)."""
    memories = user.collection("memories")
    found: dict[str, list[StoredStatement]] = {}
    for category in sorted(categories):
        query = memories.where(filter=FieldFilter("category", "==", category))
        read = ((doc.id, statement_of(doc.to_dict() or {}, doc.id)) for doc in reads.query(query))
        stored = {key: statement for key, statement in read if statement is not None}
        stored.update((key, statement) for key, statement in fresh.items() if statement.category == category)
        found[category] = list(stored.values())
    return found


def held(statements: list[StoredStatement], holder: str) -> list[StoredStatement]:
    return [statement for statement in statements if statement.holder == holder]


def preference_write(ref: DocumentReference, current: Data | None, derived: dict[str, Any] | None) -> Write | None:
    """The write that makes `ref` the derived document, or None when it already is."""
    if derived is None:
        return Write(ref, None) if current is not None else None
    unchanged = current is not None and {k: v for k, v in current.items() if k != "updatedAt"} == derived
    return None if unchanged else Write(ref, {**derived, "updatedAt": firestore.SERVER_TIMESTAMP})


def companion_write(
    ref: DocumentReference,
    current: Data | None,
    holder: str,
    categories: list[str],
    statements: dict[str, list[StoredStatement]],
) -> Write | None:
    """A companion's document with the touched categories folded again from that person's
    statements; the others are kept as they are. No preference left: no document."""
    preferences = dict((current or {}).get("preferences") or {})
    for category in categories:
        derived = fold(category, held(statements[category], holder))
        if derived is None:
            preferences.pop(category, None)
        else:
            preferences[category] = derived["value"]
    derived_document = {"holder": holder, "preferences": preferences} if preferences else None
    return preference_write(ref, current, derived_document)
