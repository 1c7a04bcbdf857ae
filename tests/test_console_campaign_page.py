"""The console's campaign list and campaign page: who may open them, the buttons each
role is offered (exactly what ``campaign_actions_allowed`` allows), the funnel equal to
``campaign_reach`` with its bars equal to its table, the breakdowns, the timeline, and a
query count that does not grow with deliveries or transitions."""

import re

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Action, Source
from accounts.services.consent import consent_record
from campaigns.models import CampaignState, CampaignTransition, Delivery, DeliveryStatus
from campaigns.selectors import campaign_reach
from campaigns.services.fanout import campaign_fan_out
from tests.factories import (
    CAMPAIGN_APPROVER,
    CAMPAIGN_EDITOR,
    MemberFactory,
    ai_training,
    campaign,
    staff_user,
)

pytestmark = pytest.mark.django_db
S = CampaignState


@pytest.fixture(autouse=True)
def _no_cached_figures(settings):
    settings.RENOTIFY_CONSOLE_PROGRESS_SECONDS = 0
    settings.RENOTIFY_CONSOLE_REACH_SECONDS = 0
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def viewer():
    return staff_user("vera", "campaigns.view_campaign", "campaigns.view_noticeversion")


@pytest.fixture
def editor():
    return staff_user("erin", *CAMPAIGN_EDITOR)


@pytest.fixture
def approver():
    return staff_user("abe", *CAMPAIGN_APPROVER)


def _get(user, url):
    client = Client()
    client.force_login(user)
    return client.get(url)


def _page(user, made):
    response = _get(user, f"/console/campaigns/{made.pk}/")
    assert response.status_code == 200
    return re.sub(r"\s+", " ", response.content.decode())


def _buttons(html: str) -> list[str]:
    """The workflow forms on the page, by action name (their POST addresses)."""
    return re.findall(r'action="/console/campaigns/\d+/act/([a-z_]+)/"', html)


# --- Who may open them -----------------------------------------------------------------


@pytest.mark.parametrize("url", ["/console/campaigns/", "/console/campaigns/{pk}/"])
def test_anonymous_visitors_are_sent_to_sign_in(url):
    made = campaign()
    response = Client().get(url.format(pk=made.pk))
    assert response.status_code == 302 and "login" in response["Location"]


@pytest.mark.parametrize("url", ["/console/campaigns/", "/console/campaigns/{pk}/"])
def test_staff_without_the_permission_are_refused(url):
    made = campaign()
    response = _get(staff_user("nobody"), url.format(pk=made.pk))
    assert response.status_code == 403
    assert "campaigns.view_campaign" in response.content.decode()


def test_an_unknown_campaign_is_not_found(viewer):
    assert _get(viewer, "/console/campaigns/999/").status_code == 404


# --- Buttons for exactly what the role may do -------------------------------------------


@pytest.mark.parametrize("state", list(S))
def test_a_viewer_sees_every_campaign_and_no_button(viewer, state):
    html = _page(viewer, campaign(state=state))
    assert _buttons(html) == []
    assert "Nothing you may do to this campaign in its present state." in html


def test_an_editor_may_submit_a_draft_and_nothing_else(editor):
    assert _buttons(_page(editor, campaign(state=S.DRAFT))) == ["submit"]
    for state in set(S) - {S.DRAFT}:
        assert _buttons(_page(editor, campaign(state=state))) == []


@pytest.mark.parametrize(
    ("state", "buttons"),
    [
        (S.DRAFT, ["cancel"]),
        (S.AWAITING_APPROVAL, ["approve", "send_back", "cancel"]),
        (S.APPROVED, ["schedule", "cancel"]),
        (S.SCHEDULED, ["cancel"]),
        (S.SENDING, ["pause", "cancel"]),
        (S.PAUSED, ["resume", "cancel"]),
        (S.COMPLETED, []),
        (S.CANCELLED, []),
    ],
)
def test_an_approver_may_move_the_campaign_where_its_state_allows(approver, editor, state, buttons):
    made = campaign(state=state, last_edited_by=editor)
    assert _buttons(_page(approver, made)) == buttons


def test_an_approver_who_last_edited_it_is_not_offered_approval(approver):
    made = campaign(state=S.AWAITING_APPROVAL, last_edited_by=approver)
    assert _buttons(_page(approver, made)) == ["send_back", "cancel"]


def test_the_forms_carry_csrf_a_way_back_and_what_each_action_asks(approver, editor):
    made = campaign(state=S.APPROVED, last_edited_by=editor)
    html = _page(approver, made)
    # The header's sign-out form has one too.
    assert html.split("<main", 1)[1].count('name="csrfmiddlewaretoken"') == 2
    assert f'name="next" value="/console/campaigns/{made.pk}/"' in html
    assert re.search(
        r'type="datetime-local" id="starts-at" name="starts_at" value="\d{4}-\d\d-\d\dT\d\d:\d\d"',
        html,
    )
    assert 'id="reason-cancel" name="reason"' in html


