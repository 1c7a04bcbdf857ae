"""Notices shown and acknowledged in the platform's app count in a campaign's reach, so a
member whose email bounced can be reached, and proven reached, another way."""

import csv
import io
import json

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Action, ConsentEvent, EmailStatus, Source
from accounts.services.consent import consent_record
from api.models import Scope
from api.services.clients import api_client_create
from campaigns.models import CampaignState, Delivery
from campaigns.selectors import campaign_reach, members_not_reached
from campaigns.services.fanout import campaign_fan_out
from tests.factories import MemberFactory, campaign, notice_version, staff_user
from tests.test_api_choices import chain_intact

pytestmark = pytest.mark.django_db


@pytest.fixture
def launched(purpose):
    """A campaign (for members not yet acknowledging) fanned out to:
    Ann, emailed and delivered; Bob, whose address bounced before the fan-out (no
    delivery); Cat, emailed, whose mail then bounced; Dan, unsubscribed before the
    fan-out. Eve joins after the fan-out."""
    people = {
        "ann": MemberFactory(external_id="ann", country="US"),
        "bob": MemberFactory(external_id="bob", country="US", email_status=EmailStatus.BOUNCED),
        "cat": MemberFactory(external_id="cat", country="US"),
        "dan": MemberFactory(external_id="dan", country="US"),
    }
    consent_record(member=people["dan"], action=Action.UNSUBSCRIBE, source=Source.API)
    version = notice_version()
    type(version).objects.filter(pk=version.pk).update(frozen_at=timezone.now())
    c = campaign(version=version, state=CampaignState.SENDING, only_not_acknowledged=True)
    campaign_fan_out(campaign=c)
    now = timezone.now()
    Delivery.objects.filter(member=people["ann"]).update(
        sent_at=now, delivered_at=now, status="delivered"
    )
    Delivery.objects.filter(member=people["cat"]).update(
        sent_at=now, bounced_at=now, status="bounced"
    )
    people["eve"] = MemberFactory(external_id="eve", country="US")
    c.refresh_from_db()
    return c, people


def app_key() -> str:
    ines = staff_user("ines", "api.manage_apiclient")
    scopes = [Scope.PREFERENCES_WRITE, Scope.CAMPAIGNS_READ]
    return api_client_create(name="app", scopes=scopes, by=ines)[1]


def in_app(key: str, member: str, version_id: int, kind: str) -> int:
    path = f"/api/v1/members/{member}/notices/{version_id}/{kind}"
    headers = {"Authorization": f"Bearer {key}"}
    return Client().post(path, "", content_type="application/json", headers=headers).status_code


def show_in_app(c, key: str) -> None:
    """Bob sees the notice in the app and acknowledges it; Cat sees it; so does Eve, who
    was never in the campaign's audience."""
    version_id = c.notice_version_id
    assert in_app(key, "bob", version_id, "served") == 201
    assert in_app(key, "bob", version_id, "acknowledged") == 201
    assert in_app(key, "cat", version_id, "served") == 201
    assert in_app(key, "eve", version_id, "served") == 201


def test_members_shown_the_notice_in_app_count_as_reached(launched):
    c, _people = launched
    before = campaign_reach(campaign=c)
    show_in_app(c, app_key())

    reach = campaign_reach(campaign=c)

    assert (before.in_app, before.reached) == ({"served": 0, "acknowledged": 0}, 1)
    assert reach.in_app == {"served": 2, "acknowledged": 1}  # Bob and Cat; Bob
    assert reach.reached == 3  # Ann by email, Bob and Cat in-app
    assert reach.targeted == 4 and reach.totals["delivered"] == 1
    assert chain_intact()


def test_an_acknowledgement_in_app_alone_shows_the_notice_was_shown(launched):
    c, people = launched
    consent_record(
        member=people["bob"],
        action=Action.ACKNOWLEDGE,
        source=Source.IN_APP,
        notice_version_id=c.notice_version_id,
    )
    assert campaign_reach(campaign=c).in_app == {"served": 1, "acknowledged": 1}


