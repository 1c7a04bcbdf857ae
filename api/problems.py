"""Errors as RFC 9457 problem details: ``application/problem+json``, a title from the
status and a ``detail`` a person can act on."""

import json
from http import HTTPStatus
from typing import Any

from django.http import HttpResponse

CONTENT_TYPE = "application/problem+json"


def problem(status: int, detail: str, **extra: Any) -> HttpResponse:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return HttpResponse(json.dumps(body, default=str), status=status, content_type=CONTENT_TYPE)
