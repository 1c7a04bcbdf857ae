"""The platform API's front door: keys shown once and stored hashed, scopes, revocation,
last use, problem details for every error, and a schema and docs page of our own."""

import hashlib
import json

import pytest
from django.test import Client

from accounts.permissions import PermissionRefused
from api.models import ApiClient, Scope
from api.services.clients import api_client_create, api_client_for_key, api_client_revoke
from tests.factories import campaign, staff_user

pytestmark = pytest.mark.django_db
PROBLEM = "application/problem+json"


@pytest.fixture
def ines(db):
    """Ines looks after the platform's integrations."""
    return staff_user("ines", "api.manage_apiclient", "api.view_apiclient")


@pytest.fixture
def reader(ines):
    client, key = api_client_create(name="pipeline", scopes=[Scope.CAMPAIGNS_READ], by=ines)
    return client, key


def get(path: str, key: str | None = None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return Client().get(path, headers=headers)


def test_a_key_is_stored_only_as_its_hash(reader):
    client, key = reader
    stored = ApiClient.objects.get(pk=client.pk)
    assert key.startswith(f"rn_{stored.key_prefix}_") and len(key) > 40
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in json.dumps(list(ApiClient.objects.values()), default=str)


def test_a_key_with_its_scope_reads_a_campaigns_reach_and_is_noted_as_used(reader):
    client, key = reader
    c = campaign()
    response = get(f"/api/v1/campaigns/{c.pk}/reach", key)
    assert response.status_code == 200, response.content
    assert response.json()["campaign"] == c.pk and response.json()["targeted"] == 0
    assert ApiClient.objects.get(pk=client.pk).last_used_at is not None


@pytest.mark.parametrize(
    "key",
    [None, "", "rn_nope_nope", "not-a-key", "rn_", "rn_0123456789ab_wrong-secret"],
)
def test_no_key_or_a_wrong_key_is_a_401_problem(key, reader):
    response = get(f"/api/v1/campaigns/{campaign().pk}/reach", key)
    assert response.status_code == 401
    assert response["Content-Type"] == PROBLEM and response.json()["status"] == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_key_of_the_right_prefix_but_another_secret_is_refused(reader):
    client, key = reader
    forged = key[: len(f"rn_{client.key_prefix}_")] + "x" * 43
    assert api_client_for_key(forged) is None
    assert get(f"/api/v1/campaigns/{campaign().pk}/reach", forged).status_code == 401


def test_a_key_without_the_scope_is_a_403_problem(ines):
    _, key = api_client_create(name="crm", scopes=[Scope.MEMBERS_WRITE], by=ines)
    response = get(f"/api/v1/campaigns/{campaign().pk}/reach", key)
    assert response.status_code == 403 and response["Content-Type"] == PROBLEM
    assert "campaigns:read" in response.json()["detail"]


def test_a_revoked_key_is_refused_from_then_on(reader, ines):
    client, key = reader
    assert api_client_revoke(client=client, by=ines)
    assert not api_client_revoke(client=client, by=ines)  # once
    assert get(f"/api/v1/campaigns/{campaign().pk}/reach", key).status_code == 401


def test_an_unknown_campaign_and_a_bad_id_are_problems_not_pages(reader):
    _, key = reader
    missing = get("/api/v1/campaigns/999999/reach", key)
    assert missing.status_code == 404 and missing["Content-Type"] == PROBLEM
    bad = get("/api/v1/campaigns/not-a-number/reach", key)
    assert bad.status_code in (404, 422) and bad["Content-Type"] == PROBLEM


def test_making_or_revoking_a_client_needs_its_own_permission(ines):
    viewer = staff_user("vera", "api.view_apiclient")
    with pytest.raises(PermissionRefused):
        api_client_create(name="x", scopes=[Scope.CAMPAIGNS_READ], by=viewer)
    client, _ = api_client_create(name="x", scopes=[Scope.CAMPAIGNS_READ], by=ines)
    with pytest.raises(PermissionRefused):
        api_client_revoke(client=client, by=viewer)
    assert ApiClient.objects.get().revoked_at is None


def test_unknown_scopes_are_refused_and_nothing_is_made(ines):
    with pytest.raises(ValueError, match="unknown scopes: everything"):
        api_client_create(name="x", scopes=["everything"], by=ines)
    assert not ApiClient.objects.exists()


def test_staff_make_a_client_in_the_admin_and_see_its_key_once(ines):
    browser = Client()
    browser.force_login(ines)
    response = browser.post(
        "/admin/api/apiclient/add/",
        {"name": "warehouse", "scopes": [Scope.SUPPRESSIONS_READ]},
        follow=True,
    )
    shown = [str(m) for m in response.context["messages"]]
    client = ApiClient.objects.get()
    assert client.name == "warehouse" and client.scopes == ["suppressions:read"]
    assert client.created_by == ines
    key = next(m for m in shown if "shown this once" in m).rsplit(" ", 1)[1]
    assert api_client_for_key(key) == client
    assert key not in browser.get("/admin/api/apiclient/").content.decode()


def test_staff_without_the_permission_cannot_make_a_client_in_the_admin():
    viewer = staff_user("vera", "api.view_apiclient")
    browser = Client()
    browser.force_login(viewer)
    response = browser.post(
        "/admin/api/apiclient/add/", {"name": "x", "scopes": ["campaigns:read"]}
    )
    assert response.status_code == 403 and not ApiClient.objects.exists()


def test_the_schema_and_the_docs_page_are_served_without_third_party_hosts():
    schema = Client().get("/api/v1/openapi.json")
    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "Renotify API"
    assert "/api/v1/campaigns/{campaign_id}/reach" in schema.json()["paths"]
    docs = Client().get("/api/v1/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in docs
    assert "cdn" not in docs.lower() and "https://" not in docs
