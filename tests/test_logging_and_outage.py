"""One structured line per delivery, nothing secret in it; and a Firestore outage
answered with a retryable 500 within seconds."""

import time

import pytest
from google.cloud import firestore

from qjobs.devtools.emulator import free_port
from tests.support import (
    NOTIFY,
    NOTIFY_PAYLOAD,
    PROBE,
    PROBE_MAIN,
    AppFactory,
    delivery_log_lines,
    encode,
    error_of,
    qstash_headers,
)

TRACE_ID = "105445aa7843bc8bf206b12000100000"


def test_one_line_per_delivery_with_trace_and_no_secrets(
    make_client: AppFactory, db: firestore.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_client(GOOGLE_CLOUD_PROJECT="test-project")
    private = {**NOTIFY_PAYLOAD, "message": "Alice's surprise party at 12 Elm Street", "email": "alice@example.com"}
    body = encode(private)
    headers = {**qstash_headers(NOTIFY, body, retried=2), "X-Cloud-Trace-Context": f"{TRACE_ID}/1;o=1"}
    assert client.post(NOTIFY, data=body, headers=headers).status_code == 200
    output = capsys.readouterr().out
    (line,) = delivery_log_lines(output)
    assert line["job"] == "notify-collaborators" and line["messageId"] == headers["Upstash-Message-Id"]
    assert line["status"] == 200 and line["outcome"] == "succeeded" and line["attempt"] == 1 and line["retried"] == 2
    assert isinstance(line["durationMs"], float) and line["severity"] == "INFO"
    assert line["logging.googleapis.com/trace"] == f"projects/test-project/traces/{TRACE_ID}"
    for secret in (headers["Upstash-Signature"], "Alice", "Elm Street", "alice@example.com", "sig_test"):
        assert secret not in output


def test_a_job_failure_is_logged_at_error_with_its_stack_trace(
    make_client: AppFactory, db: firestore.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_client(PROBE_MAIN)
    body = encode({"marker": "crash", "mode": "fail"})
    assert client.post(PROBE, data=body, headers=qstash_headers(PROBE, body)).status_code == 500
    (line,) = delivery_log_lines(capsys.readouterr().out)
    assert line["severity"] == "ERROR" and line["error"] == "job_failed"
    assert "Traceback (most recent call last)" in str(line["message"]) and "probe failure" in str(line["message"])
    assert str(line["@type"]).endswith("ReportedErrorEvent")


def test_firestore_unreachable_is_a_500_within_seconds(make_client: AppFactory, db: firestore.Client) -> None:
    client = make_client(FIRESTORE_EMULATOR_HOST=f"127.0.0.1:{free_port()}", FIRESTORE_TIMEOUT_SECONDS="1")
    body = encode(NOTIFY_PAYLOAD)
    started = time.monotonic()
    response = client.post(NOTIFY, data=body, headers=qstash_headers(NOTIFY, body))
    elapsed = time.monotonic() - started
    assert error_of(response)[:2] == (500, "job_failed")
    assert elapsed < 10, f"took {elapsed:.1f}s"
    assert list(db.collections()) == []


def test_the_trace_is_also_taken_from_traceparent(
    make_client: AppFactory, db: firestore.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    """W3C `traceparent` (what other hosts and OpenTelemetry send) names the trace as well."""
    client = make_client(GOOGLE_CLOUD_PROJECT="test-project")
    body = encode(NOTIFY_PAYLOAD)
    headers = {**qstash_headers(NOTIFY, body), "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
    assert client.post(NOTIFY, data=body, headers=headers).status_code == 200
    (line,) = delivery_log_lines(capsys.readouterr().out)
    assert line["logging.googleapis.com/trace"] == f"projects/test-project/traces/{TRACE_ID}"
