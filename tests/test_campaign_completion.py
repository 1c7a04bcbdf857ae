"""A campaign completes only after its fan-out, and a finished campaign never grows.

Beat starts due campaigns and runs the reconciler every minute, so the two can run in
the same second, beside the fan-out the start queued: whatever the order, a campaign
must not complete with deliveries still to create or to send.
"""

import itertools

import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from accounts.models import Member
from campaigns.models import Campaign, CampaignState, Delivery, DeliveryStatus
from campaigns.selectors import campaign_reach, members_not_reached
from campaigns.services import lifecycle
from campaigns.services.fanout import campaign_fan_out, deliveries_insert
from campaigns.services.reconcile import deliveries_reconcile
from campaigns.services.sending import campaign_send_chunk
from tests.concurrency import at_once
from tests.factories import MemberFactory, campaign, notice_version, staff_user

pytestmark = pytest.mark.django_db

AUDIENCE = 6


def writer():
    """Alice writes campaigns and schedules them."""
    return staff_user(
        "alice",
        "campaigns.add_campaign",
        "campaigns.change_campaign",
        "campaigns.operate_campaign",
    )


def approver():
    """Bob approves them."""
    return staff_user("bob", "campaigns.approve_campaign")


@pytest.fixture
def alice(db):
    return writer()


@pytest.fixture
def bob(db):
    return approver()


def scheduled_campaign(alice, bob, **fields) -> Campaign:
    """A campaign for AUDIENCE members, approved by Bob and due now (no reminders)."""
    for _ in range(AUDIENCE):
        MemberFactory()
    c = lifecycle.campaign_create(
        by=alice,
        name="UK notice",
        notice_version=notice_version(),
        starts_at=timezone.now(),
        throttle_per_minute=60_000,
        **fields,
    )
    lifecycle.campaign_submit(campaign=c, by=alice)
    lifecycle.campaign_approve(campaign=c, by=bob)
    return lifecycle.campaign_schedule(campaign=c, by=alice)


def unfinished(c: Campaign) -> int:
    return Delivery.objects.filter(
        campaign=c, status__in=[DeliveryStatus.PENDING, DeliveryStatus.CLAIMED]
    ).count()


def state(c: Campaign) -> str:
    return Campaign.objects.values_list("state", flat=True).get(pk=c.pk)


def drive(c: Campaign) -> None:
    """What the workers do next: the start's queued fan-out, senders, the reconciler."""
    campaign_fan_out(campaign=Campaign.objects.get(pk=c.pk))
    for _ in range(10):
        if not campaign_send_chunk(campaign_id=c.pk).claimed:
            break
    deliveries_reconcile()


STEPS = {
    "start": lambda c: lifecycle.campaign_start(campaign=Campaign.objects.get(pk=c.pk)),
    "reconcile": lambda c: deliveries_reconcile(),
    "fan_out": lambda c: campaign_fan_out(campaign=Campaign.objects.get(pk=c.pk)),
}


@pytest.mark.parametrize("order", list(itertools.permutations(STEPS)), ids="-".join)
def test_start_reconcile_and_fan_out_in_any_order_never_complete_an_unsent_campaign(
    order, alice, bob
):
    c = scheduled_campaign(alice, bob)
    for step in order:
        STEPS[step](c)
        if state(c) == CampaignState.COMPLETED:
            assert unfinished(c) == 0, f"completed with deliveries to send after {step}"
    drive(c)
    assert state(c) == CampaignState.COMPLETED
    assert dict(
        Delivery.objects.filter(campaign=c).values_list("status").annotate(n=Count("pk"))
    ) == {DeliveryStatus.SENT: AUDIENCE}


def test_reconcile_between_start_and_fan_out_leaves_the_campaign_sending(alice, bob):
    """The reported sequence: the reconciler ran before the fan-out created anything."""
    c = scheduled_campaign(alice, bob)
    lifecycle.campaign_start(campaign=c)
    assert deliveries_reconcile().completed == []
    assert campaign_fan_out(campaign=Campaign.objects.get(pk=c.pk)) == AUDIENCE
    assert state(c) == CampaignState.SENDING


def test_a_fan_out_lost_with_its_worker_is_run_again_after_a_lease(
    alice, bob, settings, time_machine
):
    """Without this, a campaign whose fan-out task died stayed sending, never complete."""
    settings.RENOTIFY_LEASE_SECONDS = 300
    c = scheduled_campaign(alice, bob)
    lifecycle.campaign_start(campaign=c)
    assert deliveries_reconcile().restart_fan_outs == []  # it may still be running
    time_machine.move_to(timezone.now() + timezone.timedelta(seconds=301))
    assert deliveries_reconcile().restart_fan_outs == [c.pk]
    drive(c)  # what the re-queued fan-out and its senders do
    assert state(c) == CampaignState.COMPLETED
    assert deliveries_reconcile().restart_fan_outs == []


