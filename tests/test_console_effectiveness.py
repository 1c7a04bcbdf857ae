"""The effectiveness report in the console: the page, its printable variant and its CSV
(both recorded in the staff audit trail), who may read them, bad choices, and a report
with no campaign."""

import csv
import io

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.test import Client

from audit.models import Action, StaffAction
from console.roles import ROLES
from tests.effectiveness_data import at, known_campaign
from tests.factories import staff_user

pytestmark = pytest.mark.django_db
URL = "/console/reports/effectiveness/"
PRINT_URL = "/console/reports/effectiveness/print/"
CSV_URL = "/console/reports/effectiveness.csv"
PERMS = ("campaigns.view_campaign", "accounts.view_consentevent")
US = {"purpose": "ai-training", "jurisdiction": "US"}


@pytest.fixture(autouse=True)
def _after_the_campaign():
    """Now is 2027-02-01: the known campaign's responses are all in the past."""
    with time_machine.travel(at(2, 1), tick=False):
        yield


@pytest.fixture
def known(purpose):
    return known_campaign(purpose)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer():
    return _client(staff_user("vera", *PERMS))


def test_the_page_shows_every_section_with_the_known_figures(viewer, known):
    response = viewer.get(URL, US)
    assert response.status_code == 200
    html = response.content.decode()
    for section in ("reach", "not-reached", "notice-days", "responses", "trend", "routes",
                    "unsubscribes", "feed", "consumers"):  # fmt: skip
        assert f'id="{section}"' in html, section
    assert "Winter notice" in html
    assert "2 members (40.0% of those reached)" in html  # acknowledged
    assert "3 members (60.0% of those reached)" in html  # objected
    assert "<dt>Median</dt><dd>59 days</dd>" in html
    assert "<dt>90th percentile</dt><dd>59.6 days</dd>" in html
    assert "median time from objection to feed entry: 2 h 0 min" in html
    assert "16 h 0 min" in html and "14 h 30 min" in html  # alpha's and beta's medians


def test_the_form_alone_before_choosing(viewer):
    response = viewer.get(URL)
    assert response.status_code == 200 and response.context["report"] is None
    assert b'name="jurisdiction"' in response.content


@pytest.mark.parametrize(
    "query",
    [
        {"purpose": "no-such-use", "jurisdiction": "US"},
        {"purpose": "ai-training", "jurisdiction": "XX"},
        {**US, "since": "2027-02-01", "until": "2027-01-01"},
        {**US, "campaigns": "999999"},
        {**US, "since": "yesterday"},
    ],
)
def test_bad_choices_are_a_clear_400_and_nothing_is_recorded(viewer, purpose, query):
    page = viewer.get(URL, query)
    assert page.status_code == 400 and page.context["report"] is None
    for url in (CSV_URL, PRINT_URL):
        response = viewer.get(url, query)
        assert response.status_code == 400
        assert response.content.startswith(b"No report, the choices are wrong:")
    assert not StaffAction.objects.filter(action=Action.DOWNLOAD).exists()


def test_the_csv_holds_every_figure_and_is_recorded(viewer, known):
    response = viewer.get(CSV_URL, US)
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"].startswith(
        'attachment; filename="effectiveness-ai-training-US-'
    )
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["section", "campaign", "item", "value"]
    figures = {(s, c, i): v for s, c, i, v in rows[1:]}
    assert figures[("scope", "", "processing date")] == "2027-03-01"
    assert figures[("reach", "Winter notice", "targeted")] == "7"
    assert figures[("reach", "Winter notice", "reached")] == "5"
    assert figures[("not reached", "Winter notice", "not sent: email unsubscribed")] == "1"
    assert figures[("days from first notice to processing", "", "minimum")] == "40"
    assert figures[("rates", "", "objected of reached")] == "0.6"
    assert figures[("per day", "2027-01-04", "unsubscribed")] == "1"
    assert figures[("objection routes", "", "The platform's API")] == "1"
    assert figures[("suppression feed", "", "median_seconds")] == "7200.0"
    assert figures[("consumer", "beta", "pending")] == "1"
    (entry,) = StaffAction.objects.filter(action=Action.DOWNLOAD)
    assert entry.username == "vera"
    assert entry.detail["what"] == "effectiveness report (CSV)"
    assert entry.detail["filters"] == {"purpose": ["ai-training"], "jurisdiction": ["US"]}


def test_the_printable_page_stands_alone_and_is_recorded(viewer, known):
    response = viewer.get(PRINT_URL, US)
    assert response.status_code == 200
    html = response.content.decode()
    assert "renotify/report-print.css" in html and 'class="printable"' in html
    assert 'aria-label="Console"' not in html  # no menu on paper
    assert "in US</h1>" in html and 'id="feed"' in html
    assert "<script" not in html and "style=" not in html
    (entry,) = StaffAction.objects.filter(action=Action.DOWNLOAD)
    assert entry.detail["what"] == "effectiveness report (printable page)"


def test_an_empty_report_says_there_is_nothing_yet(viewer, purpose):
    response = viewer.get(URL, US)
    assert response.status_code == 200
    assert b'id="no-campaigns"' in response.content and b'id="reach"' not in response.content
    printed = viewer.get(PRINT_URL, US)
    assert printed.status_code == 200 and b'id="no-campaigns"' in printed.content


@pytest.mark.parametrize("role", list(ROLES))
def test_every_role_may_read_the_report(role, purpose):
    """Viewer and up: the report holds counts and durations, never a member."""
    user = staff_user(f"someone-{role.lower()}")
    user.groups.add(Group.objects.get(name=role))
    client = _client(user)
    for url in (URL, PRINT_URL, CSV_URL):
        assert client.get(url, US).status_code == 200, url


@pytest.mark.parametrize(
    ("perms", "status"),
    [(PERMS, 200), (PERMS[:1], 403), (PERMS[1:], 403), ((), 403)],
)
def test_the_report_needs_both_permissions(purpose, perms, status):
    client = _client(staff_user("sam", *perms))
    for url in (URL, PRINT_URL, CSV_URL):
        assert client.get(url, US).status_code == status, url


def test_signed_out_staff_are_sent_to_sign_in(purpose):
    response = Client().get(URL, US)
    assert response.status_code == 302 and "/console/login/" in response["Location"]


def test_the_menu_offers_the_report_to_a_viewer(viewer):
    html = viewer.get(URL).content.decode()
    assert '<a href="/console/reports/effectiveness/" aria-current="page">Effectiveness</a>' in html
