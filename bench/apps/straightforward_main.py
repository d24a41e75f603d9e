"""The comparison for throughput: a straightforward handler of notify-collaborators.

The same signature check, payload model and log line as the service; then a transaction
that marks the message id (begin, read, commit), a batch of the inbox writes and an update
of the mark: five round trips, and no exactly-once guarantee for the writes (a crash
between the mark and the batch loses them; a retry after it finds the mark and skips).
"""

import logging
import os
import time
from typing import Any

import flask
import functions_framework
from google.cloud import firestore

from handlers.notify_collaborators import NotifyCollaboratorsPayload
from qjobs.config import load_settings
from qjobs.logs import configure_logging
from qjobs.signature import verify_signature

settings = load_settings(os.environ)
configure_logging(settings.log_level, settings.google_cloud_project)
log = logging.getLogger("qjobs")
clients: list[firestore.Client] = []


def client() -> firestore.Client:
    if not clients:
        clients.append(firestore.Client(project=settings.google_cloud_project))
    return clients[0]


@functions_framework.http
def jobs(request: flask.Request) -> Any:
    if request.path == "/health":
        return {"status": "ok"}
    started = time.monotonic()
    body = request.get_data()
    url = f"{settings.public_base_url}{request.path}"
    verify_signature(
        request.headers["Upstash-Signature"], body=body, url=url, keys=settings.default_keys().all(), leeway=30
    )
    payload = NotifyCollaboratorsPayload.model_validate_json(body)
    message_id = request.headers["Upstash-Message-Id"]
    db = client()
    entry = db.collection("simpleJobs").document(message_id)

    @firestore.transactional
    def mark(transaction: Any) -> bool:
        if entry.get(transaction=transaction).exists:
            return False
        transaction.set(entry, {"status": "running", "job": "notify-collaborators"})
        return True

    if mark(db.transaction()):
        batch = db.batch()
        for uid in payload.collaboratorIds:
            ref = db.collection("users", uid, "notifications").document(message_id)
            batch.set(ref, {"tripId": payload.tripId, "message": payload.message, "read": False})
        batch.commit()
        entry.update({"status": "succeeded"})
    duration = (time.monotonic() - started) * 1000
    log.info("notify-collaborators ok 200", extra={"json_fields": {"messageId": message_id, "durationMs": duration}})
    return {"ok": True, "messageId": message_id}
