"""One structured line per delivery, nothing secret in it; and a Firestore outage
answered with a retryable 500 within seconds."""

import inspect
import io
import json
import logging
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import flask
import pytest
from google.cloud import firestore

from qjobs import logs
from qjobs.devtools.emulator import free_port
from tests.support import (
    CURRENT_KEY,
    NOTIFY,
    NOTIFY_PAYLOAD,
    PROBE,
    PROBE_MAIN,
    ROOT,
    AppFactory,
    delivery_log_lines,
    encode,
    error_of,
    qstash_headers,
)

TRACE_ID = "105445aa7843bc8bf206b12000100000"
GUNICORN = {"SERVER_SOFTWARE": "gunicorn/27.0.1"}
"""What gunicorn, which closes a response once it has sent it, puts in every request's environ."""


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


def delivery_line_as_written(message_id: str) -> str:
    """The exact line a notify-collaborators delivery like the ones below writes, its
    duration aside: the format Cloud Logging parses, byte for byte."""
    source, first = inspect.getsourcelines(logs.log_delivery)
    line = first + next(n for n, text in enumerate(source) if "logger.log(" in text)
    return (
        '{"event": "job_delivery", "path": "/api/jobs/notify-collaborators", "job": "notify-collaborators", '
        f'"messageId": "{message_id}", "attempt": 1, "retried": 0, "status": 200, "outcome": "succeeded", '
        '"durationMs": DURATION, "message": "notify-collaborators succeeded 200","severity": "INFO", '
        '"logging.googleapis.com/labels": {"python_logger": "qjobs"}, '
        f'"logging.googleapis.com/trace": "projects/test-project/traces/{TRACE_ID}", '
        '"logging.googleapis.com/spanId": "0000000000000001", "logging.googleapis.com/trace_sampled": true, '
        f'"logging.googleapis.com/sourceLocation": {{"line": {line}, "file": {json.dumps(logs.__file__)}, '
        '"function": "log_delivery"}, "httpRequest": {"requestMethod": "POST", '
        '"requestUrl": "http://localhost/api/jobs/notify-collaborators", "userAgent": "Upstash-QStash", '
        '"protocol": "HTTP/1.1"} }'
    )


def raw_delivery_lines(output: str) -> list[str]:
    lines = [line for line in output.splitlines() if '"event": "job_delivery"' in line]
    return [re.sub(r'"durationMs": [0-9.]+,', '"durationMs": DURATION,', line) for line in lines]


