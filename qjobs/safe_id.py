"""Ids that may safely become Firestore document ids.

Firestore forbids `/`, ids of `.` or `..`, and ids matching `__.*__`; keeping to a small
alphabet also keeps ids readable in logs and URLs.
"""

import re
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

SAFE_ID_MAX_LENGTH = 128
_SAFE_ID = re.compile(r"[A-Za-z0-9_\-.:@]{1,128}")
_RESERVED = re.compile(r"__.*__")


def is_safe_id(value: str) -> bool:
    return _SAFE_ID.fullmatch(value) is not None and not value.startswith(".") and _RESERVED.fullmatch(value) is None


def _check_safe_id(value: str) -> str:
    if not is_safe_id(value):
        raise ValueError("must be 1-128 letters, digits or _ - . : @, not start with '.', and not look like __name__")
    return value


SAFE_ID_PATTERN = r"^(?!\.)(?!__.*__$)[A-Za-z0-9_\-.:@]{1,128}$"
"""The same rule as a JSON-schema (ECMA) pattern, for the published contract."""

SafeId = Annotated[
    str,
    AfterValidator(_check_safe_id),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": SAFE_ID_MAX_LENGTH, "pattern": SAFE_ID_PATTERN}),
]
"""A pydantic field type for ids used as Firestore document ids."""
