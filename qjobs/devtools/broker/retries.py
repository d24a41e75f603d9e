"""The broker's retry policy as QStash applies it: which answer ends a message, and how long
the broker waits before the next attempt.

Kept apart from the threads and sockets of `core` so that the rules can be read, and
tested, on their own: an answer is a status and its headers, nothing else.
"""

import math
from collections.abc import Mapping
from typing import Literal

from qjobs.devtools.broker.durations import retry_after_seconds
from qjobs.devtools.broker.expression import Node, delay_ms

MAX_BACKOFF_SECONDS = 86_400.0
"""QStash's default backoff stops growing at a day."""

Outcome = Literal["delivered", "retry", "dead-letter"]
Headers = Mapping[str, list[str]]


def header(headers: Headers, name: str) -> str | None:
    """The first value of the header `name` (given in lower case), stripped, whatever case
    the destination spelled its name in; None when it is absent."""
    for key, values in headers.items():
        if key.lower() == name and values:
            return values[0].strip()
    return None


def outcome(status: int, headers: Headers, *, retried: int, retries: int) -> Outcome:
    """A 2xx delivers; a `489` with `Upstash-NonRetryable-Error: true`, or a failure after
    the last retry, dead-letters; any other answer (no answer at all included) is retried."""
    if 200 <= status < 300:
        return "delivered"
    non_retryable = status == 489 and (header(headers, "upstash-nonretryable-error") or "").lower() == "true"
    if non_retryable or retried >= retries:
        return "dead-letter"
    return "retry"


def retry_delay(headers: Headers, retry_node: Node | None, retried: int) -> float:
    """Seconds before retry number `retried + 1`: the destination's `Retry-After` when it is
    one QStash honours, else the message's `Upstash-Retry-Delay` expression (milliseconds,
    evaluated for `retried`), else QStash's default backoff `min(86400, e^(2.5 n))` for the
    n-th retry."""
    retry_after = header(headers, "retry-after")
    if retry_after is not None:
        seconds = retry_after_seconds(retry_after)
        if seconds is not None:
            return seconds
    if retry_node is not None:
        return delay_ms(retry_node, retried) / 1000
    return min(MAX_BACKOFF_SECONDS, math.exp(2.5 * (retried + 1)))
