"""The benchmarks' fake ESP (bench/esp_sink.py): its counts are exact, and the app takes
the webhook payloads its feeder posts, in both shapes (one event per POST, 100 per POST).
The end-to-end and fault benchmarks' verdicts rest on both."""

import json
import sys
from base64 import b64encode
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from campaigns.models import CampaignState, Delivery, DeliveryEvent, DeliveryStatus
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.tracking import events_process
from tests.factories import MemberFactory, campaign

# bench/ is a directory of scripts, not a package: its scripts import each other as siblings.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import esp_sink

SECRET = "test:webhook-secret"  # tests/conftest.py's


def message(delivery_id: int, campaign_id: int = 7) -> bytes:
    """What anymail's Postmark backend posts for one notice (the fields the sink reads)."""
    return json.dumps(
        {
            "From": "privacy@example.com",
            "To": f"m{delivery_id}@example.com",
            "Subject": "Your choice",
            "TextBody": f"Read it: https://renotify.test/n/tok-{delivery_id}:AbC_d/\n",
            "Headers": [{"Name": "Message-ID", "Value": f"<d{delivery_id}.c{campaign_id}@x>"}],
            "Metadata": {"delivery_id": str(delivery_id), "campaign_id": str(campaign_id)},
        }
    ).encode()


def test_sink_counts_duplicates_and_missing_exactly(tmp_path):
    sink = esp_sink.FakePostmark(tmp_path)
    for delivery_id in (1, 2, 2, 3, 2):
        sink._response("/email", message(delivery_id))
    sink._response("/email", message(9, campaign_id=8))  # another campaign's
    sink.log.flush()
    log = esp_sink.SinkLog(tmp_path)

    tally = esp_sink.tally(log.counts(7), {1, 2, 3, 4})

    assert tally == {"messages": 5, "distinct": 3, "duplicates": 2, "missing": 1, "unexpected": 0}
    assert log.message_id_counts()["<d2.c7@x>"] == 3
    first = next(log.records())
    assert (first.delivery_id, first.token) == (1, "tok-1:AbC_d")


def test_feeder_posts_each_event_and_the_duplicate_share_again(tmp_path):
    once = esp_sink.FakePostmark(tmp_path, 0, esp_sink.FeedOptions())
    twice = esp_sink.FakePostmark(tmp_path, 1, esp_sink.FeedOptions(duplicate_share=1.0))
    for sink in (once, twice):
        for delivery_id in range(1, 51):
            sink._response("/email", message(delivery_id))
    later = float("inf")

    expected = sum(len(esp_sink.event_kinds(d)) for d in range(1, 51))
    assert len(once.feeder._take(later)) + len(once.feeder._take(later)) == expected
    sent_twice = [e for _ in range(4) for e in twice.feeder._take(later)]
    assert len(sent_twice) == 2 * expected
    assert len({json.dumps(e, sort_keys=True) for e in sent_twice}) == expected


@pytest.fixture
def sent():
    MemberFactory(email="pat@example.com", country="US")
    c = campaign(state=CampaignState.SENDING)
    campaign_fan_out(campaign=c)
    delivery = Delivery.objects.get()
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.SENT,
        sent_at=timezone.now() - timedelta(minutes=5),
        esp_message_id="3f5e1c2a-0000-4000-8000-000000000001",
    )
    return esp_sink.Sent(
        delivery.pk, c.pk, f"<d{delivery.pk}.c{c.pk}@x>",
        "3f5e1c2a-0000-4000-8000-000000000001", "pat@example.com", "",
    )  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("shape", sorted(esp_sink.SHAPES))
def test_app_stores_and_processes_every_event_the_feeder_posts(sent, shape):
    path, per_post = esp_sink.SHAPES[shape]
    events = [payload for _, payload in esp_sink.events_for(shape, sent, at=timezone.now())]
    # Every kind the sink makes, whatever this delivery id's dice say.
    events += [
        esp_sink.event_payload(shape, kind, sent, at=timezone.now() + timedelta(seconds=9), seq=9)
        for kind in ("bounce", "complaint")
    ]
    bodies = [events[i : i + per_post] for i in range(0, len(events), per_post)]
    auth = "Basic " + b64encode(SECRET.encode()).decode()

    for batch in bodies:
        response = Client(enforce_csrf_checks=True).post(
            path,
            data=esp_sink.post_body(shape, batch),
            content_type="application/json",
            HTTP_AUTHORIZATION=auth,
        )
        assert response.status_code == 200, response.content
    events_process()

    stored = DeliveryEvent.objects.all()
    assert stored.count() == len(events)
    assert {e.metadata_delivery_id for e in stored} == {sent.delivery_id}
    assert not stored.filter(processed_at=None).exists()
    assert Delivery.objects.get().status == DeliveryStatus.COMPLAINED
