"""Publishing through the official qstash SDK, checked header by header against QStash's
documented publish protocol (../shared/qstash.md) on a server that records what it gets."""

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from qstash import QStash

from handlers.memory_sync import POLICY as MEMORY_POLICY
from handlers.notify_collaborators import POLICY as NOTIFY_POLICY
from qjobs.publish import (
    InvalidPayload,
    PublishConfigError,
    Publisher,
    publish_memory_sync,
    publish_notify_collaborators,
)
from tests.receivers import QStashRecorder

JOBS = "https://jobs.example.test"
TOKEN = "qstash-test-token"
NOTIFY = {"tripId": "trip-1", "event": "trip_updated", "collaboratorIds": ["u1", "u2", "u1"], "message": "  Moved "}
SYNC = {"userId": "u1", "conversationId": "c1", "syncType": "incremental"}


@pytest.fixture
def recorder() -> Iterator[QStashRecorder]:
    server = QStashRecorder()
    yield server
    server.stop()


@pytest.fixture
def publisher(recorder: QStashRecorder) -> Publisher:
    return Publisher(QStash(TOKEN, base_url=recorder.url, retry=False), JOBS)


def sha(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:40]


def upstash(headers: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.startswith("upstash-")}


def test_notify_collaborators_is_published_with_the_products_policy(
    recorder: QStashRecorder, publisher: Publisher
) -> None:
    published = publish_notify_collaborators(
        {**NOTIFY, "idempotencyKey": "trip-1:update:7"}, delay=30, publisher=publisher
    )
    ((path, headers, body),) = [(r.path, r.headers, r.body) for r in recorder.received]
    assert path == f"/v2/publish/{JOBS}/api/jobs/notify-collaborators"
    assert headers["authorization"] == f"Bearer {TOKEN}" and headers["content-type"] == "application/json"
    assert upstash(headers) == {
        "upstash-retries": "3",
        "upstash-retry-delay": "min(300000, 10000 * pow(2, retried))",
        "upstash-timeout": "120s",
        "upstash-deduplication-id": f"notify-collaborators-{sha('trip-1:update:7')}",
        "upstash-label": "notify-collaborators",
        "upstash-failure-callback": f"{JOBS}/api/jobs/failed",
        "upstash-delay": "30s",
    }
    assert json.loads(body) == {
        "tripId": "trip-1",
        "event": "trip_updated",
        "collaboratorIds": ["u1", "u2"],
        "message": "Moved",
        "idempotencyKey": "trip-1:update:7",
    }
    assert published.message_id == "msg_recorded1" and published.idempotency_key == "trip-1:update:7"


def test_an_idempotency_key_is_generated_returned_and_sent(recorder: QStashRecorder, publisher: Publisher) -> None:
    first = publish_notify_collaborators(NOTIFY, publisher=publisher)
    second = publish_notify_collaborators(NOTIFY, publisher=publisher)
    assert first.idempotency_key and second.idempotency_key and first.idempotency_key != second.idempotency_key
    bodies = [received.json() for received in recorder.received]
    assert [body["idempotencyKey"] for body in bodies] == [first.idempotency_key, second.idempotency_key]
    dedup = [received.headers["upstash-deduplication-id"] for received in recorder.received]
    assert dedup == [
        f"notify-collaborators-{sha(str(first.idempotency_key))}",
        f"notify-collaborators-{sha(str(second.idempotency_key))}",
    ]


def test_memory_sync_is_one_at_a_time_per_conversation_and_deduplicated_by_revision(
    recorder: QStashRecorder, publisher: Publisher
) -> None:
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    publish_memory_sync(SYNC, revision="m00042", not_before=at, publisher=publisher)
    publish_memory_sync(SYNC, publisher=publisher)
    (path, with_revision, body), (_, without_revision, _) = [(r.path, r.headers, r.body) for r in recorder.received]
    assert path == f"/v2/publish/{JOBS}/api/jobs/memory-sync" and json.loads(body) == SYNC
    assert upstash(with_revision) == {
        "upstash-retries": "3",
        "upstash-retry-delay": "min(600000, 30000 * pow(2, retried))",
        "upstash-timeout": "300s",
        "upstash-deduplication-id": f"memory-sync-{sha('u1', 'c1', 'incremental', 'm00042')}",
        "upstash-flow-control-key": f"memory-sync-{sha('u1', 'c1')}",
        "upstash-flow-control-value": "parallelism=1",
        "upstash-label": "memory-sync",
        "upstash-failure-callback": f"{JOBS}/api/jobs/failed",
        "upstash-not-before": str(int(at.timestamp())),
    }
    assert "upstash-deduplication-id" not in upstash(without_revision)
    assert upstash(without_revision)["upstash-flow-control-key"] == f"memory-sync-{sha('u1', 'c1')}"


@pytest.mark.parametrize(
    ("publish", "payload", "field"),
    [
        (publish_notify_collaborators, {**NOTIFY, "event": "trip_exploded"}, "event"),
        (publish_notify_collaborators, {**NOTIFY, "collaboratorIds": []}, "collaboratorIds"),
        (publish_memory_sync, {**SYNC, "conversationId": "a/b"}, "conversationId"),
        (publish_memory_sync, {"userId": "u1"}, "conversationId"),
    ],
)
def test_a_bad_payload_raises_before_anything_is_sent(
    recorder: QStashRecorder, publisher: Publisher, publish: Any, payload: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidPayload) as caught:
        publish(payload, publisher=publisher)
    assert field in [detail.field for detail in caught.value.details] and field in str(caught.value)
    assert recorder.received == []


