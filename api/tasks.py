"""Celery entry points for outbound webhooks (beat runs both every few seconds): thin
wrappers around the services, safe to run twice or side by side."""

from celery import shared_task
from django.conf import settings

from api.services.webhook_sending import webhook_deliveries_send_due
from api.services.webhooks import webhook_events_dispatch

# A dispatch run stops after this many batches even when the ledger is further ahead,
# so a backlog does not keep one worker from everything else; the next run goes on.
DISPATCH_BATCHES_PER_RUN = 20


@shared_task
def webhooks_dispatch() -> int:
    """Make the deliveries for the ledger events since the last run; how many events."""
    events = 0
    for _ in range(DISPATCH_BATCHES_PER_RUN):
        dispatched, caught_up = webhook_events_dispatch()
        events += dispatched
        if caught_up:
            break
    return events


@shared_task(
    # A request that drips its answer can outlast every timeout: the hard limits end it.
    soft_time_limit=settings.RENOTIFY_WEBHOOK_BUDGET + 4 * settings.RENOTIFY_WEBHOOK_TIMEOUT,
    time_limit=settings.RENOTIFY_WEBHOOK_BUDGET + 6 * settings.RENOTIFY_WEBHOOK_TIMEOUT,
)
def webhooks_deliver_due() -> dict[str, int]:
    """Send the due deliveries, within ``RENOTIFY_WEBHOOK_BUDGET`` seconds."""
    return webhook_deliveries_send_due().as_dict()
