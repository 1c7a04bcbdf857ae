"""Reminder waves: members who were sent the notice N days ago and have not responded."""

from datetime import datetime, timedelta

from django.db.models import Exists, Max, OuterRef

from accounts.models import REACHABLE, Action, Choice, ConsentEvent, Member, Preference
from campaigns.models import Campaign, CampaignState, Delivery, DeliveryStatus
from campaigns.services.fanout import deliveries_insert

# A delivery that reached (or may have reached) the member: worth a reminder.
REACHED = [
    DeliveryStatus.SENT,
    DeliveryStatus.DEFERRED,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.OPENED,
    DeliveryStatus.CLICKED,
]


def reminders_possible(*, campaign: Campaign, now: datetime) -> bool:
    """Whether a later reminder wave may still be created for ``campaign``."""
    if not campaign.remind_after_days or not campaign.max_reminders:
        return False
    if now.date() > campaign.notice_version.objection_deadline:
        return False
    last_wave = campaign.deliveries.aggregate(last=Max("wave"))["last"] or 0
    return last_wave < campaign.max_reminders


def reminder_candidates(*, campaign: Campaign, wave: int, now: datetime):
    """Members whose wave-``wave`` delivery reached them ``remind_after_days`` ago and who
    have not acknowledged, objected, bounced, complained or unsubscribed since."""
    if campaign.remind_after_days is None:
        raise ValueError(f"{campaign} sends no reminders")
    cutoff = now - timedelta(days=campaign.remind_after_days)
    reached = Delivery.objects.filter(
        campaign=campaign, wave=wave, member=OuterRef("pk"), status__in=REACHED, sent_at__lte=cutoff
    )
    acknowledged = ConsentEvent.objects.filter(
        member=OuterRef("pk"),
        action=Action.ACKNOWLEDGE,
        notice_version_id__in=campaign.notice_version.notice.versions.values("pk"),
    )
    objected = Preference.objects.filter(member=OuterRef("pk"), choice=Choice.OUT)
    return Member.objects.filter(
        REACHABLE, Exists(reached), ~Exists(acknowledged), ~Exists(objected)
    )


def reminders_create(*, now: datetime) -> dict[int, int]:
    """Add the next reminder wave for every due member of every sending campaign.

    Idempotent (the unique constraint), so it can run daily and after a crash.
    Returns {campaign id: deliveries added}.
    """
    added: dict[int, int] = {}
    campaigns = Campaign.objects.filter(
        state=CampaignState.SENDING, remind_after_days__isnull=False, max_reminders__gt=0
    ).select_related("notice_version")
    for campaign in campaigns:
        if now.date() > campaign.notice_version.objection_deadline:
            continue
        for wave in range(campaign.max_reminders):
            members = reminder_candidates(campaign=campaign, wave=wave, now=now)
            count = deliveries_insert(campaign=campaign, wave=wave + 1, members=members)
            if count:
                added[campaign.pk] = added.get(campaign.pk, 0) + count
    return added
