"""Fixtures: the real Firestore emulator for the session, apps built the way
functions-framework builds them, and signed deliveries."""

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
from flask.testing import FlaskClient
from functions_framework import create_app
from google.cloud import firestore
from hypothesis import settings
from werkzeug.test import TestResponse

from qjobs.devtools.emulator import Emulator, start_emulator
from tests.support import CURRENT_KEY, MAIN, NEXT_KEY, PROJECT, PUBLIC_BASE_URL, encode, qstash_headers

settings.register_profile("dev", print_blob=True)
settings.register_profile("ci", derandomize=True, print_blob=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))
"""Property tests explore afresh on a developer's machine (a failure prints the blob that
reproduces it) and run the same examples every time in CI (`.ci/run` sets CI)."""

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
