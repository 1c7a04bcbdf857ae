"""``/api/v1/``: the schema at ``openapi.json``, its docs page at ``docs`` (served from
this site's own static files), and the endpoints (one router per area, in
``api.endpoints``).

Every error is a JSON problem details document (RFC 9457), never an HTML page: a key
that is missing, unknown or revoked is 401, a key without the endpoint's scope 403.
"""

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from api.auth import ApiKey
from api.endpoints import campaigns, consumers, suppressions
from api.problems import problem

api = NinjaAPI(
    title="Renotify API",
    version="1",
    urls_namespace="api-v1",
    auth=ApiKey(),
    docs_url="/docs",
)
api.add_router("/campaigns", campaigns.router)
api.add_router("/suppressions", suppressions.router)
api.add_router("/consumers", consumers.router)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: Exception) -> HttpResponse:
    response = problem(401, "a valid API key is needed: Authorization: Bearer <key>")
    response["WWW-Authenticate"] = 'Bearer realm="renotify"'
    return response


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return problem(exc.status_code, str(exc))


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return problem(422, "the request does not match the schema", errors=exc.errors)


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
    return problem(404, "no such resource")
