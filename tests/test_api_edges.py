"""The API's edges: per-client rate limits with their headers, and every error a
problem details document (unknown paths, wrong methods, bodies that are malformed, too
large or not JSON, crashes), never an HTML page and never a traceback."""

import contextlib
import json
import logging

import pytest
from django.conf import settings as django_settings
from django.core.cache import caches
from django.test import Client
from redis.exceptions import RedisError

from api.models import ApiClient, Scope
from api.services.clients import api_client_create
from tests import api_probe_urls
from tests.factories import campaign, staff_user

pytestmark = pytest.mark.django_db
PROBLEM = "application/problem+json"
REDIS_COUNTERS = {
    "BACKEND": "django_redis.cache.RedisCache",
    "LOCATION": django_settings.REDIS_URL,
    "KEY_PREFIX": "renotify-api-test",
}
LOCAL_COUNTERS = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}


@pytest.fixture(autouse=True)
def counters(settings, fresh_rate_window):
    """Empty counters for each test, on Redis when there is one."""
    settings.CACHES = {
        **settings.CACHES,
        "default": REDIS_COUNTERS if django_settings.REDIS_URL else LOCAL_COUNTERS,
    }
    _empty()
    yield
    _empty()


def _empty() -> None:
    cache = caches["default"]
    with contextlib.suppress(RedisError, OSError):  # the test that unplugs the cache
        getattr(cache, "delete_pattern", lambda pattern: cache.clear())("*")


@pytest.fixture
def ines(db):
    """Ines looks after the platform's integrations."""
    return staff_user("ines", "api.manage_apiclient")


def reader(ines, *, rate: str = "", name: str = "warehouse") -> tuple[ApiClient, str]:
    client, key = api_client_create(name=name, scopes=[Scope.CAMPAIGNS_READ], by=ines)
    ApiClient.objects.filter(pk=client.pk).update(rate=rate)
    return client, key


def get(path: str, key: str | None, **headers):
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    return Client().get(path, headers={**auth, **headers})


def reach_path() -> str:
    return f"/api/v1/campaigns/{campaign().pk}/reach"


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


# --- rate limits -------------------------------------------------------------------


def test_every_answer_to_a_client_says_its_limit_what_is_left_and_when_it_resets(ines):
    _, key = reader(ines, rate="5/m")
    path = reach_path()
    answers = [get(path, key), get(path, key), get("/api/v1/campaigns/999999/reach", key)]
    assert [a.status_code for a in answers] == [200, 200, 404]
    assert [a["RateLimit-Limit"] for a in answers] == ["5", "5", "5"]
    assert [a["RateLimit-Remaining"] for a in answers] == ["4", "3", "2"]
    assert all(1 <= int(a["RateLimit-Reset"]) <= 60 for a in answers)


def test_a_client_over_its_rate_gets_a_429_problem_with_retry_after_and_nothing_is_done(
    ines, monkeypatch
):
    _, key = reader(ines, rate="2/m")
    path = reach_path()
    assert [get(path, key).status_code for _ in range(2)] == [200, 200]
    monkeypatch.setattr(
        "api.endpoints.campaigns.campaign_reach",
        lambda *, campaign: pytest.fail("the endpoint ran while over the limit"),
    )
    refused = get(path, key)
    body = assert_problem(refused, 429)
    seconds = int(refused["Retry-After"])
    assert 1 <= seconds <= 60 and f"{seconds} seconds" in body["detail"]
    assert refused["RateLimit-Remaining"] == "0" and refused["RateLimit-Limit"] == "2"


def test_a_blank_rate_is_the_default_and_each_client_counts_on_its_own(ines, settings):
    settings.RENOTIFY_API_RATE = "1/m"
    _, first = reader(ines, name="first")
    _, second = reader(ines, name="second", rate="3/m")
    path = reach_path()
    assert [get(path, first).status_code for _ in range(2)] == [200, 429]
    assert [get(path, second).status_code for _ in range(3)] == [200, 200, 200]
    assert get(path, second)["RateLimit-Limit"] == "3"


def test_an_unreadable_stored_rate_falls_back_to_the_default(ines, settings, caplog):
    settings.RENOTIFY_API_RATE = "7/m"
    client, key = reader(ines, rate="lots")
    with caplog.at_level(logging.WARNING, logger="api.services.rates"):
        response = get(reach_path(), key)
    assert response.status_code == 200 and response["RateLimit-Limit"] == "7"
    assert f"API client {client.pk} has an unreadable rate" in caplog.text


