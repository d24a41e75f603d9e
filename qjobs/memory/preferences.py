"""A preference is derived, never stored as truth: the fold of every statement the user
made about its category, across all conversations, in (statedAt, conversationId,
messageId, position) order. A later statement overrides an earlier one; a negation
withdraws a value; a fold that ends empty means no preference document at all."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from qjobs.memory.extract import LIST_CATEGORIES


@dataclass(frozen=True)
class StoredStatement:
    category: str
    op: str
    value: Any
    confidence: float
    stated_at: datetime
    conversation_id: str
    message_id: str
    position: int

    def order(self) -> tuple[datetime, str, str, int]:
        return (self.stated_at, self.conversation_id, self.message_id, self.position)

    @classmethod
    def from_memory(cls, memory: dict[str, Any]) -> "StoredStatement":
        return cls(
            category=memory["category"],
            op=memory["op"],
            value=memory["value"],
            confidence=float(memory.get("confidence", 0.5)),
            stated_at=memory["statedAt"],
            conversation_id=memory["conversationId"],
            message_id=memory["messageId"],
            position=int(memory.get("position", 0)),
        )


def fold(category: str, statements: list[StoredStatement]) -> dict[str, Any] | None:
    """The preference document's fields (without `updatedAt`), or None when there is none."""
    value: Any = [] if category in LIST_CATEGORIES else None
    source: StoredStatement | None = None
    for statement in sorted(statements, key=StoredStatement.order):
        changed, value = apply(category, value, statement)
        if changed:
            source = statement
    if source is None or value in (None, []):
        return None
    return {
        "category": category,
        "value": value,
        "confidence": source.confidence,
        "sourceConversationId": source.conversation_id,
        "sourceMessageId": source.message_id,
        "statedAt": source.stated_at,
    }


def apply(category: str, value: Any, statement: StoredStatement) -> tuple[bool, Any]:
    """(whether the statement changed the value, the value after it)."""
    if category in LIST_CATEGORIES:
        if statement.op == "add" and statement.value not in value:
            return True, [*value, statement.value]
        if statement.op == "remove" and statement.value in value:
            return True, [item for item in value if item != statement.value]
        return False, value
    if statement.op == "set":
        return True, statement.value
    if statement.op == "remove" and value == statement.value:
        return True, None
    return False, value
