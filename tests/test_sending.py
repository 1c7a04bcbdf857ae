"""Sending: claim, render, send, record; every delivery ends somewhere known."""

import email
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.utils import timezone

from accounts.models import Action, Member, Source
from accounts.services.consent import consent_record
from campaigns import tokens
from campaigns.models import Campaign, CampaignState, Delivery
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.lifecycle import campaign_cancel, campaign_pause, campaign_resume
from campaigns.services.reconcile import deliveries_reconcile, delivery_resend
from campaigns.services.sending import campaign_send_chunk, deliveries_claim
from tests.factories import MemberFactory, campaign, notice_version
from tests.mail_backends import FlakyBackend

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def flaky_mail(settings):
    settings.EMAIL_BACKEND = "tests.mail_backends.FlakyBackend"
    settings.RENOTIFY_SEND_BATCH = 5
    FlakyBackend.reset()
    yield FlakyBackend
    FlakyBackend.reset()


def sending_campaign(members: int = 0, **fields) -> Campaign:
    fields.setdefault("throttle_per_minute", 60_000)
    for n in range(members):
        MemberFactory(locale=["en", "de", "fr", "es"][n % 4])
    c = campaign(state=CampaignState.SENDING, **fields)
    campaign_fan_out(campaign=c)
    return c


def send_all(c: Campaign, rounds: int = 50):
    outcomes = []
    for _ in range(rounds):
        outcome = campaign_send_chunk(campaign_id=c.pk)
        outcomes.append(outcome)
        if not outcome.claimed:
            break
    return outcomes


def statuses(c: Campaign) -> dict[str, int]:
    result: dict[str, int] = {}
    for status in Delivery.objects.filter(campaign=c).values_list("status", flat=True):
        result[status] = result.get(status, 0) + 1
    return result


def test_every_member_gets_one_message_with_one_click_unsubscribe_and_tracking(settings):
    settings.SITE_URL = "https://privacy.example.com"
    c = sending_campaign(members=8)
    send_all(c)
    assert statuses(c) == {"sent": 8}
    assert sorted(m.to[0] for m in mail.outbox) == sorted(
        Member.objects.values_list("email", flat=True)
    )
    for message in mail.outbox:
        delivery = Delivery.objects.get(member__email=message.to[0])
        headers = message.extra_headers
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsubscribe = headers["List-Unsubscribe"].strip("<>")
        assert unsubscribe.startswith("https://privacy.example.com/u/")
        assert tokens.delivery_from_unsubscribe_token(unsubscribe.split("/")[-2]) == delivery.pk
        assert (
            headers["Message-ID"]
            == f"<d{delivery.pk}.c{c.pk}@{settings.RENOTIFY_MESSAGE_ID_DOMAIN}>"
        )
        assert delivery.esp_message_id == headers["Message-ID"]
        assert message.metadata == {"delivery_id": str(delivery.pk), "campaign_id": str(c.pk)}
        assert message.tags == [f"campaign-{c.pk}"]
        notice_link = tokens.notice_url(delivery.pk).rsplit("/", 2)[0]
        html = message.alternatives[0][0]
        assert notice_link in message.body and notice_link in html
        assert delivery.sent_at is not None and delivery.lease_expires_at is None


def test_subject_and_body_follow_the_member_locale_with_fallback():
    c = sending_campaign(members=4)  # en, de, fr, es
    send_all(c)
    by_locale = {
        Member.objects.get(email=m.to[0]).locale: (
            m.subject,
            Delivery.objects.get(member__email=m.to[0]).locale,
        )
        for m in mail.outbox
    }
    assert by_locale == {
        "en": ("Subject [en]", "en"),
        "de": ("Subject [de]", "de"),
        "fr": ("Subject [fr]", "fr"),
        "es": ("Subject [en]", "en"),  # no Spanish text: the version's default
    }


def test_message_serialises_as_multipart_with_both_parts():
    c = sending_campaign(members=1)
    send_all(c)
    parsed = email.message_from_bytes(mail.outbox[0].message().as_bytes())
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.get_payload()] == ["text/plain", "text/html"]


def test_one_bad_address_never_fails_its_chunk(flaky_mail):
    c = sending_campaign(members=6)
    bad = Member.objects.order_by("pk")[2]
    flaky_mail.rejected = {bad.email}
    send_all(c)
    assert statuses(c) == {"sent": 5, "failed": 1}
    failed = Delivery.objects.get(member=bad)
    assert "550" in failed.error
    c.refresh_from_db()
    assert (c.sent_count, c.hard_bounce_count) == (6, 1)


