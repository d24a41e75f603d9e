"""The broker's HTTP API: the parts of QStash's that the official SDKs use for this product.

`POST /v2/publish/{destination}`, `GET /v2/messages/{id}`, `GET /v2/dlq`,
`GET /v2/dlq/{dlqId}` and `DELETE /v2/dlq/{dlqId}`, in the shapes the Python `qstash` and
JavaScript `@upstash/qstash` SDKs parse; anything else is `501` with a message that says
so. Every request needs `Authorization: Bearer <token>`.
"""

import base64
import json
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from qjobs.devtools.broker.core import Broker, DeadLetter, FlowControl, Message, new_message_id
from qjobs.devtools.broker.durations import DurationError, parse_duration
from qjobs.devtools.broker.expression import ExpressionError, delay_ms, parse

PUBLISH_PREFIX = "/v2/publish/"
MAX_BODY_BYTES = 1024 * 1024
DLQ_PAGE = 100


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def published_message(destination: str, headers: Mapping[str, str], body: bytes, caller_ip: str) -> Message:
    """A message from a publish request, every `Upstash-*` option checked: 400 on a bad one."""
    url = unquote(destination) if destination.lower().startswith(("http%3a", "https%3a")) else destination
    url = url.replace(":/", "://", 1) if "://" not in url else url
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise Refused(400, f"the destination must be an http(s) URL, not {destination!r}")
    options = {name.lower(): value for name, value in headers.items()}
    forwarded = {
        name[len("upstash-forward-") :]: value
        for name, value in headers.items()
        if name.lower().startswith("upstash-forward-")
    }
    if "content-type" in options:
        forwarded.setdefault("Content-Type", options["content-type"])
    if "upstash-callback" in options:
        raise Refused(501, "Upstash-Callback (success callbacks) is not implemented by this local broker")
    now_ms = int(time.time() * 1000)
    retries = _integer(options, "upstash-retries", 3, 0, 20)
    return Message(
        id=new_message_id(),
        url=url,
        method=options.get("upstash-method", "POST").upper(),
        body=body,
        headers=forwarded,
        retries=retries,
        retry_delay=options.get("upstash-retry-delay"),
        retry_node=_retry_node(options.get("upstash-retry-delay"), retries),
        timeout=_duration(options, "upstash-timeout") or 30.0,
        failure_callback=options.get("upstash-failure-callback"),
        failure_callback_headers={
            name[len("upstash-failure-callback-forward-") :]: value
            for name, value in headers.items()
            if name.lower().startswith("upstash-failure-callback-forward-")
        },
        callback=options.get("upstash-callback"),
        not_before_ms=_not_before_ms(options, now_ms),
        created_at_ms=now_ms,
        label=options.get("upstash-label"),
        flow=_flow_control(options),
        caller_ip=caller_ip,
    )


def _integer(options: Mapping[str, str], name: str, default: int, least: int, most: int) -> int:
    if name not in options:
        return default
    text = options[name].strip()
    if not text.isdigit() or not least <= int(text) <= most:
        raise Refused(400, f"{name} must be a whole number from {least} to {most}")
    return int(text)


def _retry_node(expression: str | None, retries: int) -> Any:
    if expression is None:
        return None
    try:
        node = parse(expression)
        for retried in range(max(1, retries)):
            delay_ms(node, retried)
    except ExpressionError as error:
        raise Refused(400, f"Upstash-Retry-Delay {error}") from None
    return node


def _duration(options: Mapping[str, str], name: str) -> float | None:
    if name not in options:
        return None
    try:
        return parse_duration(options[name])
    except DurationError as error:
        raise Refused(400, f"{name}: {error}") from None


def _not_before_ms(options: Mapping[str, str], now_ms: int) -> int:
    delay = _duration(options, "upstash-delay")
    if "upstash-not-before" in options:
        text = options["upstash-not-before"].strip()
        if not text.isdigit():
            raise Refused(400, "Upstash-Not-Before must be Unix seconds")
        return int(text) * 1000
    return now_ms + int((delay or 0) * 1000)


def _flow_control(options: Mapping[str, str]) -> FlowControl | None:
    key = options.get("upstash-flow-control-key")
    if key is None:
        return None
    values: dict[str, str] = {}
    for part in options.get("upstash-flow-control-value", "").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            values[name.strip()] = value.strip()
    unknown = set(values) - {"parallelism", "rate", "period"}
    if unknown or not ({"parallelism", "rate"} & set(values)):
        raise Refused(
            400, "Upstash-Flow-Control-Value takes parallelism, rate and period, and needs one of the first two"
        )
    try:
        parallelism = int(values["parallelism"]) if "parallelism" in values else None
        rate = int(values["rate"]) if "rate" in values else None
        period = parse_duration(values.get("period", "1s"))
    except (ValueError, DurationError) as error:
        raise Refused(400, f"Upstash-Flow-Control-Value: {error}") from None
    if (parallelism is not None and parallelism < 1) or (rate is not None and rate < 1) or period <= 0:
        raise Refused(400, "Upstash-Flow-Control-Value needs positive numbers")
    return FlowControl(key, parallelism, rate, period)


# ------------------------------------------------------------------ what the SDKs parse


