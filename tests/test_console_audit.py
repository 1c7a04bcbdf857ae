"""The console's audit trail page: who may read it, each filter narrows it, keyset pages,
the CSV of the filtered entries (itself recorded), and a pinned query count."""

import csv
import io
from datetime import datetime

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from audit.models import Action, StaffAction
from audit.selectors import PAGE_SIZE
from tests.factories import campaign, staff_user

pytestmark = pytest.mark.django_db
URL = "/console/audit/"
CSV_URL = "/console/audit/download.csv"
READER = "audit.view_staffaction"


@pytest.fixture
def reader():
    return staff_user("rita", READER)


@pytest.fixture
def trail(reader):
    """A few entries of different people, actions, targets and days."""
    cam = staff_user("cam")
    spring = campaign(name="Spring notice")
    rows = [
        StaffAction(by=cam, username="cam", action=Action.SUBMIT, target_type="campaigns.campaign",
                    target_id=str(spring.pk), target_label="Spring notice",
                    at=_day(2026, 11, 2)),
        StaffAction(by=reader, username="rita", action=Action.APPROVE,
                    target_type="campaigns.campaign", target_id=str(spring.pk),
                    target_label="Spring notice", at=_day(2026, 11, 3),
                    changes={"name": ["Spring", "Spring notice"]}, ip_hash="ab" * 32),
        StaffAction(by=None, username="ghost", action=Action.LOGIN_FAILED, at=_day(2026, 11, 4)),
        StaffAction(by=cam, username="cam", action=Action.DOWNLOAD, at=_day(2026, 11, 5),
                    target_type="accounts.purpose", target_id="1", target_label="=HYPERLINK(1)",
                    detail={"file": "x.csv"}),
    ]  # fmt: skip
    StaffAction.objects.bulk_create(rows)
    return {"cam": cam, "spring": spring}


def _day(year, month, day):
    return timezone.make_aware(datetime(year, month, day, 12, 0))


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _shown(response) -> list[str]:
    """The page's entries as "username action", newest first."""
    return [f"{row['entry'].username} {row['entry'].action}" for row in response.context["rows"]]


def _entries_added_by_the_test() -> list[StaffAction]:
    """Entries other than the users' creation and the sign-ins of the fixtures."""
    return list(
        StaffAction.objects.exclude(action__in=[Action.ROLE_CHANGE, Action.LOGIN]).order_by("id")
    )


# --- Who may read it ------------------------------------------------------------------------


def test_a_stranger_is_sent_to_sign_in():
    response = Client().get(URL)
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert Client().get(CSV_URL).status_code == 302


@pytest.mark.parametrize("perms", [(), ("campaigns.view_campaign", "accounts.view_member")])
def test_staff_without_the_permission_are_refused_and_told_which(perms, trail):
    client = _client(staff_user("vic", *perms))
    for url in (URL, CSV_URL):
        response = client.get(url)
        assert response.status_code == 403
        assert READER in response.content.decode()
    assert not StaffAction.objects.filter(action=Action.DOWNLOAD, username="vic").exists()


def test_a_reader_sees_every_entry_newest_first_with_the_diff_and_links(reader, trail):
    response = _client(reader).get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    shown = [e for e in _shown(response) if not e.endswith((" login", " role_change"))]
    assert shown == [
        "cam download",
        "ghost login_failed",
        "rita approve",
        "cam submit",
    ]
    assert f'href="/console/campaigns/{trail["spring"].pk}/"' in page
    assert "<strong>name</strong>: Spring → Spring notice" in page
    assert "abababababab…" in page  # the address hash, shortened
    assert "unknown user" in page  # a failed sign-in with a name nobody has
    assert 'href="/console/audit/"' in page and "Audit trail" in page  # the menu entry


# --- Filters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"by": "cam"}, ["cam download", "cam submit"]),
        ({"action": "approve"}, ["rita approve"]),
        ({"target_type": "accounts.purpose"}, ["cam download"]),
        (
            {"target_type": "campaigns.campaign", "target_id": "SPRING"},
            ["rita approve", "cam submit"],
        ),
        ({"since": "2026-11-03", "until": "2026-11-04"}, ["ghost login_failed", "rita approve"]),
        ({"q": "ghos"}, ["ghost login_failed"]),
        ({"q": "spring"}, ["rita approve", "cam submit"]),
        ({"by": "cam", "action": "submit"}, ["cam submit"]),
    ],
)
def test_each_filter_narrows_the_list(reader, trail, query, expected):
    query = {k: (str(trail["spring"].pk) if v == "SPRING" else v) for k, v in query.items()}
    response = _client(reader).get(URL, query)
    assert response.status_code == 200
    assert _shown(response) == expected


