"""`make mutants`: put each deliberate bug of `catalogue.json` into a scratch copy of the
tree, one at a time, and run the tests that must catch it.

A guarantee no test defends can be broken by any rewrite without anyone noticing; this is
how the suite is checked for such holes. Each entry names the file, the exact text to
replace (it must occur once: a stale entry fails loudly), its replacement, and the pytest
arguments to run. Prints CAUGHT or SURVIVED per entry; exits 1 if any survived that is
not marked `"expected": "survives"` (with the reason why no test can see it).
"""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = Path(__file__).with_name("catalogue.json")
IGNORED_EVERYWHERE = shutil.ignore_patterns(".venv", ".git", ".emulator", "__pycache__", ".*_cache", ".hypothesis")


def ignored(directory: str, names: list[str]) -> set[str]:
    """What the scratch copy leaves out: caches and environments anywhere, and at the root
    mutmut's own scratch tree, `mutants/` (a copy of the sources whose tests would run too)."""
    left_out = IGNORED_EVERYWHERE(directory, names)
    if Path(directory) == ROOT and "mutants" in names:
        left_out.add("mutants")
    return left_out


def scratch_copy() -> Path:
    scratch = Path(tempfile.mkdtemp(prefix="qjobs-mutants-")) / "tree"
    shutil.copytree(ROOT, scratch, ignore=ignored)
    return scratch


def run_mutant(scratch: Path, mutant: dict[str, Any]) -> bool:
    """True when the tests caught the bug (they failed)."""
    path = scratch / mutant["file"]
    original = path.read_text()
    if original.count(mutant["old"]) != 1:
        raise SystemExit(f"mutants: {mutant['name']}: the text to replace is not in {mutant['file']} exactly once")
    path.write_text(original.replace(mutant["old"], mutant["new"]))
    try:
        command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *mutant["tests"]]
        run = subprocess.run(command, cwd=scratch, capture_output=True, text=True, timeout=900, check=False)
    finally:
        path.write_text(original)
    lines = run.stdout.strip().splitlines() or ["(no output)"]
    print(f"{'CAUGHT  ' if run.returncode else 'SURVIVED'} {mutant['name']}: {lines[-1]}", flush=True)
    return run.returncode != 0


def main(names: list[str]) -> int:
    mutants = [m for m in json.loads(CATALOGUE.read_text()) if not names or m["name"] in names]
    scratch = scratch_copy()
    try:
        unexpected = [m["name"] for m in mutants if not run_mutant(scratch, m) and m.get("expected") != "survives"]
    finally:
        shutil.rmtree(scratch.parent)
    if unexpected:
        print(f"mutants: no test caught {', '.join(unexpected)}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
