"""`qjobs publish JOB --field ...`: enqueue a job through QStash (or the local broker) with
the publishing helpers, so with the job's retry policy, deduplication and failure callback.

There is one flag per payload field, made from the job's own model (`tripId` is
`--trip-id`; a list takes several values), so a field added to a job is a flag at once.
A value the model refuses is bad usage of its flag, found before anything is sent.
"""

import argparse
import dataclasses
import re
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from handlers.memory_sync import MemorySyncPayload
from handlers.notify_collaborators import NotifyCollaboratorsPayload
from qjobs.cli.common import CliError, Commands, Environment, UsageError, add_command, print_json
from qjobs.errors import validation_details
from qjobs.publish import (
    InvalidPayload,
    PublishConfigError,
    Published,
    Publisher,
    publish_memory_sync,
    publish_notify_collaborators,
)

Publish = Callable[..., Published]
JOBS: dict[str, tuple[type[BaseModel], Publish, bool]] = {
    "notify-collaborators": (NotifyCollaboratorsPayload, publish_notify_collaborators, False),
    "memory-sync": (MemorySyncPayload, publish_memory_sync, True),
}
"""job -> (payload model, helper, whether it takes a revision)."""


def flag(field: str) -> str:
    return "--" + "".join(f"-{char.lower()}" if char.isupper() else char for char in field)


SUMMARIES = {
    "notify-collaborators": "tell a trip's collaborators that something happened to the trip",
    "memory-sync": "bring a user's travel memory up to date from a conversation",
}
"""What each job does, in `qjobs publish --help`'s list."""
DESCRIPTIONS = {
    "notify-collaborators": """\
Enqueue notify-collaborators: tell a trip's collaborators that something happened to the
trip (an inbox entry each, and email and a webhook where configured). The payload is
checked first, and nothing is sent if it is refused. Its idempotency key, generated when
--idempotency-key is not given, is printed: publishing the same key again is dropped by
QStash as a duplicate, and a dead-letter replay notifies nobody twice.
""",
    "memory-sync": """\
Enqueue memory-sync: bring a user's travel memory up to date from a conversation. The
payload is checked first, and nothing is sent if it is refused. Syncs of one conversation
run one at a time; with --revision (the conversation's last message id), publishing the
same revision again is dropped by QStash as a duplicate.
""",
}
WHEN = """
--delay waits before the first attempt (seconds, or a duration such as 10m or 2h);
--not-before sets the earliest attempt (Unix seconds, or an ISO 8601 time, UTC unless it
names its zone). Both are checked before anything is sent.
"""


def add_parser(commands: Commands) -> None:
    parser = add_command(commands, "publish", "enqueue a job through QStash with its policy", __doc__ or "")
    jobs = parser.add_subparsers(dest="job", metavar="JOB", required=True)
    for name, (model, _, takes_revision) in JOBS.items():
        job = add_command(jobs, name, SUMMARIES[name], DESCRIPTIONS[name] + WHEN)
        for field, info in model.model_fields.items():
            add_field(job, field, info.annotation, required=info.is_required())
        if takes_revision:
            job.add_argument("--revision", help="the conversation's state the sync is for (its last message id)")
        job.add_argument(
            "--delay", type=delay, help="wait before the first attempt: seconds, or a duration such as 10m"
        )
        job.add_argument(
            "--not-before", type=not_before, help="no attempt before this time: Unix seconds or an ISO 8601 time"
        )
        job.add_argument("--json", action="store_true", help="print the answer as JSON")
        job.set_defaults(run=run)


def add_field(parser: argparse.ArgumentParser, field: str, annotation: Any, *, required: bool) -> None:
    origin = typing.get_origin(annotation)
    choices = [str(choice) for choice in typing.get_args(annotation)] if origin is typing.Literal else None
    many = origin is list or _is_list(annotation)
    parser.add_argument(
        flag(field),
        dest=field,
        required=required,
        nargs="+" if many else None,
        choices=choices,
        metavar=flag(field)[2:].replace("-", "_").upper() if choices is None else None,
        help=f"the payload's {field}" + (" (one or more)" if many else ""),
    )


def _is_list(annotation: Any) -> bool:
    return any(typing.get_origin(inner) is list or _is_list(inner) for inner in typing.get_args(annotation))


def delay(value: str) -> int | str:
    """An argparse `type`: seconds (an int, which the SDK sends as `Ns`), or a number and a
    unit (`s`, `m`, `h`, `d`), the form QStash reads in `Upstash-Delay`, sent as written."""
    if value.isdigit():
        return int(value)
    if re.fullmatch(r"\d+[smhd]", value):
        return value
    raise argparse.ArgumentTypeError(f"must be seconds or a duration such as 10m or 2h, not {value!r}")


def not_before(value: str) -> int:
    """An argparse `type`: Unix seconds, or an ISO 8601 time (UTC unless it names its zone)."""
    if value.isdigit():
        return int(value)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be Unix seconds or an ISO 8601 time, not {value!r}") from None
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


def refused_flags(model: type[BaseModel], payload: dict[str, Any]) -> str | None:
    """What the job's model refuses in the payload the flags made, said of each flag as
    argparse says it of a bad value (`argument --user-id: must be ..., not 'bad id'`); None
    when it accepts the payload."""
    try:
        model.model_validate(payload)
    except ValidationError as error:
        problems = []
        for detail in validation_details(error):
            field, *index = detail.field.split(".")
            if field not in model.model_fields:
                problems.append(f"the payload: {detail.message}")
                continue
            value = payload.get(field)
            if index and isinstance(value, list) and index[0].isdigit() and int(index[0]) < len(value):
                value = value[int(index[0])]
            shown = f", not {value!r}" if isinstance(value, str) else ""
            problems.append(f"argument {flag(field)}: {detail.message}{shown}")
        return "; ".join(problems)
    return None


def run(args: argparse.Namespace, env: Environment) -> int:
    model, helper, takes_revision = JOBS[args.job]
    payload = {field: getattr(args, field) for field in model.model_fields if getattr(args, field) is not None}
    refused = refused_flags(model, payload)
    if refused:
        raise UsageError(refused)
    options: dict[str, Any] = {"delay": args.delay, "not_before": args.not_before}
    if takes_revision:
        options["revision"] = args.revision
    try:
        publisher = dataclasses.replace(Publisher.from_environment(env.variables), client=env.qstash())
        published = helper(payload, publisher=publisher, **options)
    except (InvalidPayload, PublishConfigError) as error:
        raise CliError(str(error)) from None
    answer = {
        "messageId": published.message_id,
        "deduplicated": published.deduplicated,
        "idempotencyKey": published.idempotency_key,
    }
    if args.json:
        print_json(answer)
    else:
        duplicate = " (a duplicate of an earlier publish: not sent again)" if published.deduplicated else ""
        print(f"published {args.job} as {published.message_id}{duplicate}")
        if published.idempotency_key:
            print(f"idempotency key: {published.idempotency_key}")
    return 0
