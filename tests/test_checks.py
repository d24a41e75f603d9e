"""Every refusal in the order of checks, through the app functions-framework builds (the
rows that run a job are tested with each job and in tests/test_delivery.py)."""

import base64
import hashlib
import hmac
import json
import math
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from google.cloud import firestore

from qjobs.devtools.emulator import free_port
from qjobs.pipeline import MAX_JSON_DEPTH
from qjobs.signature import LATEST_TIME
from tests.support import (
    CURRENT_KEY,
    MEMORY,
    NOTIFY,
    NOTIFY_PAYLOAD,
    AppFactory,
    Deliver,
    delivery_log_lines,
    encode,
    error_of,
    new_message_id,
    qstash_headers,
)


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


# ---------------------------------------------------------------- the order of the checks

BIG = b"x" * 1001
"""Over the 1000-byte cap of the client below, and not JSON."""

ORDER = {
    # name: (method, path, body, headers, answer expected): each request fails the named
    # check and every later one; the earlier check must be the one that answers.
    "route before method": ("PUT", "/nope", BIG, {}, (404, "not_found")),
    "method before body cap": ("PUT", NOTIFY, BIG, {}, (405, "method_not_allowed")),
    "body cap before signature": ("POST", NOTIFY, BIG, {"Upstash-Message-Id": "a/b"}, (489, "payload_too_large")),
    "a signature before the message id": (
        "POST",
        NOTIFY,
        b"not json",
        {"Upstash-Message-Id": "a/b"},
        (401, "missing_signature"),
    ),
    "signature before the message id": ("POST", NOTIFY, b"not json", "forged", (401, "invalid_signature")),
    "message id before the body": ("POST", NOTIFY, b"not json", "unsafe id", (489, "missing_message_id")),
}


def ordered_request(body: bytes, headers: object) -> dict[str, str]:
    if headers == "forged":
        return {**qstash_headers(NOTIFY, body, key="sig_notTheServicesKey00000000000"), "Upstash-Message-Id": "a/b"}
    if headers == "unsafe id":
        return {**qstash_headers(NOTIFY, body), "Upstash-Message-Id": "a/b"}
    assert isinstance(headers, dict)
    return headers


def one_error_shape(body: object) -> bool:
    """`{"error", "message"}`, plus `details` only when there are any."""
    assert isinstance(body, dict)
    return set(body) in ({"error", "message"}, {"error", "message", "details"}) and body.get("details", [1]) != []


@pytest.mark.parametrize("case", ORDER, ids=list(ORDER))
def test_each_check_answers_before_every_later_one(make_client: AppFactory, db: firestore.Client, case: str) -> None:
    """README "Answers": checks run in the table's order, so a request that fails several
    checks gets the first one's answer (and nothing is written)."""
    method, path, body, headers, expected = ORDER[case]
    client = make_client(MAX_BODY_BYTES="1000")
    response = client.open(path, method=method, data=body, headers=ordered_request(body, headers))
    assert error_of(response)[:2] == expected
    assert one_error_shape(response.json)
    assert collections_of(db) == []


def test_the_schema_is_checked_before_the_ledger(deliver: Deliver, db: firestore.Client) -> None:
    """A known message id with another body that also breaks the schema is the schema's
    `489 validation_failed`, not the ledger's `message_id_reused`; the entry is untouched."""
    message_id = new_message_id()
    assert deliver(NOTIFY, NOTIFY_PAYLOAD, message_id=message_id).status_code == 200
    entry = db.collection("jobs").document(message_id)
    written = entry.get().update_time
    response = deliver(NOTIFY, {**NOTIFY_PAYLOAD, "event": "trip_exploded"}, message_id=message_id)
    assert error_of(response)[:2] == (489, "validation_failed")
    assert entry.get().update_time == written


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("PUT", "/nope", (404, "not_found")),
        ("PUT", NOTIFY, (405, "method_not_allowed")),
        ("POST", NOTIFY, (503, "shutting_down")),
    ],
)
def test_after_sigterm_a_delivery_is_turned_away_right_after_its_route(
    make_client: AppFactory, db: firestore.Client, method: str, path: str, expected: tuple[int, str]
) -> None:
    """During the drain a delivery is answered `503` at once: before its body is read or
    its signature checked (here it is oversized and unsigned), though after its route."""
    client = make_client(MAX_BODY_BYTES="1000")
    sys.modules["main"].jobs.pipeline.shutdown.begin()
    response = client.open(path, method=method, data=BIG)
    assert error_of(response)[:2] == expected
    if expected[0] == 503:
        assert response.headers["Retry-After"] == "1"
    assert collections_of(db) == []


