"""The circuit breaker: it pauses a campaign whose list looks bad, an approver's resume
holds, and from then on it judges only what is sent after the resume."""

import pytest

from accounts.models import Member
from campaigns.models import Campaign, CampaignState, Delivery, DeliveryStatus
from campaigns.services import lifecycle
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.reconcile import deliveries_reconcile
from campaigns.services.sending import campaign_send_chunk
from tests.factories import MemberFactory, campaign, staff_user
from tests.mail_backends import FlakyBackend

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def flaky_mail(settings):
    settings.EMAIL_BACKEND = "tests.mail_backends.FlakyBackend"
    settings.RENOTIFY_SEND_BATCH = 5
    settings.RENOTIFY_CHUNK_SIZE = 10
    settings.RENOTIFY_BREAKER_MIN_SENDS = 20
    settings.RENOTIFY_BREAKER_BOUNCE_RATE = 0.05
    FlakyBackend.reset()
    yield FlakyBackend
    FlakyBackend.reset()


@pytest.fixture
def amy(db):
    """Amy approves campaigns, and decides whether a paused one goes on."""
    return staff_user("amy", "campaigns.approve_campaign", "campaigns.operate_campaign")


def sending_campaign(members: int, *, rejected: list[int]) -> Campaign:
    """``members`` members, sent in id order; those at the ``rejected`` positions have
    addresses the receiving server refuses for good (hard bounces)."""
    MemberFactory.create_batch(members)
    emails = list(Member.objects.order_by("pk").values_list("email", flat=True))
    FlakyBackend.rejected = {emails[i] for i in rejected}
    c = campaign(state=CampaignState.SENDING, throttle_per_minute=60_000)
    campaign_fan_out(campaign=c)
    return c


def chunk(c: Campaign) -> Campaign:
    """One sender chunk (10 deliveries), then the campaign as it is now."""
    campaign_send_chunk(campaign_id=c.pk)
    return Campaign.objects.get(pk=c.pk)


def sent_since(c: Campaign, first_id: int) -> int:
    return Delivery.objects.filter(
        campaign=c, pk__gte=first_id, status__in=[DeliveryStatus.SENT, DeliveryStatus.FAILED]
    ).count()


def test_a_resume_holds_and_only_new_bounces_trip_the_breaker_again(amy):
    c = sending_campaign(60, rejected=[0, 1, 2, 3, 20, 21, 22])
    assert chunk(c).state == CampaignState.SENDING  # 4 bounces in 10: too few sends yet
    tripped = chunk(c)
    assert tripped.state == CampaignState.PAUSED
    assert tripped.state_reason == (
        "circuit breaker after 20 sends: hard-bounce rate 20.0% (4 of 20) over 5.0%"
    )

    lifecycle.campaign_resume(campaign=c, by=amy)
    deliveries_reconcile()
    assert Campaign.objects.get(pk=c.pk).state == CampaignState.SENDING  # the resume holds
    first_after_resume = Delivery.objects.filter(campaign=c, status="pending").order_by("pk")[0]
    # 3 bounces in the next 10 (30 %), but fewer than 20 sends since the resume.
    assert chunk(c).state == CampaignState.SENDING
    deliveries_reconcile()
    assert Campaign.objects.get(pk=c.pk).state == CampaignState.SENDING
    tripped = chunk(c)  # 10 more, all fine: 3 in 20 since the resume
    assert tripped.state == CampaignState.PAUSED
    assert sent_since(c, first_after_resume.pk) == 20
    assert tripped.state_reason.startswith(
        "circuit breaker after 20 sends since the resume at "
    ) and tripped.state_reason.endswith(": hard-bounce rate 15.0% (3 of 20) over 5.0%")

    lifecycle.campaign_resume(campaign=c, by=amy)
    while (
        chunk(c).state == CampaignState.SENDING
        and Delivery.objects.filter(campaign=c, status="pending").exists()
    ):
        pass
    deliveries_reconcile()
    done = Campaign.objects.get(pk=c.pk)
    assert done.state == CampaignState.COMPLETED
    assert Delivery.objects.filter(campaign=c, status="sent").count() == 53


