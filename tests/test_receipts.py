"""Objection receipts: read from the ledger, sent once, retried with backoff."""

from datetime import timedelta

import pytest
import time_machine
from celery import current_app
from django.core import mail
from django.test import Client
from django.utils import timezone
from kombu.exceptions import OperationalError

from accounts.models import Action, ConsentEvent
from campaigns import enqueue, tasks
from campaigns.enqueue import PerProcessKick
from campaigns.models import ObjectionReceipt
from campaigns.services import receipts
from tests.factories import MemberFactory, sent_delivery
from tests.mail_backends import FlakyBackend

pytestmark = pytest.mark.django_db
FLAKY = "tests.mail_backends.FlakyBackend"


@pytest.fixture
def kicks(monkeypatch):
    """The sender tasks the requests ask for (countdowns), none run."""
    asked: list[float | None] = []
    monkeypatch.setattr(enqueue, "receipts_kicks", PerProcessKick(enqueue.KICK_SECONDS))

    def publish(name, *, countdown=None):
        if name == enqueue.RECEIPTS_SEND:
            asked.append(countdown)
        return True

    monkeypatch.setattr(enqueue, "quick_publish", publish)
    return asked


@pytest.fixture
def flaky(settings):
    settings.EMAIL_BACKEND = FLAKY
    FlakyBackend.reset()
    yield FlakyBackend
    FlakyBackend.reset()


@pytest.fixture
def delivery(purpose):
    """Ines, in the US, was sent the notice in English a day ago."""
    return sent_delivery(email="ines@example.com", locale="en", sent_ago=timedelta(days=1))


def object_(delivery, django_capture_on_commit_callbacks):
    from campaigns.tokens import notice_token

    client = Client(enforce_csrf_checks=True)
    url = f"/n/{notice_token(delivery.pk)}/"
    csrf = client.get(url).cookies["csrftoken"].value
    with django_capture_on_commit_callbacks(execute=True):
        return client.post(
            url, {"csrfmiddlewaretoken": csrf, "action": "object", "purpose": "ai-training"}
        )


def test_an_objection_kicks_a_sender_which_owes_and_sends_its_receipt_once(
    delivery, kicks, django_capture_on_commit_callbacks
):
    assert object_(delivery, django_capture_on_commit_callbacks).status_code == 302
    event = ConsentEvent.objects.get(action=Action.OBJECT)
    assert kicks == [enqueue.KICK_SECONDS]  # runs once this second's commits are in
    assert mail.outbox == [] and not ObjectionReceipt.objects.exists()  # the request sends nothing

    assert receipts.receipts_send().sent == 1
    receipt = ObjectionReceipt.objects.get()
    assert (receipt.consent_event_id, receipt.attempts) == (event.pk, 1)
    [message] = mail.outbox
    assert message.to == ["ines@example.com"] and str(event.seq) in message.subject
    assert message.metadata == {"consent_event": str(event.seq)}
    assert receipts.receipts_send().sent == 0  # a second sweep finds nothing owed
    receipt.refresh_from_db()
    assert receipt.status == "sent" and receipt.sent_at is not None and len(mail.outbox) == 1


def test_kicks_are_one_per_second_per_process(purpose, kicks, django_capture_on_commit_callbacks):
    from pages.services import preference_choose

    members = MemberFactory.create_batch(3, country="US")
    with django_capture_on_commit_callbacks(execute=True):
        for member in members:
            preference_choose(
                member=member,
                purpose=purpose,
                choice="object",
                delivery=None,
                ip=None,
                user_agent="",
            )
    assert kicks == [enqueue.KICK_SECONDS]
    assert receipts.receipts_collect() == 3 and ObjectionReceipt.objects.count() == 3


def test_a_broker_down_at_commit_loses_no_receipt(
    delivery, monkeypatch, django_capture_on_commit_callbacks
):
    def broker_down(name, **options):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(enqueue, "receipts_kicks", PerProcessKick(enqueue.KICK_SECONDS))
    monkeypatch.setattr(current_app, "send_task", broker_down)
    assert object_(delivery, django_capture_on_commit_callbacks).status_code == 302
    assert ConsentEvent.objects.filter(action=Action.OBJECT).exists()  # the debt is kept
    tasks.objection_receipts_send_task()  # what beat's sweep runs
    assert len(mail.outbox) == 1 and ObjectionReceipt.objects.get().status == "sent"


