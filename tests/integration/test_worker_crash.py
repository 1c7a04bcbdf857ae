"""Fault injection: the sending worker is SIGKILLed at random moments of a real send.

After each kill the lease runs out and the reconciler takes stock (claimed rows go
back to pending; rows handed to the transport become "unknown"), then a new worker
carries on. At the end staff resend the unknown deliveries. Nothing may be lost, and
only a resent unknown delivery may reach its member twice.
"""

import random
import time
from collections import Counter

import pytest

from campaigns.models import UNFINISHED_STATUSES, Campaign, Delivery, DeliveryStatus
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.lifecycle import campaign_start
from campaigns.services.reconcile import deliveries_reconcile, delivery_resend
from campaigns.services.senders import sender_chains_take
from campaigns.tasks import campaign_send
from tests.integration.conftest import wait_for
from tests.integration.support import (
    SendingWorker,
    members_create,
    multilingual_campaign,
    sending_worker,
    smtp_sink,
)

pytestmark = pytest.mark.integration

MEMBERS = 1_500
TRIALS = 4
SEED = 8058
LEASE_SECONDS = 5
# Per message, so that a kill often lands while a batch is with the transport.
SMTP_DELAY = 0.004


def test_killed_workers_lose_nothing_and_duplicate_only_resent_unknowns(
    services, transactional_db, tmp_path
):
    rng = random.Random(SEED)
    emails = {m.pk: m.email for m in members_create(MEMBERS)}
    campaign = campaign_start(campaign=multilingual_campaign(throttle_per_minute=60_000))
    campaign_fan_out(campaign=campaign, wave=0)
    deliveries = Delivery.objects.filter(campaign=campaign)
    env = {"RENOTIFY_LEASE_SECONDS": str(LEASE_SECONDS)}
    requeued = unknown = 0

    with (
        smtp_sink(delay=SMTP_DELAY) as sink,
        sending_worker(log_dir=tmp_path, env={**env, "EMAIL_URL": sink.url}) as worker,
    ):
        for trial in range(1, TRIALS + 1):
            if trial > 1:
                worker.start()
            before = sink.count()
            senders_start(campaign, worker)
            wait_for(lambda n=before: sink.count() > n, timeout=30, what="sending to start")
            time.sleep(rng.uniform(0.0, 1.5))
            worker.kill()
            in_flight = Counter(deliveries.values_list("status", flat=True))
            report = reconcile_after_lease(deliveries)
            requeued, unknown = requeued + report.requeued, unknown + report.unknown
            print(
                f"\ntrial {trial}: killed with {dict(in_flight)}; reconciler re-queued "
                f"{report.requeued} claims, marked {report.unknown} unknown"
            )

        worker.start()
        senders_start(campaign, worker)
        wait_for(lambda: not unfinished(deliveries), timeout=90, what="the rest to be sent")
        resent = list(deliveries.filter(status=DeliveryStatus.UNKNOWN))
        for delivery in resent:
            assert delivery_resend(delivery=delivery, by=None)
        senders_start(campaign, worker)
        wait_for(lambda: not unfinished(deliveries), timeout=60, what="the resends")
        wait_for(worker.idle, timeout=30, what="the sender chains to end")
        received = Counter(message.envelope_to for message in sink.messages())

    resent_to = {(emails[d.member_id],) for d in resent}
    twice = {to for to, n in received.items() if n > 1}
    statuses = Counter(deliveries.values_list("status", flat=True))
    print(
        f"after {TRIALS} kills: {statuses.get('sent', 0)} sent, {unknown} unknown, "
        f"{len(resent)} resent, {requeued} claims re-queued; {sum(received.values())} "
        f"messages received, {len(twice)} members got a duplicate "
        f"(all of them resent unknowns: {twice <= resent_to})"
    )
    assert requeued + unknown > 0, "no kill landed while a chunk was in flight"
    assert len(resent) == unknown
    assert statuses == {"sent": MEMBERS}
    assert not deliveries.filter(esp_message_id="").exists()
    assert {(email,) for email in emails.values()} - set(received) == set(), "lost"
    assert twice - resent_to == set(), "duplicates of deliveries that were not resent"
    assert max(received.values()) <= 2
    assert deliveries_reconcile().completed == [campaign.pk]


def senders_start(campaign: Campaign, worker: SendingWorker) -> None:
    """What the fan-out (and the reconciler, for a lost chain) enqueue: a chain in each
    of two slots."""
    for slot, chain in sender_chains_take(campaign_id=campaign.pk, slots=range(2)):
        campaign_send.apply_async((campaign.pk, slot, chain), queue=worker.queue)


def reconcile_after_lease(deliveries):
    """Wait out the dead worker's leases, then reconcile until nothing is in flight."""
    time.sleep(LEASE_SECONDS + 1)
    report = deliveries_reconcile()
    in_flight = deliveries.filter(
        status__in=[DeliveryStatus.CLAIMED, DeliveryStatus.SENDING]
    ).count()
    assert in_flight == 0, f"{in_flight} deliveries still claimed or sending"
    return report


def unfinished(deliveries) -> bool:
    return deliveries.filter(status__in=UNFINISHED_STATUSES).exists()
