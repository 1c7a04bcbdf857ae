"""Who is calling: ``Authorization: Bearer rn_...`` names a live client, and each
endpoint names the scope it needs.

Authentication is also where each request is counted against its client's rate limit
(``api.services.rates``): the one step every endpoint runs, before it does anything.
Over the limit is 429 with ``Retry-After`` and nothing done. A wrong key counts against
its address: past that limit, guesses get 429 rather than another 401.
"""

from django.http import HttpRequest
from ninja.errors import HttpError, Throttled
from ninja.security import HttpBearer

from api.middleware import rate_note
from api.models import ApiClient, Scope
from api.services.clients import api_client_for_key
from api.services.rates import bad_key_count, client_request_count
from config.clientip import client_ip


class ApiKey(HttpBearer):
    """The live client the bearer key belongs to (None: 401), counted against its rate."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiClient | None:
        client = api_client_for_key(token)
        if client is None:
            bad = bad_key_count(ip=client_ip(request))
            if bad is not None and bad.over:
                raise Throttled(wait=bad.reset)
            return None
        counted = client_request_count(client=client)
        rate_note(request, counted)
        if counted is not None and counted.over:
            raise Throttled(wait=counted.reset)
        return client


def request_client(request: HttpRequest) -> ApiClient:
    client: ApiClient = request.auth  # type: ignore[attr-defined]  # set by ninja's auth
    return client


def scope_require(request: HttpRequest, scope: Scope) -> ApiClient:
    """The calling client, if its key has ``scope``; 403 otherwise."""
    client = request_client(request)
    if scope.value not in client.scopes:
        raise HttpError(403, f"this key lacks the scope {scope.value}")
    return client
