"""`qjobs send PATH --body FILE|-`: one delivery, signed as QStash signs it, straight to a
service (no broker): for trying a job, or re-sending a body by hand."""

import argparse
import json
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from qjobs.cli.common import CliError, Commands, Environment, add_command, print_json
from qjobs.signature import delivery_headers


def add_parser(commands: Commands) -> None:
    parser = add_command(commands, "send", "sign a body as QStash does and POST it straight to the service", __doc__)
    parser.add_argument("path", help="the job's path, e.g. /api/jobs/memory-sync")
    parser.add_argument("--body", required=True, help="a JSON file, - for standard input, or the JSON text itself")
    parser.add_argument(
        "--service", help="the service's base URL (default: $JOBS_BASE_URL, else http://127.0.0.1:8080)"
    )
    parser.add_argument("--message-id", help="Upstash-Message-Id (default: a fresh msg_...; reuse one to send a copy)")
    parser.add_argument("--retried", type=int, default=0, help="Upstash-Retried (default 0)")
    parser.add_argument("--signed-url", help="the URL to sign, when not the one sent to (a service behind a proxy)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for the answer")
    parser.add_argument("--json", action="store_true", help="print {status, messageId, answer} as JSON")
    parser.set_defaults(run=run)


def read_body(argument: str) -> bytes:
    if argument == "-":
        return sys.stdin.buffer.read()
    if argument.lstrip().startswith(("{", "[")):
        return argument.encode()
    try:
        return Path(argument).read_bytes()
    except OSError as error:
        raise CliError(f"cannot read the body from {argument}: {error.strerror}") from None


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
    if not args.path.startswith("/"):
        raise CliError(f"the path must start with /, as /api/jobs/memory-sync does, not {args.path!r}")
    url = env.service(args.service) + args.path
    message_id = args.message_id or f"msg_{uuid.uuid4().hex}"
    request = build_request(
        url,
        read_body(args.body),
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
