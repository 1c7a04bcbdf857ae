"""Erasing a member: the address and what the mail records kept of it go, the member
is never emailed again, and the facts stay (external id, choices, ledger, suppression)."""

import io
import json
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from accounts.models import Action, ConsentEvent, Member, Preference, Source
from accounts.selectors import suppressions
from accounts.services.consent import consent_record
from accounts.services.member_import import members_import
from api.models import Scope
from api.services.clients import api_client_create
from campaigns.models import (
    CampaignState,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    ObjectionReceipt,
    ReceiptStatus,
)
from campaigns.services import receipts
from campaigns.services.erasure import member_erase
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.reminders import reminders_create
from campaigns.services.sending import campaign_send_chunk
from tests.factories import MemberFactory, campaign, staff_user

pytestmark = pytest.mark.django_db
PROBLEM = "application/problem+json"


@pytest.fixture
def key(db):
    _, key = api_client_create(name="crm", scopes=[Scope.MEMBERS_WRITE], by=None)
    return key


def call(method: str, path: str, key: str, body=None):
    return getattr(Client(), method)(
        f"/api/v1{path}",
        data=json.dumps(body) if body is not None else None,
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )


@pytest.fixture
def olga(purpose):
    """Olga, in the US, objected to AI training and was sent the notice; her mail
    provider reported what happened to it, with her address in every event."""
    olga = MemberFactory(
        external_id="olga", email="olga@example.com", country="US", person_key="person-olga"
    )
    consent_record(member=olga, action=Action.OBJECT, source=Source.API, purpose=purpose)
    c = campaign(state=CampaignState.SENDING)
    campaign_fan_out(campaign=c)
    delivery = Delivery.objects.get(member=olga)
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.FAILED, error="SMTPRecipientsRefused: {'olga@example.com': (550,)}"
    )
    matched = {"recipient": "olga@example.com", "mta_response": "250 olga@example.com ok"}
    DeliveryEvent.objects.create(
        esp="test", event_key="a", event_type="delivered", delivery=delivery, **matched
    )
    DeliveryEvent.objects.create(
        esp="test",
        event_key="b",
        event_type="clicked",
        delivery=delivery,
        click_url="https://renotify.example/n/token/",
        user_agent="Mozilla/5.0",
        raw={"email": "olga@example.com"},
    )
    DeliveryEvent.objects.create(
        esp="test",
        event_key="c",
        event_type="bounced",
        recipient="Olga@Example.com",
        is_orphan=True,
    )
    DeliveryEvent.objects.create(
        esp="test",
        event_key="d",
        event_type="bounced",
        recipient="other@example.com",
        is_orphan=True,
    )
    return olga


def test_erasing_removes_the_address_and_what_mail_records_kept_of_it(olga, key):
    response = call("delete", "/members/olga", key)
    assert response.status_code == 204

    olga.refresh_from_db()
    assert (olga.email, olga.person_key, olga.external_id, olga.country) == ("", "", "olga", "US")
    assert olga.erased_at is not None and olga.unsubscribed_at is not None
    assert Delivery.objects.get(member=olga).error == "SMTPRecipientsRefused: {'[erased]': (550,)}"
    assert (
        list(
            DeliveryEvent.objects.filter(event_key__in="abc")
            .order_by("event_key")
            .values_list("recipient", "mta_response", "click_url", "user_agent", "raw")
        )
        == [("", "", "", "", {})] * 3
    )
    # Someone else's event is left alone.
    assert DeliveryEvent.objects.get(event_key="d").recipient == "other@example.com"
    everything = json.dumps(
        [
            list(Member.objects.values()),
            list(DeliveryEvent.objects.exclude(event_key="d").values()),
            list(Delivery.objects.values()),
        ],
        default=str,
    )
    assert "olga@example.com".lower() not in everything.lower()


def test_erasing_keeps_the_facts_and_the_ledger_still_verifies(olga, purpose, key):
    assert call("delete", "/members/olga", key).status_code == 204

    events = list(
        ConsentEvent.objects.filter(member=olga).order_by("seq").values_list("action", "source")
    )
    assert events == [
        (Action.OBJECT, Source.API),
        (Action.UNSUBSCRIBE, Source.API),
        (Action.ERASE, Source.API),
    ]
    assert Preference.objects.get(member=olga).choice == "out"
    # The objection stays an objection, in the suppression list, by external id.
    assert [row[:3] for row in suppressions(purpose=purpose)] == [("olga", "US", "objected")]
    out = io.StringIO()
    call_command("verify_ledger", stdout=out)
    assert "intact" in out.getvalue().lower()


def test_erasing_again_is_a_204_that_records_nothing(olga, key):
    assert call("delete", "/members/olga", key).status_code == 204
    events, erased_at = ConsentEvent.objects.count(), Member.objects.get(pk=olga.pk).erased_at
    assert call("delete", "/members/olga", key).status_code == 204
    assert ConsentEvent.objects.count() == events
    assert Member.objects.get(pk=olga.pk).erased_at == erased_at


def test_an_interrupted_erasure_is_finished_by_the_next(olga, monkeypatch):
    from campaigns.services import erasure

    def crash(member, **_):
        raise ConnectionError("the database went away")

    with monkeypatch.context() as patch:
        patch.setattr(erasure, "_personal_data_blank", crash)
        with pytest.raises(ConnectionError):
            member_erase(member=olga, source=Source.API)
    assert Member.objects.get(pk=olga.pk).unsubscribed_at is not None  # already kept from mail
    assert member_erase(member=Member.objects.get(pk=olga.pk), source=Source.API)
    assert Member.objects.get(pk=olga.pk).email == ""
    assert ConsentEvent.objects.filter(member=olga, action=Action.ERASE).count() == 1


