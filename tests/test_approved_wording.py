"""What was approved is exactly what is sent: a version is held from submission on,
the approved texts are recorded by hash, and a start on other texts is refused."""

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from campaigns.models import (
    Campaign,
    CampaignState,
    Delivery,
    FrozenVersionError,
    NoticeText,
    NoticeVersion,
)
from campaigns.services import lifecycle
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.sending import campaign_send_chunk
from tests.factories import MemberFactory, notice_version

pytestmark = pytest.mark.django_db

APPROVED = "We will train models on your posts from 1 March 2027."
UNAPPROVED = "We will train models on your posts and your private messages."


@pytest.fixture
def alice(django_user_model):
    """Alice writes the notice and the campaign."""
    return django_user_model.objects.create_superuser("alice", "alice@example.com", "pw")


@pytest.fixture
def bob(django_user_model):
    """Bob approves."""
    return django_user_model.objects.create_superuser("bob", "bob@example.com", "pw")


@pytest.fixture
def v3(alice):
    version = notice_version(locales=["en"])
    text = version.texts.get()
    text.body_markdown = APPROVED
    text.save()
    return version


@pytest.fixture
def submitted(alice, v3):
    MemberFactory(locale="en")
    c = lifecycle.campaign_create(
        by=alice, name="v3 notice", notice_version=v3, starts_at=timezone.now()
    )
    return lifecycle.campaign_submit(campaign=c, by=alice)


def edit_text(version: NoticeVersion, body: str) -> None:
    text = version.texts.get(locale="en")
    text.body_markdown = body
    text.save()


def body_in_db(version: NoticeVersion) -> str:
    return NoticeText.objects.get(version=version, locale="en").body_markdown


def test_alice_cannot_change_the_wording_bob_approved(submitted, v3, alice, bob):
    with pytest.raises(FrozenVersionError, match="awaiting approval"):
        edit_text(v3, UNAPPROVED)
    lifecycle.campaign_approve(campaign=submitted, by=bob)
    assert submitted.approved_text_hashes == {"en": v3.texts.get().sha256}
    lifecycle.campaign_schedule(campaign=submitted, by=alice)
    with pytest.raises(FrozenVersionError, match="scheduled"):
        edit_text(v3, UNAPPROVED)
    with pytest.raises(FrozenVersionError):
        NoticeText.objects.create(version=v3, locale="de", subject="x", body_markdown="x")
    v3.objection_deadline = v3.objection_deadline.replace(day=1)  # part of every hash
    with pytest.raises(FrozenVersionError):
        v3.save()
    assert body_in_db(v3) == APPROVED
    lifecycle.campaign_start(campaign=submitted)
    campaign_fan_out(campaign=Campaign.objects.get(pk=submitted.pk))
    campaign_send_chunk(campaign_id=submitted.pk)
    [message] = mail.outbox
    assert APPROVED in message.body and "private messages" not in message.body


def test_back_to_draft_releases_the_version_unless_another_campaign_holds_it(
    submitted, v3, alice, bob
):
    other = lifecycle.campaign_create(by=alice, name="v3 again", notice_version=v3)
    lifecycle.campaign_submit(campaign=other, by=alice)
    lifecycle.campaign_reject(campaign=submitted, by=bob, note="wording unclear")
    with pytest.raises(FrozenVersionError, match="v3 again"):
        edit_text(v3, UNAPPROVED)
    lifecycle.campaign_cancel(campaign=other, by=alice)
    edit_text(v3, UNAPPROVED)
    assert body_in_db(v3) == UNAPPROVED