def test_a_busy_server_is_retried_with_backoff_then_sent(
    delivery, kicks, flaky, django_capture_on_commit_callbacks
):
    object_(delivery, django_capture_on_commit_callbacks)
    flaky.busy = {"ines@example.com"}
    report = receipts.receipts_send()
    receipt = ObjectionReceipt.objects.get()
    assert (report.sent, report.retried) == (0, 1)
    assert (receipt.status, receipt.attempts) == ("owed", 1)
    assert receipt.last_error == "SMTPRecipientsRefused 451"  # codes, never the address
    assert receipt.due_at > timezone.now() + timedelta(seconds=25)
    assert receipts.receipts_send().sent == 0  # not due yet

    flaky.busy = set()
    with time_machine.travel(receipt.due_at + timedelta(seconds=1)):
        assert receipts.receipts_send().sent == 1
    receipt.refresh_from_db()
    assert (receipt.status, receipt.attempts, receipt.last_error) == ("sent", 2, "")
    assert len(mail.outbox) == 1


def test_a_refused_address_is_not_retried(
    delivery, kicks, flaky, django_capture_on_commit_callbacks
):
    object_(delivery, django_capture_on_commit_callbacks)
    flaky.rejected = {"ines@example.com"}
    assert receipts.receipts_send().failed == 1
    receipt = ObjectionReceipt.objects.get()
    assert (receipt.status, receipt.last_error) == ("failed", "SMTPRecipientsRefused 550")
    with time_machine.travel(timezone.now() + timedelta(days=1)):
        assert receipts.receipts_send().sent == 0
    assert mail.outbox == []


def test_retries_stop_after_the_last_attempt(
    delivery, kicks, flaky, django_capture_on_commit_callbacks
):
    object_(delivery, django_capture_on_commit_callbacks)
    flaky.busy = {"ines@example.com"}
    later = timezone.now()
    for _ in range(receipts.MAX_ATTEMPTS):
        later += timedelta(hours=1)  # past every backoff
        with time_machine.travel(later):
            receipts.receipts_send()
    receipt = ObjectionReceipt.objects.get()
    assert (receipt.status, receipt.attempts) == ("failed", receipts.MAX_ATTEMPTS)


def test_a_claimed_receipt_is_left_to_its_sender_until_the_lease_ends(
    delivery, kicks, django_capture_on_commit_callbacks
):
    object_(delivery, django_capture_on_commit_callbacks)
    receipts.receipts_collect()
    [claimed] = receipts._claim(10, now=timezone.now())  # a sender that then died
    assert receipts.receipts_send().sent == 0 and mail.outbox == []
    with time_machine.travel(timezone.now() + receipts.LEASE + timedelta(seconds=1)):
        assert receipts.receipts_send().sent == 1
    assert ObjectionReceipt.objects.get(pk=claimed.pk).attempts == 2


def test_the_sweep_reads_on_from_where_it_stopped_and_owes_only_page_objections(
    purpose, kicks, django_capture_on_commit_callbacks
):
    from accounts.models import Source
    from accounts.services.consent import consent_record
    from campaigns.models import ReceiptSweep
    from pages.services import preference_choose

    def page_objection(member):
        preference_choose(
            member=member, purpose=purpose, choice="object", delivery=None, ip=None, user_agent=""
        )

    ada, bob, cy = MemberFactory.create_batch(3, country="US")
    page_objection(ada)
    consent_record(member=bob, action=Action.OBJECT, source=Source.API, purpose=purpose)
    consent_record(member=cy, action=Action.UNSUBSCRIBE, source=Source.ONE_CLICK)
    assert receipts.receipts_collect(batch_size=2) == 1  # two batches; API and unsubscribe owe none
    assert ReceiptSweep.objects.get().last_seq == ConsentEvent.objects.order_by("-seq")[0].seq
    page_objection(cy)
    assert receipts.receipts_collect() == 1 and receipts.receipts_collect() == 0
    owed = ObjectionReceipt.objects.values_list("consent_event_id", flat=True)
    objections = ConsentEvent.objects.filter(action=Action.OBJECT, source=Source.PREFERENCE_PAGE)
    assert sorted(owed) == sorted(objections.values_list("pk", flat=True))


