"""What every command shares: the environment it finds the service's parts through, its
one-line errors and exit codes, and printing data as a table or as JSON."""

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeAlias

from google.cloud import firestore
from qstash import QStash

from qjobs.config import DEV_CURRENT_SIGNING_KEY

DEFAULT_SERVICE = "http://127.0.0.1:8080"


Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_command(commands: Commands, name: str, help_text: str, description: str | None) -> argparse.ArgumentParser:
    """A command whose `--help` shows its module's docstring as written."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    return parser


class CliError(Exception):
    """A failure the command reports in one line and exit status 1."""


@dataclass(frozen=True)
class Environment:
    """The same variables the service and the SDK read."""

    variables: Mapping[str, str]

    @classmethod
    def current(cls) -> "Environment":
        return cls(dict(os.environ))

    def get(self, name: str, default: str = "") -> str:
        return self.variables.get(name) or default

    def firestore(self) -> firestore.Client:
        """Firestore of GOOGLE_CLOUD_PROJECT (the emulator when FIRESTORE_EMULATOR_HOST is set)."""
        return firestore.Client(project=self.get("GOOGLE_CLOUD_PROJECT") or None)

    def qstash(self) -> QStash:
        token = self.get("QSTASH_TOKEN")
        if not token:
            raise CliError("QSTASH_TOKEN is required (QStash console; under make run, the token it prints)")
        return QStash(token, base_url=self.get("QSTASH_URL") or None)

    def service(self, given: str | None) -> str:
        return (given or self.get("JOBS_BASE_URL") or DEFAULT_SERVICE).rstrip("/")

    def signing_key(self) -> str:
        return self.get("QSTASH_CURRENT_SIGNING_KEY", DEV_CURRENT_SIGNING_KEY)


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
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    if isinstance(value, Mapping | list):
        return json.dumps(plain(value), separators=(",", ":"), sort_keys=True)
    return str(value)


def fail(message: str) -> int:
    print(f"qjobs: error: {message}", file=sys.stderr)
    return 1