def test_an_unreachable_cache_limits_nothing_and_adds_no_headers(ines, settings):
    settings.CACHES = {
        **settings.CACHES,
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",  # discard port: nothing listens
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2},
        },
    }
    _, key = reader(ines, rate="1/m")
    path = reach_path()
    answers = [get(path, key) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert "RateLimit-Limit" not in answers[0]


def test_wrong_keys_from_one_address_are_refused_past_their_limit_but_a_valid_key_is_not(
    ines, settings
):
    settings.RENOTIFY_API_RATE_BAD_KEY = "3/m"
    _, key = reader(ines)
    path = reach_path()
    guesses = [get(path, f"rn_0123456789ab_guess{i}") for i in range(4)]
    assert [g.status_code for g in guesses] == [401, 401, 401, 429]
    assert int(guesses[-1]["Retry-After"]) >= 1
    assert "RateLimit-Limit" not in guesses[0]  # a wrong key has no client to speak of
    assert get(path, key).status_code == 200
    other_address = Client(REMOTE_ADDR="203.0.113.9").get(
        path, headers={"Authorization": "Bearer rn_0123456789ab_guess"}
    )
    assert other_address.status_code == 401


# --- errors as problems ------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/v1/nothing-here", "/api/v1/campaigns/1/reach/extra", "/api/v2/campaigns"]
)
def test_an_unknown_path_under_the_api_is_a_404_problem_not_a_page(path, ines):
    _, key = reader(ines)
    assert "docs" in assert_problem(get(path, key), 404)["detail"]


def test_an_unknown_path_elsewhere_is_still_the_sites_own_page():
    response = Client().get("/nothing-here")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def test_a_wrong_method_is_a_405_problem_that_names_the_allowed_ones(ines):
    _, key = reader(ines)
    response = Client().delete(reach_path(), headers={"Authorization": f"Bearer {key}"})
    assert_problem(response, 405)
    assert response["Allow"] == "GET"


def test_the_docs_page_and_the_schema_are_left_as_they_are():
    assert Client().get("/api/v1/docs")["Content-Type"].startswith("text/html")
    assert Client().get("/api/v1/openapi.json")["Content-Type"] == "application/json"


PROBE = "/api/probe/notes"


@pytest.fixture
def writer(ines):
    api_probe_urls.REACHED.clear()
    _, key = reader(ines)
    yield key
    api_probe_urls.REACHED.clear()


def post(key: str, body: bytes | str, content_type: str = "application/json", **extra):
    return Client().post(
        PROBE,
        body,
        content_type=content_type,
        headers={"Authorization": f"Bearer {key}"},
        **extra,
    )


@pytest.mark.urls("tests.api_probe_urls")
def test_a_json_body_reaches_the_endpoint(writer):
    response = post(writer, json.dumps({"text": "hello", "count": 1}))
    assert response.status_code == 200 and response.json() == {"text": "hello", "count": 1}
    assert api_probe_urls.REACHED == ["hello"]
    assert response["RateLimit-Remaining"]


@pytest.mark.urls("tests.api_probe_urls")
@pytest.mark.parametrize("body", ['{"text": "hello", ', "not json", b"\xff\xfe{}"])
def test_a_malformed_json_body_is_a_400_problem_that_says_what_is_wrong(writer, body):
    detail = assert_problem(post(writer, body), 400)["detail"]
    assert detail.startswith("the request body is not valid JSON")
    assert api_probe_urls.REACHED == []


@pytest.mark.urls("tests.api_probe_urls")
def test_a_body_that_does_not_match_the_schema_is_a_422_problem_listing_what_and_where(
    writer,
):
    body = assert_problem(post(writer, json.dumps({"text": "hello", "count": "many"})), 422)
    assert [error["loc"] for error in body["errors"]] == [["body", "note", "count"]]
    assert api_probe_urls.REACHED == []


@pytest.mark.urls("tests.api_probe_urls")
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_a_write_whose_body_is_not_json_is_a_415_problem(writer, content_type):
    body = json.dumps({"text": "hello", "count": 1})
    detail = assert_problem(post(writer, body, content_type), 415)["detail"]
    assert content_type in detail
    assert api_probe_urls.REACHED == []


@pytest.mark.urls("tests.api_probe_urls")
def test_a_json_media_type_with_parameters_or_a_suffix_is_json(writer):
    body = json.dumps({"text": "hello", "count": 1})
    assert post(writer, body, "application/json; charset=utf-8").status_code == 200
    assert post(writer, body, "application/merge-patch+json").status_code == 200


@pytest.mark.urls("tests.api_probe_urls")
def test_a_body_over_the_api_limit_is_a_413_problem_before_it_is_read(writer, settings):
    settings.RENOTIFY_API_MAX_BODY = 100
    big = json.dumps({"text": "x" * 200, "count": 1})
    body = assert_problem(post(writer, big), 413)
    assert body["max_bytes"] == 100 and "100 bytes" in body["detail"]
    assert post(writer, json.dumps({"text": "x", "count": 1})).status_code == 200
    assert api_probe_urls.REACHED == ["x"]


