"""Two event processors at once (PostgreSQL: SKIP LOCKED) split a stream of events
between them: each event is processed once, by one of them, and the deliveries end as
one processor alone would leave them."""

from datetime import UTC, datetime, timedelta

import pytest
from anymail.signals import AnymailTrackingEvent
from django.db import connection

from campaigns.models import CampaignState, Delivery, DeliveryEvent, DeliveryStatus
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.tracking import event_row, events_process, events_store
from tests.concurrency import at_once
from tests.factories import MemberFactory, campaign

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks, SKIP LOCKED"),
]

SENT_AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
SOFT_BOUNCES = 4


def bounce_then_delivery(delivery: Delivery) -> list[dict]:
    """A delivery's soft bounces (each counted once, so a double count shows) and its
    final delivery, as stored rows."""
    kinds = [("bounced", {"Type": "SoftBounce"})] * SOFT_BOUNCES + [("delivered", {})]
    return [
        event_row(
            AnymailTrackingEvent(
                event_type=kind,
                timestamp=SENT_AT + timedelta(minutes=i + 1),
                event_id=f"{delivery.pk}-{i}",
                metadata={"delivery_id": str(delivery.pk)},
                esp_event=raw,
            ),
            "Postmark",
        )
        for i, (kind, raw) in enumerate(kinds)
    ]


def test_two_processors_split_the_events_and_count_each_once():
    MemberFactory.create_batch(12, country="US")
    notice = campaign(state=CampaignState.SENDING)
    campaign_fan_out(campaign=notice)
    Delivery.objects.filter(campaign=notice).update(status=DeliveryStatus.SENT, sent_at=SENT_AT)
    deliveries = list(Delivery.objects.filter(campaign=notice))
    # Interleaved so that every batch of either processor holds events of many deliveries.
    rows = [row for d in deliveries for row in bounce_then_delivery(d)]
    events_store(sorted(rows, key=lambda row: row["event_key"]))
    reports = []

    def processor():
        reports.append(events_process(batch_size=7))

    assert at_once(processor, processor) == []
    assert sum(r.events for r in reports) == len(rows)  # each event by one processor
    assert not DeliveryEvent.objects.filter(processed_at=None).exists()
    assert set(
        Delivery.objects.filter(campaign=notice).values_list(
            "status", "soft_bounces", "delivered_at"
        )
    ) == {(DeliveryStatus.DELIVERED, SOFT_BOUNCES, SENT_AT + timedelta(minutes=5))}
