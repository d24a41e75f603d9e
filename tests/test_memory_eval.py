"""`make eval-memory`'s scoring, on cases written here (the real data is scored by the tool,
never by the tests: it prints figures and has no threshold)."""

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from evals.conversations import DEFAULT_DATA as CONVERSATIONS
from evals.conversations import Conversation, derive
from evals.conversations import load as load_conversations
from evals.conversations import print_report as print_conversations
from evals.conversations import problems as conversation_problems
from evals.conversations import score as score_conversations
from evals.memory import Case, Expected, labelled_categories, load, main, score
from qjobs.memory import pages
from qjobs.memory.extract import Basis, Op, Statement


class Scripted:
    """An Extractor that answers what each text is scripted to: the scorer is what is tested."""

    def __init__(self, answers: dict[str, list[Statement]]) -> None:
        self.answers = answers

    def extract(self, text: str) -> list[Statement]:
        return self.answers.get(text, [])


def case(
    text: str,
    expect: Sequence[tuple[str, Any, str]] = (),
    hard: Iterable[str] = (),
    unscored: Iterable[str] = (),
) -> Case:
    expected = tuple(Expected(category, value, tier) for category, value, tier in expect)
    return Case(
        f"train/d.json:{text}:1",
        text,
        "positive" if expect else "negative",
        expected,
        frozenset(hard),
        frozenset(unscored),
    )


def said(category: str, value: Any, op: Op = "set") -> Statement:
    return Statement(category, op, value, 0.9, "text")


def test_hits_misses_false_positives_unscored_and_unjudged_are_counted_apart() -> None:
    cases = [
        case("economy please", [("cabinClass", "economy", "direct"), ("homeAirport", "SFO", "proxy")]),
        case("is it pricey?", hard={"budget"}),
        case("somewhere cheap", [("budget", {"level": "budget"}, "proxy")], unscored={"accommodation"}),
        case("not vegan any more", [("dietary", "vegetarian", "direct")]),
    ]
    extractor = Scripted(
        {
            "economy please": [said("cabinClass", "economy"), said("airlines", {"airline": "delta"})],
            "is it pricey?": [said("budget", {"level": "luxury"})],
            "somewhere cheap": [said("budget", {"level": "budget"}), said("accommodation", "hotel")],
            "not vegan any more": [said("dietary", "vegan", "remove")],
        }
    )
    report = score(extractor, cases, labelled_categories(cases) | {"accommodation"})
    assert (report.overall.hits, report.overall.misses, report.overall.false_positives) == (2, 2, 2)
    assert report.by_tier["direct"].recall == 0.5 and report.by_tier["proxy"].recall == 0.5
    assert report.by_category["budget"].precision == 0.5
    assert [s.value for _, s in report.removes] == ["vegan"]
    assert dict(report.unjudged) == {"airlines": 1}, "a category the data does not label is not charged"


def test_a_remove_never_counts_as_finding_what_was_expected() -> None:
    cases = [case("vegan", [("dietary", "vegan", "direct")])]
    report = score(Scripted({"vegan": [said("dietary", "vegan", "remove")]}), cases, frozenset({"dietary"}))
    assert (report.overall.hits, report.overall.misses, report.overall.false_positives) == (0, 1, 1)


def test_the_check_set_is_chosen_by_dialogue() -> None:
    first, second = (
        Case("train/x.json:7_00001:2", "", "", (), frozenset(), frozenset()),
        Case("train/x.json:7_00001:9", "", "", (), frozenset(), frozenset()),
    )
    digest = int(hashlib.sha256(b"train/x.json:7_00001").hexdigest(), 16)
    assert first.in_check_set == second.in_check_set == (digest % 10 < 3)


def test_the_tool_reports_both_sets_from_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"id": f"train/d.json:{n}_0000{n}:0", "text": "Find me economy flights.", "kind": "positive",
         "expect": [{"category": "cabinClass", "value": "economy", "tier": "direct", "from": "x"}],
         "hard": [], "unscored": []}
        for n in range(20)
    ]  # fmt: skip
    data = tmp_path / "cases.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert [c.expect[0].category for c in load(data)] == ["cabinClass"] * 20
    assert main(["--data", str(data), "--show", "misses"]) == 0
    out = capsys.readouterr().out
    assert "tuning set:" in out and "check set:" in out and "recall 100.0%" in out and "misses (0" in out


def test_without_the_data_the_tool_says_where_it_looked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(tmp_path / "nowhere.jsonl")]) == 1
    assert "no data at" in capsys.readouterr().err


# ---------------------------------------------------------------- the conversation set


