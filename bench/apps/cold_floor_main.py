"""The cold-start floor: a functions-framework app that imports the Firestore client and
answers its first request after one commit."""

import uuid
from typing import Any

import flask
import functions_framework
from google.cloud import firestore

clients: list[firestore.Client] = []


@functions_framework.http
def jobs(request: flask.Request) -> Any:
    if not clients:
        clients.append(firestore.Client())
    clients[0].collection("coldStarts").document(uuid.uuid4().hex).set({"path": request.path})
    return {"ok": True}
