"""`qjobs publish JOB --field ...`: enqueue a job through QStash (or the local broker) with
the publishing helpers, so with the job's retry policy, deduplication and failure callback.

There is one flag per payload field, made from the job's own model (`tripId` is
`--trip-id`; a list takes several values), so a field added to a job is a flag at once.
"""

import argparse
import typing
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from handlers.memory_sync import MemorySyncPayload
from handlers.notify_collaborators import NotifyCollaboratorsPayload
from qjobs.cli.common import CliError, Commands, Environment, add_command, print_json
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


def add_parser(commands: Commands) -> None:
    parser = add_command(commands, "publish", "enqueue a job through QStash with its policy", __doc__)
    jobs = parser.add_subparsers(dest="job", metavar="JOB", required=True)
    for name, (model, _, takes_revision) in JOBS.items():
        job = add_command(jobs, name, (model.__doc__ or name).split("\n")[0], __doc__)
        for field, info in model.model_fields.items():
            add_field(job, field, info.annotation, required=info.is_required())
        if takes_revision:
            job.add_argument("--revision", help="the conversation's state the sync is for (its last message id)")
        job.add_argument("--delay", help="wait before the first attempt: seconds, or a duration such as 10m")
        job.add_argument("--not-before", help="no attempt before this time: Unix seconds or an ISO 8601 time")
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


def not_before(value: str | None) -> int | None:
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise CliError(f"--not-before must be Unix seconds or an ISO 8601 time, not {value!r}") from None


def run(args: argparse.Namespace, env: Environment) -> int:
    model, helper, takes_revision = JOBS[args.job]
    payload = {field: getattr(args, field) for field in model.model_fields if getattr(args, field) is not None}
    options: dict[str, Any] = {"delay": args.delay, "not_before": not_before(args.not_before)}
    if takes_revision:
        options["revision"] = args.revision
    try:
        published = helper(payload, publisher=Publisher.from_environment(env.variables), **options)
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
