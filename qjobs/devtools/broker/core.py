"""The broker's messages: what was published, when each is due, and how each attempt ended.

Everything is in memory. A dispatcher thread hands due messages to a pool of delivery
threads, keeping flow control (never more in flight per key than its parallelism, never
more starts per period than its rate); each attempt is signed afresh, as QStash signs it.
A failed attempt is retried after the destination's `Retry-After`, the message's
`Upstash-Retry-Delay`, or QStash's default backoff; a `489` with
`Upstash-NonRetryable-Error: true`, or the last retry failing, puts it in the dead-letter
queue and sends its failure callback. `time_scale` multiplies every delay.
"""

import base64
import hashlib
import heapq
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from qjobs.devtools.broker.expression import Node
from qjobs.devtools.broker.retries import outcome, retry_delay
from qjobs.signature import delivery_headers

DEFAULT_RETRIES = 3
DEFAULT_TIMEOUT_SECONDS = 30.0
DEDUPLICATION_SECONDS = 600.0
ANSWER_LIMIT = 64 * 1024


@dataclass(frozen=True)
class FlowControl:
    key: str
    parallelism: int | None = None
    rate: int | None = None
    period: float = 1.0


@dataclass
class Answer:
    """How the destination answered an attempt (status 0: it did not answer)."""

    status: int
    headers: dict[str, list[str]]
    body: bytes


@dataclass
class Message:
    id: str
    url: str
    method: str
    body: bytes
    headers: dict[str, str]
    """Delivered with every attempt: the forwarded headers and the content type."""
    retries: int = DEFAULT_RETRIES
    retry_delay: str | None = None
    retry_node: Node | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    failure_callback: str | None = None
    failure_callback_headers: dict[str, str] = field(default_factory=dict)
    callback: str | None = None
    not_before_ms: int = 0
    created_at_ms: int = 0
    label: str | None = None
    flow: FlowControl | None = None
    caller_ip: str = ""
    retried: int = 0
    state: str = "CREATED"
    last: Answer | None = None
    internal: bool = False
    """A failure callback: sent like a message, never itself reported."""


@dataclass
class Attempt:
    """One delivery attempt, for whoever watches the broker (tests, the log)."""

    message_id: str
    url: str
    retried: int
    started: float
    ended: float = 0.0
    status: int = 0
    flow_key: str | None = None


@dataclass
class DeadLetter:
    dlq_id: str
    message: Message
    failed_at_ms: int


