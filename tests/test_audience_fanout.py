"""Audiences are SQL filters; fan-out materialises them once, whatever happens."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Action, EmailStatus, Source
from accounts.services.consent import consent_record
from campaigns.models import Campaign, CampaignState, Delivery
from campaigns.selectors import audience_preview
from campaigns.services.fanout import campaign_fan_out
from tests.factories import MemberFactory, campaign, notice_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(purpose):
    """A small world: who lives where, speaks what, and what they did."""
    long_ago = timezone.now() - timedelta(days=400)
    return {
        "uk_en": MemberFactory(country="GB", locale="en", created_at=long_ago),
        "de_de": MemberFactory(country="DE", locale="de"),
        "fr_fr": MemberFactory(country="FR", locale="fr"),
        "ch_fr": MemberFactory(country="CH", locale="fr"),
        "us_en": MemberFactory(country="US", locale="en"),
        "uk_bounced": MemberFactory(country="GB", email_status=EmailStatus.BOUNCED),
        "de_unsubscribed": MemberFactory(country="DE", unsubscribed_at=timezone.now()),
        "us_objector": _objector(purpose),
    }


def _objector(purpose):
    member = MemberFactory(country="US", locale="en")
    consent_record(member=member, action=Action.OBJECT, source=Source.API, purpose=purpose)
    return member


def targeted(c: Campaign) -> set[int]:
    campaign_fan_out(campaign=c)
    return set(Delivery.objects.filter(campaign=c).values_list("member_id", flat=True))


def ids(people, *names) -> set[int]:
    return {people[name].pk for name in names}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, {"uk_en", "de_de", "fr_fr", "ch_fr", "us_en", "us_objector"}),
        ({"jurisdictions": ["UK", "EU"]}, {"uk_en", "de_de", "fr_fr"}),
        ({"countries": ["FR", "CH"]}, {"fr_fr", "ch_fr"}),
        ({"locales": ["fr"]}, {"fr_fr", "ch_fr"}),
        ({"jurisdictions": ["EU"], "locales": ["de"]}, {"de_de"}),
        ({"members_created_before_days": 30}, {"uk_en"}),
        ({"members_created_after_days": 30}, {"de_de", "fr_fr", "ch_fr", "us_en", "us_objector"}),
        ({"purpose_state": "out", "jurisdictions": ["US"]}, {"us_objector"}),
        ({"purpose_state": "in"}, {"us_en"}),
    ],
)
def test_audience_filters_select_the_right_reachable_members(people, purpose, filters, expected):
    for key in ("members_created_before_days", "members_created_after_days"):
        if key in filters:
            field = key.removesuffix("_days")
            filters[field] = timezone.now() - timedelta(days=filters.pop(key))
    if "purpose_state" in filters:
        filters["purpose"] = purpose
    assert targeted(campaign(state=CampaignState.SENDING, **filters)) == ids(people, *expected)


def test_members_who_acknowledged_any_version_of_the_notice_can_be_left_out(people):
    version = notice_version()
    older = version.notice.versions.create(
        effective_date=version.effective_date, objection_deadline=version.objection_deadline
    )
    consent_record(
        member=people["de_de"],
        action=Action.ACKNOWLEDGE,
        source=Source.PREFERENCE_PAGE,
        notice_version_id=older.pk,
    )
    c = campaign(
        version=version,
        state=CampaignState.SENDING,
        jurisdictions=["EU"],
        only_not_acknowledged=True,
    )
    assert targeted(c) == ids(people, "fr_fr")


def test_unreachable_members_are_left_out_and_counted(people):
    c = campaign(state=CampaignState.SENDING, jurisdictions=["UK", "EU"])
    preview = audience_preview(campaign=c)
    assert preview.targeted == 5
    assert preview.unreachable == {"bounced": 1, "unsubscribed": 1}
    assert preview.reachable == 3
    assert preview.by_jurisdiction == {"UK": 1, "EU": 2}
    assert preview.by_locale == {"en": 1, "de": 1, "fr": 1}
    campaign_fan_out(campaign=c)
    c.refresh_from_db()
    assert c.audience_snapshot == {"targeted": 5, "unreachable": {"bounced": 1, "unsubscribed": 1}}


def test_audience_preview_is_one_grouped_query(people, django_assert_num_queries):
    c = campaign(jurisdictions=["UK", "EU"], countries=["GB", "DE", "FR"])
    with django_assert_num_queries(1):
        audience_preview(campaign=c)


def test_fan_out_twice_creates_the_same_rows_once(people, settings):
    settings.RENOTIFY_FANOUT_SLICE = 2  # several INSERT ... SELECT slices
    c = campaign(state=CampaignState.SENDING)
    first = campaign_fan_out(campaign=c)
    rows = list(Delivery.objects.order_by("id").values_list("id", "member_id", "wave", "status"))
    second = campaign_fan_out(campaign=c)
    assert (first, second) == (6, 0)
    assert (
        list(Delivery.objects.order_by("id").values_list("id", "member_id", "wave", "status"))
        == rows
    )


def test_fan_out_queries_do_not_grow_with_the_audience(
    purpose, settings, django_assert_max_num_queries
):
    settings.RENOTIFY_FANOUT_SLICE = 10_000
    for _ in range(40):
        MemberFactory(country="DE")
    c = campaign(state=CampaignState.SENDING, jurisdictions=["EU"])
    # state, preview, bounds, the wording test's split, one slice (+ savepoints, and
    # its lock on the campaign), and the last step (snapshot, fanned out)
    with django_assert_max_num_queries(9):
        assert campaign_fan_out(campaign=c) == 40


def test_a_slice_refused_by_a_concurrent_fan_out_is_tried_again(monkeypatch):
    """Two fan-outs of one wave at once: the unique constraint refuses the slower one's
    rows; the slice is tried again and adds only what the other did not."""
    from django.db import IntegrityError

    from campaigns.services import fanout

    for _ in range(3):
        MemberFactory(country="GB")
    c = campaign(state=CampaignState.SENDING)
    real = fanout._insert_new
    calls = []

    def refused_once(*args):
        calls.append(args)
        if len(calls) == 1:
            raise IntegrityError("duplicate key value violates unique constraint")
        return real(*args)

    monkeypatch.setattr(fanout, "_insert_new", refused_once)
    assert fanout.campaign_fan_out(campaign=c) == 3
    assert len(calls) == 2
    assert Delivery.objects.filter(campaign=c).count() == 3