@pytest.mark.urls("tests.api_probe_urls")
def test_a_body_over_djangos_own_limit_is_a_413_problem_too(writer, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 50
    big = json.dumps({"text": "x" * 200, "count": 1})
    assert_problem(post(writer, big), 413)
    assert api_probe_urls.REACHED == []


@pytest.mark.urls("tests.api_probe_urls")
def test_an_unreadable_content_length_is_a_400_problem(writer):
    response = post(writer, "{}", CONTENT_LENGTH="a lot")
    assert_problem(response, 400)


@pytest.mark.urls("tests.api_probe_urls")
def test_a_crash_is_a_500_problem_that_shows_nothing_and_is_logged(writer, caplog):
    with caplog.at_level(logging.ERROR, logger="api.base"):
        response = Client(raise_request_exception=False).get(
            "/api/probe/crash", headers={"Authorization": f"Bearer {writer}"}
        )
    body = assert_problem(response, 500)
    assert "secret" not in response.content.decode() and "Traceback" not in body["detail"]
    assert "RuntimeError" in caplog.text


@pytest.mark.urls("tests.api_probe_urls")
def test_a_crash_is_a_problem_with_debug_on_too(writer, settings):
    settings.DEBUG = True
    response = Client().get("/api/probe/crash", headers={"Authorization": f"Bearer {writer}"})
    assert_problem(response, 500)
    assert "secret" not in response.content.decode()


def test_a_conflict_raised_by_an_endpoint_is_a_409_problem(rf):
    from ninja.errors import HttpError

    from api.base import HANDLERS

    response = HANDLERS[HttpError](rf.get("/api/v1/x"), HttpError(409, "already erased"))
    assert response.status_code == 409 and response["Content-Type"] == PROBLEM
    assert json.loads(response.content)["detail"] == "already erased"


def test_staff_give_a_client_its_own_rate_in_the_admin_and_an_unreadable_one_is_refused(ines):
    browser = Client()
    browser.force_login(ines)
    refused = browser.post(
        "/admin/api/apiclient/add/", {"name": "crm", "scopes": ["campaigns:read"], "rate": "9"}
    )
    assert refused.status_code == 200 and not ApiClient.objects.exists()
    assert "is not like" in refused.content.decode()
    browser.post(
        "/admin/api/apiclient/add/",
        {"name": "crm", "scopes": ["campaigns:read"], "rate": "600/m"},
    )
    assert ApiClient.objects.get().rate == "600/m"


def test_an_unreadable_rate_setting_stops_the_app_from_starting(settings):
    from config.checks import rates

    assert rates(None) == []
    settings.RENOTIFY_API_RATE = "lots"
    settings.RENOTIFY_API_RATE_BAD_KEY = "9/fortnight"
    errors = rates(None)
    assert [e.id for e in errors] == ["renotify.E021", "renotify.E021"]
    assert errors[0].msg.startswith("RENOTIFY_API_RATE: rate 'lots'")


@pytest.mark.urls("tests.api_probe_urls")
def test_the_schema_lists_each_operations_problems_by_what_the_operation_has():
    schema = api_probe_urls.probe.get_openapi_schema()
    write = schema["paths"]["/api/probe/notes"]["post"]["responses"]
    read = schema["paths"]["/api/probe/crash"]["get"]["responses"]
    assert sorted(write) == sorted(
        ["200", "400", "401", "403", "404", "409", "413", "415", "422", "429", "500"]
    )
    assert sorted(read) == ["200", "400", "401", "403", "404", "429", "500"]
    problem = write["415"]["content"]["application/problem+json"]["schema"]
    assert problem == {"$ref": "#/components/schemas/Problem"}
    assert schema["components"]["schemas"]["Problem"]["required"] == [
        "type",
        "title",
        "status",
        "detail",
    ]
    assert set(write["429"]["headers"]) == {
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
        "Retry-After",
    }


def test_a_response_an_endpoint_declares_itself_is_kept_once():
    from api.problems import problems_document

    own = {"description": "gone for good", "content": {"application/json": {}}}
    schema = {
        "paths": {
            "/x": {"delete": {"responses": {204: {"description": "erased"}, 404: own}}},
            "/open": {"get": {"responses": {200: {"description": "OK"}}}},
        }
    }
    responses = problems_document(schema)["paths"]["/x"]["delete"]["responses"]
    assert responses["404"] == own and 404 not in responses and "204" in responses
    assert "409" in responses and "401" not in responses  # a write, with no key needed
    opened = schema["paths"]["/open"]["get"]["responses"]
    assert sorted(opened) == ["200", "400", "404", "500"]
    assert "headers" not in opened["200"]  # no key, no rate limit


def test_a_problem_made_from_a_page_keeps_the_security_headers_and_allow(ines):
    _, key = reader(ines)
    unknown = get("/api/v1/nothing-here", key)
    wrong_method = Client().delete(reach_path(), headers={"Authorization": f"Bearer {key}"})
    for response in (unknown, wrong_method):
        assert response["Content-Type"] == PROBLEM
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["X-Frame-Options"] == "DENY"
    assert wrong_method["Allow"] == "GET"