def test_a_button_on_the_page_works_through_the_action_endpoint(approver, editor):
    made = campaign(state=S.AWAITING_APPROVAL, last_edited_by=editor)
    client = Client(enforce_csrf_checks=True)
    client.force_login(approver)
    page = client.get(f"/console/campaigns/{made.pk}/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())[1]
    response = client.post(
        f"/console/campaigns/{made.pk}/act/approve/",
        {"csrfmiddlewaretoken": token, "next": f"/console/campaigns/{made.pk}/"},
    )
    assert response.status_code == 302
    made.refresh_from_db()
    assert made.state == S.APPROVED
    html = _page(approver, made)
    assert "by abe on" in html
    assert re.search(r"<td>Awaiting approval</td><td>Approved</td><td>abe</td>", html)


# --- What the page shows ------------------------------------------------------------------


def _responded_campaign():
    """A sending campaign of 5 members: 4 sent, 3 delivered, 2 opened; one acknowledged
    and one objected from its links."""
    purpose = ai_training()
    for country, locale in [("GB", "en"), ("GB", "en"), ("DE", "de"), ("FR", "fr"), ("US", "en")]:
        MemberFactory(country=country, locale=locale)
    made = campaign(state=S.SENDING, name="Reach test")
    campaign_fan_out(campaign=made)
    now = timezone.now()
    deliveries = list(Delivery.objects.order_by("pk"))
    for delivery, status in zip(
        deliveries,
        [
            DeliveryStatus.OPENED,
            DeliveryStatus.OPENED,
            DeliveryStatus.DELIVERED,
            DeliveryStatus.SENT,
        ],
        strict=False,
    ):
        fields = {"status": status, "sent_at": now}
        if status != DeliveryStatus.SENT:
            fields["delivered_at"] = now
        if status == DeliveryStatus.OPENED:
            fields["opened_at"] = now
        Delivery.objects.filter(pk=delivery.pk).update(locale=delivery.member.locale, **fields)
    for delivery, action in [(deliveries[0], Action.ACKNOWLEDGE), (deliveries[1], Action.OBJECT)]:
        consent_record(
            member=delivery.member,
            action=action,
            source=Source.PREFERENCE_PAGE,
            purpose=purpose if action == Action.OBJECT else None,
            notice_version_id=made.notice_version_id,
            delivery_id=delivery.pk,
        )
    return made


def _section(html: str, start: str, end: str) -> str:
    at = html.index(start)
    return html[at : html.index(end, at)]


def test_the_funnel_is_the_campaigns_reach_and_its_bars_are_its_table(viewer):
    made = _responded_campaign()
    reach = campaign_reach(campaign=made)
    expected = [
        reach.targeted,
        reach.totals["sent"],
        reach.totals["delivered"],
        reach.totals["opened"],
        reach.totals["acknowledged"],
        reach.totals["objected"],
    ]
    assert expected == [5, 4, 3, 2, 1, 1]
    html = _page(viewer, made)
    chart = _section(html, '<svg id="funnel"', "</svg>")
    bars = [int(v) for v in re.findall(r'data-value="(\d+)"', chart)]
    widths = [
        float(w)
        for w in re.findall(r'data-value="\d+" x="[\d.]+" y="[\d.]+" width="([\d.]+)"', chart)
    ]
    table = _section(html, 'id="funnel-table"', "</table>")
    figures = [int(v.replace(",", "")) for v in re.findall(r'<td class="num">([\d,]+)</td>', table)]
    assert bars == expected == figures
    assert widths == [round(440 * v / 5, 2) for v in expected]  # to the first step's scale
    assert (
        "Opened by people" in table
        and 'role="img"' in chart
        and '<title id="funnel-title">' in chart
    )


def test_rates_per_jurisdiction_and_locale_as_percentages(viewer):
    made = _responded_campaign()
    html = _page(viewer, made)
    by_j = _section(html, 'id="by-jurisdiction"', "</table>")
    # UK: 2 deliveries, both sent, delivered and opened; one acknowledged, one objected.
    uk = re.search(r'<th scope="row">UK</th>(.*?)</tr>', by_j)[1]
    assert re.findall(r'<td class="num">([^<]+)</td>', uk) == [
        "2",
        "2",
        "100.0%",
        "100.0%",
        "50.0%",
        "50.0%",
    ]
    by_locale = _section(html, 'id="by-locale"', "</table>")
    # fr: sent, not delivered: no base for the rates of delivered mail.
    fr = re.search(r'<th scope="row">fr</th>(.*?)</tr>', by_locale)[1]
    assert re.findall(r'<td class="num">([^<]+)</td>', fr) == ["1", "1", "0.0%", "-", "-", "-"]
    # Seven columns: it fits a laptop; the rest is behind a <details>.
    assert by_j.count('<th scope="col"') == 7
    assert "<details><summary>Counts behind the rates" in html


def test_the_header_says_what_where_when_and_who_approved(viewer, approver):
    made = campaign(
        state=S.SCHEDULED,
        jurisdictions=["UK", "EU"],
        throttle_per_minute=1200,
        starts_at=timezone.now(),
        approved_by=approver,
        approved_at=timezone.now(),
    )
    html = _page(viewer, made)
    assert '<span class="badge info">Scheduled</span>' in html
    assert f"/admin/campaigns/noticeversion/{made.notice_version_id}/preview/en/" in html
    assert "Jurisdictions UK, EU." in html and "1,200 messages a minute" in html
    assert "by abe on" in html
    assert f"/admin/campaigns/campaign/{made.pk}/reach/" in html
    assert "not-reached.csv" not in html  # needs accounts.view_member too


def test_the_not_reached_csv_is_linked_for_those_who_may_read_members():
    made = campaign(state=S.SENDING)
    reader = staff_user("rita", "campaigns.view_campaign", "accounts.view_member")
    assert f"/admin/campaigns/campaign/{made.pk}/not-reached.csv" in _page(reader, made)


def test_the_timeline_lists_every_transition_with_who_or_system(viewer, approver):
    made = campaign(state=S.PAUSED)
    CampaignTransition.objects.create(
        campaign=made, from_state=S.APPROVED, to_state=S.SENDING, by=approver, note="started"
    )
    CampaignTransition.objects.create(
        campaign=made, from_state=S.SENDING, to_state=S.PAUSED, note="circuit breaker: bounces"
    )
    timeline = _section(_page(viewer, made), 'id="timeline"', "</table>")
    assert "<td>Approved</td><td>Sending</td><td>abe</td><td>started</td>" in timeline
    assert (
        "<td>Sending</td><td>Paused</td><td>system</td><td>circuit breaker: bounces</td>"
        in timeline
    )


def test_a_sending_campaign_page_polls_its_progress(viewer):
    MemberFactory.create_batch(2)
    made = campaign(state=S.SENDING)
    campaign_fan_out(campaign=made)
    html = _page(viewer, made)
    assert f'data-poll="/console/campaigns/{made.pk}/progress/"' in html
    assert "console-progress.js" in html and "0</strong> of 2 deliveries done" in html


# --- The list -------------------------------------------------------------------------------


def test_the_list_filters_by_state_newest_first_and_pages(viewer):
    for i in range(3):
        campaign(state=S.DRAFT, name=f"Draft {i}")
    campaign(state=S.SENDING, name="On its way")
    everything = re.sub(r"\s+", " ", _get(viewer, "/console/campaigns/").content.decode())
    assert (
        everything.index("On its way") < everything.index("Draft 2") < everything.index("Draft 0")
    )
    drafts = _get(viewer, "/console/campaigns/?state=draft").content.decode()
    assert "On its way" not in drafts and "3 campaigns in this state" in drafts
    nonsense = _get(viewer, "/console/campaigns/?state=nonsense&page=x")
    assert nonsense.status_code == 200 and "On its way" in nonsense.content.decode()


def test_the_list_pages_by_fifty(viewer):
    for i in range(51):
        campaign(state=S.DRAFT, name=f"C{i:02d}")
    first = _get(viewer, "/console/campaigns/").content.decode()
    assert "Page 1 of 2" in first and "C50" in first and "C00" not in first
    second = _get(viewer, "/console/campaigns/?page=2").content.decode()
    assert "C00" in second and "C50" not in second


# --- Cost -----------------------------------------------------------------------------------


def _queries(user, made) -> int:
    client = Client()
    client.force_login(user)
    url = f"/console/campaigns/{made.pk}/"
    client.get(url)
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_the_campaign_pages_queries_do_not_grow_with_deliveries_or_transitions(approver):
    small = campaign(state=S.SENDING, name="Small")
    MemberFactory.create_batch(2)
    campaign_fan_out(campaign=small)
    CampaignTransition.objects.create(campaign=small, from_state=S.APPROVED, to_state=S.SENDING)
    few = _queries(approver, small)
    MemberFactory.create_batch(18)
    large = campaign(state=S.SENDING, name="Large")
    campaign_fan_out(campaign=large)
    for _ in range(10):
        CampaignTransition.objects.create(campaign=large, from_state=S.SENDING, to_state=S.PAUSED)
    assert Delivery.objects.filter(campaign=large).count() == 20
    # The session, the user and their permissions (4); the campaign; campaign_reach (3);
    # the deliveries by status; whether it runs a wording test; the timeline.
    assert _queries(approver, large) == few == 11


def test_the_list_costs_the_same_for_2_or_20_campaigns(viewer):
    for i in range(2):
        campaign(name=f"First {i}")
    client = Client()
    client.force_login(viewer)
    client.get("/console/campaigns/")
    with CaptureQueriesContext(connection) as two:
        client.get("/console/campaigns/")
    for i in range(18):
        campaign(name=f"More {i}")
    with CaptureQueriesContext(connection) as twenty:
        client.get("/console/campaigns/")
    assert len(two) == len(twenty) == 6  # session, user, permissions (4); count; page
