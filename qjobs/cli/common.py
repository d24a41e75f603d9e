"""What every command shares: the environment it finds the service's parts through, its
one-line errors and exit codes, and printing data as a table or as JSON."""

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

import httpx
from google.api_core import exceptions
from google.cloud import firestore
from qstash import QStash

from qjobs.config import DEV_CURRENT_SIGNING_KEY
from qjobs.devtools.run_local import ENV_FILE
from qjobs.firestore_client import BoundedClient, RpcBudget
from qjobs.safe_id import is_safe_id

DEFAULT_QSTASH = "https://qstash.upstash.io"
TIMEOUT_VARIABLE = "QJOBS_TIMEOUT_SECONDS"
DEFAULT_TIMEOUT_SECONDS = 10.0
"""How long a command waits for Firestore or QStash, retries included, before it says which
of them it cannot reach: an operator learns of an outage in seconds, not minutes."""
FIRESTORE_UNREACHABLE = (exceptions.RetryError, exceptions.ServiceUnavailable, exceptions.DeadlineExceeded)
"""What the Firestore client raises when no answer came within the timeout (RetryError:
the retries of an unavailable server ran out of time)."""
WHERE_VARIABLES = ("FIRESTORE_EMULATOR_HOST", "QSTASH_URL", "QSTASH_TOKEN", "JOBS_BASE_URL")
"""The variables that say where the service's parts are. With none of them set, the
`.emulator/env` of a `make run` in the current folder is read instead."""
USE_LOCAL_RUN = f"`export $(cat {ENV_FILE})`"


Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_command(commands: Commands, name: str, help_text: str, description: str) -> argparse.ArgumentParser:
    """A command listed with `help_text` under its parent, whose own `--help` shows
    `description` as written (its line breaks kept). The parser is kept in the parsed
    arguments as `command_parser`, so that a value found bad only once the command runs is
    reported the way argparse reports its own (usage, then the complaint; exit status 2)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.set_defaults(command_parser=parser)
    return parser


class CliError(Exception):
    """A failure the command reports in one line and exit status 1."""


class UsageError(Exception):
    """A bad value found once the command runs (a body that is neither JSON nor a file, a bad
    setting): reported as argparse reports bad usage, with exit status 2, before anything
    is read or sent."""


def bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse `type`: a whole number from `low` (to `high`, if given)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low or (high is not None and value > high):
            wanted = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {text!r}")
        return value

    return parse


def positive_seconds(text: str) -> float:
    """Seconds above 0, finite: an argparse `type`, and the reading of QJOBS_TIMEOUT_SECONDS.

    Raises argparse.ArgumentTypeError."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text!r}")
    return value


