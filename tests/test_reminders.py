"""Reminder waves go to members who were told N days ago and have not responded."""

from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.models import Action, EmailStatus, Member, Source
from accounts.services.consent import consent_record
from campaigns.models import CampaignState, Delivery, DeliveryStatus
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.reminders import reminders_create, reminders_possible
from tests.factories import MemberFactory, campaign

pytestmark = pytest.mark.django_db


@pytest.fixture
def told(purpose):
    """A campaign (remind after 3 days, at most 2 reminders) whose first wave went out."""
    people = {
        name: MemberFactory(country="US", external_id=name)
        for name in ("quiet", "acknowledged", "objected", "bounced", "unsubscribed", "unsent")
    }
    c = campaign(state=CampaignState.SENDING, remind_after_days=3, max_reminders=2)
    campaign_fan_out(campaign=c)
    sent_at = timezone.now()
    Delivery.objects.exclude(member=people["unsent"]).update(
        status=DeliveryStatus.SENT, sent_at=sent_at
    )
    consent_record(
        member=people["acknowledged"],
        action=Action.ACKNOWLEDGE,
        source=Source.PREFERENCE_PAGE,
        notice_version_id=c.notice_version_id,
    )
    consent_record(
        member=people["objected"], action=Action.OBJECT, source=Source.API, purpose=purpose
    )
    Member.objects.filter(pk=people["bounced"].pk).update(email_status=EmailStatus.BOUNCED)
    consent_record(
        member=people["unsubscribed"], action=Action.UNSUBSCRIBE, source=Source.ONE_CLICK
    )
    return c, people


def wave_members(c, wave) -> set[str]:
    return set(
        Delivery.objects.filter(campaign=c, wave=wave).values_list("member__external_id", flat=True)
    )


def test_no_reminder_before_n_days(told):
    c, _ = told
    with time_machine.travel(timezone.now() + timedelta(days=2)):
        assert reminders_create(now=timezone.now()) == {}
    assert wave_members(c, 1) == set()


def test_reminder_skips_everyone_who_responded_or_cannot_be_reached(told):
    c, _ = told
    with time_machine.travel(timezone.now() + timedelta(days=3, minutes=1)):
        added = reminders_create(now=timezone.now())
        again = reminders_create(now=timezone.now())
    assert added == {c.pk: 1}
    assert again == {}  # daily runs (or a rerun after a crash) add nothing twice
    assert wave_members(c, 1) == {"quiet"}


def test_at_most_m_reminders(told):
    c, _ = told
    later = timezone.now()
    for day in (4, 8, 12, 16):
        with time_machine.travel(later + timedelta(days=day)):
            reminders_create(now=timezone.now())
            Delivery.objects.filter(campaign=c, wave__gt=0, status=DeliveryStatus.PENDING).update(
                status=DeliveryStatus.SENT, sent_at=timezone.now()
            )
    assert [wave_members(c, wave) for wave in (1, 2, 3)] == [{"quiet"}, {"quiet"}, set()]
    with time_machine.travel(later + timedelta(days=20)):
        assert not reminders_possible(campaign=c, now=timezone.now())


def test_no_reminders_after_the_objection_deadline(told):
    c, _ = told
    deadline = c.notice_version.objection_deadline
    after_deadline = datetime.combine(deadline + timedelta(days=1), time(12), tzinfo=UTC)
    with time_machine.travel(after_deadline):
        assert reminders_create(now=timezone.now()) == {}
        assert not reminders_possible(campaign=c, now=timezone.now())
