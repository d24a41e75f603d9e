"""Publishing jobs to QStash, for the applications that enqueue them.

Each job is published the one way the product needs it delivered: its payload checked by
the job's own model first (a producer's bug fails at the producer, not in the dead-letter
queue), its retry policy and timeout (the job's `PublishPolicy`), a deduplication id from
its business key, a label, and the failure callback that keeps a record of a message
QStash gives up on. Publishing goes through the official `qstash` SDK; `QSTASH_URL`, when
set, points it at another QStash-compatible server (a local broker, say).

    from qjobs.publish import publish_notify_collaborators
    published = publish_notify_collaborators(
        {"tripId": "trip-1", "event": "trip_updated", "collaboratorIds": ["u1"], "message": "Dates moved"}
    )
    published.message_id, published.idempotency_key
"""

import hashlib
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from qstash import QStash
from qstash.message import FlowControl, PublishResponse

from handlers import FAILURE_CALLBACK, MEMORY_SYNC, NOTIFY_COLLABORATORS, ROUTES
from qjobs.errors import ErrorDetail, validation_details
from qjobs.jobs import JobSpec

_BASE_URL = re.compile(r"https?://[^/?#\s]+(/[^?#\s]*)?")


class PublishConfigError(Exception):
    """The environment does not say where and how to publish."""


class InvalidPayload(ValueError):
    """The payload breaks the job's model: nothing was published."""

    def __init__(self, job: str, details: list[ErrorDetail]) -> None:
        problems = "; ".join(f"{detail.field}: {detail.message}" for detail in details)
        super().__init__(f"invalid {job} payload: {problems}")
        self.details = details


@dataclass(frozen=True)
class Published:
    message_id: str
    deduplicated: bool
    """True when QStash had already accepted a message with the same deduplication id."""
    idempotency_key: str | None = None


Payload = Mapping[str, Any] | BaseModel
Delay = int | str | None
"""Seconds, or a QStash duration such as "10m"."""
NotBefore = int | datetime | None
"""Unix seconds, or a time."""


@dataclass(frozen=True)
class Publisher:
    client: QStash
    jobs_base_url: str
    """Where the service is, as QStash must call it: PUBLIC_BASE_URL of the service."""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "Publisher":
        """QSTASH_TOKEN (required; the SDK takes the token as an argument), QSTASH_URL
        (optional: real QStash by default) and JOBS_BASE_URL (required)."""
        env = os.environ if environ is None else environ
        token, base_url = env.get("QSTASH_TOKEN", ""), env.get("JOBS_BASE_URL", "")
        problems = [] if token else ["QSTASH_TOKEN is required"]
        if not _BASE_URL.fullmatch(base_url) or base_url.endswith("/"):
            problems.append("JOBS_BASE_URL must be the service's absolute URL, without a trailing slash")
        if problems:
            raise PublishConfigError("; ".join(problems))
        return cls(QStash(token, base_url=env.get("QSTASH_URL") or None), base_url)

    def publish(
        self,
        path: str,
        payload: Payload,
        *,
        deduplication_id: str | None = None,
        flow_control: FlowControl | None = None,
        delay: Delay = None,
        not_before: NotBefore = None,
    ) -> Published:
        job = ROUTES[path]
        if job.policy is None:
            raise ValueError(f"{job.name} is not published by producers")
        body = checked_body(job, payload)
        response = self.client.message.publish_json(
            url=self.jobs_base_url + path,
            body=body,
            retries=job.policy.retries,
            retry_delay=job.policy.retry_delay,
            timeout=job.policy.timeout_seconds,
            deduplication_id=deduplication_id,
            flow_control=flow_control,
            label=job.name,
            failure_callback=self.jobs_base_url + FAILURE_CALLBACK,
            delay=delay,
            not_before=int(not_before.timestamp()) if isinstance(not_before, datetime) else not_before,
        )
        if not isinstance(response, PublishResponse):
            raise TypeError("QStash answered a publish to one URL as a URL group's")
        return Published(response.message_id, response.deduplicated)


def checked_body(job: JobSpec[Any], payload: Payload) -> dict[str, Any]:
    """The payload as the job's model reads it, or InvalidPayload before anything is sent."""
    data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else dict(payload)
    try:
        model = job.payload_model.model_validate(data)
    except ValidationError as error:
        raise InvalidPayload(job.name, validation_details(error)) from None
    body: dict[str, Any] = model.model_dump(mode="json", exclude_none=True)
    return body


def key_hash(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:40]


def publish_notify_collaborators(
    payload: Payload, *, delay: Delay = None, not_before: NotBefore = None, publisher: Publisher | None = None
) -> Published:
    """Publish notify-collaborators. The business event's `idempotencyKey` is generated when
    the payload has none (and returned): a dead-letter replay, which QStash sends under a
    new message id, then notifies nobody twice; QStash also drops a second publish of the
    same key within its deduplication window."""
    data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else dict(payload)
    key = data.get("idempotencyKey") or f"notify-{uuid.uuid4().hex}"
    published = (publisher or Publisher.from_environment()).publish(
        NOTIFY_COLLABORATORS,
        {**data, "idempotencyKey": key},
        deduplication_id=f"notify-collaborators-{key_hash(str(key))}",
        delay=delay,
        not_before=not_before,
    )
    return Published(published.message_id, published.deduplicated, str(key))


def publish_memory_sync(
    payload: Payload,
    *,
    revision: str | None = None,
    delay: Delay = None,
    not_before: NotBefore = None,
    publisher: Publisher | None = None,
) -> Published:
    """Publish memory-sync, one at a time per user and conversation (flow control with
    parallelism 1: two syncs of one conversation never run at once). `revision` names the
    state of the conversation the sync is for (its last message id, say): the same
    revision published twice is one sync; without it, every publish is a sync of its own."""
    data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else dict(payload)
    user, conversation = str(data.get("userId", "")), str(data.get("conversationId", ""))
    dedup = f"memory-sync-{key_hash(user, conversation, str(data.get('syncType', '')), revision)}" if revision else None
    return (publisher or Publisher.from_environment()).publish(
        MEMORY_SYNC,
        data,
        deduplication_id=dedup,
        flow_control=FlowControl(key=f"memory-sync-{key_hash(user, conversation)}", parallelism=1),
        delay=delay,
        not_before=not_before,
    )
