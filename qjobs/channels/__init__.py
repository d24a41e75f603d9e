"""Delivery channels beyond Firestore: email over SMTP, signed webhooks.

Each send reports one of three outcomes, because the job's retry logic depends on it:
`sent`, `failed` (permanent: retrying cannot help, recorded for good) or `retry` (a
temporary refusal or an outage: the job fails and QStash's retry tries again). A delivery
state, as stored beside what was delivered, records the latest outcome.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

Outcome = Literal["sent", "failed", "retry"]
DeliveryState = dict[str, Any]
"""`{status, reason, attempts, lastError, sentAt}`; `status` is `pending`, `sent`, `failed`
or `skipped` (with a `reason`)."""


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    error: str | None = None
    """A short description safe to store and log: codes, never addresses or content."""


def channel_state(status: str, reason: str | None) -> DeliveryState:
    return {"status": status, "reason": reason, "attempts": 0, "lastError": None, "sentAt": None}


def next_state(state: DeliveryState, result: SendResult) -> DeliveryState:
    """The state after one more attempt: a `retry` keeps the delivery pending."""
    status = {"sent": "sent", "failed": "failed", "retry": "pending"}[result.outcome]
    return {
        **state,
        "status": status,
        "attempts": int(state.get("attempts") or 0) + 1,
        "lastError": result.error,
        "sentAt": datetime.now(UTC) if status == "sent" else state.get("sentAt"),
    }


def is_pending(state: DeliveryState | None) -> bool:
    return bool(state) and (state or {}).get("status") == "pending"
