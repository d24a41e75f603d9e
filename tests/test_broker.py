"""The local broker against QStash's documented protocol, driven by the unmodified Python
SDK: what it accepts, how it delivers, retries and dead-letters, and what its API answers."""

import base64
import itertools
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from qstash import QStash
from qstash.errors import QStashError
from qstash.message import PublishResponse

from qjobs.devtools.broker import DEV_TOKEN, RunningBroker, start_broker
from qjobs.devtools.broker import core as broker_core
from qjobs.devtools.broker.durations import DurationError, parse_duration, retry_after_seconds
from qjobs.devtools.broker.expression import ExpressionError, delay_ms, parse
from qjobs.devtools.broker.retries import header, outcome, retry_delay
from qjobs.signature import verify_signature
from tests.receivers import ScriptedReceiver
from tests.support import CURRENT_KEY, wait_until

SCALE = 0.01
SLACK = 0.5
"""Seconds an attempt may start late on a busy machine; the delays checked differ by more."""


@pytest.fixture
def broker() -> Iterator[RunningBroker]:
    running = start_broker(time_scale=SCALE, environ={"QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY})
    yield running
    running.stop()


@pytest.fixture
def qstash(broker: RunningBroker) -> QStash:
    return QStash(DEV_TOKEN, base_url=broker.url, retry=False)


@pytest.fixture
def destination() -> Iterator[ScriptedReceiver]:
    server = ScriptedReceiver()
    yield server
    server.stop()


def publish(qstash: QStash, **options: Any) -> PublishResponse:
    sent = qstash.message.publish_json(**options)
    assert isinstance(sent, PublishResponse)
    return sent


def settled(broker: RunningBroker, message_id: str) -> bool:
    return broker.broker.messages[message_id].state in ("DELIVERED", "FAILED")


def starts(broker: RunningBroker, message_id: str) -> list[float]:
    return [attempt.started for attempt in broker.broker.attempts if attempt.message_id == message_id]


# ---------------------------------------------------------------- the delay language


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("min(300000, 10000 * pow(2, retried))", [10000, 20000, 40000, 80000, 160000, 300000]),
        ("1000 * (1 + retried)", [1000, 2000, 3000, 4000, 5000, 6000]),
        ("max(5000, sqrt(retried) * 1000) + abs(-1)", [5001, 5001, 5001, 5001, 5001, 5001]),
        ("floor(exp(retried)) + ceil(0.2) - round(0.4) / 2", [2, 3, 8, 21, 55, 149]),
        ("-(-2) * 3e2", [600] * 6),
        ("10000000000", [86_400_000] * 6),
        ("retried - 10", [0] * 6),
    ],
)
def test_delay_expressions_follow_the_documented_grammar(expression: str, expected: list[int]) -> None:
    node = parse(expression)
    assert [delay_ms(node, retried) for retried in range(6)] == expected


@pytest.mark.parametrize(
    "hostile",
    [
        "__import__('os').system('true')",
        "retried.__class__",
        "open",
        "lambda: 1",
        "1 if retried else 2",
        "[1]",
        "1;2",
        "pow(2)",
        "min()",
        "1 +",
        "(" * 40 + "1" + ")" * 40,
        "1" + " + 1" * 200,
        "",
    ],
)
def test_anything_else_is_refused(hostile: str) -> None:
    with pytest.raises(ExpressionError):
        parse(hostile)


@pytest.mark.parametrize("expression", ["sqrt(-1)", "1 / 0", "pow(10, 400)", "exp(1000)"])
def test_an_expression_that_cannot_be_evaluated_is_refused(expression: str) -> None:
    with pytest.raises(ExpressionError):
        delay_ms(parse(expression), 0)


