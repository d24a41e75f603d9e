"""`qjobs`: the operator's command line (installed by `make` into .venv/bin, and in the image).

It finds Firestore and QStash through the same variables as the service and the SDK
(GOOGLE_CLOUD_PROJECT, FIRESTORE_EMULATOR_HOST, LEDGER_COLLECTION; QSTASH_TOKEN,
QSTASH_URL; JOBS_BASE_URL, QSTASH_CURRENT_SIGNING_KEY), and gives up on either after
QJOBS_TIMEOUT_SECONDS (default 10). With none of FIRESTORE_EMULATOR_HOST, QSTASH_URL,
QSTASH_TOKEN and JOBS_BASE_URL set, it reads the .emulator/env a `make run` in the current
folder left, and says so. Exit status: 0 done, 1 failed (an unknown id, or Firestore or
QStash unreachable, included), 2 bad usage (a bad option or value), 141 standard output
closed before all was printed (`| head`); an error is one line on standard error.
"""

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

import google.auth.exceptions
import httpx
from google.api_core import exceptions
from qstash.errors import QStashError

from qjobs.cli import dlq, erase, jobs, publishing, send
from qjobs.cli.common import FIRESTORE_UNREACHABLE, CliError, Environment, UsageError, fail


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="qjobs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = root.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (send, publishing, jobs, dlq, erase):
        module.add_parser(commands)
    return root


NO_CREDENTIALS = (
    "no Google credentials for Firestore: `gcloud auth application-default login`, "
    "or FIRESTORE_EMULATOR_HOST for the emulator"
)
EXIT_OUTPUT_CLOSED = 128 + 13
"""Standard output was closed before everything was printed (`qjobs jobs list | head -1`):
the status of a tool that SIGPIPE ended, which is what a shell's `pipefail` expects of
one. Python ignores SIGPIPE, so that a closed socket is an error rather than death; the
closed output is therefore caught where the command ends instead."""
REPORTED = (
    CliError,
    httpx.TransportError,
    QStashError,
    exceptions.GoogleAPIError,
    google.auth.exceptions.DefaultCredentialsError,
    KeyboardInterrupt,
)
"""What a command may fail with that is the operator's to know, in one line, exit status 1."""


def main(argv: list[str] | None = None) -> int:
    """The console script: the command's exit status; quietly EXIT_OUTPUT_CLOSED when its
    reader stopped reading (whatever was not printed is dropped, without a traceback)."""
    try:
        try:
            return command(argv)
        finally:
            sys.stdout.flush()  # output still buffered meets a closed pipe here, not at exit
    except BrokenPipeError:
        # Whatever is still buffered goes nowhere, so that the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OUTPUT_CLOSED


def command(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    env = Environment.current()
    if env.note:
        print(f"qjobs: {env.note}", file=sys.stderr)
    try:
        status: int = args.run(args, env)
    except UsageError as error:
        command: argparse.ArgumentParser = args.command_parser
        command.error(str(error))  # exits 2, as argparse does for its own checks
    except REPORTED as error:
        return fail(explained(error, env))
    return status


def explained(error: BaseException, env: Environment) -> str:
    """The one line that says what failed: which part could not be reached in time (checked
    before what a part answered, since the clients raise their timeouts as answers too)."""
    explanations: list[tuple[type[BaseException] | tuple[type[BaseException], ...], Callable[[Any], str]]] = [
        (httpx.TransportError, env.qstash_unreachable),
        (QStashError, lambda error: f"QStash answered: {(str(error).splitlines() or [type(error).__name__])[0]}"),
        (FIRESTORE_UNREACHABLE, env.firestore_unreachable),
        (exceptions.GoogleAPICallError, lambda error: f"Firestore answered: {error.message or type(error).__name__}"),
        (google.auth.exceptions.DefaultCredentialsError, lambda _: NO_CREDENTIALS + env.local_run_hint()),
        (KeyboardInterrupt, lambda _: "interrupted"),
    ]
    return next((say(error) for kind, say in explanations if isinstance(error, kind)), str(error))


if __name__ == "__main__":
    sys.exit(main())
