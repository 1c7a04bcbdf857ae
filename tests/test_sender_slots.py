"""A campaign's sender chains, one per slot: a chain lost with its worker is started
again while the others carry on; a chain waiting for a deferred retry is left alone;
starting senders again never runs more chains than slots."""

from datetime import timedelta

import pytest
import time_machine
from celery import current_app
from django.core import mail
from django.utils import timezone

from campaigns import enqueue
from campaigns.models import CampaignState, Delivery, DeliveryStatus
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.senders import SenderLink, senders_start
from campaigns.tasks import campaign_send, deliveries_reconcile_task
from tests.factories import MemberFactory, campaign

pytestmark = pytest.mark.django_db
LEASE = 300


@pytest.fixture(autouse=True)
def two_slots(settings):
    settings.RENOTIFY_SENDERS_PER_CAMPAIGN = 2
    settings.RENOTIFY_LEASE_SECONDS = LEASE
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def published(monkeypatch):
    """The sender links published, as (campaign, slot, chain); none reaches a broker."""
    sent: list[tuple[int, int, str]] = []

    def send_task(name, args=(), **options):
        assert name == enqueue.CAMPAIGN_SEND
        sent.append(tuple(args))

    monkeypatch.setattr(current_app, "send_task", send_task)
    return sent


def sending_campaign(members: int, **fields):
    MemberFactory.create_batch(members)
    c = campaign(state=CampaignState.SENDING, throttle_per_minute=60_000, **fields)
    campaign_fan_out(campaign=c)
    return c


def started(c, published, django_capture_on_commit_callbacks) -> list[tuple[int, int, str]]:
    with django_capture_on_commit_callbacks(execute=True):
        senders_start(c.pk)
    links, published[:] = list(published), []
    return links


def run(link, django_capture_on_commit_callbacks) -> int:
    """One link, as a worker runs it; what it commits is published."""
    with django_capture_on_commit_callbacks(execute=True):
        return campaign_send(*link)


def test_a_lost_chain_is_started_again_in_its_slot_while_the_other_sends(
    published, django_capture_on_commit_callbacks
):
    c = sending_campaign(members=5)
    first, lost = started(c, published, django_capture_on_commit_callbacks)
    with time_machine.travel(timezone.now() + timedelta(seconds=2 * LEASE)):
        # Slot 0's chain is alive (it just checked in); slot 1's link never ran.
        assert SenderLink(*first).check_in(countdown=0)
        with django_capture_on_commit_callbacks(execute=True):
            report = deliveries_reconcile_task()
    assert report["restarted"] == [c.pk]
    [(campaign_id, slot, chain)] = published
    assert (campaign_id, slot) == (c.pk, 1) and chain != lost[2]

    published.clear()
    # The lost link turns up after all (a broker redelivering it): it sends nothing.
    assert run(lost, django_capture_on_commit_callbacks) == 0
    assert published == [] and mail.outbox == []
    assert run((campaign_id, slot, chain), django_capture_on_commit_callbacks) == 5
    assert len(mail.outbox) == 5


def test_a_chain_waiting_for_a_deferred_retry_is_not_started_again(
    published, django_capture_on_commit_callbacks
):
    c = sending_campaign(members=3)
    later = timezone.now() + timedelta(minutes=20)
    Delivery.objects.filter(campaign=c).update(not_before=later)
    links = started(c, published, django_capture_on_commit_callbacks)
    for link in links:
        assert run(link, django_capture_on_commit_callbacks) == 0
    # Each chain's next link waits until the retries are due.
    assert sorted((campaign_id, slot) for campaign_id, slot, _ in published) == [
        (c.pk, 0),
        (c.pk, 1),
    ]
    published.clear()
    with (
        time_machine.travel(timezone.now() + timedelta(minutes=15)),
        django_capture_on_commit_callbacks(execute=True),
    ):
        report = deliveries_reconcile_task()
    assert report["restarted"] == [] and published == []


def test_starting_senders_again_never_runs_more_chains_than_slots(
    published, django_capture_on_commit_callbacks, settings
):
    settings.RENOTIFY_CHUNK_SIZE = 2
    c = sending_campaign(members=9)
    # Started by the fan-out, then again (a resume, a reminder wave, a resend).
    old = started(c, published, django_capture_on_commit_callbacks)
    new = started(c, published, django_capture_on_commit_callbacks)
    assert [run(link, django_capture_on_commit_callbacks) for link in old] == [0, 0]
    assert published == []  # the replaced chains stopped
    links = new
    while links:
        for link in links:
            run(link, django_capture_on_commit_callbacks)
        links, published[:] = list(published), []
        assert len(links) <= 2
    assert len(mail.outbox) == 9
    assert sorted(m.to[0] for m in mail.outbox) == sorted(
        Delivery.objects.filter(campaign=c).values_list("member__email", flat=True)
    )
    assert set(Delivery.objects.filter(campaign=c).values_list("status", flat=True)) == {
        DeliveryStatus.SENT
    }


def test_a_link_delivered_twice_does_not_fork_its_chain(
    published, django_capture_on_commit_callbacks
):
    c = sending_campaign(members=6)
    deferred = Delivery.objects.filter(campaign=c).order_by("pk")[:3].values_list("pk")
    Delivery.objects.filter(pk__in=deferred).update(
        not_before=timezone.now() + timedelta(minutes=20)
    )
    link, _other = started(c, published, django_capture_on_commit_callbacks)
    assert run(link, django_capture_on_commit_callbacks) == 3
    assert run(link, django_capture_on_commit_callbacks) == 0  # the broker's second copy
    [(campaign_id, slot, token)] = published  # one next link, not two
    assert (campaign_id, slot) == (c.pk, 0) and token != link[2]
    assert len(mail.outbox) == 3


def test_a_link_published_before_slots_hands_over_to_a_chain_per_slot(
    published, django_capture_on_commit_callbacks
):
    c = sending_campaign(members=2)
    with django_capture_on_commit_callbacks(execute=True):
        assert campaign_send(c.pk) == 0
    assert mail.outbox == []
    assert sorted((campaign_id, slot) for campaign_id, slot, _ in published) == [
        (c.pk, 0),
        (c.pk, 1),
    ]
