"""Errors as RFC 9457 problem details: ``application/problem+json``, a title from the
status and a ``detail`` a person can act on."""

import json
from http import HTTPStatus
from typing import Any

from django.http import HttpResponse

CONTENT_TYPE = "application/problem+json"
INTERNAL = "an internal error; it is logged, and nothing about it is shown here"


def problem(status: int, detail: str, **extra: Any) -> HttpResponse:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return HttpResponse(json.dumps(body, default=str), status=status, content_type=CONTENT_TYPE)


# The problem document as the schema states it: the four members every problem has, and
# any others a status adds (``errors`` on 422, ``max_bytes`` on 413).
PROBLEM_SCHEMA = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["type", "title", "status", "detail"],
    "additionalProperties": True,
}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
WRITES = {"put", "post", "delete", "patch"}
RATE_HEADERS = {
    "RateLimit-Limit": "requests allowed in the current window",
    "RateLimit-Remaining": "requests left in the current window",
    "RateLimit-Reset": "seconds until the current window ends",
}

# Which statuses an operation can answer with a problem, by what the operation has.
# Every operation: a malformed request, an unknown resource, an internal error.
ALWAYS = (400, 404, 500)
# An operation with parameters or a body: a request that does not match the schema.
WITH_INPUT = (422,)
# An operation behind a key: no valid key, a key without the scope, over the rate.
SECURED = (401, 403, 429)
# An operation with a body: too large, not JSON.
WITH_BODY = (413, 415)
# A write: a conflict with the state of things (an idempotency key's first request, an
# erased member).
WRITE = (409,)


def problems_document(schema: dict) -> dict:
    """``schema`` (an OpenAPI document) with the problem responses each operation can
    give, and the rate limit headers of operations behind a key: every endpoint's, with
    nothing to declare per endpoint. Responses an endpoint declares itself are kept."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            if method in METHODS:
                _operation_document(method, operation)
    return schema


def _operation_document(method: str, operation: dict) -> None:
    # ninja keys responses by int, JSON by string: one key per status, as JSON has it
    responses = {str(status): r for status, r in operation.get("responses", {}).items()}
    operation["responses"] = responses
    for code in _problem_statuses(method, operation):
        responses.setdefault(str(code), _problem_response(code))
    if operation.get("security"):
        for status, response in responses.items():
            headers = response.setdefault("headers", {})
            for name, description in RATE_HEADERS.items():
                headers.setdefault(name, _integer_header(description))
            if status == "429":
                headers.setdefault("Retry-After", _integer_header("seconds to wait"))


def _problem_statuses(method: str, operation: dict) -> list[int]:
    statuses = [*ALWAYS]
    if operation.get("parameters") or operation.get("requestBody"):
        statuses += WITH_INPUT
    if operation.get("security"):
        statuses += SECURED
    if operation.get("requestBody"):
        statuses += WITH_BODY
    if method in WRITES:
        statuses += WRITE
    return statuses


def _problem_response(status: int) -> dict:
    return {
        "description": HTTPStatus(status).phrase,
        "content": {CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _integer_header(description: str) -> dict:
    return {"description": description, "schema": {"type": "integer"}}