def test_the_delivery_line_is_written_byte_for_byte_at_once_or_once_the_answer_is_sent(
    make_client: AppFactory, db: firestore.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    """Until the logging library is loaded, a line logged while gunicorn answers a delivery
    waits for the answer to be sent (gunicorn then closes the response), so that loading it
    does not delay the answer; it is then written as it would have been at once, with its
    own request's trace and httpRequest."""
    body = encode(NOTIFY_PAYLOAD)
    trace = {"X-Cloud-Trace-Context": f"{TRACE_ID}/1;o=1"}
    at_once = make_client(GOOGLE_CLOUD_PROJECT="test-project")
    headers = {**qstash_headers(NOTIFY, body), **trace}
    assert at_once.post(NOTIFY, data=body, headers=headers).status_code == 200
    assert raw_delivery_lines(capsys.readouterr().out) == [delivery_line_as_written(headers["Upstash-Message-Id"])]

    kept = make_client(GOOGLE_CLOUD_PROJECT="test-project")  # a handler that has not written yet
    later = {**qstash_headers(NOTIFY, body), **trace}
    response = kept.post(NOTIFY, data=body, headers=later, environ_base=GUNICORN)
    assert response.status_code == 200
    assert capsys.readouterr().out == "", "nothing is written before the answer is sent"
    response.close()  # what gunicorn does once the answer is sent
    assert raw_delivery_lines(capsys.readouterr().out) == [delivery_line_as_written(later["Upstash-Message-Id"])]

    again = {**qstash_headers(NOTIFY, body), **trace}
    assert kept.post(NOTIFY, data=body, headers=again, environ_base=GUNICORN).status_code == 200
    assert raw_delivery_lines(capsys.readouterr().out) == [delivery_line_as_written(again["Upstash-Message-Id"])]


@pytest.fixture
def structured() -> Iterator[tuple[logs.StructuredLogs, io.StringIO, logging.Logger]]:
    stream = io.StringIO()
    handler = logs.StructuredLogs("test-project", stream)
    logger = logging.getLogger("qjobs.tests.kept")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield handler, stream, logger
    logger.removeHandler(handler)


def written(stream: io.StringIO) -> list[dict[str, Any]]:
    """The lines written, but the library's one diagnostic entry."""
    return [line for line in map(json.loads, stream.getvalue().splitlines()) if "message" in line]


def answering(path: str, log: "logging.Logger", *messages: str) -> None:
    """Log `messages` as the pipeline does while it answers a delivery under gunicorn."""
    app = flask.Flask(__name__)
    with app.test_request_context(path, headers={"X-Cloud-Trace-Context": f"{TRACE_ID}/1;o=1"}):
        until_sent = logs.UNTIL_SENT.set(True)
        try:
            for message in messages:
                log.info("%s", message)
        finally:
            logs.UNTIL_SENT.reset(until_sent)


def test_kept_lines_come_before_any_later_line_each_with_its_own_request(
    structured: tuple[logs.StructuredLogs, io.StringIO, logging.Logger],
) -> None:
    _, stream, log = structured
    answering("/first", log, "kept 1", "kept 2")
    answering("/second", log, "kept 3")
    assert stream.getvalue() == ""
    log.warning("outside any answer")  # at shutdown, say: written at once, after the kept ones
    lines = written(stream)
    assert [line["message"] for line in lines] == ["kept 1", "kept 2", "kept 3", "outside any answer"]
    urls = [line["httpRequest"].get("requestUrl") for line in lines]
    assert urls == ["http://localhost/first", "http://localhost/first", "http://localhost/second", None]
    traces = [line["logging.googleapis.com/trace"] for line in lines]
    assert traces == [f"projects/test-project/traces/{TRACE_ID}"] * 3 + [""]


def test_a_flush_writes_the_kept_lines(structured: tuple[logs.StructuredLogs, io.StringIO, logging.Logger]) -> None:
    """The shutdown drain flushes the logs: nothing kept is lost when the instance stops."""
    handler, stream, log = structured
    answering("/first", log, "kept")
    handler.flush()
    assert [line["message"] for line in written(stream)] == ["kept"]


def test_answers_logging_while_the_kept_lines_are_written_lose_none_and_keep_their_order(
    structured: tuple[logs.StructuredLogs, io.StringIO, logging.Logger],
) -> None:
    """Several deliveries answered at once while the first ones' lines are being written:
    every line is written once, each answer's in the order it logged them."""
    handler, stream, log = structured
    start = threading.Barrier(9)

    def answer(n: int) -> None:
        start.wait()
        for k in range(40):
            answering(f"/{n}", log, f"{n}:{k}")
            if k == 20:
                handler.write_pending()

    threads = [threading.Thread(target=answer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    start.wait()
    handler.write_pending()
    for thread in threads:
        thread.join(timeout=60)
    handler.write_pending()
    messages = [str(line["message"]) for line in written(stream)]
    assert sorted(messages) == sorted(f"{n}:{k}" for n in range(8) for k in range(40))
    for n in range(8):
        assert [m for m in messages if m.startswith(f"{n}:")] == [f"{n}:{k}" for k in range(40)]


def test_start_up_does_not_import_the_logging_library() -> None:
    """Its client package is about 40 ms of imports that no answer needs."""
    code = (
        "import sys, functions_framework; functions_framework.create_app(target='jobs', source='main.py'); "
        "print('google.cloud.logging_v2' in sys.modules)"
    )
    env = {"QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY, "GOOGLE_CLOUD_PROJECT": "test-project"}
    finished = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert (finished.returncode, finished.stdout, finished.stderr) == (0, "False\n", "")
