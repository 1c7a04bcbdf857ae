"""Who is calling: ``Authorization: Bearer rn_...`` names a live client, and each
endpoint names the scope it needs."""

from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import HttpBearer

from api.models import ApiClient, Scope
from api.services.clients import api_client_for_key


class ApiKey(HttpBearer):
    """The live client the bearer key belongs to (None: 401)."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiClient | None:
        return api_client_for_key(token)


def request_client(request: HttpRequest) -> ApiClient:
    client: ApiClient = request.auth  # type: ignore[attr-defined]  # set by ninja's auth
    return client


def scope_require(request: HttpRequest, scope: Scope) -> ApiClient:
    """The calling client, if its key has ``scope``; 403 otherwise."""
    client = request_client(request)
    if scope.value not in client.scopes:
        raise HttpError(403, f"this key lacks the scope {scope.value}")
    return client
