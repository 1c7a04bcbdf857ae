"""Members through the API: upsert one, a batch of up to 1,000 (per-item results, one
write), and the importer's rules throughout."""

import json

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import EmailStatus, Member
from api.endpoints.members import BatchOut
from api.models import Scope
from api.services.clients import api_client_create
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db
PROBLEM = "application/problem+json"


@pytest.fixture
def crm_key(db):
    """The platform's CRM keeps members in sync."""
    _, key = api_client_create(name="crm", scopes=[Scope.MEMBERS_WRITE], by=None)
    return key


def call(method: str, path: str, key: str | None, body=None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = json.dumps(body) if body is not None else None
    return getattr(Client(), method)(
        f"/api/v1{path}", data=data, content_type="application/json", headers=headers
    )


def put(external_id: str, key: str | None, **body):
    return call("put", f"/members/{external_id}", key, body)


def bulk(key: str | None, members: list):
    return call("post", "/members/bulk", key, {"members": members})


def stored(external_id: str) -> tuple:
    return Member.objects.values_list(
        "email", "locale", "country", "jurisdiction", "person_key", "email_status"
    ).get(external_id=external_id)


# --- Who may call ----------------------------------------------------------------------


WRITES = [
    ("put", "/members/u-1", {"email": "a@example.com", "country": "DE"}),
    ("post", "/members/bulk", {"members": [{"external_id": "u-1", "email": "a@example.com"}]}),
    ("delete", "/members/u-1", None),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_no_key_is_a_401_and_changes_nothing(method, path, body):
    MemberFactory(external_id="u-1", email="kept@example.com")
    response = call(method, path, None, body)
    assert response.status_code == 401 and response["Content-Type"] == PROBLEM
    assert stored("u-1")[0] == "kept@example.com"


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_a_key_without_members_write_is_a_403_and_changes_nothing(method, path, body):
    MemberFactory(external_id="u-1", email="kept@example.com")
    _, reader = api_client_create(name="bi", scopes=[Scope.CAMPAIGNS_READ], by=None)
    response = call(method, path, reader, body)
    assert response.status_code == 403 and response["Content-Type"] == PROBLEM
    assert "members:write" in response.json()["detail"]
    assert stored("u-1")[0] == "kept@example.com"
    assert Member.objects.get(external_id="u-1").erased_at is None


# --- One member --------------------------------------------------------------------------


def test_put_creates_then_updates_then_leaves_unchanged(crm_key):
    created = put("u-1", crm_key, email="Ann@Example.COM", country="de", locale="de_DE")
    assert created.status_code == 201, created.content
    body = created.json()
    assert {k: body[k] for k in ("external_id", "email", "locale", "country", "jurisdiction")} == {
        "external_id": "u-1",
        "email": "Ann@example.com",
        "locale": "de-de",
        "country": "DE",
        "jurisdiction": "EU",
    }
    assert body["erased_at"] is None and body["email_status"] == "ok"

    updated = put("u-1", crm_key, email="ann@example.com", country="CH")
    assert updated.status_code == 200 and updated.json()["jurisdiction"] == "CH"
    assert stored("u-1") == ("ann@example.com", "en", "CH", "CH", "", "ok")
    written_at = Member.objects.get(external_id="u-1").updated_at

    again = put("u-1", crm_key, email="ann@example.com", country="CH")
    assert again.status_code == 200 and again.json() == updated.json()
    assert Member.objects.get(external_id="u-1").updated_at == written_at


def test_an_external_id_with_a_slash_is_one_member(crm_key):
    response = put("org/42", crm_key, email="org@example.com", country="FR")
    assert response.status_code == 201 and response.json()["external_id"] == "org/42"
    assert call("delete", "/members/org/42", crm_key).status_code == 204


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"email": "not-an-address", "country": "DE"}, "invalid email address"),
        ({"email": "a@example.com", "country": "XX"}, "unknown country code 'XX'"),
        ({"email": "a@example.com", "country": "DE", "locale": "??"}, "invalid locale '??'"),
        ({"email": "a@example.com", "country": "DE", "person_key": "p" * 256}, "person_key longer"),
    ],
)
def test_an_invalid_member_is_a_422_problem_and_changes_nothing(crm_key, body, reason):
    MemberFactory(external_id="u-1", email="kept@example.com", country="GB")
    response = put("u-1", crm_key, **body)
    assert response.status_code == 422 and response["Content-Type"] == PROBLEM
    assert response.json()["errors"][0]["msg"].startswith(reason)
    assert "a@example.com" not in response.content.decode()  # never echoes the address
    assert stored("u-1")[:3] == ("kept@example.com", "en", "GB")


