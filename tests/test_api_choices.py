"""Choices from every channel through the API: a member's state and ledger events read,
choices made in the platform's own UI recorded once however often they are retried,
notices shown and acknowledged in its app, links to the standing preference page; and
the ledger's chain still verifies after all of it."""

import json
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts import ledger
from accounts.models import ConsentEvent, Member, Preference, Source
from api.models import IdempotentRequest, Scope
from api.services.clients import api_client_create
from api.services.idempotency import STALE
from config.logredact import member_links_redact
from tests.concurrency import at_once
from tests.factories import MemberFactory, ai_training, notice_version, staff_user

pytestmark = pytest.mark.django_db
PROBLEM = "application/problem+json"


@pytest.fixture
def ines(db):
    """Ines looks after the platform's integrations."""
    return staff_user("ines", "api.manage_apiclient")


def key_with(ines, *scopes: Scope) -> str:
    return api_client_create(name="settings-screen", scopes=list(scopes), by=ines)[1]


@pytest.fixture
def app_key(ines):
    """The platform's app: reads and records choices."""
    return key_with(ines, Scope.PREFERENCES_READ, Scope.PREFERENCES_WRITE)


@pytest.fixture
def maya(purpose):
    """Maya lives in the US, where AI training is opt-out."""
    return MemberFactory(external_id="maya-1", country="US")


@pytest.fixture
def sent_version(db):
    """A notice version a campaign has sent (frozen)."""
    version = notice_version()
    type(version).objects.filter(pk=version.pk).update(frozen_at=timezone.now())
    return version


def call(method: str, path: str, key: str | None, body=None, **headers):
    if key:
        headers["Authorization"] = f"Bearer {key}"
    send = getattr(Client(), method)
    if body is None:  # no body at all, as a client sends one (the test client's default
        # for a POST is an empty multipart form, which is a body that is not JSON: 415)
        return send(path, "", content_type="application/json", headers=headers)
    return send(path, json.dumps(body), content_type="application/json", headers=headers)


def choose(key, body, member="maya-1", **headers):
    return call("post", f"/api/v1/members/{member}/choices", key, body, **headers)


def chain_intact() -> bool:
    events = ConsentEvent.objects.order_by("seq").values(*ledger.HASHED_FIELDS, "prev_hash", "hash")
    return ledger.chain_verify(events).intact


OBJECT = {"purpose": "ai-training", "action": "object"}


def endpoints(version_id: int):
    base = "/api/v1/members/maya-1"
    return {
        "read": ("get", f"{base}/preferences", None, Scope.PREFERENCES_READ),
        "choose": ("post", f"{base}/choices", OBJECT, Scope.PREFERENCES_WRITE),
        "served": ("post", f"{base}/notices/{version_id}/served", None, Scope.PREFERENCES_WRITE),
        "acknowledged": (
            "post",
            f"{base}/notices/{version_id}/acknowledged",
            None,
            Scope.PREFERENCES_WRITE,
        ),
        "link": ("post", f"{base}/preference-link", None, Scope.PREFERENCES_WRITE),
    }


@pytest.mark.parametrize("name", ["read", "choose", "served", "acknowledged", "link"])
def test_every_endpoint_needs_a_key_with_its_scope_and_changes_nothing_without(
    name, ines, maya, sent_version
):
    method, path, body, scope = endpoints(sent_version.pk)[name]
    others = [s for s in Scope if s != scope]

    missing = call(method, path, None, body)
    wrong = call(method, path, key_with(ines, *others), body)
    right = call(method, path, key_with(ines, scope), body)

    assert missing.status_code == 401 and missing["Content-Type"] == PROBLEM
    assert wrong.status_code == 403 and wrong["Content-Type"] == PROBLEM
    assert scope.value in wrong.json()["detail"]
    assert right.status_code in (200, 201), right.content
    recorded = 0 if name in ("read", "link") else 1
    assert ConsentEvent.objects.count() == recorded


def test_a_choice_is_recorded_from_the_api_with_the_clients_time_kept_in_metadata(app_key, maya):
    chosen = (timezone.now() - timedelta(hours=3)).replace(microsecond=0)
    response = choose(
        app_key,
        {**OBJECT, "occurred_at": chosen.isoformat(), "comment": "no\x00 thanks"},
        **{"Idempotency-Key": "tap-1"},
    )

    assert response.status_code == 201, response.content
    event = ConsentEvent.objects.get()
    assert (event.action, event.source, event.purpose.slug) == ("object", "api", "ai-training")
    assert event.metadata == {
        "client": IdempotentRequest.objects.get().client_id,
        "occurred_at": chosen.isoformat(),
        "idempotency_key": "tap-1",
    }
    assert event.created_at > chosen + timedelta(hours=2)  # the ledger keeps the server's time
    assert event.comment == "no thanks"
    body = response.json()
    assert body["recorded"] is True and body["event"]["seq"] == event.seq
    assert body["preference"]["state"] == "out" and body["preference"]["reason"] == "objected"
    assert Preference.objects.get(member=maya).choice == "out"