def message_json(message: Message) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messageId": message.id,
        "url": message.url,
        "method": message.method,
        "header": {name: [value] for name, value in message.headers.items()},
        "maxRetries": message.retries,
        "notBefore": message.not_before_ms,
        "createdAt": message.created_at_ms,
        "callerIP": message.caller_ip,
    }
    try:
        body["body"] = message.body.decode()
    except UnicodeDecodeError:
        body["bodyBase64"] = base64.b64encode(message.body).decode()
    optional = {
        "failureCallback": message.failure_callback,
        "callback": message.callback,
        "retryDelayExpression": message.retry_delay,
        "label": message.label,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    if message.flow is not None:
        body["flowControlKey"] = message.flow.key
        flow = {"parallelism": message.flow.parallelism, "rate": message.flow.rate, "period": int(message.flow.period)}
        body.update({name: value for name, value in flow.items() if value is not None})
    return body


def dead_letter_json(letter: DeadLetter) -> dict[str, Any]:
    body = message_json(letter.message)
    last = letter.message.last
    body.update(
        dlqId=letter.dlq_id, responseStatus=last.status if last else 0, responseHeader=last.headers if last else {}
    )
    answer = last.body if last else b""
    try:
        body["responseBody"] = answer.decode()
    except UnicodeDecodeError:
        body["responseBodyBase64"] = base64.b64encode(answer).decode()
    return body


def dead_letter_page(broker: Broker, query: Mapping[str, list[str]]) -> dict[str, Any]:
    """`GET /v2/dlq`: oldest first (in the order they were dead-lettered), `count` (at most
    100) from `cursor`, with the filters the SDKs send."""

    def first(name: str) -> str | None:
        values = query.get(name)
        return values[0] if values else None

    letters = sorted(broker.dead_letters.values(), key=dead_letter_order)
    letters = [letter for letter in letters if _matches(letter, first)]
    start = int(first("cursor") or 0)
    count = min(DLQ_PAGE, int(first("count") or DLQ_PAGE))
    page = letters[start : start + count]
    body: dict[str, Any] = {"messages": [dead_letter_json(letter) for letter in page]}
    if start + count < len(letters):
        body["cursor"] = str(start + count)
    return body


def dead_letter_order(letter: DeadLetter) -> tuple[int, ...]:
    """A dead-letter id is `{ms}-{n}`, `n` counting up: compared as numbers, so that within
    one millisecond `-10` comes after `-9`."""
    return tuple(int(part) for part in letter.dlq_id.split("-"))


def _matches(letter: DeadLetter, first: Any) -> bool:
    message = letter.message
    status = message.last.status if message.last else 0
    checks = {
        "messageId": message.id,
        "url": message.url,
        "label": message.label,
        "callerIp": message.caller_ip,
        "responseStatus": str(status),
    }
    for name, actual in checks.items():
        wanted = first(name)
        if wanted is not None and wanted != actual:
            return False
    if first("topicName") or first("queueName") or first("scheduleId"):
        return False
    from_ms, to_ms = first("fromDate"), first("toDate")
    if from_ms is not None and letter.failed_at_ms < int(from_ms):
        return False
    return not (to_ms is not None and letter.failed_at_ms > int(to_ms))


# ------------------------------------------------------------------ the server


def serve(broker: Broker, host: str, port: int, tokens: frozenset[str]) -> ThreadingHTTPServer:
    """The API on host:port (not yet serving: call `serve_forever`)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self._handle("POST")

        def do_GET(self) -> None:
            self._handle("GET")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def do_PATCH(self) -> None:
            self._handle("PATCH")

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if 0 < length <= MAX_BODY_BYTES else b""
            try:
                if length > MAX_BODY_BYTES:
                    raise Refused(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
                self._authorize()
                status, answer = route(
                    broker, method, self.path, dict(self.headers.items()), body, caller_ip=self.client_address[0]
                )
            except Refused as refused:
                status, answer = refused.status, {"error": str(refused)}
            payload = b"" if answer is None else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _authorize(self) -> None:
            scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
            if scheme != "Bearer" or token not in tokens:
                raise Refused(401, "Unauthorized: the token is not this broker's")

        def log_message(self, format: str, *args: Any) -> None:
            return

    return ThreadingHTTPServer((host, port), Handler)


def route(
    broker: Broker, method: str, raw_path: str, headers: dict[str, str], body: bytes, *, caller_ip: str
) -> tuple[int, Any]:
    parts = urlsplit(raw_path)
    path, query = parts.path, parse_qs(parts.query)
    if method == "POST" and raw_path.startswith(PUBLISH_PREFIX):
        message = published_message(raw_path[len(PUBLISH_PREFIX) :], headers, body, caller_ip)
        options = {name.lower(): value for name, value in headers.items()}
        content_based = options.get("upstash-content-based-deduplication", "").lower() == "true"
        message_id, duplicate = broker.accept(message, options.get("upstash-deduplication-id"), content_based)
        return 201, {"messageId": message_id, **({"deduplicated": True} if duplicate else {})}
    if method == "GET" and path.startswith("/v2/messages/"):
        known = broker.messages.get(path.rsplit("/", 1)[1])
        if known is None:
            raise Refused(404, "message not found")
        return 200, message_json(known)
    if method == "GET" and path == "/v2/dlq":
        return 200, dead_letter_page(broker, query)
    if path.startswith("/v2/dlq/") and method in ("GET", "DELETE"):
        dlq_id = path.rsplit("/", 1)[1]
        letter = broker.dead_letters.get(dlq_id)
        if letter is None:
            raise Refused(404, "dlq message not found")
        if method == "DELETE":
            del broker.dead_letters[dlq_id]
            return 200, None
        return 200, dead_letter_json(letter)
    raise Refused(501, f"{method} {path} is not implemented by this local broker (see its --help)")
