"""docs/openapi.yaml, generated from the route table and the jobs' pydantic models.

`python -m qjobs.devtools.openapi` rewrites the file; a test fails when the committed file
and the models disagree, so the published contract cannot drift from the code.
"""

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from handlers import ROUTES
from qjobs.errors import NON_RETRYABLE_HEADER
from qjobs.jobs import JobSpec
from qjobs.safe_id import SAFE_ID_MAX_LENGTH, SAFE_ID_PATTERN

OUTPUT = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
REF = "#/components/schemas/{model}"


def build_document(routes: Mapping[str, JobSpec[Any]]) -> dict[str, Any]:
    schemas: dict[str, Any] = {**BASE_SCHEMAS}
    paths: dict[str, Any] = {"/health": HEALTH_PATH}
    for path, job in routes.items():
        payload = add_model(schemas, job.payload_model)
        result = add_model(schemas, job.result_model)
        paths[path] = {"post": job_operation(job, payload, result)}
    return {
        "openapi": "3.1.0",
        "info": INFO,
        "servers": [
            {"url": "https://jobs-abc-uc.a.run.app", "description": "Cloud Run (PUBLIC_BASE_URL)"},
            {"url": "http://127.0.0.1:8080", "description": "make run"},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": PARAMETERS,
            "headers": HEADERS,
            "responses": RESPONSES,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def add_model(schemas: dict[str, Any], model: type[BaseModel]) -> str:
    """Put the model's JSON schema (and the models it uses) into components.schemas."""
    schema = model.model_json_schema(ref_template=REF)
    for name, definition in schema.pop("$defs", {}).items():
        schemas[name] = definition
    schemas[model.__name__] = schema
    return model.__name__


def job_operation(job: JobSpec[Any], payload: str, result: str) -> dict[str, Any]:
    return {
        "operationId": job.name.replace("-", "_"),
        "summary": f"Run the {job.name} job (QStash delivers it)",
        "security": [{"upstashSignature": []}],
        "parameters": [{"$ref": "#/components/parameters/" + name} for name in PARAMETERS],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=payload)}}},
        },
        "responses": {
            "200": {
                "description": "The job ran, or this is a copy of a finished message (`duplicate: true`).",
                "content": {
                    "application/json": {
                        "schema": {"allOf": [{"$ref": REF.format(model="Success")}, {"$ref": REF.format(model=result)}]}
                    }
                },
            },
            **{status: {"$ref": f"#/components/responses/{name}"} for status, name in ERROR_RESPONSES.items()},
        },
    }


INFO = {
    "title": "Trip jobs",
    "version": "1.0.0",
    "description": (
        "Background jobs Upstash QStash delivers over HTTP. Every job request must carry a QStash "
        "signature and a message id; any status but 2xx is retried by QStash, except 489 with "
        f"`{NON_RETRYABLE_HEADER}: true`, which goes to the dead-letter queue."
    ),
}

SAFE_ID = {"type": "string", "minLength": 1, "maxLength": SAFE_ID_MAX_LENGTH, "pattern": SAFE_ID_PATTERN}

BASE_SCHEMAS: dict[str, Any] = {
    "ErrorDetail": {
        "type": "object",
        "required": ["field", "code", "message"],
        "properties": {
            "field": {"type": "string", "description": "dotted path into the payload, or a header name"},
            "code": {"type": "string", "description": "pydantic's error type, or the service's own reason"},
            "message": {"type": "string"},
        },
    },
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string"},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {"$ref": REF.format(model="ErrorDetail")}},
        },
    },
    "Success": {
        "type": "object",
        "required": ["ok", "messageId", "duplicate"],
        "properties": {
            "ok": {"const": True},
            "messageId": SAFE_ID,
            "duplicate": {"type": "boolean"},
        },
    },
    "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
}

PARAMETERS: dict[str, Any] = {
    "MessageId": {
        "name": "Upstash-Message-Id",
        "in": "header",
        "required": True,
        "description": "QStash's message id, the same on every retry of one message; the ledger's key.",
        "schema": SAFE_ID,
    },
    "Retried": {
        "name": "Upstash-Retried",
        "in": "header",
        "required": False,
        "description": "How many times QStash retried this message (0 on the first attempt).",
        "schema": {"type": "integer", "minimum": 0},
    },
}

HEADERS: dict[str, Any] = {
    "NonRetryable": {
        "description": "Tells QStash not to retry: the message goes to its dead-letter queue.",
        "required": True,
        "schema": {"type": "string", "enum": ["true"]},
    },
    "RetryAfter": {
        "description": "Seconds QStash should wait before the next attempt.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
}


def error_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
    }
    if headers:
        response["headers"] = headers
    return response


RESPONSES: dict[str, Any] = {
    "Unauthorized": error_response(
        "`missing_signature`, or `invalid_signature` with the reason as `details[0].code`: `malformed`, "
        "`bad_signature`, `expired`, `not_yet_valid`, `wrong_issuer`, `wrong_url`, `body_mismatch`, "
        "`missing_claim`, `replayed`."
    ),
    "InProgress": error_response(
        "`in_progress` (another attempt holds the message, or the claim was contended) or `claim_lost`.",
        {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}},
    ),
    "NonRetryable": error_response(
        "Can never succeed: `payload_too_large`, `missing_message_id`, `invalid_json`, `validation_failed`, "
        "`message_id_reused`, or the job's own reason (for example `conversation_not_found`).",
        {NON_RETRYABLE_HEADER: {"$ref": "#/components/headers/NonRetryable"}},
    ),
    "JobFailed": error_response("`job_failed`: a transient failure; QStash retries with backoff."),
    "ShuttingDown": error_response(
        "`shutting_down`: the instance received SIGTERM.", {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    ),
}

ERROR_RESPONSES = {
    "401": "Unauthorized",
    "409": "InProgress",
    "489": "NonRetryable",
    "500": "JobFailed",
    "503": "ShuttingDown",
}

SECURITY_SCHEMES: dict[str, Any] = {
    "upstashSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "Upstash-Signature",
        "description": (
            "A JWT QStash signs (HS256) with the current or next signing key: `iss` Upstash, `sub` the "
            "destination URL, `body` base64url(SHA-256(raw body)), `exp`/`nbf`/`iat`, `jti`."
        ),
    }
}

HEALTH_PATH: dict[str, Any] = {
    "get": {
        "operationId": "health",
        "summary": "Liveness: no signature, no Firestore call",
        "security": [],
        "responses": {
            "200": {
                "description": "The service is up.",
                "content": {"application/json": {"schema": {"$ref": REF.format(model="Health")}}},
            }
        },
    }
}


def render(routes: Mapping[str, JobSpec[Any]]) -> str:
    header = "# Generated by `python -m qjobs.devtools.openapi` from the jobs' models: do not edit.\n"
    return header + yaml.safe_dump(build_document(routes), sort_keys=False, allow_unicode=True, width=100)


def main() -> int:
    OUTPUT.write_text(render(ROUTES))
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
