"""``/api/v1/``: the schema at ``openapi.json``, its docs page at ``docs`` (served from
this site's own static files), and the endpoints.

Every error is a JSON problem details document (RFC 9457), never an HTML page: a key
that is missing, unknown or revoked is 401, a key without the endpoint's scope 403.
"""

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer

from api.models import ApiClient, Scope
from api.problems import problem
from api.services.clients import api_client_for_key
from campaigns.models import Campaign
from campaigns.selectors import campaign_reach


class ApiKey(HttpBearer):
    """``Authorization: Bearer rn_...``: the live client the key belongs to."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiClient | None:
        return api_client_for_key(token)


api = NinjaAPI(
    title="Renotify API",
    version="1",
    urls_namespace="api-v1",
    auth=ApiKey(),
    docs_url="/docs",
)


def scope_require(request: HttpRequest, scope: Scope) -> None:
    client: ApiClient = request.auth  # type: ignore[attr-defined]  # set by ninja's auth
    if scope.value not in client.scopes:
        raise HttpError(403, f"this key lacks the scope {scope.value}")


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


class ReachOut(Schema):
    campaign: int
    state: str
    targeted: int
    unreachable: dict[str, int]
    totals: dict[str, int]
    rates: dict[str, float | None]
    by_jurisdiction: dict[str, dict[str, int]]
    by_locale: dict[str, dict[str, int]]
    reminders_sent: int


@api.get("/campaigns/{campaign_id}/reach", response=ReachOut, tags=["campaigns"])
def campaign_reach_read(request: HttpRequest, campaign_id: int) -> dict[str, Any]:
    """Who the campaign targeted, reached and lost, in total and per jurisdiction and
    locale (``campaigns:read``)."""
    scope_require(request, Scope.CAMPAIGNS_READ)
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    reach = campaign_reach(campaign=campaign)
    return {
        "campaign": campaign.pk,
        "state": campaign.state,
        "targeted": reach.targeted,
        "unreachable": reach.unreachable,
        "totals": reach.totals,
        "rates": reach.rates,
        "by_jurisdiction": reach.by_jurisdiction,
        "by_locale": reach.by_locale,
        "reminders_sent": reach.reminders_sent,
    }
