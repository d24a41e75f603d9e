"""`make eval-memory`: how well an `Extractor` finds the preferences in real user turns.

The data is ../shared/data/sgd-travel-cases.jsonl (Schema-Guided Dialogue user turns, CC BY-SA 4.0;
its README says how it was labelled); it is read from there, never copied into the project. Each
utterance is given to the extractor as one user message and scored as the data's README says: a
statement counts when its category and value match an expected one, and any other statement in a
category the data labels is a false positive, unless the turn marks that category unscored. The data
labels no `remove` (a withdrawal), so every `remove` it is given is counted, and shown.

The file is split by dialogue: sha256 of the id up to its last `:`, mod 10 < 3, is the check set,
never looked at while tuning; the rest is the tuning set. Both are reported, then the conversation
set (evals/conversations.py: whole conversations, scored on the memory they leave, which single
turns cannot show). A tool, not a test: it prints figures and asserts nothing.

    make eval-memory                             # both sets by category, then the conversation set
    make eval-memory ARGS="--show misses --category budget --set tune --limit 30"
"""

import argparse
import hashlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals import conversations
from qjobs.memory.extract import Extractor, RuleExtractor, Statement

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "sgd-travel-cases.jsonl"


@dataclass(frozen=True)
class Expected:
    category: str
    value: Any
    tier: str

    def key(self) -> tuple[str, str]:
        return self.category, canonical(self.value)


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    kind: str
    expect: tuple[Expected, ...]
    hard: frozenset[str]
    unscored: frozenset[str]

    @property
    def dialogue(self) -> str:
        return self.id.rsplit(":", 1)[0]

    @property
    def in_check_set(self) -> bool:
        return int(hashlib.sha256(self.dialogue.encode()).hexdigest(), 16) % 10 < 3


@dataclass
class Tally:
    """Counts of one scope (a category, a tier, everything)."""

    hits: int = 0
    misses: int = 0
    false_positives: int = 0

    @property
    def precision(self) -> float | None:
        said = self.hits + self.false_positives
        return self.hits / said if said else None

    @property
    def recall(self) -> float | None:
        wanted = self.hits + self.misses
        return self.hits / wanted if wanted else None


@dataclass
class Report:
    cases: int = 0
    overall: Tally = field(default_factory=Tally)
    by_category: dict[str, Tally] = field(default_factory=dict)
    by_tier: dict[str, Tally] = field(default_factory=dict)
    removes: list[tuple[Case, Statement]] = field(default_factory=list)
    misses: list[tuple[Case, Expected]] = field(default_factory=list)
    false_positives: list[tuple[Case, Statement]] = field(default_factory=list)
    unjudged: Counter[str] = field(default_factory=Counter)
    """Statements in categories this data does not label (seat, airlines ...), by category."""

    def category(self, name: str) -> Tally:
        return self.by_category.setdefault(name, Tally())

    def tier(self, name: str) -> Tally:
        return self.by_tier.setdefault(name, Tally())


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def load(path: Path) -> list[Case]:
    cases = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            expect = tuple(Expected(e["category"], e["value"], e["tier"]) for e in row["expect"])
            cases.append(
                Case(row["id"], row["text"], row["kind"], expect, frozenset(row["hard"]), frozenset(row["unscored"]))
            )
    return cases


def labelled_categories(cases: Iterable[Case]) -> frozenset[str]:
    """The categories the data judges: those it expects or marks hard somewhere."""
    found: set[str] = set()
    for case in cases:
        found |= {expected.category for expected in case.expect} | case.hard
    return frozenset(found)


def score(extractor: Extractor, cases: Sequence[Case], labelled: frozenset[str]) -> Report:
    report = Report(cases=len(cases))
    for case in cases:
        score_case(report, case, extractor.extract(case.text), labelled)
    return report


