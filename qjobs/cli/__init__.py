"""`qjobs`: the operator's command line (installed by `make` into .venv/bin, and in the image).

It finds Firestore and QStash through the same variables as the service and the SDK
(GOOGLE_CLOUD_PROJECT, FIRESTORE_EMULATOR_HOST, LEDGER_COLLECTION; QSTASH_TOKEN,
QSTASH_URL; JOBS_BASE_URL, QSTASH_CURRENT_SIGNING_KEY). Exit status: 0 done, 1 failed
(an unknown id included), 2 bad usage; an error is one line on standard error.
"""

import argparse
import sys

import google.auth.exceptions
from google.api_core import exceptions
from qstash.errors import QStashError

from qjobs.cli import dlq, erase, jobs, publishing, send
from qjobs.cli.common import CliError, Environment, fail


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="qjobs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = root.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (send, publishing, jobs, dlq, erase):
        module.add_parser(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        status: int = args.run(args, Environment.current())
    except CliError as error:
        return fail(str(error))
    except QStashError as error:
        return fail(f"QStash answered: {str(error).splitlines()[0]}")
    except exceptions.GoogleAPICallError as error:
        return fail(f"Firestore answered: {error.message or type(error).__name__}")
    except google.auth.exceptions.DefaultCredentialsError:
        return fail(
            "no Google credentials for Firestore: `gcloud auth application-default login`, "
            "or FIRESTORE_EMULATOR_HOST for the emulator"
        )
    except KeyboardInterrupt:
        return fail("interrupted")
    return status


if __name__ == "__main__":
    sys.exit(main())
