"""Ids that become Firestore document ids: the rule the service checks, and the same rule as
the published contract states it."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qjobs.safe_id import SAFE_ID_MAX_LENGTH, SAFE_ID_PATTERN, is_safe_id


@pytest.mark.parametrize(
    "value",
    ["u1", "trip-1", "a.b", "user@example.test", "x:y_z", "a" * SAFE_ID_MAX_LENGTH, "_x_", "__x", "x.", "X.X"],
)
def test_ids_firestore_takes_as_they_are(value: str) -> None:
    assert is_safe_id(value)


@pytest.mark.parametrize(
    "value",
    ["", ".", "..", ".hidden", "a/b", "__x__", "____", "a" * (SAFE_ID_MAX_LENGTH + 1), "a b", "é", "a\n"],
)
def test_ids_firestore_refuses_or_that_would_read_badly(value: str) -> None:
    """Firestore forbids `/`, `.` and `..` and `__name__` ids; a leading dot is refused too."""
    assert not is_safe_id(value)


@given(st.text(alphabet="ab._-:@/ __", max_size=8) | st.text(max_size=130))
def test_the_contracts_pattern_is_the_same_rule(value: str) -> None:
    assert (re.fullmatch(SAFE_ID_PATTERN, value) is not None) == is_safe_id(value)