def test_staff_see_a_failed_receipt_and_send_it_again(
    delivery, kicks, flaky, admin_client, django_capture_on_commit_callbacks
):
    from django.urls import reverse

    object_(delivery, django_capture_on_commit_callbacks)
    flaky.rejected = {"ines@example.com"}
    receipts.receipts_send()
    receipt = ObjectionReceipt.objects.get()
    page = admin_client.get(reverse("admin:campaigns_objectionreceipt_changelist")).content
    assert b"SMTPRecipientsRefused 550" in page and b"ines@example.com" not in page

    flaky.rejected = set()  # the cause is fixed
    admin_client.post(
        reverse("admin:campaigns_objectionreceipt_changelist"),
        {"action": "send_again", "_selected_action": [receipt.pk]},
    )
    receipt.refresh_from_db()
    assert (receipt.status, receipt.attempts) == ("owed", 0)
    assert receipts.receipts_send().sent == 1 and len(mail.outbox) == 1


def object_and_read_the_page(delivery, django_capture_on_commit_callbacks):
    from campaigns.tokens import notice_token

    client = Client(enforce_csrf_checks=True)
    url = f"/n/{notice_token(delivery.pk)}/"
    csrf = client.get(url).cookies["csrftoken"].value
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url, {"csrfmiddlewaretoken": csrf, "action": "object", "purpose": "ai-training"}
        )
    assert response.status_code == 302
    return client.get(response["Location"]).content.decode()


def test_a_reachable_member_is_promised_a_receipt_with_the_reference_and_gets_it(
    delivery, receipts_inline, django_capture_on_commit_callbacks
):
    page = object_and_read_the_page(delivery, django_capture_on_commit_callbacks)

    event = ConsentEvent.objects.get(action=Action.OBJECT)
    assert f"Your reference: {event.seq}." in page
    assert "We will send you a confirmation by email." in page
    [message] = mail.outbox
    assert message.to == ["ines@example.com"] and str(event.seq) in message.subject


@pytest.mark.parametrize("unreachable", ["complained", "bounced", "unsubscribed"])
def test_an_unreachable_member_gets_no_receipt_and_the_page_says_so(
    delivery, receipts_inline, django_capture_on_commit_callbacks, unreachable
):
    """Ines's address reported our notice as spam (or bounced), or she unsubscribed from
    our emails: her objection is recorded, no receipt goes out, the page says so."""
    from accounts.models import Member, Source
    from accounts.services.consent import consent_record

    if unreachable == "unsubscribed":
        consent_record(member=delivery.member, action=Action.UNSUBSCRIBE, source=Source.ONE_CLICK)
    else:
        Member.objects.filter(pk=delivery.member_id).update(email_status=unreachable)

    page = object_and_read_the_page(delivery, django_capture_on_commit_callbacks)

    event = ConsentEvent.objects.get(action=Action.OBJECT)
    assert f"Your reference: {event.seq}." in page
    assert "We will not email you a confirmation" in page
    assert "We will send you a confirmation" not in page
    assert mail.outbox == []
    receipt = ObjectionReceipt.objects.get()
    assert (receipt.consent_event_id, receipt.status) == (event.pk, "withheld")
    assert receipts.receipts_send().sent == 0 and mail.outbox == []  # never sent later


def test_the_german_page_says_no_receipt_will_come_in_german(
    purpose, receipts_inline, django_capture_on_commit_callbacks
):
    from accounts.models import Member

    delivery = sent_delivery(email="jo@example.com", locale="de", sent_ago=timedelta(days=1))
    Member.objects.filter(pk=delivery.member_id).update(email_status="complained")

    page = object_and_read_the_page(delivery, django_capture_on_commit_callbacks)

    assert "Ihre Referenz:" in page and "keine Bestätigung per E-Mail" in page