def test_temporary_refusal_is_retried_later_then_given_up(flaky_mail, settings):
    settings.RENOTIFY_MAX_ATTEMPTS = 2
    c = sending_campaign(members=2)
    busy = Member.objects.order_by("pk").first()
    flaky_mail.busy = {busy.email}
    send_all(c)
    delivery = Delivery.objects.get(member=busy)
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert delivery.not_before > timezone.now()
    assert campaign_send_chunk(campaign_id=c.pk).claimed == 0  # not due yet
    with time_machine.travel(delivery.not_before + timedelta(seconds=1)):
        send_all(c)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 2)
    assert "gave up after 2 attempts" in delivery.error


def test_transport_down_releases_the_rest_and_asks_for_a_retry(flaky_mail, settings):
    settings.RENOTIFY_SEND_BATCH = 2
    c = sending_campaign(members=6)
    flaky_mail.down_after = 3
    outcome = campaign_send_chunk(campaign_id=c.pk)
    assert outcome.retry_in and outcome.retry_in > 0
    assert statuses(c).get("sent") == 3
    assert statuses(c).get("claimed") is None and statuses(c).get("sending") is None
    flaky_mail.down_after = None
    with time_machine.travel(timezone.now() + timedelta(hours=1)):
        send_all(c)
    assert statuses(c) == {"sent": 6}
    assert len(mail.outbox) == 6


def test_a_timeout_after_handing_over_is_unknown_not_retried(flaky_mail):
    c = sending_campaign(members=3)
    lost = Member.objects.order_by("pk")[1]
    flaky_mail.timeout = {lost.email}
    send_all(c)
    assert statuses(c) == {"sent": 2, "unknown": 1}
    assert delivery_resend(delivery=Delivery.objects.get(member=lost), by=None)
    flaky_mail.timeout = set()
    send_all(c)
    assert statuses(c) == {"sent": 3}


def test_someone_who_unsubscribed_after_fan_out_is_skipped():
    c = sending_campaign(members=3)
    gone = Member.objects.order_by("pk").last()
    consent_record(member=gone, action=Action.UNSUBSCRIBE, source=Source.ONE_CLICK)
    send_all(c)
    assert statuses(c) == {"sent": 2, "skipped": 1}
    assert gone.email not in [m.to[0] for m in mail.outbox]


def test_a_chunk_claimed_twice_is_sent_once():
    """Two workers racing for one chunk: the second claim finds nothing to take."""
    c = sending_campaign(members=4)
    lease = timezone.now() + timedelta(minutes=5)
    first = deliveries_claim(campaign=c, limit=10, lease=lease)
    second = deliveries_claim(campaign=c, limit=10, lease=lease)
    assert (len(first), len(second)) == (4, 0)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SKIP LOCKED is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_never_send_a_delivery_twice(settings):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    settings.RENOTIFY_CHUNK_SIZE = 7
    c = sending_campaign(members=60)

    def worker() -> int:
        try:
            return sum(o.sent for o in send_all(c))
        finally:
            connections.close_all()  # this thread's own (kept open otherwise: CONN_MAX_AGE)

    with ThreadPoolExecutor(max_workers=3) as pool:
        sent = [f.result() for f in [pool.submit(worker) for _ in range(3)]]
    assert sum(sent) == 60
    recipients = [m.to[0] for m in mail.outbox]
    assert len(recipients) == len(set(recipients)) == 60
    assert statuses(c) == {"sent": 60}


def test_pause_stops_claims_and_gives_back_the_rest_of_the_chunk(flaky_mail, settings):
    settings.RENOTIFY_SEND_BATCH = 2
    c = sending_campaign(members=8)
    flaky_mail.on_send = lambda message: (
        campaign_pause(campaign=c, by=None, reason="checking")
        if FlakyBackend.sent_count == 3 and Campaign.objects.get(pk=c.pk).state == "sending"
        else None
    )
    campaign_send_chunk(campaign_id=c.pk)
    assert statuses(c) == {"sent": 4, "pending": 4}  # the batch in flight finished
    assert campaign_send_chunk(campaign_id=c.pk).claimed == 0  # paused: nothing claimed
    flaky_mail.on_send = None
    campaign_resume(campaign=c, by=None)
    send_all(c)
    assert statuses(c) == {"sent": 8}
    assert len({m.to[0] for m in mail.outbox}) == len(mail.outbox) == 8


def test_cancel_mid_send_cancels_the_rest(flaky_mail, settings):
    settings.RENOTIFY_SEND_BATCH = 2
    c = sending_campaign(members=6)
    flaky_mail.on_send = lambda message: (
        campaign_cancel(campaign=c, by=None) if FlakyBackend.sent_count == 1 else None
    )
    send_all(c)
    assert statuses(c) == {"sent": 2, "cancelled": 4}


