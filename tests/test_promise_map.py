"""docs/testing.md's promise map names, for every rule the docs state, the tests that fail
without it: a renamed or deleted test must not leave a row pointing at nothing."""

import ast
import re

import pytest

from tests.support import ROOT

NAMED = re.compile(r"`(test_\w+\.py)::(test_\w+)`")


def promise_map() -> str:
    return (ROOT / "docs" / "testing.md").read_text().split("## Promise map", 1)[1]


def functions_of(module: str) -> set[str]:
    tree = ast.parse((ROOT / "tests" / module).read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def named_tests() -> list[tuple[str, str]]:
    return sorted(set(NAMED.findall(promise_map())))


def test_the_map_names_tests() -> None:
    assert len(named_tests()) > 100


@pytest.mark.parametrize(("module", "test"), [pytest.param(*named, id="::".join(named)) for named in named_tests()])
def test_every_test_the_map_names_exists(module: str, test: str) -> None:
    assert (ROOT / "tests" / module).exists(), f"no module tests/{module}"
    assert test in functions_of(module), f"tests/{module} has no {test}"


def test_every_row_names_a_test_or_where_its_tests_are() -> None:
    rows = [line for line in promise_map().splitlines() if line.startswith("| ") and not line.startswith("| rule")]
    for row in rows:
        tests = row.rstrip(" |").rsplit(" | ", 1)[-1]
        assert NAMED.search(tests) or "see " in tests or "not kept" in tests, row
