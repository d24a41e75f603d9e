"""The published contract, docs/openapi.yaml: generated from the models, valid OpenAPI
3.1, and honoured by the live server for every request schemathesis can think of."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
import yaml
from google.cloud import firestore
from hypothesis import settings
from openapi_spec_validator import validate
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from handlers import ROUTES
from qjobs.devtools.emulator import Emulator
from qjobs.devtools.openapi import OUTPUT, render
from qjobs.ledger import token_doc_id
from qjobs.signature import sign
from tests.support import CURRENT_KEY, NEXT_KEY, PROJECT, Server, start_server

SCHEMA = schemathesis.openapi.from_path(OUTPUT)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
REFUSED_BEFORE_CLAIM = {"payload_too_large", "missing_message_id", "invalid_json", "validation_failed"}


def test_the_committed_document_is_what_the_models_generate() -> None:
    assert OUTPUT.read_text() == render(ROUTES), "run: .venv/bin/python -m qjobs.devtools.openapi"


def test_the_document_is_valid_openapi_3_1() -> None:
    document = yaml.safe_load(OUTPUT.read_text())
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == {"/health", *ROUTES}


class QStashSigner(requests.auth.AuthBase):
    """Signs each prepared request's exact body bytes as QStash would, for its URL."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.jti = ""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else bytes(body)
        parts = urlsplit(request.url or "")
        self.jti = f"jwt_{uuid.uuid4().hex}"
        url = self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")
        request.headers["Upstash-Signature"] = sign(raw, url=url, key=CURRENT_KEY, jti=self.jti)
        return request


@pytest.fixture(scope="module")
def live_server(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("QSTASH", "K_", "PUBLIC_"))},
        "QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY,
        "QSTASH_NEXT_SIGNING_KEY": NEXT_KEY,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "FIRESTORE_EMULATOR_HOST": emulator.host,
        "LOG_LEVEL": "WARNING",
    }
    server = start_server(env, Path(tmp_path_factory.mktemp("contract")) / "server.log")
    yield server
    server.stop()


def ledger_state(db: firestore.Client, message_id: Any) -> Any:
    """The ledger entry's update time, if the id names one (a generated id may be anything)."""
    if not isinstance(message_id, str) or not message_id:
        return None
    try:
        snapshot = db.collection("jobs").document(message_id).get()
    except ValueError:
        return None
    return snapshot.update_time if snapshot.exists else None


@pytest.mark.processes
@SCHEMA.parametrize()
@settings(max_examples=40, deadline=None)
def test_the_live_server_honours_the_contract(case: schemathesis.Case[Any], live_server: Server) -> None:
    db = firestore.Client(project=PROJECT)
    signer = QStashSigner(live_server.url)
    session = requests.Session()
    session.auth = signer
    headers: dict[str, Any] = dict(case.headers or {})
    message_id = headers.get("Upstash-Message-Id")
    before = ledger_state(db, message_id)
    response = case.call(base_url=live_server.url, session=session, timeout=60)
    case.validate_response(response, checks=CHECKS)
    is_json = str(response.headers.get("Content-Type", "")).startswith("application/json")
    body = response.json() if is_json else {}
    if response.status_code == 401 or body.get("error") in REFUSED_BEFORE_CLAIM:
        assert ledger_state(db, message_id) == before
        assert not db.collection("jobTokens").document(token_doc_id(signer.jti)).get().exists