def test_a_campaign_resumed_with_nothing_left_to_send_completes(amy):
    c = sending_campaign(20, rejected=[0, 1, 2])
    chunk(c)
    assert chunk(c).state == CampaignState.PAUSED  # 3 in 20: 15 %
    lifecycle.campaign_resume(campaign=c, by=amy)
    report = deliveries_reconcile()
    assert report.completed == [c.pk]
    assert Campaign.objects.get(pk=c.pk).state == CampaignState.COMPLETED  # not paused again


def test_a_staff_pause_and_resume_keeps_the_count_going(amy):
    """Only a resume of the breaker's own pause starts a new count: a staff member who
    paused for another reason did not decide about the bounces so far."""
    c = sending_campaign(20, rejected=[0, 1, 2])
    assert chunk(c).state == CampaignState.SENDING  # 10 sends: too few to judge
    lifecycle.campaign_pause(campaign=c, by=amy, reason="checking the copy")
    lifecycle.campaign_resume(campaign=c, by=amy)
    tripped = chunk(c)
    assert tripped.state == CampaignState.PAUSED
    assert tripped.state_reason == (
        "circuit breaker after 20 sends: hard-bounce rate 15.0% (3 of 20) over 5.0%"
    )


def test_the_breaker_counts_each_batch_as_it_is_recorded(flaky_mail):
    """The reconciler and the tracking batches judge a campaign while its chunks are in
    flight; counters bumped only at a chunk's end lag up to a chunk behind (and a worker
    that dies mid-chunk never adds its chunk), so the reason quoted a stale count."""
    c = sending_campaign(10, rejected=[])
    seen = []
    flaky_mail.on_send = lambda message: (
        seen.append(Campaign.objects.get(pk=c.pk).sent_count)
        if FlakyBackend.sent_count == 7
        else None
    )
    campaign_send_chunk(campaign_id=c.pk)
    assert seen == [5]  # the first batch of 5, recorded before the second went out
    assert Campaign.objects.get(pk=c.pk).sent_count == 10


def test_a_relay_that_refuses_everything_pauses_after_fifty_refusals_in_a_row(settings):
    """A relay answering 5xx to every message failed all 163 deliveries of a campaign:
    the rate breaker waits for RENOTIFY_BREAKER_MIN_SENDS sends first."""
    settings.RENOTIFY_BREAKER_MIN_SENDS = 500
    settings.RENOTIFY_CHUNK_SIZE = 1000
    c = sending_campaign(163, rejected=list(range(163)))
    c = chunk(c)
    assert c.state == CampaignState.PAUSED
    assert "50 permanent refusals in a row" in c.state_reason
    statuses = Delivery.objects.filter(campaign=c).values_list("status", flat=True)
    assert list(statuses).count(DeliveryStatus.FAILED) == 50
    assert list(statuses).count(DeliveryStatus.PENDING) == 113  # given back, not burnt


def test_an_accepted_message_ends_the_streak(settings):
    settings.RENOTIFY_BREAKER_MIN_SENDS = 500
    settings.RENOTIFY_BREAKER_REJECTIONS_IN_A_ROW = 10
    # Nine refusals, one accepted, nine refusals...: never ten in a row.
    c = sending_campaign(60, rejected=[i for i in range(60) if i % 10 != 9])
    for _ in range(8):
        c = chunk(c)
    assert c.state == CampaignState.SENDING
    assert c.rejected_in_a_row == 0
    assert Delivery.objects.filter(campaign=c, status=DeliveryStatus.PENDING).count() == 0


def test_a_resume_of_a_refusals_pause_starts_the_streak_again(amy, settings):
    settings.RENOTIFY_BREAKER_MIN_SENDS = 500
    settings.RENOTIFY_BREAKER_REJECTIONS_IN_A_ROW = 10
    c = sending_campaign(30, rejected=list(range(30)))
    c = chunk(c)
    assert c.state == CampaignState.PAUSED
    lifecycle.campaign_resume(campaign=c, by=amy)  # say the relay was fixed meanwhile
    FlakyBackend.rejected = set()
    c = chunk(Campaign.objects.get(pk=c.pk))
    assert c.state == CampaignState.SENDING and c.rejected_in_a_row == 0