def test_reading_shows_each_purposes_state_and_recent_events_but_no_evidence_details(app_key, maya):
    chosen = timezone.now() - timedelta(days=1)
    choose(app_key, {**OBJECT, "occurred_at": chosen.isoformat(), "comment": "private"})
    choose(app_key, {**OBJECT, "action": "withdraw-objection"})
    choose(app_key, {**OBJECT, "action": "opt-in"})

    response = call("get", "/api/v1/members/maya-1/preferences", app_key)
    latest = call("get", "/api/v1/members/maya-1/preferences?events=1", app_key)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["external_id"] == "maya-1" and body["jurisdiction"] == maya.jurisdiction
    assert body["purposes"] == [
        {
            "purpose": "ai-training",
            "state": "in",
            "reason": "opted-in",
            "since": body["purposes"][0]["since"],
            "policy_mode": "opt_out",
            "explicit_choice": "in",
            "planned_mode": None,
            "planned_from": None,
        }
    ]
    assert [e["action"] for e in body["events"]] == ["opt-in", "withdraw-objection", "object"]
    assert body["events"][2]["occurred_at"] is not None and body["events"][0]["occurred_at"] is None
    raw = response.content.decode()
    for hidden in ("ip_hash", "user_agent", "comment", "private", "metadata", "client"):
        assert hidden not in raw
    assert [e["action"] for e in latest.json()["events"]] == ["opt-in"]


@pytest.mark.parametrize("events", ["101", "-1", "many"])
def test_asking_for_too_many_events_is_a_422_problem(app_key, maya, events):
    response = call("get", f"/api/v1/members/maya-1/preferences?events={events}", app_key)
    assert response.status_code == 422 and response["Content-Type"] == PROBLEM


def test_repeating_a_choice_without_a_key_records_no_second_event(app_key, maya):
    first, again = choose(app_key, OBJECT), choose(app_key, OBJECT)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["recorded"] is False
    assert again.json()["event"]["seq"] == first.json()["event"]["seq"]
    assert ConsentEvent.objects.count() == 1


def test_a_retry_with_the_same_key_gets_the_first_answer_and_records_nothing(app_key, maya):
    first = choose(app_key, OBJECT, **{"Idempotency-Key": "k-object"})
    withdrawn = choose(app_key, {**OBJECT, "action": "withdraw-objection"})

    retry = choose(app_key, OBJECT, **{"Idempotency-Key": "k-object"})

    assert (first.status_code, withdrawn.status_code, retry.status_code) == (201, 201, 201)
    assert retry.json() == first.json()
    # The retry did not object again: the withdrawal still stands.
    assert ConsentEvent.objects.count() == 2
    assert Preference.objects.get(member=maya).choice is None


def test_the_same_key_with_another_request_is_a_409_and_changes_nothing(app_key, maya, purpose):
    MemberFactory(external_id="noah-1", country="US")
    choose(app_key, OBJECT, **{"Idempotency-Key": "k-1"})

    other_action = choose(app_key, {**OBJECT, "action": "opt-in"}, **{"Idempotency-Key": "k-1"})
    other_member = choose(app_key, OBJECT, member="noah-1", **{"Idempotency-Key": "k-1"})

    for response in (other_action, other_member):
        assert response.status_code == 409 and response["Content-Type"] == PROBLEM
        assert "k-1" in response.json()["detail"]
    assert ConsentEvent.objects.count() == 1
    assert Preference.objects.get().choice == "out"


def test_a_key_is_one_clients_own(app_key, ines, maya):
    other_app = key_with(ines, Scope.PREFERENCES_WRITE)
    choose(app_key, OBJECT, **{"Idempotency-Key": "shared"})

    theirs = choose(other_app, {**OBJECT, "action": "opt-in"}, **{"Idempotency-Key": "shared"})

    assert theirs.status_code == 201
    assert Preference.objects.get().choice == "in"