# ---------------------------------------------------------------- the body cap, exactly


def test_a_body_of_exactly_the_cap_is_read_and_one_byte_more_is_refused(
    make_client: AppFactory, db: firestore.Client
) -> None:
    """`MAX_BODY_BYTES` is the largest body accepted: one of that size runs the job."""
    client = make_client(MAX_BODY_BYTES="1000")
    fitting = json.dumps(NOTIFY_PAYLOAD).encode().ljust(1000)
    assert len(fitting) == 1000
    accepted = client.post(NOTIFY, data=fitting, headers=qstash_headers(NOTIFY, fitting))
    assert accepted.status_code == 200, accepted.json
    over = fitting + b" "
    refused = client.post(NOTIFY, data=over, headers=qstash_headers(NOTIFY, over))
    assert error_of(refused)[:2] == (489, "payload_too_large")


# ---------------------------------------------------------------- health


def test_health_needs_neither_firestore_nor_a_signature(make_client: AppFactory) -> None:
    """Nothing at start-up or in `/health` opens a connection to Firestore: with no
    Firestore to reach, the app builds and answers health checks at once."""
    client = make_client(FIRESTORE_EMULATOR_HOST=f"127.0.0.1:{free_port()}", FIRESTORE_TIMEOUT_SECONDS="3")
    started = time.monotonic()
    for method in ("GET", "HEAD"):
        assert client.open("/health", method=method).status_code == 200
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("message_id", ["x" * 128, "msg_Az-09.x:y@z", "__partly__reserved", "a.", "-"])
def test_every_safe_id_is_accepted_as_a_message_id(deliver: Deliver, db: firestore.Client, message_id: str) -> None:
    """The other side of the safe-id rule: up to 128 of `A-Z a-z 0-9 _ - . : @`, anywhere
    but a leading `.`, and `__x__` only as the whole id."""
    response = deliver(NOTIFY, NOTIFY_PAYLOAD, message_id=message_id)
    assert response.status_code == 200, response.json
    assert db.collection("jobs").document(message_id).get().get("status") == "succeeded"


# ---------------------------------------------------------------- tokens the JWT library itself refuses


def odd_header_token(key: str, **header: object) -> str:
    """A token whose JOSE header the JWT library refuses before any signature is checked
    (made by hand: the library will not make one)."""

    def segment(raw: bytes) -> bytes:
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    signing_input = segment(json.dumps({"alg": "HS256", "typ": "JWT", **header}).encode()) + b"." + segment(b'{"a":1}')
    signature = hmac.new(key.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + segment(signature)).decode()


@pytest.mark.parametrize(
    "header",
    [{"crit": ["exp"]}, {"crit": "x"}, {"crit": []}, {"crit": [5]}, {"kid": 5}, {"b64": False}],
    ids=["crit-unsupported", "crit-not-a-list", "crit-empty", "crit-not-text", "kid-not-text", "b64-without-crit"],
)
@pytest.mark.parametrize("key", ["sig_anyWrongKey00000000000000000000", CURRENT_KEY], ids=["wrong-key", "right-key"])
def test_a_token_header_the_jwt_library_refuses_is_a_401_malformed(
    *,
    make_client: AppFactory,
    db: firestore.Client,
    capsys: pytest.CaptureFixture[str],
    header: dict[str, object],
    key: str,
) -> None:
    """Anyone can send these: they must be the README's `401 invalid_signature` with a reason,
    logged as a refusal (no ERROR, no stack trace for Error Reporting), never a 500."""
    client = make_client()
    body = encode(NOTIFY_PAYLOAD)
    headers = {**qstash_headers(NOTIFY, body), "Upstash-Signature": odd_header_token(key, **header)}
    response = client.post(NOTIFY, data=body, headers=headers)
    assert error_of(response) == (401, "invalid_signature", "malformed")
    (line,) = delivery_log_lines(capsys.readouterr().out)
    assert (line["severity"], line["status"], line["reason"]) == ("WARNING", 401, "malformed")
    assert "Traceback" not in str(line["message"])
    assert collections_of(db) == []


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize(
    "value",
    [math.inf, -math.inf, math.nan, 1e20, -1e20, 10**400],
    ids=["inf", "-inf", "nan", "1e20", "-1e20", "10^400"],
)
def test_a_signed_time_that_is_no_time_is_a_401_malformed(
    client: FlaskClient, db: firestore.Client, claim: str, value: object
) -> None:
    """A signed `exp`, `nbf` or `iat` that is not finite or lies beyond any date Firestore
    can hold: NaN would pass every comparison, and the others overflow the token's record."""
    body = encode(NOTIFY_PAYLOAD)
    claims: dict[str, Any] = {claim: value}
    response = client.post(NOTIFY, data=body, headers=qstash_headers(NOTIFY, body, **claims))
    assert error_of(response) == (401, "invalid_signature", "malformed")
    assert collections_of(db) == []


