"""Running `qjobs` in the test process, as its console script would, and reading what it said."""

import io
import json
from dataclasses import dataclass
from typing import Any

import pytest

from qjobs.cli import main


@dataclass(frozen=True)
class Ran:
    status: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def qjobs(capsys: pytest.CaptureFixture[str], *argv: str, stdin: str | None = None) -> Ran:
    """The command's exit status (argparse's SystemExit included) and its two outputs; `stdin`
    is what the operator types."""
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        if stdin is not None:
            patch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
        try:
            status = main(list(argv))
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return Ran(status, out, err)


def one_line_error(ran: Ran) -> str:
    """The error a failed command printed, checked to be one line and to name qjobs."""
    assert ran.status == 1 and ran.out == "", ran
    lines = ran.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("qjobs: error: "), ran.err
    return lines[0]


def bad_usage(ran: Ran) -> str:
    """What a command refused as bad usage said, checked to be argparse's form (the usage,
    then the complaint) with exit status 2 and nothing on standard output."""
    assert ran.status == 2 and ran.out == "" and ran.err.startswith("usage: qjobs"), ran
    return " ".join(ran.err.split())