def test_a_write_that_fails_releases_its_key(app_key, maya, monkeypatch):
    from api.services import choices

    def broken(**kwargs):
        raise ConnectionError("database went away")

    monkeypatch.setattr(choices, "consent_record", broken)
    failed = choose(app_key, OBJECT, **{"Idempotency-Key": "k-2"})
    assert failed.status_code == 500 and failed["Content-Type"] == "application/problem+json"
    monkeypatch.undo()

    retry = choose(app_key, OBJECT, **{"Idempotency-Key": "k-2"})

    assert retry.status_code == 201 and ConsentEvent.objects.count() == 1


def test_a_key_whose_first_request_died_is_taken_over_once_stale(app_key, maya):
    choose(app_key, OBJECT, **{"Idempotency-Key": "k-3"})
    # The first request's answer never got stored (its process died).
    IdempotentRequest.objects.update(status_code=0, created_at=timezone.now() - 2 * STALE)

    retry = choose(app_key, OBJECT, **{"Idempotency-Key": "k-3"})

    assert retry.status_code == 200 and retry.json()["recorded"] is False
    assert ConsentEvent.objects.count() == 1
    assert IdempotentRequest.objects.get().status_code == 200


def test_a_retry_while_the_first_request_is_still_answered_is_told_to_retry(
    app_key, maya, monkeypatch
):
    from api.services import idempotency

    monkeypatch.setattr(idempotency, "WAIT", timedelta(milliseconds=200))
    choose(app_key, OBJECT, **{"Idempotency-Key": "k-5"})
    IdempotentRequest.objects.update(status_code=idempotency.IN_PROGRESS)  # not answered yet

    retry = choose(app_key, OBJECT, **{"Idempotency-Key": "k-5"})

    assert retry.status_code == 409 and "still in progress" in retry.json()["detail"]
    assert ConsentEvent.objects.count() == 1


@pytest.mark.parametrize(
    ("occurred_at", "status"),
    [
        (timedelta(minutes=10), 422),
        (timedelta(minutes=2), 201),
        (-timedelta(days=400), 201),
    ],
)
def test_a_choice_from_the_future_is_refused_beyond_a_small_clock_skew(
    app_key, maya, occurred_at, status
):
    response = choose(
        app_key, {**OBJECT, "occurred_at": (timezone.now() + occurred_at).isoformat()}
    )

    assert response.status_code == status, response.content
    assert ConsentEvent.objects.count() == (1 if status == 201 else 0)


@pytest.mark.parametrize(
    "body",
    [
        {**OBJECT, "occurred_at": "2026-01-01T10:00:00"},  # no offset
        {**OBJECT, "occurred_at": "0001-01-01T00:00:00+05:00"},  # before year 1 in UTC
        {**OBJECT, "purpose": "no-such-purpose"},
        {**OBJECT, "action": "erase"},
        {"purpose": "ai-training"},
        {**OBJECT, "comment": "x" * 2001},
    ],
)
def test_a_choice_that_cannot_be_recorded_is_a_422_problem(app_key, maya, body):
    response = choose(app_key, body, **{"Idempotency-Key": "k-4"})

    assert response.status_code == 422 and response["Content-Type"] == PROBLEM
    assert not ConsentEvent.objects.exists() and not IdempotentRequest.objects.exists()


@pytest.mark.parametrize("key", ["", "k" * 256, "nul\x00key", "caf\u00e9"])
def test_an_empty_or_overlong_idempotency_key_is_a_422_problem(app_key, maya, key):
    response = choose(app_key, OBJECT, **{"Idempotency-Key": key})
    assert response.status_code == 422 and not ConsentEvent.objects.exists()


@pytest.mark.parametrize("nobody", ["nobody", "nul%00byte"])
def test_an_unknown_member_is_a_404_problem_everywhere(app_key, purpose, sent_version, nobody):
    for method, path, body, _scope in endpoints(sent_version.pk).values():
        response = call(method, path.replace("maya-1", nobody), app_key, body)
        assert response.status_code == 404 and response["Content-Type"] == PROBLEM, path
    assert not ConsentEvent.objects.exists()


@pytest.mark.parametrize("kind", ["served", "acknowledged"])
def test_in_app_notices_are_recorded_once_per_member_and_version(app_key, maya, sent_version, kind):
    other = notice_version()
    type(other).objects.filter(pk=other.pk).update(frozen_at=timezone.now())
    path = "/api/v1/members/maya-1/notices/{}/" + kind

    first = call("post", path.format(sent_version.pk), app_key)
    again = call("post", path.format(sent_version.pk), app_key)
    another_version = call("post", path.format(other.pk), app_key)

    assert (first.status_code, again.status_code, another_version.status_code) == (201, 200, 201)
    assert again.json() == {**first.json(), "recorded": False}
    events = ConsentEvent.objects.order_by("seq")
    assert [(e.action, e.source, e.notice_version_id, e.delivery_id) for e in events] == [
        ("serve" if kind == "served" else "acknowledge", Source.IN_APP, v.pk, None)
        for v in (sent_version, other)
    ]


