"""`qjobs dlq list|show|replay|delete`: QStash's dead-letter queue, through the qstash SDK
(QSTASH_TOKEN, and QSTASH_URL for the local broker): what QStash gave up on, and putting it
right once the cause is fixed.
"""

import argparse
import base64
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from qstash import QStash
from qstash.dlq import DlqFilter, DlqMessage
from qstash.errors import QStashError
from qstash.message import FlowControl, PublishResponse

from handlers import FAILURE_CALLBACK, ROUTES
from handlers.failure_callback import job_of
from qjobs.cli.common import (
    CliError,
    Commands,
    Environment,
    add_command,
    bounded_int,
    print_fields,
    print_json,
    print_table,
    safe_id,
)

OWN_HEADERS = ("content-type", "upstash-")
"""Headers a replay sets itself (its policy) rather than forwards."""
COLUMNS = ("dlqId", "messageId", "job", "status", "maxRetries", "createdAt")


LIST_DESCRIPTION = """\
Dead-lettered messages, oldest first: their dead-letter id, message id, job, the HTTP
status of the last answer, and when. A page holds at most --count; `more: --cursor ...`
says how to ask for the next one.
"""
SHOW_DESCRIPTION = """\
One dead-lettered message: where it was published, the last answer (status and its first
500 characters), its body and headers, and its failure callback.
"""
REPLAY_DESCRIPTION = """\
Publish the dead-lettered body again to its URL, with its job's retry policy, label and
failure callback as the publishing helpers set them today, but without a deduplication id:
a replay is a new message, and what keeps its effects from repeating is the job's business
key (notify-collaborators' `idempotencyKey`, memory-sync's cursor), not the transport.
Replay after fixing the cause: a message refused with 489 is refused again. The message
stays in the queue until `qjobs dlq delete`.
"""
DELETE_DESCRIPTION = """\
Remove a message from the dead-letter queue, once it was replayed or its cause dealt with.
"""


def add_parser(commands: Commands) -> None:
    parser = add_command(commands, "dlq", "QStash's dead-letter queue: list, show, replay, delete", __doc__ or "")
    verbs = parser.add_subparsers(dest="verb", metavar="list|show|replay|delete", required=True)
    listing = add_command(verbs, "list", "dead-lettered messages, oldest first", LIST_DESCRIPTION)
    listing.add_argument("--url", help="only those published to this URL")
    listing.add_argument("--label", help="only those with this label (the job's name)")
    listing.add_argument("--status", type=int, help="only those whose last answer had this HTTP status")
    listing.add_argument(
        "--count", type=bounded_int(1, 100), default=100, help="at most this many (default and most: 100)"
    )
    listing.add_argument("--cursor", help="where a previous list stopped")
    listing.add_argument("--json", action="store_true", help="print them as JSON")
    listing.set_defaults(run=run_list)
    for verb, help_text, description, run in (
        ("show", "one dead-lettered message", SHOW_DESCRIPTION, run_show),
        ("replay", "publish its body again, as a new message", REPLAY_DESCRIPTION, run_replay),
        ("delete", "remove it from the dead-letter queue", DELETE_DESCRIPTION, run_delete),
    ):
        command = add_command(verbs, verb, help_text, description)
        command.add_argument("dlq_id", metavar="DLQ_ID", type=safe_id)
        command.add_argument("--json", action="store_true", help="print the answer as JSON")
        command.set_defaults(run=run)


def summary(letter: DlqMessage) -> dict[str, Any]:
    return {
        "dlqId": letter.dlq_id,
        "messageId": letter.message_id,
        "job": job_of(letter.url),
        "url": letter.url,
        "status": letter.response_status,
        "maxRetries": letter.max_retries,
        "createdAt": datetime.fromtimestamp(letter.created_at / 1000, UTC) if letter.created_at else None,
        "label": letter.label,
        "answer": (letter.response_body or "")[:500],
    }


