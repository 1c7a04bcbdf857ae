"""Keep every delivery moving to an end, whatever happened to the workers.

Runs every minute (beat). Each step is one set-based UPDATE or a small query
per sending campaign, so it is cheap whatever the campaign sizes.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from accounts.permissions import permission_require
from audit.models import Action
from audit.services import staff_action_record
from campaigns.models import Campaign, CampaignState, Delivery, DeliveryStatus
from campaigns.selectors import campaign_has_unfinished_deliveries
from campaigns.services.lifecycle import campaign_complete
from campaigns.services.senders import sender_slots, sender_slots_overdue, senders_start
from campaigns.services.sending import campaign_breaker_check


@dataclass
class ReconcileReport:
    requeued: int = 0
    gave_up: int = 0
    unknown: int = 0
    completed: list[int] = field(default_factory=list)
    # Campaign -> the sender slots whose chain is overdue (lost with its worker).
    restart_senders: dict[int, list[int]] = field(default_factory=dict)
    restart_fan_outs: list[int] = field(default_factory=list)


def deliveries_reconcile() -> ReconcileReport:
    now = timezone.now()
    report = ReconcileReport()
    expired_claims = Delivery.objects.filter(
        status=DeliveryStatus.CLAIMED, lease_expires_at__lt=now
    )
    # Claimed but never handed to the transport: nothing went out, so send again,
    # unless it keeps failing that way.
    report.gave_up = expired_claims.filter(attempts__gte=settings.RENOTIFY_MAX_ATTEMPTS).update(
        status=DeliveryStatus.FAILED,
        lease_expires_at=None,
        error="gave up: the sender was lost before sending, too many times",
    )
    report.requeued = expired_claims.update(status=DeliveryStatus.PENDING, lease_expires_at=None)
    # Handed to the transport when the worker was lost: the ESP may have it.
    report.unknown = Delivery.objects.filter(
        status=DeliveryStatus.SENDING, lease_expires_at__lt=now
    ).update(
        status=DeliveryStatus.UNKNOWN,
        lease_expires_at=None,
        error="the sender was lost while sending: may have been sent (resend from the admin)",
    )
    for campaign in Campaign.objects.filter(
        state__in=[CampaignState.SENDING, CampaignState.PAUSED]
    ):
        _reconcile_campaign(campaign, now, report)
    return report


def _reconcile_campaign(campaign: Campaign, now, report: ReconcileReport) -> None:
    if campaign.window_ends_at and campaign.window_ends_at <= now:
        Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.EXPIRED, error="the sending window ended"
        )
    if campaign.state != CampaignState.SENDING:
        return
    if campaign_breaker_check(campaign=campaign):
        return  # paused: the pause is recorded with its reason
    if campaign.fanned_out_at is None:
        # Its deliveries are still being created: nothing to complete. A fan-out still
        # unfinished a lease after the start was lost with its worker: run it again (it
        # adds only the members still missing).
        if _sending_since(campaign) < now - timedelta(seconds=settings.RENOTIFY_LEASE_SECONDS):
            report.restart_fan_outs.append(campaign.pk)
        return
    if not campaign_has_unfinished_deliveries(campaign=campaign):
        # Checked again, with "unknown" deliveries and reminders, under the row lock.
        if campaign_complete(campaign=campaign, now=now):
            report.completed.append(campaign.pk)
        return
    overdue = sender_slots_overdue(campaign=campaign, now=now)
    if overdue:
        report.restart_senders[campaign.pk] = overdue


def _sending_since(campaign: Campaign) -> datetime:
    """When the campaign last went to sending (started or resumed)."""
    since = campaign.transitions.filter(to_state=CampaignState.SENDING).aggregate(at=Max("at"))
    return since["at"] or campaign.starts_at or timezone.now()


RESEND = "campaigns.resend_delivery"


RESENDABLE = [DeliveryStatus.UNKNOWN, DeliveryStatus.FAILED]


def delivery_resend(*, delivery: Delivery, by: User | None) -> bool:
    """Staff decided an ``unknown`` (or failed) delivery should go out again: it is
    pending again and a sender starts once this commits. Needs
    ``campaigns.resend_delivery``."""
    return deliveries_resend(deliveries=Delivery.objects.filter(pk=delivery.pk), by=by) == 1


def deliveries_resend(*, deliveries: QuerySet[Delivery], by: User | None) -> int:
    """Staff decided these ``unknown`` or failed deliveries should go out again; the
    others are left alone. One sender per campaign starts once this commits. Returns
    how many are pending again. Needs ``campaigns.resend_delivery``."""
    permission_require(by=by, perm=RESEND)
    chosen = list(deliveries.filter(status__in=RESENDABLE).values_list("pk", "campaign_id"))
    campaign_ids = sorted({campaign_id for _, campaign_id in chosen})
    with transaction.atomic():
        # Conditional: a delivery that moved on meanwhile (another resend, or the sender
        # that was thought lost reported after all) is left alone.
        resent = Delivery.objects.filter(
            pk__in=[delivery_id for delivery_id, _ in chosen], status__in=RESENDABLE
        ).update(status=DeliveryStatus.PENDING, error="", not_before=None, attempts=0)
        _record(by, Action.RESEND, count=resent, campaign_ids=campaign_ids)
        for campaign_id in campaign_ids:
            senders_start(campaign_id, slots=sender_slots(1))
    return resent


def deliveries_give_up(*, deliveries, by: User | None) -> int:
    """Staff decided not to resend ``unknown`` deliveries: they end as failed. Needs
    ``campaigns.resend_delivery``."""
    permission_require(by=by, perm=RESEND)
    unknown = deliveries.filter(status=DeliveryStatus.UNKNOWN)
    campaign_ids = sorted(set(unknown.values_list("campaign_id", flat=True).distinct()))
    with transaction.atomic():
        count = unknown.update(
            status=DeliveryStatus.FAILED, error="unknown outcome; staff chose not to resend"
        )
        _record(by, Action.GIVE_UP, count=count, campaign_ids=campaign_ids)
    return count


def _record(by: User | None, action: Action, *, count: int, campaign_ids: list[int]) -> None:
    """One entry per staff decision, on the campaign when there is one (the usual case:
    the campaign page's button), with how many deliveries it moved."""
    if by is None:
        return
    target = Campaign.objects.get(pk=campaign_ids[0]) if len(campaign_ids) == 1 else None
    detail = {"deliveries": count, "campaigns": campaign_ids}
    staff_action_record(by=by, action=action, target=target, detail=detail)
