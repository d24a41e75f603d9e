"""Assembly of the entry point: configuration, logging, the Flask app's limits and error
pages (the server's own too), the SIGTERM hook, and the one HTTP function
functions-framework serves."""

import json
import os
import socket
import sys
from collections.abc import Callable, Mapping
from typing import Any

import flask
from gunicorn import util as gunicorn_util
from werkzeug.exceptions import HTTPException

from qjobs.config import ConfigError, Settings, load_settings
from qjobs.errors import ApiError
from qjobs.http import body_read_limit, error_response, ignore_oversized_body, payload_too_large
from qjobs.jobs import JobSpec
from qjobs.logs import configure_logging
from qjobs.pipeline import Pipeline, Services, job_failed
from qjobs.shutdown import install_worker_hook

HttpFunction = Callable[[flask.Request], flask.Response]


def settings_or_exit(environ: Mapping[str, str]) -> Settings:
    """A misconfigured service must not start: one line on stderr, then exit."""
    try:
        return load_settings(environ)
    except ConfigError as error:
        print(f"qjobs: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def build_entry_point(routes: Mapping[str, JobSpec[Any]], environ: Mapping[str, str] | None = None) -> HttpFunction:
    settings = settings_or_exit(os.environ if environ is None else environ)
    configure_logging(settings.log_level, settings.google_cloud_project)
    pipeline = Pipeline(settings, routes, Services(settings))
    if flask.has_app_context():
        configure_flask(flask.current_app, settings)
    install_worker_hook(pipeline.shutdown.begin)
    install_server_error_pages()

    def jobs(request: flask.Request) -> flask.Response:
        return pipeline.handle(request)

    jobs.pipeline = pipeline  # type: ignore[attr-defined]
    return jobs


def configure_flask(app: flask.Flask, settings: Settings) -> None:
    """functions-framework reads the whole body again after the handler returns; the
    content-length cap is what keeps an oversized body out of memory there too."""
    app.config["MAX_CONTENT_LENGTH"] = body_read_limit(settings.max_body_bytes)
    app.before_request(lambda: ignore_oversized_body(settings.max_body_bytes))
    app.register_error_handler(HTTPException, _framework_error)
    app.register_error_handler(500, _crash)


def _framework_error(error: HTTPException) -> flask.Response:
    """The framework's own answers (404 for /robots.txt, 413) in the service's shape."""
    status = error.code or 500
    if status == 413:
        return error_response(payload_too_large(flask.current_app.config["MAX_CONTENT_LENGTH"] - 1))
    if status >= 500:
        return error_response(job_failed())
    code = (error.name or "error").lower().replace(" ", "_")
    return error_response(ApiError(status, code, error.description or error.name))


def _crash(_: Exception) -> flask.Response:
    return error_response(job_failed())


def install_server_error_pages() -> None:
    """gunicorn answers a request it cannot parse (a header over 8190 bytes: 431; a request
    line it cannot read: 400) itself, before any app, with an HTML page. Its one writer of
    those answers, `gunicorn.util.write_error`, looked up at each call, is replaced before
    the fork (as the SIGTERM hook is) by one that writes the service's JSON error shape. It
    names the status only: gunicorn's own text would echo the request."""
    if getattr(gunicorn_util.write_error, "__qjobs__", False):
        return

    def write_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
        code = reason.lower().replace(" ", "_")
        body = json.dumps({"error": code, "message": f"the request could not be read: {reason}"}).encode()
        head = (
            f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        gunicorn_util.write_nonblock(sock, head.encode("latin-1") + body)

    write_error.__qjobs__ = True  # type: ignore[attr-defined]
    gunicorn_util.write_error = write_error