def test_durations_and_retry_after_in_every_documented_form() -> None:
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    assert [parse_duration(text) for text in ("90", "90s", "1m30s", "6m5s", "2h", "500ms", "1d")] == [
        90,
        90,
        90,
        365,
        7200,
        0.5,
        86400,
    ]
    with pytest.raises(DurationError):
        parse_duration("soon")
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds("6m5s", now) == 365
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=42), usegmt=True), now) == 42
    assert retry_after_seconds("3d", now) == 86400, "capped at a day"
    assert retry_after_seconds("whenever", now) is None


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1000 - retried", [1000, 999, 998]),
        ("1000 - -retried", [1000, 1001, 1002]),
        ("+retried * 10", [0, 10, 20]),
        ("retried / 2", [0, 0.5, 1]),
        ("1000 / (retried + 1)", [1000, 500, 1000 / 3]),
        ("1000\n", [1000, 1000, 1000]),
        ("-" * 32 + "1000", [1000, 1000, 1000]),
        ("+" * 32 + "7", [7, 7, 7]),
        ("(" * 32 + "7" + ")" * 32, [7, 7, 7]),
        ("abs(" * 32 + "7" + ")" * 32, [7, 7, 7]),
        ("max(0, " * 32 + "7" + ")" * 32, [7, 7, 7]),
        ("10" + "+1" * 255, [265, 265, 265]),
    ],
)
def test_the_grammar_at_its_edges(expression: str, expected: list[float]) -> None:
    """Each operand sees `retried`; a trailing newline is whitespace; nesting (parentheses,
    unary signs, calls) up to the depth limit and text up to the length limit are accepted."""
    node = parse(expression)
    assert [delay_ms(node, retried) for retried in range(3)] == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("100" + "+1" * 255, "longer than 512 characters"),
        ("-" * 33 + "1", "nested deeper than 32"),
        ("+" * 33 + "1", "nested deeper than 32"),
        ("(" * 33 + "1" + ")" * 33, "nested deeper than 32"),
        ("abs(" * 33 + "1" + ")" * 33, "nested deeper than 32"),
        ("max(0, " * 33 + "1" + ")" * 33, "nested deeper than 32"),
        ("1)", "unexpected ')'"),
        ("(1", "expected ), found the end"),
        ("(1 2", "expected ), found 2"),
        ("1 +", "expected more, found the end"),
        ("abs-1)", "expected (, found -"),
        ("max(1, 2 3", "expected ), found 3"),
        ("1;2", "unexpected character ';'"),
        ("open", "unknown name 'open'"),
        ("pow(2)", "pow takes 2-2 arguments, not 1"),
    ],
)
def test_a_refused_expression_says_why(text: str, message: str) -> None:
    """The broker answers a bad `Upstash-Retry-Delay` with this message at publish."""
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("sqrt(-1)", "cannot be evaluated for retried=2: math domain error"),
        ("1e300 * 1e300 - 1e300 * 1e300", "is not a number for retried=2"),
    ],
)
def test_an_expression_that_cannot_be_evaluated_says_for_which_retry(expression: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        delay_ms(parse(expression), 2)
    assert str(caught.value) == message


def test_retry_after_as_an_http_date_in_any_zone_or_none_and_never_in_the_past() -> None:
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    assert retry_after_seconds("Sat, 28 Nov 2026 12:00:42 -0000", now) == 42, "no zone given: UTC"
    assert retry_after_seconds("Sat, 28 Nov 2026 13:00:42 +0100", now) == 42
    assert retry_after_seconds("Sat, 28 Nov 2026 11:00:00 GMT", now) == 0, "a time past is now"
    assert retry_after_seconds("0", now) == 0
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 55 <= (retry_after_seconds(in_a_minute) or 0) <= 60, "measured from the clock when no time is given"
    with pytest.raises(DurationError) as caught:
        parse_duration("soon")
    assert str(caught.value) == "'soon' is not a duration such as 10s, 6m5s or 1h"


# ---------------------------------------------------------------- the retry policy


def test_a_2xx_delivers_and_any_other_answer_is_retried_until_the_last_retry() -> None:
    for status in (200, 201, 204, 299):
        assert outcome(status, {}, retried=3, retries=3) == "delivered"
    for status in (0, 199, 300, 404, 429, 489, 500, 503):
        assert outcome(status, {}, retried=2, retries=3) == "retry", status
        assert outcome(status, {}, retried=3, retries=3) == "dead-letter", status
    assert outcome(500, {}, retried=0, retries=0) == "dead-letter", "no retries: the first failure is the last"


def test_only_a_489_marked_non_retryable_is_dead_lettered_at_once() -> None:
    marked = {"Upstash-NonRetryable-Error": [" TRUE "]}
    assert outcome(489, marked, retried=0, retries=3) == "dead-letter"
    assert outcome(489, {"upstash-nonretryable-error": ["false"]}, retried=0, retries=3) == "retry"
    assert outcome(500, marked, retried=0, retries=3) == "retry"
    assert outcome(489, {"Upstash-NonRetryable-Error": []}, retried=0, retries=3) == "retry"


def test_the_next_attempt_waits_for_retry_after_then_the_expression_then_the_backoff() -> None:
    every_minute = parse("60000")
    assert retry_delay({"Retry-After": [" 30 "]}, every_minute, 0) == 30
    assert retry_delay({"retry-after": ["2m"], "Other": ["1"]}, None, 5) == 120
    assert retry_delay({"Retry-After": ["whenever"]}, every_minute, 0) == 60, "a Retry-After QStash ignores"
    assert retry_delay({}, parse("1000 * (retried + 1)"), 2) == 3
    assert [retry_delay({}, None, n) for n in range(3)] == [math.exp(2.5), math.exp(5), math.exp(7.5)]
    assert retry_delay({}, None, 10) == 86_400, "the default backoff stops at a day"
    assert header({"X-One": ["a", "b"], "x-two": []}, "x-one") == "a" and header({"x-two": []}, "x-two") is None


# ---------------------------------------------------------------- deliveries


def test_a_delivery_is_what_qstash_sends(qstash: QStash, broker: RunningBroker, destination: ScriptedReceiver) -> None:
    sent = publish(qstash, url=destination.url, body={"a": 1}, headers={"X-Trace": "t-1"})
    wait_until(lambda: settled(broker, sent.message_id), "delivered")
    (received,) = destination.received
    headers = received.headers
    assert received.body == b'{"a": 1}' and received.path == "/destination"
    assert headers["upstash-message-id"] == sent.message_id and sent.message_id.startswith("msg_")
    assert headers["upstash-retried"] == "0" and headers["user-agent"] == "Upstash-QStash"
    assert headers["content-type"] == "application/json" and headers["x-trace"] == "t-1"
    token = verify_signature(
        headers["upstash-signature"], body=received.body, url=destination.url, keys=[CURRENT_KEY], leeway=0
    )
    assert token.jti


def test_each_attempt_is_signed_afresh_and_retried_on_the_expression(
    qstash: QStash, broker: RunningBroker, destination: ScriptedReceiver
) -> None:
    destination.script.extend([(500, {}), (500, {}), (500, {})])
    sent = publish(
        qstash, url=destination.url, body={"n": 1}, retries=3, retry_delay="min(300000, 10000 * pow(2, retried))"
    )
    wait_until(lambda: settled(broker, sent.message_id), "delivered after three failures")
    assert [received.headers["upstash-retried"] for received in destination.received] == ["0", "1", "2", "3"]
    assert len({received.headers["upstash-signature"] for received in destination.received}) == 4
    times = starts(broker, sent.message_id)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    for gap, expected_ms in zip(gaps, (10_000, 20_000, 40_000), strict=True):
        assert expected_ms * SCALE / 1000 <= gap < expected_ms * SCALE / 1000 + SLACK, gaps
    assert broker.broker.messages[sent.message_id].state == "DELIVERED"


def test_the_default_backoff_and_retry_after(
    qstash: QStash, broker: RunningBroker, destination: ScriptedReceiver
) -> None:
    destination.script.extend([(503, {}), (429, {"Retry-After": "30"})])
    sent = publish(qstash, url=destination.url, body={}, retries=2)
    wait_until(lambda: settled(broker, sent.message_id), "delivered")
    first, second, third = starts(broker, sent.message_id)
    assert math.exp(2.5) * SCALE <= second - first < math.exp(2.5) * SCALE + SLACK, "e^(2.5 n) seconds for retry n"
    assert 30 * SCALE <= third - second < 30 * SCALE + SLACK, "the destination's Retry-After"


def test_a_non_retryable_489_goes_to_the_dlq_and_its_failure_callback_is_signed(
    qstash: QStash, broker: RunningBroker, destination: ScriptedReceiver
) -> None:
    destination.script.append((489, {"Upstash-NonRetryable-Error": "true"}))
    callback = destination.url + "/failed"
    sent = publish(qstash, url=destination.url, body={"x": 1}, retries=3, failure_callback=callback, label="l1")
    wait_until(lambda: len(destination.received) == 2, "the attempt and the failure callback")
    attempt, report = destination.received
    assert attempt.headers["upstash-retried"] == "0" and report.path == "/destination/failed"
    verify_signature(report.headers["upstash-signature"], body=report.body, url=callback, keys=[CURRENT_KEY], leeway=0)
    body = report.json()
    (letter,) = qstash.dlq.list().messages
    assert {name: body[name] for name in ("status", "retried", "maxRetries", "sourceMessageId", "url", "dlqId")} == {
        "status": 489,
        "retried": 0,
        "maxRetries": 3,
        "sourceMessageId": sent.message_id,
        "url": destination.url,
        "dlqId": letter.dlq_id,
    }
    assert base64.b64decode(body["body"]) == b'{"error":"scripted"}'
    assert base64.b64decode(body["sourceBody"]) == b'{"x": 1}'
    assert (letter.message_id, letter.response_status, letter.label) == (sent.message_id, 489, "l1")


def test_exhausted_retries_go_to_the_dlq(qstash: QStash, broker: RunningBroker, destination: ScriptedReceiver) -> None:
    destination.script.extend([(500, {})] * 3)
    sent = publish(qstash, url=destination.url, body={}, retries=2, retry_delay="100")
    wait_until(lambda: settled(broker, sent.message_id), "dead-lettered")
    assert len(destination.received) == 3 and broker.broker.messages[sent.message_id].state == "FAILED"
    (letter,) = qstash.dlq.list(filter={"message_id": sent.message_id}).messages
    assert letter.response_status == 500 and letter.retry_delay_expression == "100"


def test_a_timeout_is_a_failed_attempt(qstash: QStash, broker: RunningBroker, destination: ScriptedReceiver) -> None:
    destination.hold = 1.5
    sent = publish(qstash, url=destination.url, body={}, retries=0, timeout="1s")
    wait_until(lambda: settled(broker, sent.message_id), "given up")
    assert broker.broker.messages[sent.message_id].state == "FAILED"
    assert qstash.dlq.get(qstash.dlq.list().messages[0].dlq_id).response_status == 0


def test_delay_and_not_before(qstash: QStash, broker: RunningBroker, destination: ScriptedReceiver) -> None:
    published = time.monotonic()
    delayed = publish(qstash, url=destination.url, body={}, delay="20s")
    later = int((datetime.now(UTC) + timedelta(seconds=31)).timestamp())
    scheduled = publish(qstash, url=destination.url, body={}, not_before=later)
    wait_until(lambda: settled(broker, delayed.message_id) and settled(broker, scheduled.message_id), "both delivered")
    (delayed_start,), (scheduled_start,) = starts(broker, delayed.message_id), starts(broker, scheduled.message_id)
    assert 20 * SCALE <= delayed_start - published < 20 * SCALE + SLACK
    assert 30 * SCALE <= scheduled_start - published < 31 * SCALE + SLACK
    assert qstash.message.get(scheduled.message_id).not_before == later * 1000


def test_one_deduplication_id_delivers_once(
    qstash: QStash, broker: RunningBroker, destination: ScriptedReceiver
) -> None:
    first = publish(qstash, url=destination.url, body={"k": 1}, deduplication_id="same")
    again = publish(qstash, url=destination.url, body={"k": 2}, deduplication_id="same")
    by_content = [
        publish(qstash, url=destination.url, body={"c": 1}, content_based_deduplication=True) for _ in range(2)
    ]
    assert (first.deduplicated, again.deduplicated, again.message_id) == (False, True, first.message_id)
    assert [sent.deduplicated for sent in by_content] == [False, True]
    wait_until(lambda: settled(broker, first.message_id) and settled(broker, by_content[0].message_id), "delivered")
    assert sorted(received.body for received in destination.received) == [b'{"c": 1}', b'{"k": 1}']


def test_flow_control_keeps_parallelism_and_rate(
    qstash: QStash, broker: RunningBroker, destination: ScriptedReceiver
) -> None:
    destination.hold = 0.1
    sent = [
        publish(qstash, url=destination.url, body={"n": n}, flow_control={"key": "k1", "parallelism": 2})
        for n in range(6)
    ]
    wait_until(lambda: all(settled(broker, message.message_id) for message in sent), "all delivered")
    assert destination.most_in_flight == 2
    destination.hold, destination.most_in_flight = 0, 0
    rated = [
        publish(qstash, url=destination.url, body={}, flow_control={"key": "k2", "rate": 2, "period": "100s"})
        for _ in range(4)
    ]
    wait_until(lambda: all(settled(broker, message.message_id) for message in rated), "all delivered")
    times = sorted(start for message in rated for start in starts(broker, message.message_id))
    assert times[2] - times[0] >= 100 * SCALE, "no more than two starts per period"


# ---------------------------------------------------------------- the API the SDKs read


def test_messages_and_the_dlq_in_the_shapes_the_sdk_parses(
    qstash: QStash, broker: RunningBroker, destination: ScriptedReceiver
) -> None:
    destination.script.extend([(400, {})] * 3)
    sent = [
        publish(
            qstash,
            url=destination.url,
            body={"n": n},
            retries=0,
            label=f"label-{n % 2}",
            flow_control={"key": "f", "parallelism": 5},
        )
        for n in range(3)
    ]
    wait_until(lambda: all(settled(broker, message.message_id) for message in sent), "dead-lettered")
    message = qstash.message.get(sent[0].message_id)
    assert (message.url, message.method, message.max_retries, message.label) == (destination.url, "POST", 0, "label-0")
    assert message.flow_control is not None and message.flow_control.parallelism == 5
    page = qstash.dlq.list(count=2)
    rest = qstash.dlq.list(cursor=page.cursor)
    assert len(page.messages) == 2 and page.cursor and len(rest.messages) == 1 and rest.cursor is None
    assert {letter.message_id for letter in page.messages + rest.messages} == {sent_.message_id for sent_ in sent}
    assert len(qstash.dlq.list(filter={"label": "label-1"}).messages) == 1
    assert len(qstash.dlq.list(filter={"response_status": 400, "url": destination.url}).messages) == 3
    letter = qstash.dlq.get(rest.messages[0].dlq_id)
    assert letter.response_status == 400 and letter.response_body == '{"error":"scripted"}'
    qstash.dlq.delete(letter.dlq_id)
    assert len(qstash.dlq.list().messages) == 2
    with pytest.raises(QStashError, match="404"):
        qstash.dlq.get(letter.dlq_id)
    with pytest.raises(QStashError, match="404"):
        qstash.message.get("msg_unknown")


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"Upstash-Retry-Delay": "__import__('os')"}, "Upstash-Retry-Delay"),
        ({"Upstash-Retry-Delay": "1/0"}, "Upstash-Retry-Delay"),
        ({"Upstash-Retries": "many"}, "upstash-retries"),
        ({"Upstash-Delay": "soon"}, "upstash-delay"),
        ({"Upstash-Flow-Control-Key": "k", "Upstash-Flow-Control-Value": "speed=9"}, "Flow-Control"),
    ],
)
def test_bad_options_are_refused_at_publish(
    broker: RunningBroker, destination: ScriptedReceiver, headers: dict[str, str], words: str
) -> None:
    answer = httpx.post(
        f"{broker.url}/v2/publish/{destination.url}", headers={"Authorization": f"Bearer {DEV_TOKEN}", **headers}
    )
    assert answer.status_code == 400 and words in answer.json()["error"]
    assert broker.broker.messages == {}


