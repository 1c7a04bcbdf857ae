"""``RenotifyAPI``: the NinjaAPI every version of the API is built on.

Every error it answers is a problem details document (RFC 9457), never an HTML page
nor a traceback: a key that is missing, unknown or revoked is 401 (with
``WWW-Authenticate``), a key without the endpoint's scope 403, a client over its rate
429 (with ``Retry-After``), a body that is not JSON 400, one too large 413, a request
that does not match the schema 422, anything unexpected 500 (logged, nothing shown).
Its schema lists the problems each operation can answer with
(``api.problems.problems_document``), so nothing is declared per endpoint. Errors
outside its operations (unknown paths, wrong methods) are problems too:
``api.middleware``.
"""

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError
from ninja.openapi.schema import OpenAPISchema

from api.problems import INTERNAL, problem, problems_document

logger = logging.getLogger(__name__)


class RenotifyAPI(NinjaAPI):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for exc_class, handler in HANDLERS.items():
            self.add_exception_handler(exc_class, handler)

    def get_openapi_schema(self, **kwargs: Any) -> OpenAPISchema:
        schema = super().get_openapi_schema(**kwargs)
        problems_document(schema)
        return schema


def _unauthenticated(request: HttpRequest, exc: Exception) -> HttpResponse:
    response = problem(401, "a valid API key is needed: Authorization: Bearer <key>")
    response["WWW-Authenticate"] = 'Bearer realm="renotify"'
    return response


def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):
        # ninja's "Cannot parse request body", with what was wrong and where
        return problem(400, f"the request body is not valid JSON: {exc.__cause__}")
    return problem(exc.status_code, str(exc))


def _throttled(request: HttpRequest, exc: Throttled) -> HttpResponse:
    seconds = max(1, int(exc.wait or 1))
    response = problem(429, f"too many requests: try again in {seconds} seconds")
    response["Retry-After"] = str(seconds)
    return response


def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return problem(422, "the request does not match the schema", errors=exc.errors)


def _not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
    return problem(404, "no such resource")


def _too_big(request: HttpRequest, exc: Exception) -> HttpResponse:
    return problem(413, "the request body is larger than this API accepts")


def _suspicious(request: HttpRequest, exc: Exception) -> HttpResponse:
    return problem(400, "the request is malformed")


def _internal(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.error("API error on %s %s", request.method, request.path_info, exc_info=exc)
    return problem(500, INTERNAL)


# ninja picks the handler of the nearest class in the exception's MRO.
HANDLERS: dict[type[Exception], Any] = {
    AuthenticationError: _unauthenticated,
    HttpError: _http_error,
    Throttled: _throttled,
    ValidationError: _invalid,
    Http404: _not_found,
    RequestDataTooBig: _too_big,
    SuspiciousOperation: _suspicious,
    Exception: _internal,
}
