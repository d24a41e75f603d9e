"""The real service: functions-framework (gunicorn) in a subprocess, over real HTTP."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from tests.support import (
    CHANNELS_OFF,
    MEMORY,
    NOTIFY,
    NOTIFY_PAYLOAD,
    PROBE,
    PROBE_MAIN,
    ROOT,
    Server,
    all_at_once,
    delivery_log_lines,
    encode,
    error_of,
    in_background,
    new_message_id,
    qstash_headers,
    retrying_409,
    start_server,
    wait_until,
)

pytestmark = pytest.mark.processes
"""Every test here starts the service as a server process."""


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop(signal.SIGKILL)


def post(server: Server, path: str, payload: object, **signing: object) -> requests.Response:
    body = encode(payload)
    headers = qstash_headers(path, body, base_url=server.url, **signing)  # type: ignore[arg-type]
    return requests.post(server.url + path, data=body, headers=headers, timeout=60)


def runs(db: firestore.Client, marker: str) -> list[dict[str, object]]:
    query = db.collection("runs").where(filter=FieldFilter("marker", "==", marker))
    return [doc.to_dict() or {} for doc in query.stream()]


def test_a_job_sent_with_qjobs_send_lands_in_firestore(
    service_env: dict[str, str], db: firestore.Client, servers: list[Server], tmp_path: Path
) -> None:
    server = start_server(service_env, tmp_path / "server.log")
    servers.append(server)
    sent = subprocess.run(
        [str(Path(sys.executable).with_name("qjobs")), "send", NOTIFY, "--body", json.dumps(NOTIFY_PAYLOAD)],
        cwd=ROOT,
        env={**service_env, "JOBS_BASE_URL": server.url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    status_line, body = sent.stdout.splitlines()[0], json.loads(sent.stdout.splitlines()[1])
    message_id = status_line.split()[1]
    assert sent.returncode == 0 and status_line.startswith("200 msg_")
    assert body == {"ok": True, "messageId": message_id, "duplicate": False, "notified": 2, **CHANNELS_OFF}
    assert db.collection("jobs").document(message_id).get().get("status") == "succeeded"
    (notification,) = db.collection("users/u2/notifications").stream()
    assert notification.get("message") == "Dates moved" and notification.get("messageId") == message_id
    server.stop()
    (logged,) = delivery_log_lines(server.logs())
    assert logged["messageId"] == message_id and logged["severity"] == "INFO" and logged["status"] == 200


def test_copies_of_one_message_on_two_server_processes_run_once(
    service_env: dict[str, str], db: firestore.Client, servers: list[Server], tmp_path: Path
) -> None:
    servers.extend(start_server(service_env, tmp_path / f"s{n}.log", source=PROBE_MAIN) for n in range(2))
    message_id = new_message_id()
    payload = {"marker": "two-processes", "mode": "sleep", "seconds": 0.5}

    def copy(server: Server) -> Callable[[], requests.Response]:
        return lambda: retrying_409(lambda: post(server, PROBE, payload, message_id=message_id))

    answers = all_at_once([copy(servers[n % 2]) for n in range(4)])
    assert len(runs(db, "two-processes")) == 1
    assert db.collection("counters").document("two-processes").get().get("runs") == 1
    assert [answer.status_code for answer in answers] == [200] * 4
    assert sorted(answer.json()["duplicate"] for answer in answers) == [False] + [True] * 3
    assert len({run["pid"] for run in runs(db, "two-processes")}) == 1


def test_sigterm_gives_back_the_lease_of_an_abandoned_run(
    service_env: dict[str, str], db: firestore.Client, servers: list[Server], tmp_path: Path
) -> None:
    env = {**service_env, "SHUTDOWN_GRACE_SECONDS": "0.5"}
    server = start_server(env, tmp_path / "stopping.log", source=PROBE_MAIN)
    servers.append(server)
    message_id = new_message_id()
    payload = {"marker": "sigterm", "mode": "sleep_first", "seconds": 2}
    abandoned = in_background(lambda: post(server, PROBE, payload, message_id=message_id))
    entry = db.collection("jobs").document(message_id)
    wait_until(lambda: runs(db, "sigterm"), "the run claimed its message and started its work")
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    answer = abandoned.result(timeout=30)
    released = entry.get().to_dict() or {}
    assert released["status"] == "failed" and released["lastError"]["code"] == "abandoned"
    assert answer.status_code == 409 and answer.json()["error"] == "claim_lost"
    assert db.collection("counters").document("sigterm").get().exists is False
    assert '"releasedLeases": 1' in server.logs()

    successor = start_server(env, tmp_path / "successor.log", source=PROBE_MAIN)
    servers.append(successor)
    retried = post(successor, PROBE, payload, message_id=message_id, retried=1)
    assert retried.status_code == 200 and retried.json()["attempt"] == 2
    assert db.collection("counters").document("sigterm").get().get("runs") == 1


def test_sigterm_stops_a_memory_sync_between_pages_and_the_retry_carries_on(
    service_env: dict[str, str], db: firestore.Client, servers: list[Server], tmp_path: Path
) -> None:
    """A sync in one-message pages is stopped at the next page after SIGTERM, long before
    the grace period ends; what it committed stays, and the retry starts from there."""
    env = {**service_env, "SHUTDOWN_GRACE_SECONDS": "20", "MEMORY_SYNC_PAGE_SIZE": "1"}
    db.collection("conversations").document("long").set({"userId": "u1"})
    start = datetime(2026, 5, 1, tzinfo=UTC)
    batch = db.batch()
    for n in range(40):
        ref = db.collection("conversations", "long", "messages").document(f"m{n:03d}")
        batch.set(ref, {"role": "user", "content": "We love museums.", "createdAt": start + timedelta(minutes=n)})
    batch.commit()
    server = start_server(env, tmp_path / "stopping.log")
    servers.append(server)
    message_id, payload = new_message_id(), {"userId": "u1", "conversationId": "long", "syncType": "incremental"}
    syncing = in_background(lambda: post(server, MEMORY, payload, message_id=message_id))
    summary = db.collection("users/u1/conversationSummaries").document("long")
    wait_until(lambda: (summary.get().to_dict() or {}).get("messageCount", 0) >= 2, "two pages committed")
    stopped_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    assert time.monotonic() - stopped_at < 10, "the run stopped at a page boundary, not at the grace period's end"
    assert error_of(syncing.result(timeout=30))[:2] == (503, "shutting_down")
    entry = db.collection("jobs").document(message_id).get().to_dict() or {}
    assert entry["status"] == "failed" and entry["lastError"]["code"] == "abandoned"
    done_before = summary.get().get("messageCount")
    assert 2 <= done_before < 40
    successor = start_server(env, tmp_path / "successor.log")
    servers.append(successor)
    retried = post(successor, MEMORY, payload, message_id=message_id, retried=1)
    assert retried.status_code == 200 and retried.json()["processedMessages"] == 40 - done_before
    assert summary.get().get("messageCount") == 40


def test_a_delivery_arriving_after_sigterm_is_answered_503_at_once(
    service_env: dict[str, str], db: firestore.Client, servers: list[Server], tmp_path: Path
) -> None:
    """While a run in flight finishes within the grace period, the instance keeps answering:
    a delivery that arrives meanwhile gets `503 shutting_down` at once (QStash retries it
    elsewhere) instead of waiting in the listen queue and being reset when the worker exits."""
    env = {**service_env, "SHUTDOWN_GRACE_SECONDS": "20"}
    server = start_server(env, tmp_path / "draining.log", source=PROBE_MAIN)
    servers.append(server)
    long_run_id = new_message_id()
    long_run = {"marker": "draining", "mode": "sleep_first", "seconds": 8}
    running = in_background(lambda: post(server, PROBE, long_run, message_id=long_run_id))
    wait_until(lambda: runs(db, "draining"), "the long run claimed its message and started its work")
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    late_id = new_message_id()
    body = encode(NOTIFY_PAYLOAD)
    headers = qstash_headers(NOTIFY, body, base_url=server.url, message_id=late_id)
    late = requests.post(server.url + NOTIFY, data=body, headers=headers, timeout=6)
    assert error_of(late)[:2] == (503, "shutting_down") and late.headers["Retry-After"] == "1"
    assert running.done() is False, "answered while the run in flight still works"
    assert not db.collection("jobs").document(late_id).get().exists, "refused before the ledger"
    assert running.result(timeout=30).status_code == 200, "the run in flight finished within the grace period"
    assert server.process.wait(timeout=30) == 0


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident memory: what it needed at its worst, unlike the
    current RSS, which falls back once a large buffer is freed."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def chunks(total: int, size: int = 1 << 20) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b"x" * size


class Zeros:
    """A body of known length, made as it is sent rather than held in memory."""

    def __init__(self, length: int) -> None:
        self.left = length

    def __len__(self) -> int:
        return self.left

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return b"0" * size


def test_a_body_far_over_the_cap_does_not_grow_the_worker_on_any_path(
    service_env: dict[str, str], db: firestore.Client, servers: list[Server], tmp_path: Path
) -> None:
    """A job path reads the body itself; an unknown path and /health never do, so only the
    framework's own limit keeps a chunked body of any size out of memory there."""
    server = start_server({**service_env, "THREADS": "2"}, tmp_path / "memory.log")
    servers.append(server)
    (worker,) = worker_pids(server.process.pid)
    headers = qstash_headers(NOTIFY, b"irrelevant", base_url=server.url)
    warm = requests.post(server.url + NOTIFY, data=b"x" * 300_000, headers=headers, timeout=60)
    assert warm.status_code == 489
    before = peak_rss_kib(worker)
    sized = requests.post(server.url + NOTIFY, data=Zeros(128 << 20), headers=headers, timeout=120)
    chunked = requests.post(server.url + NOTIFY, data=chunks(128 << 20), headers=headers, timeout=120)
    elsewhere = {
        path: requests.post(server.url + path, data=chunks(128 << 20), headers=headers, timeout=120)
        for path in ("/nope", "/health")
    }
    growth_kib = peak_rss_kib(worker) - before
    assert sized.status_code == chunked.status_code == 489
    assert sized.json()["error"] == chunked.json()["error"] == "payload_too_large"
    assert {path: answer.status_code for path, answer in elsewhere.items()} == {"/nope": 404, "/health": 405}
    assert growth_kib < 16 * 1024, f"worker grew by {growth_kib} KiB"
    assert os.path.exists(f"/proc/{worker}")


