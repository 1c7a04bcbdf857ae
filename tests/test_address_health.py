"""An address's health and the member's unsubscribe are two facts: neither undoes the other.

Una unsubscribed from the notice emails with one click. Whatever her address does later
(a hard bounce, a spam complaint), whatever staff clear ("Mail again") and whatever
address an import gives her, she is never mailed again: only her own ledger events
change her unsubscribe. Her ledger and her stored state always agree.
"""

import importlib
import io
from datetime import timedelta

import pytest
from anymail.signals import AnymailTrackingEvent
from django.apps import apps
from django.urls import reverse
from django.utils import timezone

from accounts.models import Action, ConsentEvent, EmailStatus, EmailStatusChange, Member, Source
from accounts.services.consent import consent_record
from accounts.services.member_import import members_import
from accounts.services.members import member_email_status_clear
from campaigns.models import CampaignState, Delivery
from campaigns.selectors import audience_preview, members_not_reached
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.reminders import reminder_candidates
from campaigns.services.tracking import events_process
from campaigns.webhooks import tracking_event_received
from pages.services import delivery_unsubscribe
from tests.factories import MemberFactory, campaign, sent_delivery

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(django_user_model):
    """Sam, on the privacy team, clears bounces for members who fixed their mailbox."""
    return django_user_model.objects.create_superuser("sam", "sam@example.com", "pw-sam-1")


@pytest.fixture
def una(purpose):
    """Una was sent the notice a day ago and unsubscribed with one click."""
    delivery = sent_delivery(email="una@example.com", locale="en", sent_ago=timedelta(days=1))
    delivery_unsubscribe(delivery=delivery, source=Source.ONE_CLICK, ip=None, user_agent="")
    return delivery


def esp_event(delivery, event_type, raw):
    tracking_event_received(
        sender=None,
        event=AnymailTrackingEvent(
            event_type=event_type,
            timestamp=timezone.now(),
            event_id=f"{event_type}-{delivery.pk}",
            message_id=f"esp-{delivery.pk}",
            recipient=delivery.member.email,
            metadata={"delivery_id": str(delivery.pk)},
            esp_event=raw,
        ),
        esp_name="Postmark",
    )
    events_process()


def import_row(member, email):
    text = f"external_id,email,locale,country\n{member.external_id},{email},en,US\n"
    return members_import(stream=io.StringIO(text))


def mailed_by_a_later_campaign(member) -> bool:
    later = campaign(state=CampaignState.SENDING, name="Later notice")
    campaign_fan_out(campaign=later)
    return Delivery.objects.filter(campaign=later, member=member).exists()


def assert_ledger_and_state_agree(member):
    member.refresh_from_db()
    [unsubscribe] = ConsentEvent.objects.filter(member=member, action=Action.UNSUBSCRIBE)
    assert member.unsubscribed_at == unsubscribe.created_at


HARD_BOUNCE = ("bounced", {"Type": "HardBounce"}, EmailStatus.BOUNCED)
COMPLAINT = ("complained", {"Type": "SpamComplaint"}, EmailStatus.COMPLAINED)


@pytest.mark.parametrize(("event_type", "raw", "health"), [HARD_BOUNCE, COMPLAINT])
def test_a_bounce_or_complaint_after_an_unsubscribe_marks_the_address_only(
    una, event_type, raw, health
):
    esp_event(una, event_type, raw)

    member = Member.objects.get(pk=una.member_id)
    assert member.email_status == health
    assert_ledger_and_state_agree(member)  # a complaint records no second unsubscribe
    assert not mailed_by_a_later_campaign(member)