def test_the_policies_keep_the_lease_rule() -> None:
    """QStash's timeout must not pass the request timeout, which is the lease (cloudbuild.yaml
    deploys with --timeout = JOB_LEASE_SECONDS, default 300); a delay stays within the
    documented bounds at every retry."""
    for policy, first, longest in ((NOTIFY_POLICY, 10_000, 300_000), (MEMORY_POLICY, 30_000, 600_000)):
        assert policy.retries == 3 and policy.timeout_seconds <= 300
        delays = [eval(policy.retry_delay, {"min": min, "pow": pow}, {"retried": n}) for n in range(10)]  # noqa: S307
        assert delays[0] == first and max(delays) == longest and delays == sorted(delays)


def test_the_environment_names_the_token_and_the_service(recorder: QStashRecorder) -> None:
    with pytest.raises(PublishConfigError, match="QSTASH_TOKEN is required; JOBS_BASE_URL"):
        Publisher.from_environment({"JOBS_BASE_URL": JOBS + "/"})
    publisher = Publisher.from_environment({"QSTASH_TOKEN": TOKEN, "QSTASH_URL": recorder.url, "JOBS_BASE_URL": JOBS})
    assert publish_memory_sync(SYNC, publisher=publisher).message_id == "msg_recorded1"
    assert recorder.received[0].headers["authorization"] == f"Bearer {TOKEN}"


# ---------------------------------------------------------------- what a producer is told


class DeduplicatingRecorder(QStashRecorder):
    """QStash's answer to a publish whose deduplication id it has already seen."""

    def answer(self) -> tuple[int, bytes, dict[str, str]]:
        body = json.dumps({"messageId": "msg_earlier", "deduplicated": True}).encode()
        return 201, body, {"Content-Type": "application/json"}


class UrlGroupRecorder(QStashRecorder):
    """An answer for a URL group (one entry per endpoint), which a URL publish never gets."""

    def answer(self) -> tuple[int, bytes, dict[str, str]]:
        body = json.dumps([{"messageId": "msg_a", "url": "https://a.example.test"}]).encode()
        return 201, body, {"Content-Type": "application/json"}


def test_a_producer_learns_whether_qstash_had_the_message_already(publisher: Publisher) -> None:
    assert publish_notify_collaborators(NOTIFY, publisher=publisher).deduplicated is False
    assert publish_memory_sync(SYNC, publisher=publisher).deduplicated is False
    server = DeduplicatingRecorder()
    try:
        again = Publisher(QStash(TOKEN, base_url=server.url, retry=False), JOBS)
        first = publish_notify_collaborators({**NOTIFY, "idempotencyKey": "trip-1:update:7"}, publisher=again)
        assert (first.message_id, first.deduplicated, first.idempotency_key) == ("msg_earlier", True, "trip-1:update:7")
        assert publish_memory_sync(SYNC, revision="m1", publisher=again).deduplicated is True
    finally:
        server.stop()


def test_an_answer_for_a_url_group_is_refused() -> None:
    server = UrlGroupRecorder()
    try:
        publisher = Publisher(QStash(TOKEN, base_url=server.url, retry=False), JOBS)
        with pytest.raises(TypeError) as caught:
            publish_memory_sync(SYNC, publisher=publisher)
        assert str(caught.value) == "QStash answered a publish to one URL as a URL group's"
    finally:
        server.stop()


def test_a_bad_payload_names_the_job_and_every_problem(publisher: Publisher) -> None:
    with pytest.raises(InvalidPayload) as caught:
        publish_notify_collaborators({**NOTIFY, "tripId": "a/b", "collaboratorIds": []}, publisher=publisher)
    assert str(caught.value) == (
        "invalid notify-collaborators payload: tripId: must be 1-128 letters, digits or _ - . : @, not start with "
        "'.', and not look like __name__; collaboratorIds: must hold 1-100 distinct ids, not 0"
    )


def test_the_failure_callback_is_not_for_producers(publisher: Publisher, recorder: QStashRecorder) -> None:
    with pytest.raises(ValueError, match=r"^failure-callback is not published by producers$"):
        publisher.publish("/api/jobs/failed", {"sourceMessageId": "msg_1"})
    assert recorder.received == []


def test_the_environment_is_read_when_none_is_given(monkeypatch: pytest.MonkeyPatch, recorder: QStashRecorder) -> None:
    monkeypatch.setenv("QSTASH_TOKEN", TOKEN)
    monkeypatch.setenv("QSTASH_URL", recorder.url)
    monkeypatch.setenv("JOBS_BASE_URL", JOBS)
    assert publish_memory_sync(SYNC).message_id == "msg_recorded1"
    monkeypatch.delenv("JOBS_BASE_URL")
    with pytest.raises(PublishConfigError) as caught:
        Publisher.from_environment()
    assert str(caught.value) == "JOBS_BASE_URL must be the service's absolute URL, without a trailing slash"


def test_extra_values_travel_as_json(recorder: QStashRecorder, publisher: Publisher) -> None:
    """A payload may carry fields the job does not read (its models allow them): a time
    among them is sent as ISO 8601 text, not refused by the JSON encoder."""
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    publish_memory_sync({**SYNC, "requestedAt": at}, delay="10m", publisher=publisher)
    (received,) = recorder.received
    assert received.json() == {**SYNC, "requestedAt": "2026-12-01T09:00:00Z"}
    assert received.headers["upstash-delay"] == "10m"