def test_circuit_breaker_pauses_on_a_high_bounce_rate(flaky_mail, settings):
    settings.RENOTIFY_BREAKER_MIN_SENDS = 20
    c = sending_campaign(members=30)
    flaky_mail.rejected = set(Member.objects.order_by("pk").values_list("email", flat=True)[:3])
    send_all(c)
    c.refresh_from_db()
    assert c.state == CampaignState.PAUSED
    assert "circuit breaker" in c.state_reason and "hard-bounce rate 10.0%" in c.state_reason


def test_circuit_breaker_waits_for_enough_sends(flaky_mail, settings):
    settings.RENOTIFY_BREAKER_MIN_SENDS = 500
    c = sending_campaign(members=10)
    flaky_mail.rejected = set(Member.objects.values_list("email", flat=True)[:5])
    send_all(c)
    c.refresh_from_db()
    assert c.state == CampaignState.SENDING


def test_sending_queries_grow_per_batch_not_per_message(settings):
    """Claim and bookkeeping are per chunk; state check, throttle, hand-over and record
    are per batch of RENOTIFY_SEND_BATCH; nothing is per message."""
    from django.test.utils import CaptureQueriesContext

    settings.RENOTIFY_SEND_BATCH = 20
    counts = {}
    for size, country in ((20, "DE"), (60, "FR")):
        for _ in range(size):
            MemberFactory(country=country)
        # A pace no batch waits for: a throttle wait retries its take (more queries).
        c = sending_campaign(countries=[country], throttle_per_minute=100_000_000)
        with CaptureQueriesContext(connection) as queries:
            assert campaign_send_chunk(campaign_id=c.pk).sent == size
        counts[size] = len(queries)
    per_batch = (counts[60] - counts[20]) / 2
    assert per_batch <= 12, counts  # with savepoints, for 20 messages
    assert counts[60] < 60, counts


def test_reconciler_requeues_lost_claims_and_marks_lost_sends_unknown():
    sending_campaign(members=3)
    a, b, _ = Delivery.objects.order_by("pk")
    past = timezone.now() - timedelta(seconds=1)
    Delivery.objects.filter(pk=a.pk).update(status="claimed", lease_expires_at=past, attempts=1)
    Delivery.objects.filter(pk=b.pk).update(status="sending", lease_expires_at=past, attempts=1)
    report = deliveries_reconcile()
    assert (report.requeued, report.unknown) == (1, 1)
    assert Delivery.objects.get(pk=a.pk).status == "pending"
    assert Delivery.objects.get(pk=b.pk).status == "unknown"


def test_the_reconciler_reports_claims_lost_too_often_as_given_up(settings, caplog):
    from campaigns.tasks import deliveries_reconcile_task

    settings.RENOTIFY_MAX_ATTEMPTS = 2
    sending_campaign(members=1)
    past = timezone.now() - timedelta(seconds=1)
    Delivery.objects.update(status="claimed", lease_expires_at=past, attempts=2)
    result = deliveries_reconcile_task()
    assert result["gave_up"] == 1
    assert Delivery.objects.get().status == "failed"
    assert "0 claims re-queued, 1 given up (failed)" in caplog.text


def test_a_campaign_completes_once_every_delivery_has_ended():
    c = sending_campaign(members=2)
    deliveries_reconcile()
    c.refresh_from_db()
    assert c.state == CampaignState.SENDING  # still two to send
    send_all(c)
    deliveries_reconcile()
    c.refresh_from_db()
    assert c.state == CampaignState.COMPLETED


def test_unknown_deliveries_hold_the_campaign_open_for_a_decision(flaky_mail):
    c = sending_campaign(members=2)
    flaky_mail.timeout = {Member.objects.first().email}
    send_all(c)
    deliveries_reconcile()
    c.refresh_from_db()
    assert c.state == CampaignState.SENDING


def test_window_end_expires_what_was_not_sent():
    c = sending_campaign(members=3, window_ends_at=timezone.now() + timedelta(hours=1))
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        deliveries_reconcile()
        deliveries_reconcile()
    c.refresh_from_db()
    assert statuses(c) == {"expired": 3}
    assert c.state == CampaignState.COMPLETED


def test_notice_version_is_required_to_have_text():
    version = notice_version(locales=[])
    c = campaign(version=version, state=CampaignState.SENDING)
    MemberFactory()
    campaign_fan_out(campaign=c)
    with pytest.raises(ValueError, match="no text"):
        campaign_send_chunk(campaign_id=c.pk)