def test_an_unknown_member_is_a_404_problem(key):
    response = call("delete", "/members/nobody", key)
    assert response.status_code == 404 and response["Content-Type"] == PROBLEM


def test_staff_need_the_delete_permission_to_erase(olga):
    from accounts.permissions import PermissionRefused

    with pytest.raises(PermissionRefused):
        member_erase(member=olga, source=Source.ADMIN, by=staff_user("vic", "accounts.view_member"))
    assert Member.objects.get(pk=olga.pk).erased_at is None
    assert member_erase(
        member=olga, source=Source.ADMIN, by=staff_user("dora", "accounts.delete_member")
    )


# --- Never written again --------------------------------------------------------------


def test_an_erased_member_cannot_be_written_again_by_the_api_or_an_import(olga, key):
    assert call("delete", "/members/olga", key).status_code == 204
    before = Member.objects.filter(pk=olga.pk).values().get()

    again = call("put", "/members/olga", key, {"email": "olga@example.com", "country": "US"})
    assert again.status_code == 409 and again["Content-Type"] == PROBLEM
    batch = call(
        "post",
        "/members/bulk",
        key,
        {"members": [{"external_id": "olga", "email": "o@x.org", "country": "US"}]},
    )
    assert batch.status_code == 200
    [result] = batch.json()["results"]
    assert (result["status"], result["index"]) == ("erased", 0)
    report = members_import(
        stream=io.StringIO("external_id,email,country\nolga,olga@example.com,US\n"), fmt="csv"
    )
    assert (report.rejected, report.created, report.updated) == (1, 0, 0)
    assert report.first_errors[0].reason.startswith("member erased")
    assert Member.objects.filter(pk=olga.pk).values().get() == before


# --- Never emailed again --------------------------------------------------------------


@pytest.fixture
def mailer(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def test_a_pending_delivery_of_an_erased_member_is_skipped_not_sent(mailer, purpose):
    members = [MemberFactory(country="US") for _ in range(3)]
    c = campaign(state=CampaignState.SENDING, throttle_per_minute=60_000)
    campaign_fan_out(campaign=c)
    member_erase(member=members[0], source=Source.API)

    while campaign_send_chunk(campaign_id=c.pk).claimed:
        pass
    assert Delivery.objects.get(member=members[0]).status == DeliveryStatus.SKIPPED
    assert sorted(m.to[0] for m in mail.outbox) == sorted(m.email for m in members[1:])


def test_a_delivery_claimed_before_the_erasure_is_not_sent(mailer, purpose, monkeypatch):
    """The sender read the address when it claimed the chunk; the erasure comes while it
    waits for the throttle, before it hands the batch to the transport."""
    from campaigns.services import sending

    erased, kept = MemberFactory(country="US"), MemberFactory(country="US")
    c = campaign(state=CampaignState.SENDING, throttle_per_minute=60_000)
    campaign_fan_out(campaign=c)
    take = sending.throttle_take

    def erase_while_waiting(**kwargs):
        if Member.objects.get(pk=erased.pk).erased_at is None:
            member_erase(member=Member.objects.get(pk=erased.pk), source=Source.API)
        return take(**kwargs)

    monkeypatch.setattr(sending, "throttle_take", erase_while_waiting)
    campaign_send_chunk(campaign_id=c.pk)
    assert [m.to for m in mail.outbox] == [[kept.email]]
    assert Delivery.objects.get(member=erased).status == DeliveryStatus.SKIPPED


def test_an_erased_member_is_left_out_of_fan_out_and_reminders(purpose):
    erased, kept = MemberFactory(country="US"), MemberFactory(country="US")
    c = campaign(state=CampaignState.SENDING, remind_after_days=3, max_reminders=1)
    campaign_fan_out(campaign=c)
    Delivery.objects.update(status=DeliveryStatus.SENT, sent_at=timezone.now())
    member_erase(member=erased, source=Source.API)
    late = campaign(state=CampaignState.SENDING)
    campaign_fan_out(campaign=late)

    assert list(Delivery.objects.filter(campaign=late).values_list("member", flat=True)) == [
        kept.pk
    ]
    assert late.__class__.objects.get(pk=late.pk).audience_snapshot["unreachable"] == {
        "unsubscribed": 1
    }
    with time_machine.travel(timezone.now() + timedelta(days=3, minutes=1)):
        reminders_create(now=timezone.now())
    assert list(Delivery.objects.filter(campaign=c, wave=1).values_list("member", flat=True)) == [
        kept.pk
    ]


def test_a_receipt_owed_to_an_erased_member_is_withheld(mailer, purpose, monkeypatch):
    from campaigns import enqueue

    monkeypatch.setattr(enqueue, "quick_publish", lambda name, **kw: True)
    member = MemberFactory(country="US")
    consent_record(
        member=member, action=Action.OBJECT, source=Source.PREFERENCE_PAGE, purpose=purpose
    )
    member_erase(member=member, source=Source.API)

    receipts.receipts_send()
    assert ObjectionReceipt.objects.get().status == ReceiptStatus.WITHHELD
    assert mail.outbox == []


def test_the_admin_shows_an_erased_member_as_such(olga, admin_client):
    member_erase(member=olga, source=Source.API)
    listing = admin_client.get("/admin/accounts/member/?erased_at__isempty=0").content.decode()
    assert "olga" in listing and "Erased" in listing
    page = admin_client.get(f"/admin/accounts/member/{olga.pk}/change/").content.decode()
    assert "Erased" in page
    # Nothing of an erased member can be edited: the form has no field to fill.
    assert 'name="email"' not in page and 'name="external_id"' not in page