def test_an_unsent_or_unknown_notice_version_is_refused(app_key, maya):
    draft = notice_version()

    unsent = call("post", f"/api/v1/members/maya-1/notices/{draft.pk}/served", app_key)
    unknown = call("post", "/api/v1/members/maya-1/notices/999999/acknowledged", app_key)

    assert unsent.status_code == 409 and "has not been sent" in unsent.json()["detail"]
    assert unknown.status_code == 404 and unknown["Content-Type"] == PROBLEM
    assert not ConsentEvent.objects.exists()


def test_a_preference_link_opens_the_members_page_and_a_tampered_one_is_refused(app_key, maya):
    response = call("post", "/api/v1/members/maya-1/preference-link", app_key)

    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    url = response.json()["url"]
    assert url.startswith(f"{settings.SITE_URL}/p/")
    token = url.removeprefix(f"{settings.SITE_URL}/p/").strip("/")
    assert token not in member_links_redact(f"minted {url}")  # never readable in a log
    path = urlsplit(url).path
    page = Client().get(path)
    assert page.status_code == 200 and page.context["member"] == maya
    tampered = path[:-3] + ("A" if path[-3] != "A" else "B") + path[-2:]
    assert Client().get(tampered).status_code == 400


def test_the_ledger_chain_verifies_after_choices_and_notices_from_every_channel(
    app_key, maya, sent_version
):
    served = f"/api/v1/members/maya-1/notices/{sent_version.pk}/"
    call("post", served + "served", app_key)
    choose(app_key, OBJECT, **{"Idempotency-Key": "a"})
    choose(app_key, OBJECT, **{"Idempotency-Key": "a"})
    call("post", served + "acknowledged", app_key)
    choose(app_key, {**OBJECT, "action": "withdraw-objection"})

    assert ConsentEvent.objects.count() == 4
    assert chain_intact()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent connections")
def test_two_requests_at_once_with_one_key_record_one_event_and_get_one_answer(ines):
    ai_training()
    MemberFactory(external_id="maya-1", country="US")
    key = key_with(ines, Scope.PREFERENCES_WRITE)
    answers = []

    def tap():
        response = choose(key, OBJECT, **{"Idempotency-Key": "double-tap"})
        answers.append((response.status_code, response.json()))

    assert at_once(tap, tap) == []
    assert len(answers) == 2 and answers[0] == answers[1]
    assert answers[0][0] == 201
    assert ConsentEvent.objects.count() == 1
    assert Member.objects.get().preferences.get().choice == "out"
    assert chain_intact()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent connections")
def test_a_notice_served_in_app_by_several_requests_at_once_is_one_event(ines):
    MemberFactory(external_id="maya-1", country="US")
    version = notice_version()
    type(version).objects.filter(pk=version.pk).update(frozen_at=timezone.now())
    key = key_with(ines, Scope.PREFERENCES_WRITE)
    statuses = []

    def serve():
        path = f"/api/v1/members/maya-1/notices/{version.pk}/served"
        statuses.append(call("post", path, key).status_code)

    assert at_once(*[serve] * 4) == []
    assert sorted(statuses) == [200, 200, 200, 201]
    assert ConsentEvent.objects.count() == 1 and chain_intact()


def test_an_erased_member_is_only_facts_now_nothing_more_is_recorded_or_linked(
    app_key, maya, purpose, sent_version
):
    from accounts.models import Source
    from campaigns.services.erasure import member_erase

    choose(app_key, OBJECT)
    member_erase(member=maya, source=Source.API)
    events = ConsentEvent.objects.count()

    writes = {k: v for k, v in endpoints(sent_version.pk).items() if k != "read"}
    for method, path, body, _scope in writes.values():
        response = call(method, path, app_key, body)
        assert response.status_code == 409, path
        assert "erased" in response.json()["detail"]
    assert ConsentEvent.objects.count() == events
    read = call("get", "/api/v1/members/maya-1/preferences", app_key)
    assert read.status_code == 200  # the facts stay readable: still objected
    assert read.json()["purposes"][0]["reason"] == "objected"