def test_start_refuses_texts_that_differ_from_the_approved_ones(submitted, v3, alice, bob):
    """A change that went around the model (a raw UPDATE, a restored backup) is caught
    when sending would start: back to draft, with the reason, and nothing sent."""
    lifecycle.campaign_approve(campaign=submitted, by=bob)
    lifecycle.campaign_schedule(campaign=submitted, by=alice)
    NoticeText.objects.filter(version=v3).update(body_markdown=UNAPPROVED)
    started = lifecycle.campaign_start(campaign=submitted)
    assert started.state == CampaignState.DRAFT
    assert "changed after approval" in started.state_reason
    assert "en" in started.state_reason
    v3.refresh_from_db()
    assert not v3.is_frozen
    assert campaign_fan_out(campaign=Campaign.objects.get(pk=submitted.pk)) == 0
    assert not Delivery.objects.exists() and mail.outbox == []


def test_start_due_task_does_not_fan_out_a_campaign_sent_back_to_draft(
    submitted, v3, alice, bob, django_capture_on_commit_callbacks
):
    from campaigns.tasks import campaigns_start_due

    lifecycle.campaign_approve(campaign=submitted, by=bob)
    lifecycle.campaign_schedule(campaign=submitted, by=alice)
    NoticeText.objects.filter(version=v3).update(subject="Another subject")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert campaigns_start_due() == []
    assert callbacks == []
    assert Campaign.objects.get(pk=submitted.pk).state == CampaignState.DRAFT


# --- Through the admin ---------------------------------------------------------------


def version_form(version: NoticeVersion, body: str) -> dict:
    text = version.texts.get(locale="en")
    return {
        "notice": version.notice_id,
        "default_locale": version.default_locale,
        "effective_date": version.effective_date.isoformat(),
        "objection_deadline": version.objection_deadline.isoformat(),
        "texts-TOTAL_FORMS": "1",
        "texts-INITIAL_FORMS": "1",
        "texts-MIN_NUM_FORMS": "0",
        "texts-MAX_NUM_FORMS": "1000",
        "texts-0-id": text.pk,
        "texts-0-version": version.pk,
        "texts-0-locale": "en",
        "texts-0-subject": text.subject,
        "texts-0-body_markdown": body,
    }


def test_the_admin_refuses_an_edit_of_approved_wording_with_a_message(
    client, submitted, v3, alice, bob
):
    url = reverse("admin:campaigns_noticeversion_change", args=[v3.pk])
    client.force_login(alice)
    lifecycle.campaign_reject(campaign=submitted, by=bob, note="fix a typo")
    typo_fixed = APPROVED.replace("posts", "public posts")
    response = client.post(url, version_form(v3, typo_fixed))
    assert response.status_code == 302
    assert body_in_db(v3) == typo_fixed  # a draft's version is edited as before

    lifecycle.campaign_submit(campaign=submitted, by=alice)
    lifecycle.campaign_approve(campaign=submitted, by=bob)
    lifecycle.campaign_schedule(campaign=submitted, by=alice)
    page = client.get(url).content.decode()
    assert 'name="texts-0-body_markdown"' not in page
    assert "v3 notice" in page  # says which campaign holds it
    log_entries = LogEntry.objects.count()
    response = client.post(url, version_form(v3, UNAPPROVED))
    assert response.status_code == 302
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert "cannot be edited" in message and "v3 notice" in message
    assert body_in_db(v3) == typo_fixed
    assert LogEntry.objects.count() == log_entries
    campaign_page = client.get(reverse("admin:campaigns_campaign_change", args=[submitted.pk]))
    assert v3.texts.get().sha256 in campaign_page.content.decode()


def test_a_stale_tab_posting_to_a_sent_version_gets_a_message_not_an_error(
    client, submitted, v3, alice, bob
):
    lifecycle.campaign_approve(campaign=submitted, by=bob)
    lifecycle.campaign_schedule(campaign=submitted, by=alice)
    lifecycle.campaign_start(campaign=submitted)
    client.force_login(alice)
    url = reverse("admin:campaigns_noticeversion_change", args=[v3.pk])
    response = client.post(url, version_form(v3, UNAPPROVED))
    assert response.status_code == 302
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert "has been sent" in message
    assert body_in_db(v3) == APPROVED