def conversation(expect: dict[str, Any], conversation_id: str = "c1") -> Conversation:
    full = {"preferences": {}, "companions": {}, "destinations": {}, "recentChoice": {}, "plans": [], **expect}
    return Conversation(conversation_id, (("user", "hi"), ("assistant", "hello")), full)


def memory(**derived: Any) -> dict[str, Any]:
    return {"preferences": {}, "companions": {}, "destinations": {}, "recentChoice": {}, "plans": [], **derived}


def row(conversation_id: str = "c1", **expect: Any) -> dict[str, Any]:
    messages = [{"role": role, "content": "text"} for role in ("user", "assistant") * 2]
    return {"id": conversation_id, "messages": messages, "expect": expect}


def test_the_conversation_scorer_counts_one_fact_per_item_facet_and_place() -> None:
    expected = conversation(
        {
            "preferences": {
                "dietary": ["vegan", "halal"],
                "seat": "aisle",
                "budget": {"amount": 4000, "currency": "EUR", "per": "trip", "level": "mid_range"},
                "airlines": {"prefer": ["delta"], "avoid": ["spirit"]},
            },
            "companions": {"partner": {"dietary": ["gluten_free"]}},
            "destinations": {"love": ["São Paulo"], "avoid": ["Paris"]},
            "recentChoice": {"seat": "window"},
            "plans": ["St. Lucia", "Lisbon"],
        }
    )
    derived = memory(
        preferences={
            "dietary": ["vegan"],
            "seat": "window",
            "budget": {"amount": 4000.0, "currency": "USD", "per": "trip"},
            "airlines": {"prefer": ["delta"], "avoid": []},
        },
        companions={"partner": {"dietary": ["gluten_free"]}, "son": {"seat": "window"}},
        destinations={"love": ["sao paulo"], "avoid": []},
        recentChoice={},
        plans=["Saint Lucia", "Boston"],
    )
    report = score_conversations([expected], lambda _: derived)
    counts = {kind: (c.found, c.missed, c.wrong) for kind, c in report.by_kind.items()}
    assert counts == {
        # vegan, delta and amount 4000 (= 4000.0) and trip found; halal, aisle, EUR, mid_range, spirit missed
        "preferences": (4, 5, 2),
        "companions": (1, 0, 1),
        "destinations": (1, 1, 0),
        "recentChoice": (0, 1, 0),
        "plans": (1, 1, 1),
    }
    assert (report.overall.found, report.overall.missed, report.overall.wrong) == (7, 8, 4)
    assert report.exact == 0 and report.by_kind["companions"].precision == 0.5
    [mismatch] = report.mismatches
    assert mismatch.missing["preferences"] == {
        ("dietary", "halal"), ("seat", "aisle"), ("budget", "currency", "EUR"), ("budget", "level", "mid_range"),
        ("airlines", "avoid", "spirit"),
    }  # fmt: skip
    assert mismatch.extra["preferences"] == {("seat", "window"), ("budget", "currency", "USD")}
    assert mismatch.extra["companions"] == {("son", "seat", "window")}


def test_a_conversation_whose_memory_matches_in_every_kind_is_an_exact_match() -> None:
    same = {"preferences": {"seat": "aisle"}, "plans": ["Lisbon"]}
    other = {"preferences": {"seat": "aisle"}, "plans": ["Lisbon"], "recentChoice": {"seat": "window"}}
    report = score_conversations(
        [conversation(same, "a"), conversation(other, "b")],
        lambda c: memory(preferences={"seat": "aisle"}, plans=["lisbon"]),
    )
    assert report.exact == 1 and [m.conversation for m in report.mismatches] == ["b"]
    assert report.by_kind["recentChoice"].recall == 0.0 and report.by_kind["recentChoice"].precision is None


def test_without_a_gazetteer_plans_are_not_scored(capsys: pytest.CaptureFixture[str]) -> None:
    report = score_conversations(
        [conversation({"plans": ["Lisbon"], "preferences": {"seat": "aisle"}})],
        lambda _: memory(preferences={"seat": "aisle"}, plans=None),
    )
    assert not report.places and report.exact == 1
    assert (report.overall.found, report.overall.missed) == (1, 0), "plans are left out of the totals"
    print_conversations(report)
    assert "places not available" in capsys.readouterr().out