def test_a_wrong_token_is_401_and_anything_else_501(broker: RunningBroker, destination: ScriptedReceiver) -> None:
    wrong = httpx.post(f"{broker.url}/v2/publish/{destination.url}", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    for method, path in (("GET", "/v2/queues"), ("POST", "/v2/batch"), ("GET", "/v2/schedules")):
        answer = httpx.request(method, broker.url + path, headers={"Authorization": f"Bearer {DEV_TOKEN}"})
        assert answer.status_code == 501 and "not implemented by this local broker" in answer.json()["error"]


def test_the_help_says_it_is_in_memory() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "qjobs.devtools.broker", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "IN MEMORY" in shown and DEV_TOKEN in shown and "--time-scale" in shown


# ---------------------------------------------------------------- defaults, precedence, windows and order


def test_retry_after_wins_over_the_retry_delay_expression(
    qstash: QStash, broker: RunningBroker, destination: ScriptedReceiver
) -> None:
    destination.script.append((503, {"Retry-After": "30"}))
    sent = publish(qstash, url=destination.url, body={}, retries=1, retry_delay="100000")
    wait_until(lambda: settled(broker, sent.message_id), "delivered")
    first, second = starts(broker, sent.message_id)
    assert 30 * SCALE <= second - first < 30 * SCALE + SLACK, "30 s as asked, not the expression's 100 s"


def test_without_upstash_retries_a_message_is_retried_three_times(
    broker: RunningBroker, destination: ScriptedReceiver
) -> None:
    destination.script.extend([(500, {})] * 4)
    answer = httpx.post(
        f"{broker.url}/v2/publish/{destination.url}",
        headers={"Authorization": f"Bearer {DEV_TOKEN}", "Upstash-Retry-Delay": "100"},
        content=b"{}",
    )
    message_id = answer.json()["messageId"]
    wait_until(lambda: settled(broker, message_id), "dead-lettered")
    assert len(destination.received) == 4 and broker.broker.messages[message_id].state == "FAILED"


def test_upstash_retries_is_at_most_20(broker: RunningBroker, destination: ScriptedReceiver) -> None:
    def publish_with(retries: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {DEV_TOKEN}", "Upstash-Retries": retries}
        return httpx.post(f"{broker.url}/v2/publish/{destination.url}", headers=headers, content=b"{}")

    assert publish_with("20").status_code == 201
    refused = publish_with("21")
    assert refused.status_code == 400 and "upstash-retries" in refused.json()["error"]


def test_the_time_scale_shortens_delays_but_not_timeouts(
    qstash: QStash, broker: RunningBroker, destination: ScriptedReceiver
) -> None:
    """At 0.01 a 1 s timeout is still 1 s: an answer after 0.3 s arrives in time."""
    destination.hold = 0.3
    sent = publish(qstash, url=destination.url, body={}, retries=0, timeout="1s")
    wait_until(lambda: settled(broker, sent.message_id), "settled")
    assert broker.broker.messages[sent.message_id].state == "DELIVERED"


def test_a_deduplication_id_is_remembered_for_ten_minutes(
    qstash: QStash, broker: RunningBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten minutes of the broker's clock, unscaled (a window, not a delay)."""
    ahead = [0.0]
    clock = SimpleNamespace(monotonic=lambda: time.monotonic() + ahead[0], time=time.time, sleep=time.sleep)
    monkeypatch.setattr(broker_core, "time", clock)
    first = publish(qstash, url="https://jobs.example.test/a", body={}, deduplication_id="d-1", delay="1d")
    ahead[0] = 599
    within = publish(qstash, url="https://jobs.example.test/a", body={}, deduplication_id="d-1", delay="1d")
    ahead[0] = 601
    after = publish(qstash, url="https://jobs.example.test/a", body={}, deduplication_id="d-1", delay="1d")
    assert (within.deduplicated, within.message_id) == (True, first.message_id)
    assert after.deduplicated is False and after.message_id != first.message_id


def test_the_dlq_lists_oldest_first_even_within_one_millisecond(
    qstash: QStash, broker: RunningBroker, destination: ScriptedReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dead-letter ids are `{ms}-{n}`: within one millisecond, `-10` comes after `-9`."""
    frozen = time.time() + 1000
    clock = SimpleNamespace(monotonic=time.monotonic, time=lambda: frozen, sleep=time.sleep)
    monkeypatch.setattr(broker_core, "time", clock)
    destination.script.extend([(400, {})] * 11)
    sent = []
    for n in range(11):
        sent.append(publish(qstash, url=destination.url, body={"n": n}, retries=0).message_id)
        wait_until(lambda: settled(broker, sent[-1]), "dead-lettered")
    listed = qstash.dlq.list()
    assert [letter.message_id for letter in listed.messages] == sent
    assert len({letter.dlq_id.split("-")[0] for letter in listed.messages}) == 1, "one millisecond"
    page = qstash.dlq.list(count=6)
    rest = qstash.dlq.list(cursor=page.cursor)
    assert [letter.message_id for letter in page.messages + rest.messages] == sent


def test_the_token_in_qstash_token_is_accepted_too(destination: ScriptedReceiver) -> None:
    running = start_broker(time_scale=SCALE, environ={"QSTASH_TOKEN": "a-token-of-our-own"})
    try:
        own = QStash("a-token-of-our-own", base_url=running.url, retry=False)
        assert publish(own, url=destination.url, body={}).message_id.startswith("msg_")
        assert publish(QStash(DEV_TOKEN, base_url=running.url, retry=False), url=destination.url, body={}).message_id
    finally:
        running.stop()


def test_a_success_callback_is_answered_501(broker: RunningBroker, destination: ScriptedReceiver) -> None:
    headers = {"Authorization": f"Bearer {DEV_TOKEN}", "Upstash-Callback": destination.url + "/done"}
    answer = httpx.post(f"{broker.url}/v2/publish/{destination.url}", headers=headers, content=b"{}")
    assert answer.status_code == 501 and "Upstash-Callback" in answer.text
    assert destination.received == [], "nothing published, nothing delivered"


def test_upstash_method_is_the_delivery_s_method_and_the_timeout_defaults_to_30_seconds(
    qstash: QStash, broker: RunningBroker, destination: ScriptedReceiver
) -> None:
    put = publish(qstash, url=destination.url, body={}, method="PUT")
    plain = publish(qstash, url=destination.url, body={})
    wait_until(lambda: settled(broker, put.message_id) and settled(broker, plain.message_id), "delivered")
    assert sorted(received.method for received in destination.received) == ["POST", "PUT"]
    assert broker.broker.messages[plain.message_id].timeout == 30


def test_a_delay_expression_is_evaluated_at_publish_for_every_retry_it_may_need(
    broker: RunningBroker, destination: ScriptedReceiver
) -> None:
    """`1000 / (retried - 2)` divides by zero at the third retry only."""

    def publish_with(retries: str) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {DEV_TOKEN}",
            "Upstash-Retries": retries,
            "Upstash-Retry-Delay": "1000 / (retried - 2)",
        }
        return httpx.post(f"{broker.url}/v2/publish/{destination.url}", headers=headers, content=b"{}")

    assert publish_with("2").status_code == 201
    refused = publish_with("3")
    assert refused.status_code == 400 and "Upstash-Retry-Delay" in refused.json()["error"]


def test_a_489_without_the_non_retryable_header_is_retried(
    qstash: QStash, broker: RunningBroker, destination: ScriptedReceiver
) -> None:
    destination.script.append((489, {}))
    sent = publish(qstash, url=destination.url, body={}, retries=1, retry_delay="100")
    wait_until(lambda: settled(broker, sent.message_id), "settled")
    assert len(destination.received) == 2 and broker.broker.messages[sent.message_id].state == "DELIVERED"


def test_the_dlq_filters_by_caller_and_time_and_pages_at_most_100(
    broker: RunningBroker, destination: ScriptedReceiver
) -> None:
    destination.script.extend([(400, {})] * 101)
    auth = {"Authorization": f"Bearer {DEV_TOKEN}"}
    for _ in range(101):
        answer = httpx.post(f"{broker.url}/v2/publish/{destination.url}", headers={**auth, "Upstash-Retries": "0"})
        assert answer.status_code == 201
    wait_until(lambda: len(broker.broker.dead_letters) == 101, "all dead-lettered")
    failed_at = sorted(letter.failed_at_ms for letter in broker.broker.dead_letters.values())

    def listed(**query: int | str) -> dict[str, Any]:
        found: dict[str, Any] = httpx.get(f"{broker.url}/v2/dlq", params=query, headers=auth).json()
        return found

    first = listed(count=500)
    assert len(first["messages"]) == 100 and first["cursor"]
    assert len(listed(cursor=first["cursor"])["messages"]) == 1
    assert len(listed(callerIp="127.0.0.1", count=100)["messages"]) == 100
    assert listed(callerIp="10.9.9.9")["messages"] == []
    assert listed(fromDate=failed_at[-1] + 1)["messages"] == []
    assert listed(toDate=failed_at[0] - 1)["messages"] == []
    assert len(listed(fromDate=failed_at[0], toDate=failed_at[0])["messages"]) >= 1
