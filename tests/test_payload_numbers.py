"""Every number a payload model accepts is one Firestore can store: an integer in int64's
range, a finite float. Out of range is `489 validation_failed`, never a 500 at commit."""

from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import firestore
from pydantic import BaseModel

from handlers import FAILURE_CALLBACK, ROUTES
from qjobs.numbers import INT64_MAX, INT64_MIN
from tests.support import Deliver, error_of


def schema_nodes(schema: Any) -> Iterator[dict[str, Any]]:
    """Every node of a pydantic core schema, nested models and annotations included."""
    if isinstance(schema, dict):
        yield schema
        for value in schema.values():
            yield from schema_nodes(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from schema_nodes(value)


@pytest.mark.parametrize("path", sorted(ROUTES))
def test_every_number_a_job_accepts_fits_firestore(path: str) -> None:
    model = ROUTES[path].payload_model
    nodes = list(schema_nodes(model.__pydantic_core_schema__))
    for node in nodes:
        if node.get("type") == "int":
            lowest, highest = node.get("ge", node.get("gt")), node.get("le", node.get("lt"))
            bounded = lowest is not None and highest is not None and lowest >= INT64_MIN and highest <= INT64_MAX
            assert bounded, f"{model.__name__}: an int without int64 bounds (use qjobs.numbers.Int64)"
        if node.get("type") == "float":
            assert node.get("allow_inf_nan") is False, f"{model.__name__}: use qjobs.numbers.FiniteFloat"


def test_the_guard_sees_an_unbounded_int() -> None:
    class Unbounded(BaseModel):
        count: int

    ints = [node for node in schema_nodes(Unbounded.__pydantic_core_schema__) if node.get("type") == "int"]
    assert ints and "le" not in ints[0], "the walk finds ints, so a model without bounds would fail above"


REPORT = {"sourceMessageId": "msg_1", "url": "https://jobs.example.test/api/jobs/memory-sync"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("retried", 10**20),
        ("maxRetries", "100000000000000000000"),
        ("status", 2**63),
        ("createdAt", 2**64),
        ("retried", -1),
    ],
)
def test_a_failure_report_number_out_of_range_is_489_and_writes_nothing(
    deliver: Deliver, db: firestore.Client, field: str, value: Any
) -> None:
    response = deliver(FAILURE_CALLBACK, {**REPORT, field: value})
    assert error_of(response)[:2] == (489, "validation_failed"), response.json
    assert response.json is not None and response.json["details"][0]["field"] == field
    assert not db.collection("deadLetters").document("msg_1").get().exists


def test_the_largest_int64_is_kept(deliver: Deliver, db: firestore.Client) -> None:
    response = deliver(FAILURE_CALLBACK, {**REPORT, "retried": INT64_MAX, "createdAt": INT64_MAX})
    assert response.status_code == 200, response.json
    record = db.collection("deadLetters").document("msg_1").get().to_dict() or {}
    assert record["retried"] == INT64_MAX and record["publishedAt"] is None, "no date that far ahead"