def fetch(client: QStash, dlq_id: str) -> DlqMessage:
    try:
        return client.dlq.get(dlq_id)
    except QStashError as error:
        raise CliError(f"no dead-lettered message {dlq_id} ({error})") from None


def run_list(args: argparse.Namespace, env: Environment) -> int:
    wanted = DlqFilter()
    if args.url:
        wanted["url"] = args.url
    if args.label:
        wanted["label"] = args.label
    if args.status is not None:
        wanted["response_status"] = args.status
    page = env.qstash().dlq.list(
        cursor=args.cursor,
        count=args.count,
        filter=wanted,
    )
    rows = [summary(letter) for letter in page.messages]
    if args.json:
        print_json({"messages": rows, "cursor": page.cursor})
        return 0
    if not rows:
        print("no dead-lettered message matches" if wanted else "the dead-letter queue is empty")
        return 0
    print_table(rows, COLUMNS)
    if page.cursor:
        print(f"more: --cursor {page.cursor}")
    return 0


def run_show(args: argparse.Namespace, env: Environment) -> int:
    letter = fetch(env.qstash(), args.dlq_id)
    shown = {
        **summary(letter),
        "body": letter.body,
        "headers": letter.headers,
        "failureCallback": letter.failure_callback,
    }
    if args.json:
        print_json(shown)
    else:
        print_fields(shown)
    return 0


def run_replay(args: argparse.Namespace, env: Environment) -> int:
    client = env.qstash()
    letter = fetch(client, args.dlq_id)
    body = base64.b64decode(letter.body_base64) if letter.body_base64 else (letter.body or "").encode()
    kept = letter.headers or {}
    headers = {name: values[0] for name, values in kept.items() if not name.lower().startswith(OWN_HEADERS)}
    content_type = next((values[0] for name, values in kept.items() if name.lower() == "content-type"), None)
    flow = letter.flow_control
    sent = client.message.publish(
        url=letter.url,
        body=body,
        content_type=content_type or "application/json",
        headers=headers or None,
        flow_control=FlowControl(key=flow.key, parallelism=flow.parallelism or 1) if flow and flow.key else None,
        **delivery_options(letter),
    )
    if not isinstance(sent, PublishResponse):
        raise CliError("QStash answered the replay as a URL group's publish")
    if args.json:
        print_json({"dlqId": args.dlq_id, "messageId": sent.message_id, "replayOf": letter.message_id})
    else:
        print(
            f"replayed {args.dlq_id} ({letter.message_id}) as {sent.message_id}; "
            f"`qjobs dlq delete {args.dlq_id}` removes it"
        )
    return 0


def delivery_options(letter: DlqMessage) -> dict[str, Any]:
    """How a replay is delivered: for a job this service runs, with the job's policy, label
    and failure callback as the publishing helpers set them today (the message may have been
    published by hand, or under an older policy); for another URL, as it was."""
    parts = urlsplit(letter.url)
    route = ROUTES.get(parts.path)
    policy = route.policy if route else None
    if route is None or policy is None:
        return {
            "retries": letter.max_retries,
            "retry_delay": letter.retry_delay_expression,
            "failure_callback": letter.failure_callback,
            "label": letter.label,
        }
    return {
        "retries": policy.retries,
        "retry_delay": policy.retry_delay,
        "timeout": policy.timeout_seconds,
        "failure_callback": letter.failure_callback or f"{parts.scheme}://{parts.netloc}{FAILURE_CALLBACK}",
        "label": letter.label or route.name,
    }


def run_delete(args: argparse.Namespace, env: Environment) -> int:
    client = env.qstash()
    fetch(client, args.dlq_id)
    client.dlq.delete(args.dlq_id)
    if args.json:
        print_json({"dlqId": args.dlq_id, "deleted": True})
    else:
        print(f"deleted {args.dlq_id} from the dead-letter queue")
    return 0