def test_a_campaign_completes_once_fanned_out_with_an_empty_audience(alice, bob):
    c = scheduled_campaign(alice, bob, countries=["JP"])  # nobody lives there
    lifecycle.campaign_start(campaign=c)
    deliveries_reconcile()
    assert state(c) == CampaignState.SENDING
    assert campaign_fan_out(campaign=Campaign.objects.get(pk=c.pk)) == 0
    assert deliveries_reconcile().completed == [c.pk]


@pytest.mark.parametrize("final", [CampaignState.COMPLETED, CampaignState.CANCELLED])
def test_a_finished_campaign_never_gains_deliveries(final):
    MemberFactory()
    c = campaign(state=final, fanned_out_at=None)
    assert campaign_fan_out(campaign=c) == 0
    assert deliveries_insert(campaign=c, wave=1, members=Member.objects.all()) == 0
    assert not Delivery.objects.filter(campaign=c).exists()


def test_completion_refuses_a_campaign_not_fanned_out_or_with_work_left(alice, bob):
    c = scheduled_campaign(alice, bob)
    lifecycle.campaign_start(campaign=c)
    assert lifecycle.campaign_complete(campaign=c) is False  # not fanned out yet
    campaign_fan_out(campaign=Campaign.objects.get(pk=c.pk))
    assert lifecycle.campaign_complete(campaign=c) is False  # six deliveries pending
    assert state(c) == CampaignState.SENDING
    Delivery.objects.filter(campaign=c).update(status=DeliveryStatus.SENT)
    assert lifecycle.campaign_complete(campaign=c) is True
    assert state(c) == CampaignState.COMPLETED


def test_reach_never_calls_deliveries_of_a_finished_campaign_in_progress():
    """Deliveries stranded by a campaign that ended before sending them (before this fix)
    were shown as "in progress"; they will never be sent."""
    MemberFactory.create_batch(2)
    c = campaign(state=CampaignState.SENDING)
    campaign_fan_out(campaign=c)
    assert campaign_reach(campaign=c).totals["in_progress"] == 2
    Campaign.objects.filter(pk=c.pk).update(state=CampaignState.COMPLETED)
    c.refresh_from_db()
    totals = campaign_reach(campaign=c).totals
    assert (totals["in_progress"], totals["not_sent"]) == (0, 2)
    assert [row[-1] for row in members_not_reached(campaign=c)] == ["pending", "pending"]


# --- Concurrently, on PostgreSQL ---------------------------------------------------------


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks between connections")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(4))
def test_completion_racing_a_reminder_wave_never_leaves_pending_deliveries(round_, settings):
    """Completion and a new wave at the same moment: either the wave lands first and
    the campaign stays open, or the campaign completes first and the wave adds nothing."""
    settings.RENOTIFY_FANOUT_SLICE = 1  # one slice per member: many chances to interleave
    members = MemberFactory.create_batch(8)
    c = campaign(state=CampaignState.SENDING, fanned_out_at=timezone.now())
    deliveries_insert(campaign=c, wave=0, members=Member.objects.all())
    Delivery.objects.filter(campaign=c).update(status=DeliveryStatus.SENT)
    completed = []
    errors = at_once(
        lambda: completed.append(lifecycle.campaign_complete(campaign=c)),
        lambda: deliveries_insert(
            campaign=c, wave=1, members=Member.objects.filter(pk__in=[m.pk for m in members])
        ),
    )
    assert errors == []
    c.refresh_from_db()
    wave_1 = Delivery.objects.filter(campaign=c, wave=1).count()
    if c.state == CampaignState.COMPLETED:
        assert completed == [True]
        assert unfinished(c) == 0
    else:
        assert (completed, c.state, wave_1) == ([False], CampaignState.SENDING, 8)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks between connections")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(3))
def test_start_reconcile_and_fan_out_at_once_end_with_every_delivery_sent(round_, settings):
    settings.RENOTIFY_FANOUT_SLICE = 2
    c = scheduled_campaign(writer(), approver())
    errors = at_once(
        lambda: STEPS["start"](c),
        lambda: [deliveries_reconcile() for _ in range(5)],
        lambda: [STEPS["fan_out"](c) for _ in range(5)],
    )
    assert errors == []
    if state(c) == CampaignState.COMPLETED:
        assert unfinished(c) == 0
    drive(c)
    assert state(c) == CampaignState.COMPLETED
    assert set(Delivery.objects.filter(campaign=c).values_list("status", flat=True)) == {
        DeliveryStatus.SENT
    }
    assert Delivery.objects.filter(campaign=c).count() == AUDIENCE