class Broker:
    def __init__(self, signing_key: str, *, time_scale: float = 1.0, workers: int = 32) -> None:
        self.signing_key = signing_key
        self.time_scale = time_scale
        self.messages: dict[str, Message] = {}
        self.dead_letters: dict[str, DeadLetter] = {}
        self.attempts: list[Attempt] = []
        self._deduplicated: dict[str, tuple[str, float]] = {}
        self._due: list[tuple[float, int, str]] = []
        self._sequence = 0
        self._dlq_sequence = 0
        self._in_flight: dict[str, int] = {}
        self._starts: dict[str, deque[float]] = {}
        self._waiting: dict[str, deque[str]] = {}
        self._condition = threading.Condition()
        self._running = False
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="broker-delivery")
        self._dispatcher = threading.Thread(target=self._dispatch, name="broker-dispatcher", daemon=True)

    # ------------------------------------------------------------ life

    def start(self) -> None:
        self._running = True
        self._dispatcher.start()

    def stop(self) -> None:
        with self._condition:
            self._running = False
            self._condition.notify_all()
        self._dispatcher.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ publishing

    def accept(self, message: Message, deduplication_id: str | None, content_based: bool) -> tuple[str, bool]:
        """Queue `message`; the id it goes by, and whether it was a duplicate (then the
        earlier message's id, and nothing new is queued)."""
        key = deduplication_id or (self._content_key(message) if content_based else None)
        now = time.monotonic()
        with self._condition:
            if key is not None:
                earlier = self._deduplicated.get(key)
                if earlier is not None and earlier[1] > now:
                    return earlier[0], True
                self._deduplicated[key] = (message.id, now + DEDUPLICATION_SECONDS)
            self.messages[message.id] = message
            wait_ms = max(0, message.not_before_ms - int(time.time() * 1000))
            self._schedule(message.id, wait_ms / 1000)
        return message.id, False

    @staticmethod
    def _content_key(message: Message) -> str:
        parts = [message.url, message.method, json.dumps(sorted(message.headers.items()))]
        digest = hashlib.sha256("\x00".join(parts).encode() + b"\x00" + message.body).hexdigest()
        return f"content:{digest}"

    # ------------------------------------------------------------ scheduling

    def _schedule(self, message_id: str, delay_seconds: float) -> None:
        """Under the lock: due after `delay_seconds`, scaled."""
        self._sequence += 1
        due = time.monotonic() + max(0.0, delay_seconds) * self.time_scale
        heapq.heappush(self._due, (due, self._sequence, message_id))
        self._condition.notify_all()

    def _dispatch(self) -> None:
        while True:
            with self._condition:
                while self._running and not self._ready():
                    timeout = self._due[0][0] - time.monotonic() if self._due else None
                    self._condition.wait(timeout=timeout)
                if not self._running:
                    return
                _, _, message_id = heapq.heappop(self._due)
                message = self.messages[message_id]
                if not self._may_start(message):
                    continue
                attempt = Attempt(
                    message.id, message.url, message.retried, time.monotonic(), flow_key=flow_key(message)
                )
                self.attempts.append(attempt)
                message.state = "ACTIVE"
            self._pool.submit(self._attempt, message, attempt)

    def _ready(self) -> bool:
        return bool(self._due) and self._due[0][0] <= time.monotonic()

    def _may_start(self, message: Message) -> bool:
        """Under the lock: flow control. A message over its key's parallelism waits for a
        slot; one over its rate is due again when the period's first start leaves it."""
        flow = message.flow
        if flow is None:
            return True
        if flow.parallelism is not None and self._in_flight.get(flow.key, 0) >= flow.parallelism:
            self._waiting.setdefault(flow.key, deque()).append(message.id)
            return False
        if flow.rate is not None:
            starts = self._starts.setdefault(flow.key, deque())
            window = flow.period * self.time_scale
            now = time.monotonic()
            while starts and starts[0] <= now - window:
                starts.popleft()
            if len(starts) >= flow.rate:
                self._schedule(message.id, (starts[0] + window - now) / self.time_scale)
                return False
            starts.append(now)
        self._in_flight[flow.key] = self._in_flight.get(flow.key, 0) + 1
        return True

    def _release(self, message: Message) -> None:
        """Under the lock: the message's flow-control slot is free; the next waiting one is due."""
        key = flow_key(message)
        if key is None:
            return
        self._in_flight[key] = max(0, self._in_flight.get(key, 0) - 1)
        waiting = self._waiting.get(key)
        if waiting:
            self._schedule(waiting.popleft(), 0)

    # ------------------------------------------------------------ delivering

    def _attempt(self, message: Message, attempt: Attempt) -> None:
        answer = self._send(message)
        with self._condition:
            attempt.ended, attempt.status = time.monotonic(), answer.status
            message.last = answer
            self._release(message)
            self._settle(message, answer)

    def _send(self, message: Message) -> Answer:
        delivery = delivery_headers(
            message.body, url=message.url, key=self.signing_key, message_id=message.id, retried=message.retried
        )
        headers = {**message.headers, **delivery}
        if message.caller_ip:
            headers["Upstash-Caller-Ip"] = message.caller_ip
        request = urllib.request.Request(message.url, data=message.body or None, headers=headers, method=message.method)
        try:
            with urllib.request.urlopen(request, timeout=message.timeout) as response:
                return Answer(response.status, _headers(response.headers), response.read(ANSWER_LIMIT))
        except urllib.error.HTTPError as error:
            return Answer(error.code, _headers(error.headers), error.read(ANSWER_LIMIT))
        except (OSError, ValueError) as error:
            return Answer(0, {}, f"delivery failed: {type(error).__name__}".encode())

    def _settle(self, message: Message, answer: Answer) -> None:
        """Under the lock: delivered, retried later, or dead-lettered (the rules are in `retries.py`)."""
        verdict = outcome(answer.status, answer.headers, retried=message.retried, retries=message.retries)
        if verdict == "delivered":
            message.state = "DELIVERED"
            return
        if verdict == "dead-letter":
            self._dead_letter(message)
            return
        delay = retry_delay(answer.headers, message.retry_node, message.retried)
        message.retried += 1
        message.state = "RETRY"
        self._schedule(message.id, delay)

    def _dead_letter(self, message: Message) -> None:
        """Under the lock."""
        message.state = "FAILED"
        now_ms = int(time.time() * 1000)
        self._dlq_sequence += 1
        dlq_id = f"{now_ms}-{self._dlq_sequence}"
        self.dead_letters[dlq_id] = DeadLetter(dlq_id, message, now_ms)
        if message.failure_callback and not message.internal:
            report = failure_report(message, dlq_id)
            callback = Message(
                id=new_message_id(),
                url=message.failure_callback,
                method="POST",
                body=json.dumps(report).encode(),
                headers={"Content-Type": "application/json", **message.failure_callback_headers},
                created_at_ms=now_ms,
                internal=True,
            )
            self.messages[callback.id] = callback
            self._schedule(callback.id, 0)


def flow_key(message: Message) -> str | None:
    return message.flow.key if message.flow is not None else None


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def failure_report(message: Message, dlq_id: str) -> dict[str, Any]:
    """The JSON QStash POSTs to a failure callback (numbers as numbers; QStash sometimes
    sends them as strings, which receivers must accept too)."""
    last = message.last or Answer(0, {}, b"")
    return {
        "status": last.status,
        "header": last.headers,
        "body": base64.b64encode(last.body).decode(),
        "retried": message.retried,
        "maxRetries": message.retries,
        "dlqId": dlq_id,
        "sourceMessageId": message.id,
        "topicName": "",
        "endpointName": "",
        "url": message.url,
        "method": message.method,
        "sourceHeader": {name: [value] for name, value in message.headers.items()},
        "sourceBody": base64.b64encode(message.body).decode(),
        "notBefore": message.not_before_ms,
        "createdAt": message.created_at_ms,
        "scheduleId": "",
        "callerIP": message.caller_ip,
    }


def _headers(headers: Any) -> dict[str, list[str]]:
    collected: dict[str, list[str]] = {}
    for name, value in headers.items():
        collected.setdefault(name, []).append(value)
    return collected