@pytest.mark.parametrize("body", [{"country": "DE"}, {"email": 7, "country": "DE"}, []])
def test_a_body_that_does_not_match_the_schema_is_a_422_problem(crm_key, body):
    response = call("put", "/members/u-1", crm_key, body)
    assert response.status_code == 422 and response["Content-Type"] == PROBLEM
    assert not Member.objects.exists()


def test_a_new_address_is_mailed_again_but_the_unsubscribe_stays(crm_key):
    member = MemberFactory(external_id="u-1", email="old@example.com")
    Member.objects.filter(pk=member.pk).update(
        email_status=EmailStatus.BOUNCED, unsubscribed_at=timezone.now()
    )
    assert put("u-1", crm_key, email="new@example.com", country="GB").status_code == 200
    member.refresh_from_db()
    assert (member.email, member.email_status) == ("new@example.com", EmailStatus.OK)
    assert member.unsubscribed_at is not None


def test_a_person_key_absent_is_kept_and_null_unlinks(crm_key):
    put("u-1", crm_key, email="a@example.com", country="DE", person_key="person-7")
    assert stored("u-1")[4] == "person-7"
    put("u-1", crm_key, email="b@example.com", country="DE")
    assert stored("u-1")[:5] == ("b@example.com", "en", "DE", "EU", "person-7")
    put("u-1", crm_key, email="b@example.com", country="DE", person_key=None)
    assert stored("u-1")[4] == ""


# --- A batch ---------------------------------------------------------------------------


def test_a_batch_applies_the_valid_items_and_reports_the_invalid_ones_by_index(crm_key):
    MemberFactory(external_id="same", email="same@example.com", country="GB")
    MemberFactory(external_id="moved", email="old@example.com", country="GB")
    members = [
        {"external_id": "new", "email": "new@example.com", "country": "FR", "locale": "fr"},
        {"external_id": "moved", "email": "moved@example.com", "country": "GB"},
        {"external_id": "same", "email": "same@example.com", "country": "GB"},
        {"external_id": "bad-mail", "email": "nope", "country": "FR"},
        {"external_id": "bad-place", "email": "p@example.com", "country": "Atlantis"},
        {"external_id": "typed", "email": 12, "country": "FR"},
        {"email": "who@example.com", "country": "FR"},
        {"external_id": "new", "email": "again@example.com", "country": "FR"},
    ]
    response = bulk(crm_key, members)
    assert response.status_code == 200, response.content
    body = response.json()
    assert [(r["index"], r["external_id"], r["status"], r["errors"]) for r in body["results"]] == [
        (0, "new", "created", []),
        (1, "moved", "updated", []),
        (2, "same", "unchanged", []),
        (3, "bad-mail", "invalid", ["invalid email address"]),
        (
            4,
            "bad-place",
            "invalid",
            ["unknown country code 'Atlantis' (expected ISO 3166-1 alpha-2)"],
        ),
        (5, "typed", "invalid", ["email must be a string"]),
        (6, "", "invalid", ["missing external_id"]),
        (7, "new", "invalid", ["duplicate external_id (first seen at index 0)"]),
    ]
    assert (body["created"], body["updated"], body["unchanged"], body["invalid"]) == (1, 1, 1, 5)
    BatchOut.model_validate(body)  # the answer is what the schema documents
    assert sorted(Member.objects.values_list("external_id", flat=True)) == ["moved", "new", "same"]
    assert stored("new")[:4] == ("new@example.com", "fr", "FR", "EU")
    assert stored("moved")[0] == "moved@example.com"


