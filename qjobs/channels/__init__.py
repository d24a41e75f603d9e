"""Delivery channels beyond Firestore: email over SMTP, signed webhooks.

Each send reports one of three outcomes, because the job's retry logic depends on it:
`sent`, `failed` (permanent: retrying cannot help, recorded for good) or `retry` (a
temporary refusal or an outage: the job fails and QStash's retry tries again).
"""

from dataclasses import dataclass
from typing import Literal

Outcome = Literal["sent", "failed", "retry"]


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    error: str | None = None
    """A short description safe to store and log: codes, never addresses or content."""
