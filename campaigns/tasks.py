"""Celery entry points for campaigns: thin, idempotent wrappers around services.

They publish nothing themselves: what comes next is asked for through
``campaigns.enqueue``, after the commit."""

import logging
import smtplib

from celery import shared_task
from django.utils import timezone

from campaigns import enqueue
from campaigns.models import Campaign, CampaignState
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.lifecycle import TransitionError, campaign_start
from campaigns.services.receipts import receipts_send
from campaigns.services.reconcile import deliveries_reconcile
from campaigns.services.reminders import reminders_create
from campaigns.services.senders import SenderLink, senders_start
from campaigns.services.sending import (
    backoff_seconds,
    campaign_breaker_check,
    campaign_send_chunk,
)
from campaigns.services.tracking import events_process

logger = logging.getLogger(__name__)


@shared_task
def campaigns_start_due() -> list[int]:
    """Every minute (beat): move due scheduled campaigns to sending and fan them out.

    Each campaign starts in its own transaction. One that another beat or a person
    moved on meanwhile is skipped; one that fails unexpectedly does not keep the
    others waiting: the first such error is raised once they have all been tried."""
    started, failure = [], None
    due = Campaign.objects.filter(state=CampaignState.SCHEDULED, starts_at__lte=timezone.now())
    for campaign_id in due.order_by("starts_at", "pk").values_list("pk", flat=True):
        try:
            campaign = campaign_start(campaign=Campaign.objects.get(pk=campaign_id))
        except TransitionError as moved_on:
            logger.info("campaign %s not started: %s", campaign_id, moved_on)
            continue
        except Exception as error:
            logger.exception("campaign %s could not be started", campaign_id)
            failure = failure or error
            continue
        if campaign.state != CampaignState.SENDING:
            continue  # sent back to draft: its texts are not the ones approved
        enqueue.fan_out_start(campaign.pk)
        started.append(campaign.pk)
    if failure is not None:
        raise failure
    return started


@shared_task
def campaign_fan_out_task(campaign_id: int, wave: int = 0) -> int:
    added = campaign_fan_out(campaign=Campaign.objects.get(pk=campaign_id), wave=wave)
    logger.info("campaign %s wave %s: %s deliveries created", campaign_id, wave, added)
    senders_start(campaign_id)
    return added


# Transport errors raised before a chunk could start (the relay refuses the connection);
# errors while sending are classified per message by the service.
TRANSIENT = (smtplib.SMTPConnectError, ConnectionError)


@shared_task(bind=True)
def campaign_send(self, campaign_id: int, slot: int | None = None, chain: str | None = None) -> int:
    """One chunk; then the chain goes on while work is due (one message per chunk).

    Each link checks in for its slot (``campaigns.services.senders``): a chain that was
    replaced in its slot stops. A failing transport is retried without end, waiting as
    ``backoff_seconds`` says (the one backoff rule, also used for each delivery's own
    retries)."""
    if chain is None:
        # Published before sender slots existed (a deploy with links in flight): this
        # link hands over to a chain per slot.
        senders_start(campaign_id)
        return 0
    link = SenderLink(campaign_id, slot or 0, chain)
    if not link.check_in(countdown=0):
        return 0  # replaced in its slot
    try:
        outcome = campaign_send_chunk(campaign_id=campaign_id)
    except TRANSIENT as error:
        raise self.retry(
            exc=error,
            countdown=link.retry_in(backoff_seconds(self.request.retries + 1)),
            max_retries=None,
        ) from error
    if outcome.retry_in is not None:
        # The transport is failing: the unsent rest went back to pending.
        raise self.retry(
            countdown=link.retry_in(backoff_seconds(self.request.retries + 1)), max_retries=None
        )
    if outcome.next_due_in is not None and outcome.claimed:
        link.continue_in(outcome.next_due_in)
    elif outcome.next_due_in is not None:
        # Nothing claimable now (deferred retries): look again when the first is due.
        link.continue_in(max(outcome.next_due_in, 1))
    return outcome.sent


@shared_task
def deliveries_reconcile_task() -> dict:
    report = deliveries_reconcile()
    for campaign_id, slots in report.restart_senders.items():
        senders_start(campaign_id, slots=slots)
    for campaign_id in report.restart_fan_outs:
        logger.warning("reconciler: campaign %s fan-out unfinished, running it again", campaign_id)
        enqueue.fan_out_start(campaign_id)
    if report.unknown or report.requeued or report.gave_up:
        logger.warning(
            "reconciler: %s claims re-queued, %s given up (failed), %s deliveries unknown",
            report.requeued,
            report.gave_up,
            report.unknown,
        )
    return {
        "gave_up": report.gave_up,
        "completed": report.completed,
        "restarted": sorted(report.restart_senders),
        "fan_outs_restarted": report.restart_fan_outs,
    }


@shared_task
def reminders_create_task() -> dict[int, int]:
    """Daily (beat): next reminder wave for members who have not responded."""
    added = reminders_create(now=timezone.now())
    for campaign_id in added:
        senders_start(campaign_id)
    return added


# How long one run of the event processor goes on: well inside the task's soft time
# limit, and short enough that other tasks of the "celery" queue (receipts, beat's sweeps)
# get the worker process between two runs while a backlog is worked off.
EVENTS_RUN_SECONDS = 60.0


@shared_task
def delivery_events_process() -> dict:
    """Kicked after webhooks store events, and every RENOTIFY_SWEEP_SECONDS by beat.
    Concurrent runs take disjoint batches (SKIP LOCKED), so a second kick while one runs
    is harmless. A run that stops on its time budget with events left asks for the next
    run at once rather than waiting for a kick or the sweep."""
    report = events_process(max_seconds=EVENTS_RUN_SECONDS)
    for campaign_id in report.campaigns:
        campaign_breaker_check(campaign=Campaign.objects.get(pk=campaign_id))
    if report.more:
        enqueue.events_continue()
    return {"events": report.events, "orphans": report.orphans, "more": report.more}


@shared_task
def objection_receipts_send_task() -> dict:
    """Kicked (at most once per enqueue.KICK_SECONDS per web process) after objections,
    and every RENOTIFY_SWEEP_SECONDS by beat. Receipts hold their own retry state;
    concurrent runs take disjoint batches."""
    report = receipts_send()
    return {"sent": report.sent, "retried": report.retried, "failed": report.failed}
