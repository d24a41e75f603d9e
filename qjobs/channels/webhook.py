"""One signed POST per business event, the Standard Webhooks way.

`webhook-id` is the business key, identical on every retry and dead-letter replay, so a
receiver can drop the copy that a crash between its 2xx and our record could cause. A key
may hold any Unicode but control characters, and a header carries visible ASCII only, so
the key is percent-encoded on its way into the header (`webhook_id_for`).
"""

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from standardwebhooks import Webhook

from qjobs.channels import DeliveryState, SendResult, is_pending, next_state

RETRYABLE_CLIENT_ERRORS = frozenset({408, 425, 429})
HEADER_SAFE = "".join(chr(code) for code in range(0x21, 0x7F) if chr(code) != "%")
"""Visible ASCII but `%`: kept as it is in a webhook id; `%` is always encoded, so that no
two keys ever share an id."""


def webhook_id_for(key: str) -> str:
    """The `webhook-id` of a business key: the key itself when it is visible ASCII without
    `%`, otherwise percent-encoded UTF-8 (`trip-1:share:\u2708 Lisbon` becomes
    `trip-1:share:%E2%9C%88%20Lisbon`); a receiver that wants the key back unquotes it."""
    return quote(key, safe=HEADER_SAFE)


def post_webhook(
    url: str, secret: str, *, webhook_id: str, payload: dict[str, Any], timeout: float, now: datetime | None = None
) -> SendResult:
    body = json.dumps(payload, separators=(",", ":"))
    sent_at = now or datetime.now(UTC)
    headers = {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, sent_at, body),
    }
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status = int(response.status)
    except urllib.error.HTTPError as error:
        status = error.code
    except (urllib.error.URLError, OSError) as error:
        return SendResult("retry", f"connection: {connection_cause(error)}")
    return classify_status(status)


def connection_cause(error: OSError) -> str:
    """The name of what went wrong: urllib wraps the socket's error (a refused connection,
    a timeout, a name that does not resolve) in a URLError, which alone says nothing."""
    reason = getattr(error, "reason", None) if isinstance(error, urllib.error.URLError) else None
    return type(reason if isinstance(reason, BaseException) else error).__name__


@dataclass(frozen=True)
class WebhookChannel:
    url: str
    secret: str
    timeout: float

    def post(self, key: str, payload: dict[str, Any]) -> SendResult:
        """One signed POST of `payload` for the business event `key` (any one-line text)."""
        return post_webhook(
            self.url, self.secret, webhook_id=webhook_id_for(key), payload=payload, timeout=self.timeout
        )

    def deliver(self, state: DeliveryState, key: str, payload: dict[str, Any]) -> DeliveryState:
        """The delivery's next state: posted if pending, as it was otherwise."""
        return next_state(state, self.post(key, payload)) if is_pending(state) else state


def classify_status(status: int) -> SendResult:
    if 200 <= status < 300:
        return SendResult("sent")
    if 400 <= status < 500 and status not in RETRYABLE_CLIENT_ERRORS:
        return SendResult("failed", f"receiver answered {status}")
    return SendResult("retry", f"receiver answered {status}")


def valid_secret(secret: str) -> str:
    """Fail at start-up, not at the first send, on a secret Standard Webhooks cannot use."""
    try:
        Webhook(secret)
    except Exception:
        raise ValueError("must be a Standard Webhooks secret (whsec_ + base64)") from None
    return secret
