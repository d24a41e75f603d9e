"""The HTTP edge: JSON responses in one shape, the capped body, the URL QStash signed."""

import io
import json
from typing import Any

import flask
from werkzeug.exceptions import RequestEntityTooLarge

from qjobs.config import Settings
from qjobs.errors import ApiError, ErrorDetail, non_retryable


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> flask.Response:
    return flask.Response(
        json.dumps(body, separators=(",", ":"), default=str),
        status=status,
        headers=headers or {},
        mimetype="application/json",
    )


def error_response(error: ApiError) -> flask.Response:
    return json_response(error.status, error.body(), error.headers)


def payload_too_large(limit: int) -> ApiError:
    return non_retryable("payload_too_large", f"the body is larger than {limit} bytes")


def read_capped_body(request: flask.Request, limit: int) -> bytes:
    """Read the body once, never more than `limit + 1` bytes of it: enough to tell an
    oversized body (declared or chunked) from one that fits."""
    if request.content_length is not None and request.content_length > limit:
        ignore_body(request)
        raise payload_too_large(limit)
    parts: list[bytes] = []
    size = 0
    try:
        while size <= limit:
            part = request.stream.read(limit + 1 - size)
            if not part:
                break
            parts.append(part)
            size += len(part)
    except RequestEntityTooLarge:
        size = limit + 1
    if size > limit:
        ignore_body(request)
        raise payload_too_large(limit)
    return b"".join(parts)


def body_read_limit(limit: int) -> int:
    """Flask's MAX_CONTENT_LENGTH for a body cap of `limit`: one byte more, so that a
    chunked body one byte over the cap is seen as over it rather than cut to fit."""
    return limit + 1


def ignore_body(request: flask.Request) -> None:
    """functions-framework reads the body again after every response; for a body over the
    cap that read would raise 413 outside any handler (a 500). An empty stream in its place
    ends the request cleanly; the server discards the unread bytes without buffering them."""
    request.stream = io.BytesIO()


def ignore_oversized_body(limit: int) -> None:
    """Before any route: an oversized body is never read, whatever the path."""
    request = flask.request
    if request.content_length is not None and request.content_length > limit:
        ignore_body(request)


def signed_url(request: flask.Request, settings: Settings) -> str:
    """The URL QStash published to, which the token's `sub` must name.

    On Cloud Run the configured public base URL is the only source: every destination of
    one QStash account shares its keys, so trusting the client-controlled Host header would
    let a token minted for another service open this one. Cloud Run also terminates TLS, so
    the scheme the app sees is `http`: off Cloud Run, `https` is assumed likewise.
    """
    query = request.query_string.decode("latin-1")
    path = request.path + (f"?{query}" if query else "")
    if settings.public_base_url:
        return settings.public_base_url + path
    return f"https://{original_host(request)}{path}"


def original_host(request: flask.Request) -> str:
    """The host the client asked for: the first of `X-Forwarded-Host`'s comma-separated
    list (each proxy appends the host it was asked for), else `Host`. The scheme is not
    taken from `X-Forwarded-Proto`: a proxy's `http` leg must not change the signed URL."""
    forwarded = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
    return forwarded or request.headers.get("Host", "")


def header_detail(header: str, code: str, message: str) -> ErrorDetail:
    return ErrorDetail(field=header, code=code, message=message)
