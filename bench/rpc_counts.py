"""Firestore round trips and documents per delivery, counted in the client library.

The app is built in this process the way functions-framework builds it, so every RPC it
makes can be counted (qjobs.devtools.rpcs); the figures are deterministic, unlike times.
"""

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import flask
from flask.testing import FlaskClient
from functions_framework import create_app
from google.cloud import firestore

from bench.service import MEMORY, NOTIFY, PROJECT, ROOT, new_message_id
from qjobs.config import DEV_CURRENT_SIGNING_KEY
from qjobs.devtools.emulator import Emulator
from qjobs.devtools.rpcs import RpcLog, counting_rpcs
from qjobs.devtools.run_local import DEV_KEYS
from qjobs.signature import delivery_headers
from tests.receivers import WebhookReceiver, start_smtp

BASE_URL = "https://jobs.bench.test"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 - a test secret
MESSAGES = [
    "I'm vegan and I fly out of Boston Logan (BOS).",
    "Book me an aisle seat, and no red-eyes please.",
    "Keep it under $2,000 for the whole trip.",
    "We love museums and hiking.",
    "Let's go with the apartment in Alfama.",
]


@dataclass(frozen=True)
class Count:
    case: str
    status: int
    rpcs: int
    calls: dict[str, int]
    read: int
    written: int


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def build(emulator: Emulator, **extra: str) -> FlaskClient:
    env = {
        **DEV_KEYS,
        "FIRESTORE_EMULATOR_HOST": emulator.host,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "PUBLIC_BASE_URL": BASE_URL,
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    with environment(env):
        app: flask.Flask = create_app(target="jobs", source=str(ROOT / "main.py"))  # type: ignore[no-untyped-call]
    return app.test_client()


def post(client: FlaskClient, path: str, payload: Any, message_id: str | None = None, retried: int = 0) -> int:
    body = json.dumps(payload).encode()
    signed = delivery_headers(
        body,
        url=BASE_URL + path,
        key=DEV_CURRENT_SIGNING_KEY,
        message_id=message_id or new_message_id(),
        retried=retried,
    )
    headers = {"Content-Type": "application/json", **signed}
    return client.post(path, data=body, headers=headers).status_code


def counted(
    log: RpcLog, case: str, client: FlaskClient, path: str, payload: Any, *, message_id: str = "", retried: int = 0
) -> Count:
    log.reset()
    status = post(client, path, payload, message_id or None, retried)
    return Count(case, status, log.total, dict(sorted(log.calls.items())), log.documents_read, log.documents_written)


def notify_payload(n: int) -> dict[str, Any]:
    ids = [f"rpc-user-{n}-{k}" for k in range(5)]
    return {"tripId": f"trip-{n}", "event": "trip_updated", "collaboratorIds": ids, "message": "Dates moved"}


def seed_messages(db: firestore.Client, conversation: str, first: int, count: int) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    batch = db.batch()
    for n in range(first, first + count):
        ref = db.collection("conversations", conversation, "messages").document(f"m{n:04d}")
        batch.set(ref, {"role": "user", "content": MESSAGES[n % 5], "createdAt": start + timedelta(minutes=n)})
    batch.commit()


def count_all(emulator: Emulator) -> list[Count]:
    with environment({"FIRESTORE_EMULATOR_HOST": emulator.host}):
        return count_cases(emulator, firestore.Client(project=PROJECT))


def count_cases(emulator: Emulator, db: firestore.Client) -> list[Count]:
    plain = build(emulator)
    smtp, receiver = start_smtp(), WebhookReceiver()
    channels = build(
        emulator,
        SMTP_URL=smtp.url,
        EMAIL_FROM="Trips <trips@bench.test>",
        COLLABORATOR_WEBHOOK_URL=receiver.url,
        COLLABORATOR_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    for k in range(5):
        db.collection("users").document(f"rpc-user-2-{k}").set({"email": f"user{k}@bench.test"})
    db.collection("conversations").document("rpc-c1").set({"userId": "rpc-u1"})
    seed_messages(db, "rpc-c1", 0, 3)
    sync = {"userId": "rpc-u1", "conversationId": "rpc-c1", "syncType": "incremental"}
    counts: list[Count] = []
    try:
        with counting_rpcs() as log:
            post(plain, NOTIFY, notify_payload(0))  # the first delivery also makes the client
            counts.append(counted(log, "notify, fresh, inbox only", plain, NOTIFY, notify_payload(1)))
            message_id = new_message_id()
            post(plain, NOTIFY, notify_payload(3), message_id)
            for retried, how in ((1, "a retry"), (0, "a copy")):
                case = f"duplicate of a finished message ({how})"
                counts.append(
                    counted(log, case, plain, NOTIFY, notify_payload(3), message_id=message_id, retried=retried)
                )
            counts.append(counted(log, "notify, fresh, email + webhook", channels, NOTIFY, notify_payload(2)))
            post(plain, MEMORY, sync)
            counts.append(counted(log, "memory-sync, no new message", plain, MEMORY, sync))
            seed_messages(db, "rpc-c1", 3, 10)
            counts.append(counted(log, "memory-sync, 10 new messages", plain, MEMORY, sync))
    finally:
        smtp.stop()
        receiver.stop()
    return counts
