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


@pytest.mark.parametrize(
    "header",
    [
        "0" * 8000,
        "Ã©" * 16,
        TRACE_ID[:-1],
        TRACE_ID + "0",
        f"{TRACE_ID}/1;o=1 and more",
        f"{TRACE_ID}/span;o=1",
        f"x-{TRACE_ID}",
        "trace_id_with-word-chars_only",
    ],
    ids=["8000-chars", "mojibake", "31-hex", "33-hex", "trailing-text", "span-not-a-number", "prefix", "word-chars"],
)
def test_an_x_cloud_trace_context_not_of_the_documented_shape_names_no_trace(
    make_client: AppFactory, db: firestore.Client, capsys: pytest.CaptureFixture[str], header: str
) -> None:
    """`TRACE_ID[/SPAN_ID][;o=OPTIONS]`, TRACE_ID 32 hex digits: anything else names no trace,
    rather than being copied into every log line of the request (the logging library takes
    any run of word characters, 8,000 of them or mojibake)."""
    client = make_client(GOOGLE_CLOUD_PROJECT="test-project")
    body = encode(NOTIFY_PAYLOAD)
    headers = {**qstash_headers(NOTIFY, body), "X-Cloud-Trace-Context": header}
    assert client.post(NOTIFY, data=body, headers=headers).status_code == 200
    (line,) = delivery_log_lines(capsys.readouterr().out)
    assert line["logging.googleapis.com/trace"] == "" and line["logging.googleapis.com/spanId"] == ""


@pytest.mark.parametrize(
    ("header", "span", "sampled"),
    [
        (TRACE_ID, "", False),
        (f"{TRACE_ID};o=1", "", True),
        (f"{TRACE_ID}/1;o=1", "0000000000000001", True),
        (f"{TRACE_ID}/17;o=0", "0000000000000011", False),
        (TRACE_ID.upper(), "", False),
    ],
)
def test_an_x_cloud_trace_context_of_the_documented_shape_names_its_trace(
    *,
    make_client: AppFactory,
    db: firestore.Client,
    capsys: pytest.CaptureFixture[str],
    header: str,
    span: str,
    sampled: bool,
) -> None:
    client = make_client(GOOGLE_CLOUD_PROJECT="test-project")
    body = encode(NOTIFY_PAYLOAD)
    headers = {**qstash_headers(NOTIFY, body), "X-Cloud-Trace-Context": header}
    assert client.post(NOTIFY, data=body, headers=headers).status_code == 200
    (line,) = delivery_log_lines(capsys.readouterr().out)
    assert line["logging.googleapis.com/trace"] == f"projects/test-project/traces/{TRACE_ID}"
    assert line["logging.googleapis.com/spanId"] == span
    assert line["logging.googleapis.com/trace_sampled"] is sampled
