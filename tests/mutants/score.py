"""`make mutants`, after `mutmut run`: the score, and every mutant no test killed.

mutmut keeps its results in `mutants/`; this asks mutmut for them (`export-cicd-stats`,
`results`), prints killed / total, and lists each survivor with the diff that made it. A
survivor is acceptable only when docs/testing.md names it in its table of equivalent
mutants (with why it cannot change behaviour); any other survivor, or a score under
`FLOOR`, fails the run. Names carry a number per function, so a table entry goes stale
when its function changes: the run then fails, and the entry is looked at again.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "testing.md"
FLOOR = 0.90
"""The share of mutants a test must kill (a mutant that made the tests run out of time counts)."""
STATUS = re.compile(r"^\s*(?P<name>\S+): (?P<status>.+)$")


def mutmut(*arguments: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "mutmut", *arguments], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return run.stdout


def listed_as_equivalent() -> set[str]:
    """The mutant names in docs/testing.md's table of equivalent mutants (in backticks)."""
    return set(re.findall(r"^\| `[^`]+` \| `([^`]+__mutmut_\d+)` \|", DOCS.read_text(), re.MULTILINE))


def main() -> int:
    mutmut("export-cicd-stats")
    stats = json.loads((ROOT / "mutants" / "mutmut-cicd-stats.json").read_text())
    caught = stats["killed"] + stats["timeout"]
    total = stats["total"]
    print(f"mutmut: {caught} / {total} mutants killed ({caught / total:.1%}; {stats['timeout']} by a timeout)")
    survivors = {
        match["name"]: match["status"]
        for line in mutmut("results").splitlines()
        if (match := STATUS.match(line)) and match["status"] != "killed" and match["status"] != "timeout"
    }
    unchecked = [name for name, status in survivors.items() if status == "not checked"]
    if unchecked:
        print(f"mutmut: {len(unchecked)} mutants were not checked: the run did not finish", file=sys.stderr)
        return 1
    equivalent = listed_as_equivalent()
    unexplained = sorted(name for name in survivors if name not in equivalent)
    for name in unexplained:
        print(f"\n{name}: {survivors[name]}\n{mutmut('show', name).strip()}", flush=True)
    stale = sorted(equivalent - set(survivors))
    if stale:
        print(f"\nmutmut: listed as equivalent in docs/testing.md but killed or gone: {', '.join(stale)}")
    print(f"mutmut: {len(survivors) - len(unexplained)} survivors listed as equivalent, {len(unexplained)} not")
    if caught / total < FLOOR or unexplained:
        print(f"mutmut: below {FLOOR:.0%}, or a survivor docs/testing.md does not explain", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