@pytest.mark.parametrize(("event_type", "raw", "health"), [HARD_BOUNCE, COMPLAINT])
def test_mail_again_after_a_bounce_or_complaint_leaves_an_unsubscribed_member_out(
    una, staff, event_type, raw, health
):
    esp_event(una, event_type, raw)

    member = Member.objects.get(pk=una.member_id)
    assert member_email_status_clear(member=member, by=staff, reason="mailbox fixed")
    member.refresh_from_db()
    assert member.email_status == EmailStatus.OK  # the address is healthy again
    assert EmailStatusChange.objects.get(member=member).from_status == health
    assert_ledger_and_state_agree(member)
    assert not mailed_by_a_later_campaign(member)
    una.campaign.remind_after_days = 1
    assert not reminder_candidates(campaign=una.campaign, wave=0, now=timezone.now()).exists()


def test_mail_again_makes_a_member_who_never_unsubscribed_reachable_again(purpose, staff):
    delivery = sent_delivery(email="vic@example.com", locale="en", sent_ago=timedelta(days=1))
    esp_event(delivery, *HARD_BOUNCE[:2])
    member = Member.objects.get(pk=delivery.member_id)
    assert not mailed_by_a_later_campaign(member)

    member_email_status_clear(member=member, by=staff, reason="mailbox fixed")

    assert mailed_by_a_later_campaign(member)


def test_an_import_with_a_new_address_clears_the_bounce_but_not_the_unsubscribe(una):
    esp_event(una, *HARD_BOUNCE[:2])
    member = Member.objects.get(pk=una.member_id)

    report = import_row(member, "una@new.example")

    assert report.updated == 1
    member.refresh_from_db()
    assert (member.email, member.email_status) == ("una@new.example", EmailStatus.OK)
    assert_ledger_and_state_agree(member)
    assert not mailed_by_a_later_campaign(member)


def test_an_unsubscribe_after_a_bounce_is_recorded_once_and_stands(purpose):
    """The other order: the address bounced first, then the member unsubscribes (a link
    in an older message). The choice is recorded although the address is unhealthy."""
    delivery = sent_delivery(email="wes@example.com", locale="en", sent_ago=timedelta(days=1))
    esp_event(delivery, *HARD_BOUNCE[:2])

    for _ in range(2):
        delivery_unsubscribe(delivery=delivery, source=Source.ONE_CLICK, ip=None, user_agent="")

    member = Member.objects.get(pk=delivery.member_id)
    assert member.email_status == EmailStatus.BOUNCED
    assert_ledger_and_state_agree(member)


def test_changing_the_address_in_the_admin_clears_its_health_audited_not_the_unsubscribe(
    una, staff, client
):
    esp_event(una, *COMPLAINT[:2])
    member = Member.objects.get(pk=una.member_id)
    client.force_login(staff)
    url = reverse("admin:accounts_member_change", args=[member.pk])

    response = client.post(
        url,
        {
            "external_id": member.external_id,
            "email": "Una@NEW.example",
            "locale": "de",
            "country": "DE",
        },
    )

    assert response.status_code == 302
    member.refresh_from_db()
    assert (member.email, member.email_status, member.locale, member.jurisdiction) == (
        "Una@new.example",
        EmailStatus.OK,
        "de",
        "EU",
    )
    change = EmailStatusChange.objects.get(member=member)
    assert (change.from_status, change.to_status, change.changed_by) == (
        EmailStatus.COMPLAINED,
        EmailStatus.OK,
        staff,
    )
    assert_ledger_and_state_agree(member)
    assert not mailed_by_a_later_campaign(member)


@pytest.mark.parametrize("health", list(EmailStatus))
@pytest.mark.parametrize("unsubscribed", [False, True])
@pytest.mark.parametrize("new_email", ["ann@old.example", "ann@new.example"])
def test_the_importer_and_the_address_service_apply_one_rule(
    staff, health, unsubscribed, new_email
):
    from accounts.services.members import member_address_change

    def member(external_id):
        m = MemberFactory(external_id=external_id, email="ann@old.example", country="GB")
        if unsubscribed:
            consent_record(member=m, action=Action.UNSUBSCRIBE, source=Source.API)
        Member.objects.filter(pk=m.pk).update(email_status=health)
        return m

    by_import, by_service = member("ann-1"), member("ann-2")
    import_row(by_import, new_email)
    member_address_change(member=by_service, email=new_email, by=staff, reason="test")

    def facts(m):
        m.refresh_from_db()
        return m.email, m.email_status, m.unsubscribed_at is not None

    assert facts(by_import) == facts(by_service)
    assert facts(by_service)[1:] == (
        EmailStatus.OK if new_email != "ann@old.example" else health,
        unsubscribed,
    )


