"""Numbers parsed from wire text: ASCII digits only, whatever unicode arrives."""

import string

from hypothesis import given
from hypothesis import strategies as st

from qjobs.numbers import INT64_MAX, ascii_natural


@given(st.text())
def test_any_text_is_a_number_only_when_it_is_ascii_digits(text: str) -> None:
    parsed = ascii_natural(text)
    if parsed is None:
        assert not (0 < len(text) <= 18 and all(c in string.digits for c in text))
    else:
        assert all(c in string.digits for c in text) and parsed == int(text)


@given(st.text(alphabet=st.characters(categories=["Nd", "No", "Nl"]), min_size=1))
def test_digits_of_other_scripts_are_never_read(text: str) -> None:
    if not all(c in string.digits for c in text):
        assert ascii_natural(text) is None


@given(st.integers(min_value=0, max_value=10**18 - 1))
def test_every_count_up_to_18_digits_reads_back_and_fits_firestore(number: int) -> None:
    assert ascii_natural(str(number)) == number <= INT64_MAX


def test_absent_empty_and_too_long_are_no_number() -> None:
    assert [ascii_natural(v) for v in (None, "", "1" * 19, "٣", "²")] == [None] * 5