def test_a_token_valid_until_the_last_second_a_timestamp_holds_is_kept_until_then(
    deliver: Deliver, db: firestore.Client
) -> None:
    """The token's record lives until its expiry plus the leeway, which here lies past the
    year 9999: it is kept until the last second Firestore can store instead."""
    response = deliver(NOTIFY, NOTIFY_PAYLOAD, exp=LATEST_TIME)
    assert response.status_code == 200, response.json
    (record,) = [token.to_dict() or {} for token in db.collection("jobTokens").stream()]
    assert record["expireAt"] == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


# ---------------------------------------------------------------- JSON no parser should be asked to read

FAILED = "/api/jobs/failed"
VALID_BODIES: dict[str, dict[str, Any]] = {
    NOTIFY: NOTIFY_PAYLOAD,
    MEMORY: {"userId": "u1", "conversationId": "c1", "syncType": "incremental"},
    FAILED: {"sourceMessageId": "msg_source", "url": "https://jobs.example.test/api/jobs/memory-sync"},
}


def nested(depth: int) -> str:
    """A JSON value `depth` containers deep."""
    return "[" * depth + "]" * depth


def with_extra(path: str, raw_value: str) -> bytes:
    """The job's valid body with one more field, its value written as is."""
    return json.dumps(VALID_BODIES[path]).encode()[:-1] + b', "extra": ' + raw_value.encode() + b"}"


UNREADABLE = {
    "brackets": lambda path: (nested(100_000)).encode(),
    "extra-1100-deep": lambda path: with_extra(path, nested(1100)),
    "extra-just-past-the-cap": lambda path: with_extra(path, nested(MAX_JSON_DEPTH)),
    "extra-5000-digits": lambda path: with_extra(path, "1" + "0" * 5000),
}


@pytest.mark.parametrize("path", [NOTIFY, MEMORY, FAILED])
@pytest.mark.parametrize("case", UNREADABLE, ids=list(UNREADABLE))
def test_json_nested_too_deep_or_with_an_unreadable_number_is_489_invalid_json(
    make_client: AppFactory, db: firestore.Client, capsys: pytest.CaptureFixture[str], path: str, case: str
) -> None:
    """Python's parser gives up on JSON nested about a thousand deep (RecursionError) or on
    an integer of more than 4300 digits (ValueError): a 500 QStash would retry for nothing.
    The service refuses any body nested deeper than MAX_JSON_DEPTH, whatever the stack."""
    client = make_client()
    body = UNREADABLE[case](path)
    response = client.post(path, data=body, headers=qstash_headers(path, body))
    assert error_of(response)[:2] == (489, "invalid_json")
    assert response.headers["Upstash-NonRetryable-Error"] == "true"
    (line,) = delivery_log_lines(capsys.readouterr().out)
    assert (line["severity"], line["status"], line["error"]) == ("WARNING", 489, "invalid_json")
    assert "Traceback" not in str(line["message"])
    assert collections_of(db) == []


def test_json_nested_as_deep_as_the_cap_is_read(deliver: Deliver, db: firestore.Client) -> None:
    """The object itself is the first level: an extra field one level short of the cap runs."""
    response = deliver(NOTIFY, with_extra(NOTIFY, nested(MAX_JSON_DEPTH - 1)))
    assert response.status_code == 200, response.json