def test_the_preview_and_the_export_count_each_unreachable_member_once_with_one_reason(
    una, purpose
):
    esp_event(una, *HARD_BOUNCE[:2])  # unsubscribed and bounced: counted as unsubscribed
    bounced = MemberFactory(country="US", email_status=EmailStatus.BOUNCED)
    complained = MemberFactory(country="US", email_status=EmailStatus.COMPLAINED)
    later = campaign(state=CampaignState.SCHEDULED, name="Later notice")

    preview = audience_preview(campaign=later)

    assert preview.unreachable == {"unsubscribed": 1, "bounced": 1, "complained": 1}
    assert preview.targeted == 3 and preview.reachable == 0
    reasons = {row[0]: row[3] for row in members_not_reached(campaign=later)}
    assert reasons == {
        una.member.external_id: "not sent: email unsubscribed",
        bounced.external_id: "not sent: email bounced",
        complained.external_id: "not sent: email complained",
    }


@pytest.mark.parametrize("health", list(EmailStatus))
@pytest.mark.parametrize("unsubscribed", [False, True])
def test_reachable_for_one_member_and_in_sql_agree(health, unsubscribed):
    from accounts.models import REACHABLE, UNREACHABLE_REASON

    m = MemberFactory(email_status=health, unsubscribed_at=timezone.now() if unsubscribed else None)
    row = Member.objects.annotate(reason=UNREACHABLE_REASON).get(pk=m.pk)
    assert row.reason == m.unreachable_reason
    assert Member.objects.filter(REACHABLE, pk=m.pk).exists() == m.is_reachable
    assert m.is_reachable == (health == EmailStatus.OK and not unsubscribed)


def test_the_migration_moves_every_recorded_unsubscribe_to_the_member(purpose):
    """Before the split: "unsubscribed" rows, and members whose unsubscribe a bounce,
    a complaint or a cleared bounce had overwritten."""
    migration = importlib.import_module("accounts.migrations.0009_member_unsubscribed_at")
    then = timezone.now() - timedelta(days=3)
    people = {
        name: MemberFactory(external_id=name)
        for name in ("status-only", "bounced", "complained", "cleared", "never")
    }
    for name in ("bounced", "complained", "cleared"):
        consent_record(member=people[name], action=Action.UNSUBSCRIBE, source=Source.ONE_CLICK)
    for name, status in [
        ("status-only", "unsubscribed"),
        ("bounced", "bounced"),
        ("complained", "complained"),
    ]:
        Member.objects.filter(pk=people[name].pk).update(
            email_status=status, email_status_changed_at=then, unsubscribed_at=None
        )
    Member.objects.filter(pk=people["cleared"].pk).update(unsubscribed_at=None)

    migration.unsubscribes_split(apps, None)

    after = {m.external_id: m for m in Member.objects.all()}
    event_at = {
        e.member.external_id: e.created_at
        for e in ConsentEvent.objects.filter(action=Action.UNSUBSCRIBE).select_related("member")
    }
    assert {name: (m.email_status, m.unsubscribed_at) for name, m in after.items()} == {
        "status-only": ("ok", then),
        "bounced": ("bounced", event_at["bounced"]),
        "complained": ("complained", event_at["complained"]),
        "cleared": ("ok", event_at["cleared"]),
        "never": ("ok", None),
    }