def _batch(prefix: str, count: int) -> list[dict]:
    return [
        {"external_id": f"{prefix}-{n}", "email": f"{prefix}{n}@example.com", "country": "IT"}
        for n in range(count)
    ]


def _writes_to_members(queries) -> list[str]:
    members = Member._meta.db_table
    return [
        q["sql"]
        for q in queries
        if members in q["sql"] and q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE"))
    ]


def test_a_batch_is_one_write_and_as_many_queries_for_a_thousand_as_for_ten(crm_key):
    def queries_for(members: list[dict]):
        with CaptureQueriesContext(connection) as queries:
            response = bulk(crm_key, members)
        assert response.status_code == 200
        return queries.captured_queries

    bulk(crm_key, [{"external_id": "warm", "email": "w@example.com", "country": "IT"}])
    small, large = queries_for(_batch("small", 10)), queries_for(_batch("large", 1000))
    assert len(small) == len(large)
    assert len(_writes_to_members(large)) == 1
    assert Member.objects.filter(external_id__startswith="large-").count() == 1000
    # Updating them all again is one write too.
    changed = [{**m, "country": "ES"} for m in _batch("large", 1000)]
    again = queries_for(changed)
    assert len(_writes_to_members(again)) == 1
    assert Member.objects.filter(country="ES").count() == 1000


def test_more_than_a_thousand_members_is_a_413_and_nothing_is_written(crm_key):
    response = bulk(crm_key, _batch("over", 1001))
    assert response.status_code == 413 and response["Content-Type"] == PROBLEM
    assert "at most 1000 members" in response.json()["detail"]
    assert not Member.objects.exists()


def test_a_batch_item_that_is_not_an_object_is_a_422_problem(crm_key):
    response = bulk(crm_key, [{"external_id": "a", "email": "a@example.com"}, "b"])
    assert response.status_code == 422 and response["Content-Type"] == PROBLEM
    assert not Member.objects.exists()


def test_an_empty_batch_writes_nothing(crm_key):
    response = bulk(crm_key, [])
    assert response.status_code == 200 and response.json()["results"] == []


def test_odd_characters_in_ids_and_keys_are_stored_as_sent(crm_key):
    odd = ['quo"te', "back\\slash", "tab\there", "émoji-🙂", "comma,semi;pipe|"]
    members = [
        {"external_id": ext, "email": f"m{n}@example.com", "country": "FR", "person_key": ext}
        for n, ext in enumerate(odd)
    ]
    response = bulk(crm_key, members)
    assert [r["status"] for r in response.json()["results"]] == ["created"] * len(odd)
    stored_keys = dict(Member.objects.values_list("external_id", "person_key"))
    assert stored_keys == {ext: ext for ext in odd}
    again = bulk(crm_key, members)
    assert [r["status"] for r in again.json()["results"]] == ["unchanged"] * len(odd)


# --- The suppression feed follows ---------------------------------------------------


def feed(purpose) -> list[tuple[str, str, str]]:
    from accounts.models import SuppressionChange

    return list(
        SuppressionChange.objects.filter(purpose=purpose)
        .order_by("id")
        .values_list("external_id", "state", "reason")
    )


def test_members_written_through_the_api_appear_in_the_suppression_feed(
    crm_key, purpose, django_capture_on_commit_callbacks
):
    """AI training is excluded in the EU and opt-out in the US: a new member in Germany
    is out, and moving to the US makes them in; an unchanged PUT adds nothing."""
    with django_capture_on_commit_callbacks(execute=True):
        assert put("u-7", crm_key, email="a@example.com", country="DE").status_code == 201
    with django_capture_on_commit_callbacks(execute=True):
        assert bulk(crm_key, [{"external_id": "u-7", "email": "a@example.com", "country": "US"}])
    with django_capture_on_commit_callbacks(execute=True):
        assert put("u-7", crm_key, email="a@example.com", country="US").status_code == 200

    assert feed(purpose) == [
        ("u-7", "out", "jurisdiction-excluded"),
        ("u-7", "in", "not-objected"),
    ]
