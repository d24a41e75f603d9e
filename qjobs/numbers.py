"""Numbers read from text that came over the wire, and the ranges a stored number must fit.

`str.isdigit()` and `int()` both accept far more than ASCII: `int("٣")` is 3, and `"²".isdigit()`
is true while `int("²")` raises. A header such as `Upstash-Retried` is ASCII by protocol
(RFC 9110 §5.5: field values are visible ASCII), so anything else is no number at all rather
than a guess. Firestore stores integers as 64-bit signed values and refuses a larger one at
commit (`Value out of range`), so a payload's integers are bounded before they get there.
"""

import re
from typing import Annotated

from pydantic import Field

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
"""Firestore's integer range (its `integerValue` is an int64)."""

_ASCII_DIGITS = re.compile(r"[0-9]{1,18}")
"""At most 18 digits: every such number fits an int64."""

Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
"""A pydantic field type for any integer a payload may carry: Firestore can store it."""

NonNegativeInt64 = Annotated[int, Field(ge=0, le=INT64_MAX)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
"""A pydantic field type for a float a payload may carry: never NaN or infinite."""


def ascii_natural(text: str | None) -> int | None:
    """`text` as a non-negative integer when it is 1-18 ASCII digits (`"007"` is 7); None for
    anything else: empty, signs, spaces, other scripts' digits, superscripts, longer numbers."""
    if text is None or _ASCII_DIGITS.fullmatch(text) is None:
        return None
    return int(text)