def score_case(report: Report, case: Case, statements: list[Statement], labelled: frozenset[str]) -> None:
    open_expected = list(case.expect)
    for statement in statements:
        if statement.op == "remove":
            report.removes.append((case, statement))
        if statement.category not in labelled:
            report.unjudged[statement.category] += 1
            continue
        if statement.category in case.unscored:
            continue
        match = next(
            (e for e in open_expected if statement.op != "remove" and e.key() == key_of(statement)),
            None,
        )
        if match is None:
            report.false_positives.append((case, statement))
            for tally in (report.overall, report.category(statement.category)):
                tally.false_positives += 1
            continue
        open_expected.remove(match)
        for tally in (report.overall, report.category(match.category), report.tier(match.tier)):
            tally.hits += 1
    for expected in open_expected:
        report.misses.append((case, expected))
        for tally in (report.overall, report.category(expected.category), report.tier(expected.tier)):
            tally.misses += 1


def key_of(statement: Statement) -> tuple[str, str]:
    return statement.category, canonical(statement.value)


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:5.1f}%"


def print_report(name: str, report: Report) -> None:
    overall = report.overall
    print(f"\n{name}: {report.cases} turns")
    print(f"  overall    precision {percent(overall.precision)}  recall {percent(overall.recall)}", end="")
    print(f"   ({overall.hits} found, {overall.misses} missed, {overall.false_positives} wrong)")
    for tier in sorted(report.by_tier):
        print(f"  {tier:<10} recall {percent(report.by_tier[tier].recall)}")
    print(f"  removes    {len(report.removes)} in any category (the data labels none)")
    print(f"  {'category':<14}{'precision':>10}{'recall':>9}{'found':>7}{'missed':>8}{'wrong':>7}")
    for category in sorted(report.by_category):
        tally = report.by_category[category]
        print(
            f"  {category:<14}{percent(tally.precision):>10}{percent(tally.recall):>9}"
            f"{tally.hits:>7}{tally.misses:>8}{tally.false_positives:>7}"
        )
    if report.unjudged:
        print("  not judged by this data: " + ", ".join(f"{c} {n}" for c, n in sorted(report.unjudged.items())))


def print_examples(report: Report, what: str, category: str | None, limit: int) -> None:
    if what == "misses":
        rows = [(case, f"missed {e.category}={canonical(e.value)} ({e.tier})") for case, e in report.misses]
    else:
        chosen = report.removes if what == "removes" else report.false_positives
        rows = [(case, f"{s.op} {s.category}={canonical(s.value)}") for case, s in chosen]
    if category:
        rows = [(case, line) for case, line in rows if f" {category}=" in line]
    print(f"\n{what} ({len(rows)}{f', {category}' if category else ''}):")
    for case, line in rows[:limit]:
        print(f"  {line:<48} {case.text}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="eval-memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("MEMORY_EVAL_DATA") or DEFAULT_DATA))
    parser.add_argument("--set", choices=("check", "tune", "both"), default="both")
    parser.add_argument(
        "--show",
        choices=("misses", "wrong", "removes"),
        help="list examples from the tuning set (misses: and every conversation's mismatches)",
    )
    parser.add_argument("--category", help="only examples of this category")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--conversations", type=Path, default=conversations.DEFAULT_DATA)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, extractor: Extractor | None = None) -> int:
    args = parse_args(argv)
    if not args.data.exists():
        print(f"eval-memory: no data at {args.data} (set MEMORY_EVAL_DATA or --data)", file=sys.stderr)
        conversations.run(args.conversations, args.show == "misses", args.category)
        return 1
    cases = load(args.data)
    labelled = labelled_categories(cases)
    extractor = extractor or RuleExtractor()
    parts = {
        "tuning set": [case for case in cases if not case.in_check_set],
        "check set": [case for case in cases if case.in_check_set],
    }
    shown = {"check": ["check set"], "tune": ["tuning set"], "both": ["tuning set", "check set"]}[args.set]
    started = time.perf_counter()
    reports = {name: score(extractor, parts[name], labelled) for name in shown}
    elapsed = time.perf_counter() - started
    for name, report in reports.items():
        print_report(name, report)
    turns = sum(report.cases for report in reports.values())
    print(f"\nextraction: {elapsed / turns * 1e6:.0f} µs per turn ({turns} turns, scoring included)")
    if args.show:
        example_set = "check set" if args.set == "check" else "tuning set"
        print_examples(reports[example_set], args.show, args.category, args.limit)
    return conversations.run(args.conversations, args.show == "misses", args.category)


if __name__ == "__main__":
    sys.exit(main())
