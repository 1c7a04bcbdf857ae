"""The API's edge, for every path under ``/api/``, whatever answers it (ninja's
operations, Django's URL resolver, its error handlers):

- a body larger than ``RENOTIFY_API_MAX_BODY`` is 413, and a write whose body is not
  JSON 415, before anything reads it (or looks up the key: a refusal costs nothing);
- every error is a problem details document: Django's HTML 404 for an unknown path,
  ninja's plain 405, a 500 page, become ``application/problem+json`` (with their other
  headers: ``Allow``, ``Retry-After``, the security headers);
- a response to a counted request carries ``RateLimit-Limit``, ``RateLimit-Remaining``
  and ``RateLimit-Reset`` (noted on the request by ``api.auth``).
"""

from collections.abc import Callable
from http import HTTPStatus

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from api.problems import CONTENT_TYPE, INTERNAL, problem
from config.ratelimit import Counted

PREFIX = "/api/"
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
# What a client can do about each error that reaches the edge without a detail of its own.
DETAILS = {
    400: "the request is malformed",
    404: "no such resource: the endpoints are listed at /api/v1/docs",
    405: "this method is not allowed here: the Allow header lists those that are",
    413: "the request body is larger than this API accepts",
    500: INTERNAL,
}
# Headers that describe the body a converted answer no longer has.
BODY_HEADERS = {"content-type", "content-length", "content-encoding", "content-language", "etag"}
_RATE_ATTRIBUTE = "renotify_api_rate"


def rate_note(request: HttpRequest, counted: Counted | None) -> None:
    """What the response to ``request`` tells about its client's limit."""
    setattr(request, _RATE_ATTRIBUTE, counted)


class ApiEdgeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if not request.path_info.startswith(PREFIX):
            return self.get_response(request)
        response = _body_refusal(request) or self.get_response(request)
        if response.status_code >= 400 and not _is_problem(response):
            response = _as_problem(response)
        _rate_headers(request, response)
        return response


def _body_refusal(request: HttpRequest) -> HttpResponse | None:
    length = _content_length(request)
    if length is None:
        return problem(400, "the Content-Length header is not a number")
    limit = settings.RENOTIFY_API_MAX_BODY
    if length > limit:
        return problem(413, f"the request body is larger than {limit} bytes", max_bytes=limit)
    if request.method in WRITES and length and not _is_json(request.content_type):
        return problem(
            415,
            f"a request body must be JSON (Content-Type: application/json),"
            f" not {request.content_type or 'unnamed'}",
        )
    return None


def _content_length(request: HttpRequest) -> int | None:
    value = request.META.get("CONTENT_LENGTH") or "0"
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _is_problem(response: HttpResponseBase) -> bool:
    return response.get("Content-Type", "").startswith(CONTENT_TYPE)


def _as_problem(response: HttpResponseBase) -> HttpResponse:
    """The same answer as a problem: every header but those about the old body (the
    security headers the other middleware set, ``Allow``, ``Retry-After``...) kept."""
    status = response.status_code
    converted = problem(status, DETAILS.get(status) or _phrase(status))
    for name, value in response.items():
        if name.lower() not in BODY_HEADERS:
            converted[name] = value
    converted.cookies = response.cookies
    return converted


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "the request failed"


def _rate_headers(request: HttpRequest, response: HttpResponseBase) -> None:
    counted: Counted | None = getattr(request, _RATE_ATTRIBUTE, None)
    if counted is None:
        return
    response["RateLimit-Limit"] = str(counted.allowed)
    response["RateLimit-Remaining"] = str(counted.remaining)
    response["RateLimit-Reset"] = str(counted.reset)
