"""`qjobs send PATH --body FILE|-|JSON`: one delivery, signed as QStash signs it, straight to
a service (no broker): for trying a job, or re-sending a body by hand. It prints the status,
the message id and the answer, and exits 1 unless the answer is 2xx.

The body is standard input for `-`, a file's bytes as they are (so a malformed body can be
sent on purpose), or else the argument itself, which must then be JSON.
"""

import argparse
import json
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from qjobs.cli.common import (
    CliError,
    Commands,
    Environment,
    UsageError,
    add_command,
    bounded_int,
    positive_seconds,
    print_json,
)
from qjobs.signature import delivery_headers


def add_parser(commands: Commands) -> None:
    parser = add_command(
        commands, "send", "sign a body as QStash does and POST it straight to the service", __doc__ or ""
    )
    parser.add_argument("path", metavar="PATH", type=job_path, help="the job's path, e.g. /api/jobs/memory-sync")
    parser.add_argument("--body", required=True, help="a JSON file, - for standard input, or the JSON text itself")
    parser.add_argument("--service", help="the service's base URL (default: $JOBS_BASE_URL; one of them is required)")
    parser.add_argument("--message-id", help="Upstash-Message-Id (default: a fresh msg_...; reuse one to send a copy)")
    parser.add_argument("--retried", type=bounded_int(0), default=0, help="Upstash-Retried (default 0)")
    parser.add_argument("--signed-url", help="the URL to sign, when not the one sent to (a service behind a proxy)")
    parser.add_argument("--timeout", type=positive_seconds, default=60, help="seconds to wait for the answer")
    parser.add_argument("--json", action="store_true", help="print {status, messageId, answer} as JSON")
    parser.set_defaults(run=run)


def job_path(value: str) -> str:
    """An argparse `type`: a path on the service, which starts with `/` (without it, the
    URL would name another host or port: `http://127.0.0.1:8080api/...`)."""
    if not value.startswith("/"):
        raise argparse.ArgumentTypeError(f"must start with /, as /api/jobs/memory-sync does, not {value!r}")
    return value


def read_body(argument: str) -> bytes:
    """The body to send. Raises UsageError when the argument is neither a readable file nor
    JSON, or names a file that cannot be read."""
    if argument == "-":
        return sys.stdin.buffer.read()
    path = Path(argument)
    if path.is_file():
        try:
            return path.read_bytes()
        except OSError as error:
            raise UsageError(f"argument --body: cannot read the file {argument}: {error.strerror}") from None
    try:
        json.loads(argument)
    except json.JSONDecodeError as error:
        raise UsageError(
            f"argument --body: not JSON and not a readable file ({error.msg} at column {error.colno}; "
            "no file of that name)"
        ) from None
    return argument.encode()


def build_request(
    url: str, body: bytes, *, key: str, message_id: str, retried: int = 0, signed_url: str | None = None
) -> urllib.request.Request:
    signed = delivery_headers(body, url=signed_url or url, key=key, message_id=message_id, retried=retried)
    headers = {"Content-Type": "application/json", **signed}
    return urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - the operator's URL


def send(request: urllib.request.Request, timeout: float) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as error:
        raise CliError(f"cannot reach {request.full_url}: {getattr(error, 'reason', error)}") from None


def run(args: argparse.Namespace, env: Environment) -> int:
    body = read_body(args.body)  # bad usage, found before anything else
    url = env.service(args.service) + args.path
    message_id = args.message_id or f"msg_{uuid.uuid4().hex}"
    request = build_request(
        url,
        body,
        key=env.signing_key(),
        message_id=message_id,
        retried=args.retried,
        signed_url=args.signed_url,
    )
    status, text = send(request, args.timeout)
    if args.json:
        try:
            answer: object = json.loads(text)
        except json.JSONDecodeError:
            answer = text
        print_json({"status": status, "messageId": message_id, "answer": answer})
    else:
        print(f"{status} {message_id}")
        print(text)
    return 0 if 200 <= status < 300 else 1
