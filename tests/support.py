"""Helpers shared by the tests: keys, signed deliveries, a real server in a subprocess."""

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import flask
import pytest
import requests
from flask.testing import FlaskClient
from functions_framework import create_app
from google.cloud import firestore
from werkzeug.test import TestResponse

from qjobs.devtools.emulator import Emulator, free_port, start_emulator
from qjobs.signature import sign

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "main.py"
PROBE_MAIN = ROOT / "tests" / "apps" / "probe_main.py"
PROJECT = "test-project"
CURRENT_KEY = "sig_testCurrentKey000000000000000"
NEXT_KEY = "sig_testNextKey00000000000000000000"
PUBLIC_BASE_URL = "https://jobs.example.test"
NOTIFY = "/api/jobs/notify-collaborators"
MEMORY = "/api/jobs/memory-sync"
PROBE = "/api/jobs/probe"
CHANNELS_OFF = {"skipped": 0, "email": "disabled", "webhook": "disabled"}
NOTIFY_PAYLOAD = {
    "tripId": "trip-1",
    "event": "trip_updated",
    "collaboratorIds": ["u1", "u2"],
    "message": "Dates moved",
}


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def encode(payload: Any) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


def qstash_headers(
    path: str,
    body: bytes,
    *,
    message_id: str | None = None,
    key: str = CURRENT_KEY,
    base_url: str = PUBLIC_BASE_URL,
    retried: int = 0,
    **claims: Any,
) -> dict[str, str]:
    """The headers QStash sends with a delivery, signed for `base_url + path`."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "Upstash-QStash",
        "Upstash-Signature": sign(body, url=base_url + path, key=key, **claims),
        "Upstash-Message-Id": message_id or new_message_id(),
        "Upstash-Retried": str(retried),
    }


ResponseT = TypeVar("ResponseT", TestResponse, requests.Response)


WAIT_SECONDS = 15
"""How long a test waits for anything to happen: every wait in the suite is bounded."""


def wait_until(condition: Callable[[], object], what: str, timeout: float = WAIT_SECONDS) -> None:
    """Poll `condition` until it is true; fail the test (naming `what`) once `timeout` has passed."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still not the case after {timeout:.0f}s")
        time.sleep(0.02)


ValueT = TypeVar("ValueT")


def in_background(function: Callable[[], ValueT]) -> "Future[ValueT]":
    """Run `function` on a thread of its own; `.result(timeout)` bounds the wait for it."""
    executor = ThreadPoolExecutor(max_workers=1)
    future = executor.submit(function)
    executor.shutdown(wait=False)
    return future


def all_at_once(functions: Sequence[Callable[[], ValueT]], timeout: float = 60) -> list[ValueT]:
    """Start every function at the same moment, each on its own thread, and return their
    results in order; a function still running after `timeout` fails the test."""
    barrier = threading.Barrier(len(functions))

    def started_together(function: Callable[[], ValueT]) -> ValueT:
        barrier.wait(timeout=timeout)
        return function()

    executor = ThreadPoolExecutor(max_workers=len(functions))
    try:
        futures = [executor.submit(started_together, function) for function in functions]
        return [future.result(timeout=timeout) for future in futures]
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def retrying_409(send: Callable[[], ResponseT], attempts: int = 40) -> ResponseT:
    """Deliver as QStash does: a 409 (message busy or contended) is retried a little later."""
    for _ in range(attempts - 1):
        response = send()
        if response.status_code != 409:
            return response
        time.sleep(0.1)
    return send()


def delivery_log_lines(output: str) -> list[dict[str, Any]]:
    """The one-per-delivery structured log lines in a process's output."""
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "job_delivery"]