def test_the_memory_is_derived_by_the_jobs_folds_per_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    def said_by(category: str, value: Any, basis: Basis = "stated", holder: str = "self", op: Op = "set") -> Statement:
        return Statement(category, op, value, 0.9, "text", basis, holder)

    script = {
        "I always fly aisle, my wife is vegan": [
            said_by("seat", "aisle"),
            said_by("dietary", "vegan", holder="wife", op="add"),
        ],
        "window this time, on Delta, I love Lisbon": [
            said_by("seat", "window", "choice"),
            said_by("airlines", {"airline": "delta", "stance": "prefer"}, "choice", op="add"),
            said_by("destinations", {"place": "Lisbon", "stance": "love"}, op="add"),
        ],
        "never Spirit; she's lovely": [
            said_by("airlines", {"airline": "spirit", "stance": "avoid"}, op="add"),
            said_by("dietary", "halal", holder="unknown", op="add"),
        ],
        "ok, Spirit then, around 300 euros": [
            said_by("airlines", {"airline": "spirit", "stance": "prefer"}, "choice", op="add"),
            said_by("budget", {"amount": 300, "currency": "EUR", "per": "trip"}, "choice"),
        ],
    }
    monkeypatch.setattr(pages, "EXTRACTOR", Scripted(script))
    turns = [("user", text) for text in script]
    derived = derive(Conversation("c", (turns[0], ("assistant", "I always fly aisle"), *turns[1:]), {}))
    assert derived["preferences"] == {
        "seat": "aisle",
        "airlines": {"prefer": ["delta"], "avoid": ["spirit"]},
        "budget": {"amount": 300, "currency": "EUR", "per": "trip"},
    }
    assert derived["companions"] == {"wife": {"dietary": ["vegan"]}}, "an unknown holder is nobody's"
    assert derived["destinations"] == {"love": ["Lisbon"], "avoid": []}
    assert derived["recentChoice"] == {"seat": "window", "airlines": {"prefer": ["spirit"]}}


def test_every_conversation_in_the_set_is_valid() -> None:
    rows = [json.loads(line) for line in CONVERSATIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert [problem for r in rows for problem in conversation_problems(r)] == []
    loaded = load_conversations(CONVERSATIONS)
    assert len(loaded) >= 30
    assert len({c.id for c in loaded}) == len(loaded)
    assert all({role for role, _ in c.messages} == {"user", "assistant"} for c in loaded)
    assert all(4 <= len(c.messages) <= 20 for c in loaded)


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (row(preferences={"seats": "aisle"}), "unknown category seats"),
        (row(preferences={"seat": "middle"}), "unknown value 'middle'"),
        (row(preferences={"dietary": "vegan"}), "a non-empty list"),
        (row(preferences={"budget": {"amount": 100, "currency": "XYZ"}}), "budget: currency 'XYZ'"),
        (row(preferences={"airlines": {"prefer": ["acme air"]}}), "unknown airline"),
        (row(preferences={"homeAirport": "Boston"}), "no IATA code"),
        (row(preferences={"hotelClass": 6}), "not 1 to 5 stars"),
        (row(companions={"neighbour": {"seat": "aisle"}}), "unknown relation neighbour"),
        (row(destinations={"like": ["Rome"]}), "a map of love / avoid"),
        (row(plans="Rome"), "not a list of place names"),
        (row(recentChoice={"destinations": {"love": ["Rome"]}}, surprise={}), "unknown kind surprise"),
        ({**row(), "messages": [{"role": "user", "content": "hi"}]}, "needs 4 to 20 messages"),
        (
            {**row(), "messages": [{"role": "system", "content": "x"}, *row()["messages"][1:]]},
            "message 0: needs a role",
        ),
    ],
)
def test_a_row_the_set_cannot_use_is_refused(tmp_path: Path, bad: dict[str, Any], problem: str) -> None:
    assert any(problem in found for found in conversation_problems(bad)), conversation_problems(bad)
    path = tmp_path / "conversations.jsonl"
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=re.escape(problem)):
        load_conversations(path)


def test_a_conversation_id_is_used_once(tmp_path: Path) -> None:
    path = tmp_path / "conversations.jsonl"
    path.write_text(json.dumps(row("same")) + "\n" + json.dumps(row("same")) + "\n")
    with pytest.raises(ValueError, match="ids used more than once: same"):
        load_conversations(path)


def test_the_tool_prints_the_conversation_set_after_its_sets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "conversations.jsonl"
    chat = [
        {"role": "user", "content": "Find me an aisle seat to Lisbon."},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "Thanks!"},
        {"role": "assistant", "content": "Enjoy."},
    ]
    path.write_text(json.dumps({"id": "tiny", "messages": chat, "expect": {"preferences": {"seat": "window"}}}) + "\n")
    assert main(["--data", str(tmp_path / "nowhere.jsonl"), "--conversations", str(path), "--show", "misses"]) == 1
    out = capsys.readouterr().out
    assert "conversation set: 1 conversations, 4 messages, 1 expected facts" in out
    assert "tiny" in out and "- preferences   seat window" in out
