"""The approver's inbox: only campaigns awaiting approval, oldest submission first; each
one's page shows the email as members get it beside who it reaches, and its buttons
approve or send back through ``console:campaign_act`` (never for the last editor)."""

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone

from accounts.models import EmailStatus
from campaigns.models import Campaign, CampaignState, CampaignTransition, NoticeText
from campaigns.services import lifecycle
from tests.factories import (
    CAMPAIGN_APPROVER,
    CAMPAIGN_EDITOR,
    MemberFactory,
    campaign,
    notice_version,
    staff_user,
)

pytestmark = pytest.mark.django_db
S = CampaignState
INBOX = "/console/approvals/"


@pytest.fixture
def editor():
    return staff_user("erin", *CAMPAIGN_EDITOR)


@pytest.fixture
def approver():
    return staff_user("abe", *CAMPAIGN_APPROVER)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _submitted(editor, name="Notice campaign", **fields) -> Campaign:
    """A draft the editor created and submitted through the services."""
    draft = lifecycle.campaign_create(
        by=editor, name=name, notice_version=fields.pop("version", None) or notice_version(),
        **fields,
    )  # fmt: skip
    return lifecycle.campaign_submit(campaign=draft, by=editor)


def test_the_inbox_lists_only_awaiting_campaigns_oldest_submission_first(editor, approver):
    later = _submitted(editor, name="Second in line")
    earlier = _submitted(editor, name="First in line")
    CampaignTransition.objects.filter(campaign=earlier).update(
        at=timezone.now() - timedelta(days=2)
    )
    campaign(name="A draft", state=S.DRAFT)
    campaign(name="Already approved", state=S.APPROVED)
    body = _client(approver).get(INBOX).content.decode()
    assert body.index("First in line") < body.index("Second in line")
    assert "A draft" not in body and "Already approved" not in body
    assert f'href="/console/approvals/{later.pk}/"' in body
    assert "erin" in body  # who submitted


def test_the_page_shows_the_email_and_the_audience_side_by_side(editor, approver):
    MemberFactory(country="GB", locale="en")
    MemberFactory(country="DE", locale="de", email_status=EmailStatus.BOUNCED)
    submitted = _submitted(editor)
    page = _client(approver).get(f"{INBOX}{submitted.pk}/?locale=de")
    body = page.content.decode()
    assert page.status_code == 200
    assert 'class="side-by-side"' in body
    assert "Subject [de]" in body  # the German subject, as rendered for the email
    frame = f'sandbox="" src="/console/approvals/{submitted.pk}/preview/de/"'
    assert f'<iframe class="preview-frame" {frame}' in body
    assert "<strong>1</strong> reachable by email of <strong>2</strong> selected" in body
    assert "address bounced" in body
    assert "frame-src 'self'" in page["Content-Security-Policy"]


def test_the_framed_preview_is_the_email_html_with_a_policy_of_its_own(editor, approver):
    submitted = _submitted(editor)
    response = _client(approver).get(f"{INBOX}{submitted.pk}/preview/fr/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "Body in <strong>fr</strong>" in body
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    policy = response["Content-Security-Policy"]
    assert "style-src 'unsafe-inline'" in policy and "frame-ancestors 'self'" in policy
    assert "script-src" not in policy  # still none: default-src 'none'
    assert _client(approver).get(f"{INBOX}{submitted.pk}/preview/xx/").status_code == 404


def test_a_second_person_approves_from_the_inbox(editor, approver):
    submitted = _submitted(editor)
    client = _client(approver)
    body = client.get(f"{INBOX}{submitted.pk}/").content.decode()
    assert f'action="/console/campaigns/{submitted.pk}/act/approve/"' in body
    response = client.post(f"/console/campaigns/{submitted.pk}/act/approve/", {"next": INBOX})
    assert response.status_code == 302 and response["Location"] == INBOX
    submitted.refresh_from_db()
    assert submitted.state == S.APPROVED and submitted.approved_by == approver
    assert "Notice campaign" not in client.get(INBOX).content.decode()


def test_the_last_editor_sees_no_approve_button_and_is_refused(approver):
    both = staff_user("bo", *CAMPAIGN_EDITOR, *CAMPAIGN_APPROVER)
    submitted = _submitted(both)
    client = _client(both)
    body = client.get(f"{INBOX}{submitted.pk}/").content.decode()
    assert "You cannot approve this campaign</strong>: approval must come from a second" in body
    assert "/act/approve/" not in body and "/act/send_back/" in body
    response = client.post(f"/console/campaigns/{submitted.pk}/act/approve/", {"next": INBOX})
    (message,) = get_messages(response.wsgi_request)
    assert "approval must come from a second person, and you created" in str(message)
    submitted.refresh_from_db()
    assert submitted.state == S.AWAITING_APPROVAL


def test_sending_back_records_the_reason_and_the_page_shows_it_next_time(editor, approver):
    submitted = _submitted(editor)
    client = _client(approver)
    client.post(
        f"/console/campaigns/{submitted.pk}/act/send_back/",
        {"next": INBOX, "reason": "Say which data the German text means"},
    )
    back = CampaignTransition.objects.get(to_state=S.DRAFT)
    assert (back.by, back.note) == (approver, "Say which data the German text means")
    lifecycle.campaign_submit(campaign=submitted, by=editor)
    body = client.get(f"{INBOX}{submitted.pk}/").content.decode()
    assert "Say which data the German text means" in body


def test_a_text_changed_since_an_earlier_approval_is_named(editor, approver):
    submitted = _submitted(editor)
    lifecycle.campaign_approve(campaign=submitted, by=approver)
    lifecycle.campaign_edit(campaign=submitted, by=editor, name="Renamed")  # back to draft
    text = NoticeText.objects.get(version=submitted.notice_version, locale="de")
    text.subject = "Neuer Betreff"
    text.save()
    lifecycle.campaign_submit(campaign=submitted, by=editor)
    body = _client(approver).get(f"{INBOX}{submitted.pk}/").content.decode()
    assert "Changed since an earlier approval: the notice text in de." in body


def test_a_fanned_out_campaign_shows_its_snapshot(editor, approver):
    sent = campaign(
        state=S.SENDING, audience_snapshot={"targeted": 12, "unreachable": {"bounced": 2}}
    )
    body = _client(approver).get(f"{INBOX}{sent.pk}/").content.decode()
    assert "<strong>10</strong> reachable by email of <strong>12</strong> selected" in body
    assert "As counted when it fanned out." in body
    assert "not awaiting approval" in body


def test_the_inbox_reads_the_same_few_queries_however_many_await(
    editor, approver, django_assert_num_queries
):
    client = _client(approver)
    _submitted(editor, name="One")
    client.get(INBOX)
    # session, user, user's and group permissions, the campaigns with their submissions
    with django_assert_num_queries(5):
        assert "One" in client.get(INBOX).content.decode()
    for n in range(5):
        _submitted(editor, name=f"More {n}")
    with django_assert_num_queries(5):
        assert "More 4" in client.get(INBOX).content.decode()
