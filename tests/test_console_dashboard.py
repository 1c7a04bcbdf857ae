"""The console's dashboard: who may open it, the campaigns and their live progress, each
item that needs attention (present when its condition holds, absent otherwise), the
ledger's responses per day, suppressions per purpose and jurisdiction, and a query count
that does not grow with the campaigns."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import (
    Action,
    ConsentEvent,
    LedgerCheck,
    Member,
    Source,
    SuppressionChange,
    SuppressionState,
)
from accounts.services.consent import consent_record
from api.models import ConsumerPosition
from api.services.clients import api_client_create
from campaigns.models import (
    CampaignState,
    CampaignTransition,
    Delivery,
    DeliveryStatus,
    ObjectionReceipt,
    ReceiptStatus,
)
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.lifecycle import campaign_pause
from console import selectors
from db.suppression_counts import suppression_state_counts
from tests.factories import (
    CAMPAIGN_APPROVER,
    MemberFactory,
    ai_training,
    campaign,
    staff_user,
)

pytestmark = pytest.mark.django_db
S = CampaignState


@pytest.fixture(autouse=True)
def _no_cached_figures(settings):
    """Every test counts afresh (the cache outlives a test's database)."""
    settings.RENOTIFY_CONSOLE_PROGRESS_SECONDS = 0
    settings.RENOTIFY_CONSOLE_COUNTS_SECONDS = 0
    settings.RENOTIFY_CONSOLE_REACH_SECONDS = 0
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def viewer():
    return staff_user("vera", "campaigns.view_campaign")


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _get(user, url="/console/"):
    return _client(user).get(url)


def _text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def _fresh_check():
    LedgerCheck.objects.create(events_checked=0, intact=True)


def _attention(response) -> str:
    html = response.content.decode()
    section = html[html.index('id="attention-h"') : html.index('id="campaigns-h"')]
    return re.sub(r"\s+", " ", section)


# --- Who may open it -------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_sign_in():
    response = Client().get("/console/")
    assert response.status_code == 302 and "/console/" in response["Location"]
    assert "login" in response["Location"]


def test_staff_without_the_permission_see_what_they_lack():
    response = _get(staff_user("nobody"))
    assert response.status_code == 403
    assert "campaigns.view_campaign" in response.content.decode()


def test_a_viewer_sees_the_dashboard_and_its_menu(viewer):
    response = _get(viewer)
    assert response.status_code == 200
    assert '<a href="/console/" aria-current="page">Dashboard</a>' in response.content.decode()
    assert '<a href="/console/campaigns/">Campaigns</a>' in response.content.decode()


def test_only_the_dashboard_may_run_its_polling_script(viewer):
    dashboard = _get(viewer)
    assert "script-src 'self'" in dashboard["Content-Security-Policy"]
    assert "connect-src 'self'" in dashboard["Content-Security-Policy"]
    listing = _get(viewer, "/console/campaigns/")
    assert "script-src" not in listing["Content-Security-Policy"]


# --- Campaigns and their progress ------------------------------------------------------


def _sending(members=4, **fields):
    MemberFactory.create_batch(members)
    sending = campaign(state=S.SENDING, **fields)
    campaign_fan_out(campaign=sending)
    return sending


def test_active_and_recently_finished_campaigns_are_shown_older_ones_not(viewer):
    campaign(state=S.DRAFT, name="Draft one")
    campaign(state=S.AWAITING_APPROVAL, name="Waiting one")
    recent = campaign(state=S.COMPLETED, name="Finished lately")
    CampaignTransition.objects.create(campaign=recent, from_state=S.SENDING, to_state=S.COMPLETED)
    old = campaign(state=S.CANCELLED, name="Cancelled long ago")
    CampaignTransition.objects.create(
        campaign=old,
        from_state=S.SCHEDULED,
        to_state=S.CANCELLED,
        at=timezone.now() - timedelta(days=31),
    )
    text = _text(_get(viewer))
    assert "Waiting one" in text and '<span class="badge warn">Awaiting approval</span>' in text
    assert "Finished lately" in text and '<span class="badge good">Completed</span>' in text
    assert "Draft one" not in text and "Cancelled long ago" not in text


def test_a_sending_campaign_shows_its_progress_and_is_polled(viewer):
    sending = _sending(members=4)
    Delivery.objects.filter(pk__in=Delivery.objects.values("pk")[:1]).update(
        status=DeliveryStatus.DELIVERED
    )
    text = _text(_get(viewer))
    assert "<strong>1</strong> of 4 deliveries done (25%)" in text
    assert f'data-poll="/console/campaigns/{sending.pk}/progress/"' in text
    assert "renotify/console-progress.js" in text


def test_nothing_sending_means_no_polling_script(viewer):
    campaign(state=S.APPROVED)
    text = _text(_get(viewer))
    assert "console-progress.js" not in text and "data-live" not in text


def test_the_progress_fragment_moves_as_deliveries_do(viewer):
    sending = _sending(members=3)
    url = f"/console/campaigns/{sending.pk}/progress/"
    before = _text(_get(viewer, url))
    assert "<strong>0</strong> of 3 deliveries done (0%)" in before
    assert 'data-segment="to_send">3<' in before and "data-live" in before
    Delivery.objects.filter(pk__in=Delivery.objects.values("pk")[:2]).update(
        status=DeliveryStatus.SENT
    )
    Delivery.objects.filter(status=DeliveryStatus.PENDING).update(status=DeliveryStatus.BOUNCED)
    after = _text(_get(viewer, url))
    assert "<strong>3</strong> of 3 deliveries done (100%)" in after
    assert 'data-segment="sent">2<' in after and 'data-segment="not_sent">1<' in after


def test_the_progress_fragment_needs_the_permission():
    sending = _sending(members=1)
    url = f"/console/campaigns/{sending.pk}/progress/"
    assert Client().get(url).status_code == 302
    assert _get(staff_user("nobody"), url).status_code == 403


def test_progress_counts_are_kept_for_the_polling_period(viewer, settings):
    settings.RENOTIFY_CONSOLE_PROGRESS_SECONDS = 60
    sending = _sending(members=2)
    url = f"/console/campaigns/{sending.pk}/progress/"
    assert "<strong>0</strong> of 2" in _text(_get(viewer, url))
    Delivery.objects.update(status=DeliveryStatus.SENT)
    assert "<strong>0</strong> of 2" in _text(_get(viewer, url))
    cache.clear()
    assert "<strong>2</strong> of 2" in _text(_get(viewer, url))


# --- What needs attention ---------------------------------------------------------------


def test_with_nothing_wrong_nothing_needs_attention(viewer):
    _fresh_check()
    assert "Nothing needs attention." in _attention(_get(viewer))


def test_a_campaign_paused_by_the_circuit_breaker_needs_attention(viewer):
    _fresh_check()
    tripped = campaign(state=S.SENDING, name="Tripped")
    campaign_pause(campaign=tripped, by=None, reason="circuit breaker after 500 sends: 9% bounced")
    section = _attention(_get(viewer))
    assert "“Tripped” was paused automatically" in section
    assert "circuit breaker after 500 sends: 9% bounced" in section
    assert f'href="/console/campaigns/{tripped.pk}/"' in section


def test_a_campaign_paused_by_a_person_does_not(viewer):
    _fresh_check()
    person = staff_user("abe", *CAMPAIGN_APPROVER)
    paused = campaign(state=S.SENDING, name="Held")
    campaign_pause(campaign=paused, by=person, reason="circuit breaker test by hand")
    assert "Nothing needs attention." in _attention(_get(viewer))


def test_unknown_deliveries_need_a_decision_per_campaign(viewer):
    _fresh_check()
    sending = _sending(members=3, name="Unsure")
    Delivery.objects.filter(pk__in=Delivery.objects.values("pk")[:2]).update(
        status=DeliveryStatus.UNKNOWN
    )
    section = _attention(_get(viewer))
    assert "“Unsure”: 2 deliveries with an unknown outcome" in section
    assert f'href="/console/campaigns/{sending.pk}/"' in section
    Delivery.objects.update(status=DeliveryStatus.FAILED)
    assert "Nothing needs attention." in _attention(_get(viewer))


def test_failed_objection_receipts_need_attention(viewer):
    _fresh_check()
    ObjectionReceipt.objects.create(consent_event_id=1, status=ReceiptStatus.OWED)
    assert "Nothing needs attention." in _attention(_get(viewer))
    ObjectionReceipt.objects.create(consent_event_id=2, status=ReceiptStatus.FAILED)
    section = _attention(_get(viewer))
    assert "1 objection receipt failed" in section
    assert "/admin/campaigns/objectionreceipt/?status__exact=failed" in section


def test_a_failed_ledger_check_needs_attention(viewer):
    LedgerCheck.objects.create(
        events_checked=10, intact=False, first_broken_seq=7, detail="event 7 hash differs"
    )
    section = _attention(_get(viewer))
    assert "The consent ledger check failed" in section and "event 7 hash differs" in section
    assert "/admin/accounts/ledgercheck/" in section


def test_a_stale_ledger_check_needs_attention(viewer, settings):
    settings.RENOTIFY_LEDGER_HEAD_CHECK_SECONDS = 300
    assert "None has run yet" in _attention(_get(viewer))
    LedgerCheck.objects.create(
        events_checked=0, intact=True, checked_at=timezone.now() - timedelta(minutes=11)
    )
    section = _attention(_get(viewer))
    assert "has not been checked recently" in section and "every 5 minutes" in section
    LedgerCheck.objects.create(
        events_checked=0, intact=True, checked_at=timezone.now() - timedelta(minutes=9)
    )
    assert "Nothing needs attention." in _attention(_get(viewer))


def _feed_entry(purpose, recorded_ago: timedelta) -> SuppressionChange:
    member = MemberFactory()
    return SuppressionChange.objects.create(
        purpose=purpose,
        member_id=member.pk,
        external_id=member.external_id,
        state="out",
        reason="objected",
        changed_at=timezone.now(),
        recorded_at=timezone.now() - recorded_ago,
    )


def test_an_api_consumer_behind_on_the_feed_needs_attention(viewer, settings):
    settings.RENOTIFY_CONSOLE_FEED_LAG_SECONDS = 900
    _fresh_check()
    purpose = ai_training()
    client, _key = api_client_create(name="Training data", scopes=[], by=None)
    # Entries written by the purpose's own sync, if any, count as applied.
    synced = SuppressionChange.objects.filter(purpose=purpose).order_by("-pk").first()
    start = synced.pk if synced else 0
    old = _feed_entry(purpose, timedelta(hours=2))
    recent = _feed_entry(purpose, timedelta(minutes=5))
    position = ConsumerPosition.objects.create(client=client, purpose=purpose, cursor=old.pk)
    assert "Nothing needs attention." in _attention(_get(viewer))  # 5 minutes behind
    ConsumerPosition.objects.filter(pk=position.pk).update(cursor=start)
    section = _attention(_get(viewer))
    assert "API client “Training data” is behind on the ai-training suppression feed" in section
    assert "2 entries not applied, the oldest from 2 hours ago" in section
    assert f"its cursor {start:,}; the feed is at {recent.pk:,}" in section
    assert f"/admin/api/apiclient/{client.pk}/change/" in section
    ConsumerPosition.objects.filter(pk=position.pk).update(cursor=recent.pk)
    assert "Nothing needs attention." in _attention(_get(viewer))


# --- Responses per day ------------------------------------------------------------------


def test_responses_per_day_are_the_ledgers_and_the_bars_match_the_table(viewer):
    purpose = ai_training()
    now = timezone.now()
    plan = {
        0: ["object", "acknowledge", "acknowledge"],
        3: ["unsubscribe", "object"],
        40: ["object"],
    }
    for days_ago, actions in plan.items():
        with time_machine.travel(now - timedelta(days=days_ago), tick=False):
            for action in actions:
                consent_record(
                    member=MemberFactory(),
                    action=action,
                    source=Source.PREFERENCE_PAGE,
                    purpose=purpose if action == Action.OBJECT else None,
                )
    daily = selectors.responses_per_day(now=now)
    for i, day in enumerate(daily.days):
        for action in selectors.RESPONSE_ACTIONS:
            in_ledger = ConsentEvent.objects.filter(action=action, created_at__date=day).count()
            assert daily.counts[action][i] == in_ledger
    assert daily.totals() == [2, 2, 1]  # the event 40 days ago is outside the window

    html = _get(viewer).content.decode()
    chart = html[
        html.index('id="responses-per-day"') : html.index(
            "</svg>", html.index('id="responses-per-day"')
        )
    ]
    bars = re.findall(r'data-series="([a-z-]+)" data-value="(\d+)"', chart)
    table = html[
        html.index('id="responses-table"') : html.index(
            "</table>", html.index('id="responses-table"')
        )
    ]
    rows = re.findall(
        r"<tr><th scope=\"row\">[^<]+</th>((?:<td class=\"num\">[\d,]+</td>)+)</tr>", table
    )
    table_figures = [int(n) for row in rows[:30] for n in re.findall(r">([\d,]+)<", row)]
    assert [int(v) for _, v in bars] == table_figures
    assert [s for s, _ in bars[:3]] == ["object", "acknowledge", "unsubscribe"]
    assert table_figures[-3:] == [1, 2, 0]  # today


def test_responses_per_day_cost_one_query(django_assert_num_queries):
    with django_assert_num_queries(1):
        selectors.responses_per_day(now=timezone.now())


# --- Suppressions per purpose and jurisdiction -----------------------------------------


def _state(purpose, member, state):
    SuppressionState.objects.update_or_create(
        purpose=purpose,
        member_id=member.pk,
        defaults={
            "external_id": member.external_id,
            "state": state,
            "reason": "objected" if state == "out" else "policy",
            "changed_at": timezone.now(),
            "cursor": 1,
        },
    )


def test_suppression_counts_per_purpose_and_jurisdiction(viewer):
    purpose = ai_training()
    SuppressionState.objects.all().delete()
    for country, state in [
        ("GB", "out"),
        ("GB", "out"),
        ("DE", "out"),
        ("US", "in"),
        ("US", "out"),
    ]:
        _state(purpose, MemberFactory(country=country), state)
    rows = suppression_state_counts(state="out")
    assert sorted((r["jurisdiction"], r["n"]) for r in rows) == [("EU", 1), ("UK", 2), ("US", 1)]
    # The statement against the ORM's way of saying it.
    for row in rows:
        orm = SuppressionState.objects.filter(
            purpose_id=row["purpose_id"],
            state="out",
            member_id__in=Member.objects.filter(jurisdiction=row["jurisdiction"]).values("pk"),
        ).count()
        assert orm == row["n"]
    text = _text(_get(viewer))
    table = text[text.index('id="suppressions-table"') :]
    cells = "".join(f'<td class="num">{n}</td>' for n in (1, 2, 1, 4))  # EU, UK, US, all
    assert f'<th scope="row">{purpose.name}</th>{cells}' in table


# --- Cost -------------------------------------------------------------------------------


def _dashboard_queries(viewer, campaigns: int) -> int:
    for i in range(campaigns):
        state = [S.SENDING, S.PAUSED, S.AWAITING_APPROVAL, S.SCHEDULED][i % 4]
        made = campaign(state=state, name=f"Campaign {i}")
        CampaignTransition.objects.create(campaign=made, from_state=S.APPROVED, to_state=state)
    client = _client(viewer)
    client.get("/console/")
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/console/").status_code == 200
    return len(captured)


def test_the_dashboards_queries_do_not_grow_with_campaigns(viewer):
    MemberFactory.create_batch(3)
    few = _dashboard_queries(viewer, 2)
    many = _dashboard_queries(viewer, 18)
    # The session, the user and their permissions (4); the campaigns, their deliveries by
    # status, the ledger by day; one each for the breaker's pauses, unknown deliveries,
    # failed receipts, the last ledger check, the feed's consumers; suppressions (1).
    assert few == many == 13


def test_a_campaign_scheduled_to_start_soon_is_polled_so_its_start_shows(db):
    soon = campaign(state=S.SCHEDULED, starts_at=timezone.now() + timedelta(minutes=2))
    later_on = campaign(state=S.SCHEDULED, starts_at=timezone.now() + timedelta(days=2))
    progress = selectors.campaigns_progress(campaigns=[soon, later_on])
    assert (progress[soon.pk].live, progress[later_on.pk].live) == (True, False)