def test_a_chunked_body_of_exactly_the_cap_is_read_and_one_byte_more_is_refused(
    service_env: dict[str, str], db: firestore.Client, servers: list[Server], tmp_path: Path
) -> None:
    """Without a `Content-Length` the cap is found by reading: a chunked body of exactly
    `MAX_BODY_BYTES` runs the job, and one byte more is over it, not cut to fit."""
    server = start_server({**service_env, "MAX_BODY_BYTES": "4096"}, tmp_path / "chunked.log")
    servers.append(server)
    fitting = json.dumps(NOTIFY_PAYLOAD).encode().ljust(4096)
    for body, expected in ((fitting, 200), (fitting + b" ", 489)):
        headers = qstash_headers(NOTIFY, body, base_url=server.url)
        pieces = iter([body[:1000], body[1000:]])
        answer = requests.post(server.url + NOTIFY, data=pieces, headers=headers, timeout=60)
        assert answer.status_code == expected, answer.text
        assert "Content-Length" not in answer.request.headers
    assert answer.json()["error"] == "payload_too_large"


def raw_request(server: Server, request: bytes) -> tuple[int, str, bytes]:
    """Send bytes as they are (requests would refuse to send most of these) and read the
    whole answer: (status, Content-Type, body)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers.get("Content-Type", ""), body


def test_the_servers_own_refusals_have_the_services_error_shape(
    service_env: dict[str, str], db: firestore.Client, servers: list[Server], tmp_path: Path
) -> None:
    """gunicorn answers a request it cannot parse before the app sees it (a header too
    large, a request line malformed): those answers are JSON in the service's one shape
    too, not an HTML page, and echo nothing of the request."""
    server = start_server(service_env, tmp_path / "server.log")
    servers.append(server)
    host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
    cases = {
        "header too large": (
            b"POST " + NOTIFY.encode() + b" HTTP/1.1\r\n" + host + b"X-Big: " + b"x" * 9000 + b"\r\n\r\n",
            (431, "request_header_fields_too_large"),
        ),
        "request line malformed": (b"POST /<script> HTTP/1.1 extra\r\n" + host + b"\r\n", (400, "bad_request")),
    }
    for case, (request, (status, code)) in cases.items():
        answered, content_type, body = raw_request(server, request)
        assert (answered, content_type) == (status, "application/json"), (case, body[:200])
        error = json.loads(body)
        assert set(error) == {"error", "message"} and error["error"] == code, case
        assert b"script" not in body and b"xxxx" not in body, case
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200


def test_the_first_deliveries_lines_are_written_after_their_answers_exactly_as_the_later_ones(
    service_env: dict[str, str], db: firestore.Client, servers: list[Server], tmp_path: Path
) -> None:
    """A fresh worker has not loaded the logging library: the lines of the deliveries it
    answers meanwhile wait for their answers to be sent, and are then written in order, each
    as a later line is written at once (the same fields, bytes and request data)."""
    server = start_server(service_env, tmp_path / "lines.log")
    servers.append(server)
    trace = {"X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1"}
    body = encode(NOTIFY_PAYLOAD)
    sent = []
    for _ in range(3):
        headers = {**qstash_headers(NOTIFY, body, base_url=server.url), **trace}
        assert requests.post(server.url + NOTIFY, data=body, headers=headers, timeout=60).status_code == 200
        sent.append(headers["Upstash-Message-Id"])
    server.stop()
    lines = [line for line in server.logs().splitlines() if '"event": "job_delivery"' in line]
    assert [json.loads(line)["messageId"] for line in lines] == sent
    shapes = {re.sub(r'"(messageId|durationMs)": [^,]+,', r'"\1": _,', line) for line in lines}
    assert len(shapes) == 1, shapes
    (logged,) = {json.dumps(json.loads(line)["httpRequest"]) for line in lines}
    assert json.loads(logged)["requestUrl"] == server.url + NOTIFY
