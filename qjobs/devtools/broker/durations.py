"""Durations as QStash reads them: `Upstash-Delay`, `Upstash-Timeout`, flow-control periods,
and a destination's `Retry-After` (seconds, an HTTP date, or a duration such as `6m5s`)."""

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER_SECONDS = 86_400.0
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class DurationError(ValueError):
    """Not a duration."""


def parse_duration(text: str) -> float:
    """Seconds: `90`, `90s`, `1m30s`, `2h`, `500ms`, `1d`."""
    value = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    if not _DURATION.fullmatch(value):
        raise DurationError(f"{text!r} is not a duration such as 10s, 6m5s or 1h")
    return sum(float(amount) * _UNITS[unit] for amount, unit in _PART.findall(value))


def retry_after_seconds(value: str, now: datetime | None = None) -> float | None:
    """A destination's `Retry-After`, in seconds from now (at most a day), or None when it
    is none of the three forms QStash honours."""
    try:
        seconds = parse_duration(value)
    except DurationError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