def test_a_start_after_the_end_is_a_clear_error(reader, trail):
    response = _client(reader).get(URL, {"since": "2026-11-05", "until": "2026-11-01"})
    assert response.status_code == 400
    assert "The start date is after the end date." in response.content.decode()
    download = _client(reader).get(CSV_URL, {"since": "2026-11-05", "until": "2026-11-01"})
    assert download.status_code == 400
    assert not StaffAction.objects.filter(action=Action.DOWNLOAD, username="rita").exists()


def test_an_unknown_action_or_user_is_a_clear_error(reader, trail):
    response = _client(reader).get(URL, {"action": "nonsense", "by": "nobody-here"})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()


# --- Pages --------------------------------------------------------------------------------------


def test_pages_walk_the_whole_trail_by_id_without_repeats(reader):
    StaffAction.objects.bulk_create(
        StaffAction(username=f"u{i}", action=Action.EXPORT) for i in range(PAGE_SIZE * 2 + 5)
    )
    client, seen, url, pages = _client(reader), [], URL, 0  # signing in is an entry too
    every = list(StaffAction.objects.order_by("-id").values_list("id", flat=True))
    while url:
        response = client.get(url if url.startswith("/") else URL + url)
        seen += [row["entry"].pk for row in response.context["rows"]]
        url, pages = response.context["older_url"], pages + 1
    assert seen == every and pages == 3
    # And back: the newer page of the last one is the middle one.
    last = client.get(URL, {"before": every[2 * PAGE_SIZE - 1]})
    middle = client.get(URL + last.context["newer_url"])
    assert [r["entry"].pk for r in middle.context["rows"]] == every[PAGE_SIZE : 2 * PAGE_SIZE]


def test_the_page_costs_the_same_few_queries_whatever_the_trail_holds(
    reader, trail, django_assert_num_queries
):
    client = _client(reader)
    client.get(URL)  # sessions and permissions warmed like any later page
    # session, user, its permissions (user's, groups'), the "who" list, the page's entries
    with django_assert_num_queries(6):
        client.get(URL, {"action": "submit"})
    StaffAction.objects.bulk_create(
        StaffAction(username=f"u{i}", action=Action.SUBMIT) for i in range(200)
    )
    with django_assert_num_queries(6):
        response = client.get(URL, {"action": "submit"})
    assert len(response.context["rows"]) == PAGE_SIZE


# --- The CSV ------------------------------------------------------------------------------------


def test_the_csv_holds_the_filtered_entries_and_is_itself_recorded(reader, trail):
    client = Client(REMOTE_ADDR="203.0.113.9")
    client.force_login(reader)
    response = client.get(CSV_URL, {"by": "cam", "q": ""})
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="staff-audit-')
    [download] = _entries_added_by_the_test()[-1:]
    assert (download.action, download.by, download.path) == (Action.DOWNLOAD, reader, CSV_URL)
    assert download.detail["filters"] == {"by": "cam"}
    assert download.detail["file"] in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(r["username"], r["action"]) for r in rows] == [("cam", "download"), ("cam", "submit")]
    assert rows[0]["target_label"] == "'=HYPERLINK(1)"  # a spreadsheet shows it, never runs it
    assert rows[0]["detail"] == '{"file": "x.csv"}'


def test_the_plan_uses_the_indexes_on_postgresql(trail):
    """Each filter is an index range read backwards by id, never a sort of the table."""
    if connection.vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    from audit.selectors import TrailFilter, staff_actions_filtered

    cases = {
        "staffaction_by_idx": TrailFilter(by=trail["cam"]),
        "staffaction_action_idx": TrailFilter(action="submit"),
        "staffaction_target_idx": TrailFilter(target_type="campaigns.campaign", target_id="1"),
    }
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        for index, where in cases.items():
            sql, params = staff_actions_filtered(where=where)[:51].query.sql_with_params()
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert index in plan, plan
            assert "Sort" not in plan, plan
        # A search by part of a name: the trigram indexes (migration 0003), once walking
        # the id index is ruled out as it would be for a big table.
        cursor.execute("SET LOCAL enable_indexscan = off")
        sql, params = staff_actions_filtered(where=TrailFilter(text="nobody"))[
            :51
        ].query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "staffaction_username_trgm" in plan and "staffaction_target_label_trgm" in plan, plan


@pytest.mark.django_db(transaction=True)  # as in production: the page's own transaction
def test_a_search_is_planned_for_its_own_pattern_on_postgresql(reader, trail):
    """Prepared statements may keep a generic plan, which cannot use the trigram index
    for a pattern it does not know: the page plans a search for its own (db.plans)."""
    if connection.vendor != "postgresql":
        pytest.skip("plan caching is PostgreSQL's")
    client = _client(reader)
    with connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_generic_plan")
    try:
        response = client.get(URL, {"q": "spring"})
        with connection.cursor() as cursor:
            cursor.execute("SHOW plan_cache_mode")
            assert cursor.fetchone()[0] == "force_generic_plan"  # restored after the page
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET plan_cache_mode")
    assert _shown(response) == ["rita approve", "cam submit"]
