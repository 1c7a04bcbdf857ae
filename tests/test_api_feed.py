"""The suppression feed over the API: changes by cursor, the NDJSON snapshot, and
consumers reporting what they applied (and the admin showing how far behind they are)."""

import json
from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from accounts.models import Action, Source, SuppressionChange
from accounts.services.consent import consent_record
from accounts.services.suppression_feed import suppression_feed_catch_up, suppression_feed_sync
from api.models import ConsumerPosition, ConsumerPositionReport, Scope
from api.services.clients import api_client_create
from tests.factories import MemberFactory, staff_user

pytestmark = pytest.mark.django_db
PROBLEM = "application/problem+json"
FEED = "/api/v1/suppressions/ai-training"


@pytest.fixture
def ines(db):
    """Ines looks after the platform's integrations."""
    return staff_user("ines", "api.manage_apiclient", "api.view_apiclient")


@pytest.fixture
def pipeline(ines):
    """The training data pipeline, which follows the feed."""
    return api_client_create(name="training pipeline", scopes=[Scope.SUPPRESSIONS_READ], by=ines)


@pytest.fixture
def key(pipeline):
    return pipeline[1]


@pytest.fixture
def five_entries(purpose):
    """Three excluded members (out), two in an opt-out place (in): five first entries."""
    members = [MemberFactory(country=c) for c in ("GB", "US", "DE", "US", "FR")]
    suppression_feed_sync(purpose=purpose)
    return members


