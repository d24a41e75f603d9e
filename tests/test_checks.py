"""Every refusal in the order of checks, through the app functions-framework builds (the
rows that run a job are tested with each job and in tests/test_delivery.py)."""

import json

import pytest
from flask.testing import FlaskClient
from google.cloud import firestore

from tests.support import NOTIFY, NOTIFY_PAYLOAD, AppFactory, Deliver, encode, error_of, new_message_id, qstash_headers


def collections_of(db: firestore.Client) -> list[str]:
    return [collection.id for collection in db.collections()]


def test_health_answers_without_signature(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


@pytest.mark.parametrize("path", ["/nope", "/robots.txt", "/favicon.ico", "/", "/api/jobs/notify-collaborators/"])
def test_unknown_paths_are_json_404s(client: FlaskClient, path: str) -> None:
    response = client.post(path) if path.startswith("/api") else client.get(path)
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert response.json is not None and response.json["error"] == "not_found"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_on_a_job_path_are_405(client: FlaskClient, method: str) -> None:
    response = client.open(NOTIFY, method=method)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert response.json is not None and response.json["error"] == "method_not_allowed"


def test_oversized_body_is_489_before_anything_else(make_client: AppFactory, db: firestore.Client) -> None:
    client = make_client(MAX_BODY_BYTES="1000")
    body = json.dumps({**NOTIFY_PAYLOAD, "message": "x" * 2000}).encode()
    response = client.post(NOTIFY, data=body, headers=qstash_headers(NOTIFY, body))
    assert error_of(response)[:2] == (489, "payload_too_large")
    assert response.headers["Upstash-NonRetryable-Error"] == "true"
    assert collections_of(db) == []


def test_missing_signature_is_401(client: FlaskClient, db: firestore.Client) -> None:
    response = client.post(NOTIFY, json=NOTIFY_PAYLOAD, headers={"Upstash-Message-Id": new_message_id()})
    assert error_of(response)[:2] == (401, "missing_signature")
    assert collections_of(db) == []


def test_invalid_signature_names_the_reason(client: FlaskClient, db: firestore.Client) -> None:
    headers = qstash_headers(NOTIFY, encode(NOTIFY_PAYLOAD))
    response = client.post(NOTIFY, data=encode({**NOTIFY_PAYLOAD, "message": "tampered"}), headers=headers)
    assert error_of(response) == (401, "invalid_signature", "body_mismatch")
    assert response.json is not None and response.json["details"][0]["field"] == "Upstash-Signature"
    assert collections_of(db) == []


@pytest.mark.parametrize("message_id", [None, "", "a/b", ".hidden", "__reserved__", "x" * 129, "sp ace"])
def test_missing_or_unsafe_message_id_is_489(client: FlaskClient, db: firestore.Client, message_id: str | None) -> None:
    body = encode(NOTIFY_PAYLOAD)
    headers = qstash_headers(NOTIFY, body)
    if message_id is None:
        del headers["Upstash-Message-Id"]
    else:
        headers["Upstash-Message-Id"] = message_id
    response = client.post(NOTIFY, data=body, headers=headers)
    assert error_of(response)[:2] == (489, "missing_message_id")
    assert response.headers["Upstash-NonRetryable-Error"] == "true"
    assert collections_of(db) == []


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"', b"\xff\xfe", b""])
def test_body_that_is_not_a_json_object_is_489(deliver: Deliver, db: firestore.Client, body: bytes) -> None:
    response = deliver(NOTIFY, body)
    assert error_of(response)[:2] == (489, "invalid_json")
    assert collections_of(db) == []


def test_schema_violation_lists_each_field(deliver: Deliver, db: firestore.Client) -> None:
    payload = {"tripId": "bad/id", "collaboratorIds": ["u1", "u2", "u3", "no/slash"], "message": ""}
    response = deliver(NOTIFY, payload)
    assert error_of(response)[:2] == (489, "validation_failed")
    details = {detail["field"]: detail["code"] for detail in response.json["details"]}  # type: ignore[index]
    assert details == {
        "tripId": "value_error",
        "event": "missing",
        "collaboratorIds.3": "value_error",
        "message": "string_too_short",
    }
    assert collections_of(db) == []


def test_health_refuses_other_methods(client: FlaskClient) -> None:
    response = client.post("/health")
    assert response.status_code == 405 and response.headers["Allow"] == "GET, HEAD"
    assert response.json is not None and response.json["error"] == "method_not_allowed"


@pytest.mark.parametrize("retried", ["²", "³", "٣", "\uff13", "+1", " 1", "1e3", "-1", "9" * 40])
def test_an_upstash_retried_that_is_not_ascii_digits_reads_as_a_first_attempt(
    client: FlaskClient, db: firestore.Client, retried: str
) -> None:
    """Other scripts' digits and superscripts are no count: neither a 500 (`int("²")` raises)
    nor a silent reading (`int("٣")` is 3)."""
    body, message_id = encode(NOTIFY_PAYLOAD), new_message_id()
    headers = {**qstash_headers(NOTIFY, body, message_id=message_id), "Upstash-Retried": retried}
    response = client.post(NOTIFY, data=body, headers=headers)
    assert response.status_code == 200, response.json
    assert db.collection("jobs").document(message_id).get().get("retried") == 0


def test_an_ascii_upstash_retried_is_read(client: FlaskClient, db: firestore.Client) -> None:
    body, message_id = encode(NOTIFY_PAYLOAD), new_message_id()
    headers = {**qstash_headers(NOTIFY, body, message_id=message_id), "Upstash-Retried": "03"}
    assert client.post(NOTIFY, data=body, headers=headers).status_code == 200
    assert db.collection("jobs").document(message_id).get().get("retried") == 3