@dataclass(frozen=True)
class Environment:
    """The same variables the service and the SDK read."""

    variables: Mapping[str, str]
    note: str | None = None
    """Where the variables came from, when not from the environment alone: said once."""

    @classmethod
    def current(cls) -> "Environment":
        """The process's environment; or, when none of WHERE_VARIABLES is set and a `make run`
        in the current folder left its `.emulator/env`, that file's variables over it. All
        of the file or none of it: a variable set by hand means the operator chose where to
        look, and half of one run's settings with half of another's points at nothing."""
        environ = dict(os.environ)
        local_run = Path(ENV_FILE)
        if any(environ.get(name) for name in WHERE_VARIABLES) or not local_run.is_file():
            return cls(environ)
        lines = local_run.read_text().splitlines()
        found = dict(line.split("=", 1) for line in lines if "=" in line)
        os.environ.update(found)  # as `export $(cat .emulator/env)` would: the clients read it too
        note = f"none of {', '.join(WHERE_VARIABLES)} is set: using {ENV_FILE}, the make run of this folder"
        return cls({**environ, **found}, note)

    def local_run_hint(self) -> str:
        """How to point at the `make run` of the current folder, when there is one."""
        return f" (the make run of this folder: {USE_LOCAL_RUN})" if Path(ENV_FILE).is_file() else ""

    def get(self, name: str, default: str = "") -> str:
        return self.variables.get(name) or default

    def timeout_seconds(self) -> float:
        """QJOBS_TIMEOUT_SECONDS (default 10): the most one call to Firestore or QStash may
        take, retries included. Raises UsageError when it is not seconds above 0."""
        text = self.get(TIMEOUT_VARIABLE)
        if not text:
            return DEFAULT_TIMEOUT_SECONDS
        try:
            return positive_seconds(text)
        except argparse.ArgumentTypeError as error:
            raise UsageError(f"{TIMEOUT_VARIABLE} {error}") from None

    def firestore(self) -> firestore.Client:
        """Firestore of GOOGLE_CLOUD_PROJECT (the emulator when FIRESTORE_EMULATOR_HOST is set),
        every call of which gives up within the timeout (the library's own retries of an
        unreachable server go on for minutes)."""
        return BoundedClient(RpcBudget(self.timeout_seconds()), project=self.get("GOOGLE_CLOUD_PROJECT") or None)

    def qstash(self) -> QStash:
        """The SDK's client for QSTASH_URL (QStash itself when unset), making one attempt per
        call that gives up within the timeout: its own retries (about 32 s) are off, since an
        operator can simply run the command again, and a publish retried after a lost answer
        could enqueue a job twice."""
        token = self.get("QSTASH_TOKEN")
        if not token:
            raise CliError(
                "QSTASH_TOKEN is required: the token of the QStash console (Request), "
                f"or for the broker of a make run, {USE_LOCAL_RUN} in its folder"
            )
        seconds = self.timeout_seconds()
        client = QStash(token, retry=False, base_url=self.get("QSTASH_URL") or None)
        # The SDK takes no timeout (it waits up to 600 s for an answer): its HTTP client's is set.
        client.http._client.timeout = httpx.Timeout(seconds)
        return client

    def firestore_unreachable(self, error: Exception) -> str:
        """The one line saying that Firestore did not answer in time, and where it was sought."""
        emulator = self.get("FIRESTORE_EMULATOR_HOST")
        where = (
            f"the Firestore emulator at {emulator} (FIRESTORE_EMULATOR_HOST)"
            if emulator
            else f"Firestore (project {self.get('GOOGLE_CLOUD_PROJECT') or 'of the credentials'})"
        )
        return f"cannot reach {where} within {self._timeout_text()}: {firestore_reason(error)}"

    def qstash_unreachable(self, error: httpx.TransportError) -> str:
        """The one line saying that QStash did not answer, where it was sought, and why: in
        time (a call is made once, so only a timeout took that long), or at all (a refused
        connection, an unknown host: at once)."""
        url = self.get("QSTASH_URL")
        where = f"QStash at {url} (QSTASH_URL)" if url else f"QStash at {DEFAULT_QSTASH}"
        if isinstance(error, httpx.TimeoutException):
            return f"cannot reach {where} within {self._timeout_text()}: no answer"
        return f"could not reach {where}: {str(error) or type(error).__name__}"

    def _timeout_text(self) -> str:
        return f"{self.timeout_seconds():g} s ({TIMEOUT_VARIABLE})"

    def service(self, given: str | None) -> str:
        """The service's base URL: `given` (--service), else JOBS_BASE_URL. There is no
        default: a delivery sent to a guessed address would say nothing of where it went."""
        url = given or self.get("JOBS_BASE_URL")
        if not url:
            raise CliError(
                "the service's URL is needed: --service URL, or JOBS_BASE_URL (its PUBLIC_BASE_URL; "
                f"for a make run, {USE_LOCAL_RUN} in its folder)"
            )
        return url.rstrip("/")

    def signing_key(self) -> str:
        return self.get("QSTASH_CURRENT_SIGNING_KEY", DEV_CURRENT_SIGNING_KEY)


def firestore_reason(error: Exception) -> str:
    """Why Firestore was unreachable, in a few words: gRPC's own message ends with the
    system's (`... Failed to connect to remote host: Connection refused`)."""
    last = error.cause if isinstance(error, exceptions.RetryError) and error.cause else error
    if isinstance(last, exceptions.DeadlineExceeded):
        return "no answer"
    message = str(getattr(last, "message", None) or last)
    return message.rsplit(": ", 1)[-1] or "unavailable"


def plain(value: Any) -> Any:
    """A value as JSON can hold it: times in RFC 3339, the rest as is."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Mapping):
        return {str(key): plain(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [plain(inner) for inner in value]
    return value


def print_json(data: Any) -> None:
    print(json.dumps(plain(data), indent=2, sort_keys=True, default=str))


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(column), *(len(line[n]) for line in cells)]) for n, column in enumerate(columns)]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True)).rstrip())
    for line in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def print_fields(fields: Mapping[str, Any], indent: str = "") -> None:
    """A document, one field a line, maps indented."""
    for name in sorted(fields):
        value = fields[name]
        if isinstance(value, Mapping) and value:
            print(f"{indent}{name}:")
            print_fields(value, indent + "  ")
        else:
            print(f"{indent}{name}: {_cell(value)}")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return time_text(value)
    if isinstance(value, Mapping | list):
        return json.dumps(plain(value), separators=(",", ":"), sort_keys=True)
    return str(value)


def time_text(value: datetime) -> str:
    """A time as tables print it: UTC, to the second (`2026-11-29 01:12:30Z`)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def fail(message: str) -> int:
    print(f"qjobs: error: {message}", file=sys.stderr)
    return 1


def safe_id(value: str) -> str:
    """An argparse `type` for an id that goes into a document or URL path: a safe id.
    Anything else can be no such id (and `/`, `?` or `#` would address another resource),
    so it is refused as bad usage rather than looked up."""
    if not is_safe_id(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a safe id (1-128 letters, digits or _ - . : @, not starting with '.')"
        )
    return value