def call(method: str, path: str, key: str | None, body: dict | None = None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if body is None:
        return getattr(Client(), method)(path, headers=headers)
    return getattr(Client(), method)(
        path, json.dumps(body), content_type="application/json", headers=headers
    )


def cursors(purpose) -> list[int]:
    return list(
        SuppressionChange.objects.filter(purpose=purpose)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


ENDPOINTS = [
    ("get", f"{FEED}/changes", None),
    ("get", f"{FEED}/snapshot", None),
    ("get", "/api/v1/consumers/me", None),
    ("post", "/api/v1/consumers/me/applied", {"purpose": "ai-training", "cursor": 0}),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_every_feed_endpoint_needs_a_key_with_the_suppressions_scope(
    ines, purpose, method, path, body
):
    _, other = api_client_create(name="crm", scopes=[Scope.MEMBERS_WRITE], by=ines)
    unauthenticated = call(method, path, None, body)
    assert unauthenticated.status_code == 401 and unauthenticated["Content-Type"] == PROBLEM
    forbidden = call(method, path, other, body)
    assert forbidden.status_code == 403 and forbidden["Content-Type"] == PROBLEM
    assert "suppressions:read" in forbidden.json()["detail"]
    assert not ConsumerPosition.objects.exists()


# --- Changes --------------------------------------------------------------------------


def test_changes_come_in_pages_by_cursor_without_gaps_or_repeats(key, purpose, five_entries):
    first = call("get", f"{FEED}/changes?limit=2", key).json()
    assert first["purpose"] == "ai-training" and first["has_more"] is True
    assert [e["cursor"] for e in first["entries"]] == cursors(purpose)[:2]
    entry = first["entries"][0]
    assert entry["external_id"] == five_entries[0].external_id
    assert (entry["state"], entry["reason"]) == ("out", "jurisdiction-excluded")
    assert entry["changed_at"].endswith("Z")

    seen, after = [], 0
    while True:
        page = call("get", f"{FEED}/changes?after={after}&limit=2", key).json()
        seen += [e["cursor"] for e in page["entries"]]
        after = page["next_cursor"]
        if not page["has_more"]:
            break
    assert seen == cursors(purpose)


def test_a_cursor_beyond_the_head_reads_an_empty_page(key, purpose, five_entries):
    head = cursors(purpose)[-1]
    page = call("get", f"{FEED}/changes?after={head + 1000}", key).json()
    assert page == {
        "purpose": "ai-training",
        "entries": [],
        "next_cursor": head + 1000,
        "has_more": False,
    }


def test_a_withdrawn_objection_follows_as_in(key, purpose, five_entries):
    member = five_entries[1]  # US: in
    head = cursors(purpose)[-1]
    for action in (Action.OBJECT, Action.WITHDRAW_OBJECTION):
        consent_record(member=member, action=action, source=Source.API, purpose=purpose)
        suppression_feed_catch_up()  # beat's next run
    page = call("get", f"{FEED}/changes?after={head}", key).json()
    assert [(e["external_id"], e["state"], e["reason"]) for e in page["entries"]] == [
        (member.external_id, "out", "objected"),
        (member.external_id, "in", "not-objected"),
    ]


@pytest.mark.parametrize("query", ["limit=0", "limit=10001", "after=-1", "after=x"])
def test_a_bad_page_request_is_a_422_problem(key, purpose, query):
    response = call("get", f"{FEED}/changes?{query}", key)
    assert response.status_code == 422 and response["Content-Type"] == PROBLEM


@pytest.mark.parametrize("tail", ["changes", "snapshot"])
def test_an_unknown_purpose_is_a_404_problem(key, purpose, tail):
    response = call("get", f"/api/v1/suppressions/no-such-use/{tail}", key)
    assert response.status_code == 404 and response["Content-Type"] == PROBLEM


# --- Snapshot ------------------------------------------------------------------------


def test_the_snapshot_streams_ndjson_headed_by_its_cursor(key, purpose, five_entries):
    response = call("get", f"{FEED}/snapshot", key)
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    head = cursors(purpose)[-1]
    assert lines[0]["purpose"] == "ai-training" and lines[0]["cursor"] == head
    assert lines[0]["taken_at"].endswith("Z")
    assert response["Renotify-Cursor"] == str(head)
    excluded = {five_entries[i].external_id for i in (0, 2, 4)}
    assert {line["external_id"] for line in lines[1:]} == excluded
    assert {tuple(sorted(line)) for line in lines[1:]} == {("external_id", "reason", "since")}


def test_the_schema_documents_the_feed_endpoints():
    paths = Client().get("/api/v1/openapi.json").json()["paths"]
    snapshot = paths["/api/v1/suppressions/{purpose_slug}/snapshot"]["get"]
    assert "application/x-ndjson" in snapshot["responses"]["200"]["content"]
    assert "/api/v1/consumers/me/applied" in paths


# --- Consumers -------------------------------------------------------------------------


def applied(key: str, cursor: int, purpose: str = "ai-training"):
    return call("post", "/api/v1/consumers/me/applied", key, {"purpose": purpose, "cursor": cursor})


def test_a_consumer_reports_what_it_applied_and_sees_its_lag(key, pipeline, purpose, five_entries):
    third = cursors(purpose)[2]
    response = applied(key, third)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["purpose"], body["cursor"], body["head"]) == (
        "ai-training",
        third,
        cursors(purpose)[-1],
    )
    assert body["entries_behind"] == 2 and body["seconds_behind"] >= 0
    stored = ConsumerPosition.objects.get(client=pipeline[0])
    assert stored.cursor == third


def test_a_position_only_moves_forward(key, pipeline, purpose, five_entries):
    all_cursors = cursors(purpose)
    applied(key, all_cursors[3])
    response = applied(key, all_cursors[1])  # a late retry of an older report
    assert response.status_code == 200 and response.json()["cursor"] == all_cursors[3]
    assert ConsumerPosition.objects.get().cursor == all_cursors[3]


def test_each_advance_of_a_position_is_kept_in_its_history(key, pipeline, purpose, five_entries):
    """The effectiveness report reads when each feed entry was first acknowledged: every
    advance is appended, a report that does not advance (a retry, an older cursor) is not."""
    all_cursors = cursors(purpose)
    for cursor in (all_cursors[1], all_cursors[1], all_cursors[0], all_cursors[3]):
        assert applied(key, cursor).status_code == 200
    history = ConsumerPositionReport.objects.filter(client=pipeline[0], purpose=purpose)
    assert list(history.order_by("pk").values_list("cursor", flat=True)) == [
        all_cursors[1],
        all_cursors[3],
    ]
    assert ConsumerPosition.objects.get().cursor == all_cursors[3]


def test_a_refused_report_adds_nothing_to_the_history(key, purpose, five_entries):
    assert applied(key, cursors(purpose)[-1] + 1).status_code == 422
    assert not ConsumerPositionReport.objects.exists()


def test_a_cursor_beyond_the_head_is_refused_and_nothing_is_stored(key, purpose, five_entries):
    response = applied(key, cursors(purpose)[-1] + 1)
    assert response.status_code == 422 and response["Content-Type"] == PROBLEM
    assert "beyond the feed's head" in response.json()["detail"]
    assert not ConsumerPosition.objects.exists()


@pytest.mark.parametrize(
    "body", [{"purpose": "ai-training", "cursor": -1}, {"purpose": "ai-training"}, {"cursor": 1}]
)
def test_a_malformed_report_is_a_422_problem(key, purpose, body):
    response = call("post", "/api/v1/consumers/me/applied", key, body)
    assert response.status_code == 422 and response["Content-Type"] == PROBLEM
    assert not ConsumerPosition.objects.exists()


def test_a_report_on_an_unknown_purpose_is_a_404_problem(key, purpose):
    response = applied(key, 0, purpose="no-such-use")
    assert response.status_code == 404 and not ConsumerPosition.objects.exists()


def test_the_lag_counts_the_entries_and_the_age_of_the_oldest_not_applied(
    key, purpose, five_entries
):
    applied(key, cursors(purpose)[-1])
    assert call("get", "/api/v1/consumers/me", key).json()["positions"][0]["entries_behind"] == 0
    with time_machine.travel(timezone.now() - timedelta(minutes=10), tick=False):
        consent_record(
            member=five_entries[1], action=Action.OBJECT, source=Source.API, purpose=purpose
        )
        suppression_feed_catch_up()
    consent_record(member=five_entries[3], action=Action.OBJECT, source=Source.API, purpose=purpose)
    suppression_feed_catch_up()
    me = call("get", "/api/v1/consumers/me", key).json()
    assert me["client"] == "training pipeline"
    (position,) = me["positions"]
    assert position["entries_behind"] == 2 and position["head"] == cursors(purpose)[-1]
    assert 590 <= position["seconds_behind"] <= 700


def test_staff_see_each_consumers_position_and_lag_in_the_admin(
    ines, key, pipeline, purpose, five_entries
):
    applied(key, cursors(purpose)[1])
    browser = Client()
    browser.force_login(ines)
    listing = browser.get("/admin/api/apiclient/").content.decode()
    assert "ai-training: 3 entries behind" in listing
    page = browser.get(f"/admin/api/apiclient/{pipeline[0].pk}/change/").content.decode()
    assert "ai-training: 3 entries behind" in page