def unsigned_token(claims: Mapping[str, Any]) -> str:
    """An `alg: none` token: it carries claims but no signature."""

    def part(value: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def error_of(response: TestResponse | requests.Response) -> tuple[int, str, str | None]:
    """(status, error code, first detail code) of an error response."""
    body = response.json
    body = body() if callable(body) else body
    assert isinstance(body, dict)
    details = body.get("details") or [{}]
    status = response.status_code
    return status, body["error"], details[0].get("code")


@dataclass
class Server:
    """functions-framework started exactly as in production, on a free local port."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(timeout=10)


def start_server(
    env: Mapping[str, str], log_path: Path, *, source: Path = MAIN, command: list[str] | None = None
) -> Server:
    """Start the service the way `make run` does (or with `command`, which must read PORT):
    PUBLIC_BASE_URL is its own local URL."""
    port = free_port()
    argv = command or [
        sys.executable,
        "-m",
        "functions_framework",
        "--target=jobs",
        f"--source={source}",
        f"--port={port}",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**env, "PORT": str(port), "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process, port, log_path)
    wait_for_health(server)
    return server


def wait_for_health(server: Server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{server.logs()}")
        try:
            if requests.get(f"{server.url}/health", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"the server did not become healthy:\n{server.logs()}")


# ---------------------------------------------------------------- fixtures (conftest.py registers them)


SERVICE_VARIABLES = (
    "K_SERVICE",
    "PUBLIC_BASE_URL",
    "ALLOW_DEV_SIGNING_KEYS",
    "QSTASH_CURRENT_SIGNING_KEY",
    "QSTASH_NEXT_SIGNING_KEY",
    "JOB_LEASE_SECONDS",
    "MAX_BODY_BYTES",
)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """The emulator named by FIRESTORE_EMULATOR_HOST, or one started for this session."""
    existing = os.environ.get("FIRESTORE_EMULATOR_HOST")
    started = None if existing else start_emulator(log_path=tmp_path_factory.mktemp("emulator") / "firestore.log")
    instance = started or Emulator(existing or "")
    previous = {name: os.environ.get(name) for name in ("FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")}
    os.environ.update(FIRESTORE_EMULATOR_HOST=instance.host, GOOGLE_CLOUD_PROJECT=PROJECT)
    yield instance
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if started:
        started.stop()


@pytest.fixture
def db(emulator: Emulator) -> firestore.Client:
    """A client on an emptied database."""
    emulator.clear(PROJECT)
    return firestore.Client(project=PROJECT)


@pytest.fixture
def service_env(emulator: Emulator) -> dict[str, str]:
    """The environment of a correctly configured service off Cloud Run."""
    env = {name: value for name, value in os.environ.items() if name not in SERVICE_VARIABLES}
    env.update(
        QSTASH_CURRENT_SIGNING_KEY=CURRENT_KEY,
        QSTASH_NEXT_SIGNING_KEY=NEXT_KEY,
        PUBLIC_BASE_URL=PUBLIC_BASE_URL,
        FIRESTORE_EMULATOR_HOST=emulator.host,
        GOOGLE_CLOUD_PROJECT=PROJECT,
        FIRESTORE_TIMEOUT_SECONDS="5",
        LOG_LEVEL="INFO",
    )
    return env


AppFactory = Callable[..., FlaskClient]


@pytest.fixture
def make_client(monkeypatch: pytest.MonkeyPatch, service_env: dict[str, str]) -> AppFactory:
    """Build the app as functions-framework does, from `source`, with env overrides
    (a value of None removes the variable)."""

    def build(source: Path = MAIN, **overrides: str | None) -> FlaskClient:
        for name in SERVICE_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for name, value in {**service_env, **overrides}.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        app: flask.Flask = create_app(target="jobs", source=str(source))  # type: ignore[no-untyped-call]
        return app.test_client()

    return build


@pytest.fixture
def client(make_client: AppFactory, db: firestore.Client) -> FlaskClient:
    return make_client()


Deliver = Callable[..., TestResponse]


@pytest.fixture
def deliver(client: FlaskClient) -> Deliver:
    """POST a payload to a job path as QStash would; keyword arguments go to the signer."""

    def post(path: str, payload: Any, *, test_client: FlaskClient | None = None, **signing: Any) -> TestResponse:
        body = encode(payload)
        return (test_client or client).post(path, data=body, headers=qstash_headers(path, body, **signing))

    return post