def test_in_app_events_of_another_version_or_channel_do_not_count(launched):
    c, people = launched
    other = notice_version()
    consent_record(
        member=people["bob"], action=Action.SERVE, source=Source.IN_APP, notice_version_id=other.pk
    )
    consent_record(
        member=people["cat"],
        action=Action.ACKNOWLEDGE,
        source=Source.PREFERENCE_PAGE,
        notice_version_id=c.notice_version_id,
        delivery_id=Delivery.objects.get(member=people["cat"]).pk,
    )
    reach = campaign_reach(campaign=c)
    assert reach.in_app == {"served": 0, "acknowledged": 0}
    # Cat acknowledged from her email's link: that reached her, whatever the ESP said.
    assert reach.reached == 2


def test_the_reach_api_shows_the_in_app_figures(launched):
    c, _people = launched
    key = app_key()
    show_in_app(c, key)

    response = Client().get(
        f"/api/v1/campaigns/{c.pk}/reach", headers={"Authorization": f"Bearer {key}"}
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["in_app"] == {"served": 2, "acknowledged": 1} and body["reached"] == 3


def test_the_admin_report_shows_them_and_the_not_reached_list_leaves_them_out(launched):
    c, _people = launched
    listed_before = {row[0] for row in members_not_reached(campaign=c)}
    show_in_app(c, app_key())
    browser = Client()
    browser.force_login(staff_user("olga", "campaigns.view_campaign", "accounts.view_member"))

    page = browser.get(reverse("admin:campaigns_campaign_reach", args=[c.pk]))
    export = browser.get(reverse("admin:campaigns_campaign_not_reached", args=[c.pk]))

    html = page.content.decode()
    assert page.status_code == 200
    assert "reached (email delivered, shown in-app or acknowledged from a link)</td><td>3<" in html
    assert "shown in-app</td><td>2<" in html and "acknowledged in-app</td><td>1<" in html
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert listed_before == {"bob", "cat", "dan"}
    assert [row[0] for row in rows[1:]] == ["dan"]


def test_reach_stays_a_fixed_number_of_queries(launched, django_assert_max_num_queries):
    c, _people = launched
    show_in_app(c, app_key())
    # Deliveries, reminders and in-app; the "not yet acknowledged" filter reads the
    # campaign's version and notice once.
    with django_assert_max_num_queries(5):
        json.dumps(campaign_reach(campaign=c).in_app)
    assert ConsentEvent.objects.filter(source=Source.IN_APP).count() == 4


def test_a_campaign_filtered_by_purpose_state_counts_its_left_out_members_too(purpose):
    bounced = MemberFactory(external_id="fay", country="US", email_status=EmailStatus.BOUNCED)
    MemberFactory(external_id="gus", country="US")
    version = notice_version()
    type(version).objects.filter(pk=version.pk).update(frozen_at=timezone.now())
    c = campaign(version=version, state=CampaignState.SENDING, purpose=purpose, purpose_state="in")
    campaign_fan_out(campaign=c)
    c.refresh_from_db()

    assert in_app(app_key(), "fay", version.pk, "served") == 201

    reach = campaign_reach(campaign=c)
    assert (reach.in_app["served"], reach.reached) == (1, 1)
    assert bounced.pk not in set(Delivery.objects.values_list("member_id", flat=True))


def test_an_acknowledgement_in_app_stops_the_emailed_reminders(launched):
    from datetime import timedelta

    from campaigns.services.reminders import reminder_candidates

    c, people = launched
    c.remind_after_days = 3
    later = timezone.now() + timedelta(days=4)
    assert people["ann"] in reminder_candidates(campaign=c, wave=0, now=later)

    assert in_app(app_key(), "ann", c.notice_version_id, "acknowledged") == 201

    assert people["ann"] not in reminder_candidates(campaign=c, wave=0, now=later)
