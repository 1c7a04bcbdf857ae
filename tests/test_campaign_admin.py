"""The campaign console: buttons call the lifecycle, progress and outbox pages render."""

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, CampaignState, Delivery, DeliveryStatus
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.sending import campaign_send_chunk
from tests.factories import MemberFactory, campaign, notice_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def ed(django_user_model):
    return django_user_model.objects.create_superuser("ed", "ed@example.com", "pw")


@pytest.fixture
def amy(django_user_model):
    return django_user_model.objects.create_superuser("amy", "amy@example.com", "pw")


def do(client, c, action):
    return client.post(reverse("admin:campaigns_campaign_do", args=[c.pk, action]))


def test_campaign_created_in_the_admin_goes_through_approval(client, ed, amy):
    version = notice_version()
    client.force_login(ed)
    response = client.post(
        reverse("admin:campaigns_campaign_add"),
        {
            "name": "UK notice",
            "notice_version": version.pk,
            "jurisdictions": ["UK"],
            "countries": "gb",
            "locales": "",
            "starts_at_0": "2030-01-01",
            "starts_at_1": "09:00:00",
            "throttle_per_minute": "6000",
            "max_reminders": "0",
            "transitions-TOTAL_FORMS": "0",
            "transitions-INITIAL_FORMS": "0",
            "variants-TOTAL_FORMS": "0",
            "variants-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    c = Campaign.objects.get()
    assert (c.jurisdictions, c.countries, c.last_edited_by) == (["UK"], ["GB"], ed)

    do(client, c, "submit")
    response = do(client, c, "approve")  # Ed edited it: he may not approve it
    c.refresh_from_db()
    assert c.state == CampaignState.AWAITING_APPROVAL
    client.force_login(amy)
    do(client, c, "approve")
    do(client, c, "schedule")
    c.refresh_from_db()
    assert (c.state, c.approved_by) == (CampaignState.SCHEDULED, amy)
    page = client.get(reverse("admin:campaigns_campaign_change", args=[c.pk])).content.decode()
    assert "Cancel campaign" in page and "Approve</button>" not in page


def test_state_changes_only_on_post(client, amy):
    c = campaign(state=CampaignState.SENDING)
    client.force_login(amy)
    assert (
        client.get(reverse("admin:campaigns_campaign_do", args=[c.pk, "pause"])).status_code == 405
    )
    c.refresh_from_db()
    assert c.state == CampaignState.SENDING


def test_unknown_country_is_refused_with_a_message(client, ed):
    client.force_login(ed)
    response = client.post(
        reverse("admin:campaigns_campaign_add"),
        {
            "name": "x",
            "notice_version": notice_version().pk,
            "countries": "GB, XX",
            "throttle_per_minute": "6000",
            "max_reminders": "0",
            "transitions-TOTAL_FORMS": "0",
            "transitions-INITIAL_FORMS": "0",
            "variants-TOTAL_FORMS": "0",
            "variants-INITIAL_FORMS": "0",
        },
    )
    assert "Unknown country code(s): XX" in response.content.decode()
    assert not Campaign.objects.exists()


def test_progress_page_counts_deliveries_and_refreshes_while_sending(client, amy, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    for _ in range(4):
        MemberFactory()
    c = campaign(state=CampaignState.SENDING, throttle_per_minute=60_000)
    campaign_fan_out(campaign=c)
    Delivery.objects.filter(pk=Delivery.objects.first().pk).update(status=DeliveryStatus.SENT)
    client.force_login(amy)
    page = client.get(reverse("admin:campaigns_campaign_progress", args=[c.pk])).content.decode()
    assert "<strong>1</strong> of 4 deliveries finished (25%)" in page
    assert 'http-equiv="refresh"' in page
    page = client.get(reverse("admin:campaigns_campaign_change", args=[c.pk])).content.decode()
    assert "reachable by email of 4 selected" in page


def test_resend_action_requeues_unknown_deliveries(client, amy, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    member = MemberFactory()
    c = campaign(state=CampaignState.SENDING, throttle_per_minute=60_000)
    delivery = Delivery.objects.create(campaign=c, member=member, status=DeliveryStatus.UNKNOWN)
    client.force_login(amy)
    client.post(
        reverse("admin:campaigns_delivery_changelist"),
        {"action": "resend", "_selected_action": [delivery.pk]},
    )
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    campaign_send_chunk(campaign_id=c.pk)
    assert [m.to for m in mail.outbox] == [[member.email]]


def test_outbox_lists_and_shows_messages_to_staff_only(client, amy, settings, tmp_path):
    settings.EMAIL_BACKEND = "config.mail.OutboxBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path)
    member = MemberFactory()
    c = campaign(state=CampaignState.SENDING, throttle_per_minute=60_000)
    campaign_fan_out(campaign=c)
    campaign_send_chunk(campaign_id=c.pk)
    assert client.get(reverse("outbox_list")).status_code == 302  # to the login page
    client.force_login(amy)
    listing = client.get(reverse("outbox_list")).content.decode()
    assert member.email in listing and "Subject [en]" in listing
    [name] = [p.name for p in tmp_path.glob("*.eml")]
    page = client.get(reverse("outbox_message", args=[name])).content.decode()
    assert "List-Unsubscribe-Post" in page and "/n/" in page
    assert client.get(reverse("outbox_message", args=["secret_key"])).status_code == 404
    assert client.get("/admin/outbox/..%2Fsecret_key").status_code == 404


def test_campaign_pages_render(client, amy):
    c = campaign(state=CampaignState.DRAFT, starts_at=timezone.now())
    client.force_login(amy)
    for name in ("campaign", "delivery", "notice", "noticeversion"):
        assert client.get(reverse(f"admin:campaigns_{name}_changelist")).status_code == 200
    assert client.get(reverse("admin:campaigns_campaign_change", args=[c.pk])).status_code == 200
