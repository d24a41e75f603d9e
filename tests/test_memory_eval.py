"""`make eval-memory`'s scoring, on cases written here (the real data is scored by the tool,
never by the tests: it prints figures and has no threshold)."""

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from evals.memory import Case, Expected, labelled_categories, load, main, score
from qjobs.memory.extract import Op, Statement


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
