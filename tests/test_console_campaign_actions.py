"""The campaign's workflow buttons in the console: one POST endpoint whose table of actions
says what each needs; the services refuse again whatever the page offered."""

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from campaigns.models import Campaign, CampaignState, CampaignTransition, Delivery, DeliveryStatus
from console.views.campaign_actions import campaign_actions_allowed
from tests.factories import CAMPAIGN_APPROVER, CAMPAIGN_EDITOR, MemberFactory, campaign, staff_user

pytestmark = pytest.mark.django_db
S = CampaignState


@pytest.fixture
def editor():
    return staff_user("erin", *CAMPAIGN_EDITOR)


@pytest.fixture
def approver():
    return staff_user("abe", *CAMPAIGN_APPROVER, "campaigns.resend_delivery")


def _post(user, pk, action, **data):
    client = Client(enforce_csrf_checks=False)
    client.force_login(user)
    return client.post(f"/console/campaigns/{pk}/act/{action}/", data)


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_an_approver_approves_a_campaign_another_person_edited(editor, approver):
    submitted = campaign(state=S.AWAITING_APPROVAL, last_edited_by=editor)
    response = _post(approver, submitted.pk, "approve", next="/console/campaigns/")
    assert response.status_code == 302 and response["Location"] == "/console/campaigns/"
    assert Campaign.objects.get().state == S.APPROVED
    assert CampaignTransition.objects.get().by == approver


def test_an_editor_cannot_approve_and_nothing_changes(editor):
    submitted = campaign(state=S.AWAITING_APPROVAL)
    response = _post(editor, submitted.pk, "approve")
    assert "Not done: you do not have the permission" in _messages(response)[0]
    assert Campaign.objects.get().state == S.AWAITING_APPROVAL
    assert not CampaignTransition.objects.exists()


def test_the_last_editor_is_neither_offered_nor_allowed_approval(approver):
    submitted = campaign(state=S.AWAITING_APPROVAL, last_edited_by=approver)
    assert "approve" not in dict(campaign_actions_allowed(campaign=submitted, user=approver))
    response = _post(approver, submitted.pk, "approve")
    assert "a second person, and you last edited this campaign" in _messages(response)[0]
    assert Campaign.objects.get().state == S.AWAITING_APPROVAL


@pytest.mark.parametrize("role", ["created_by", "submitted_by"])
def test_the_creator_and_the_submitter_are_neither_offered_nor_allowed_approval(
    role, approver, editor
):
    submitted = campaign(state=S.AWAITING_APPROVAL, last_edited_by=editor)
    if role == "created_by":
        Campaign.objects.filter(pk=submitted.pk).update(created_by=approver)
    else:
        CampaignTransition.objects.create(
            campaign=submitted, from_state=S.DRAFT, to_state=S.AWAITING_APPROVAL, by=approver
        )
    submitted.refresh_from_db()
    assert "approve" not in dict(campaign_actions_allowed(campaign=submitted, user=approver))
    assert "send_back" in dict(campaign_actions_allowed(campaign=submitted, user=approver))
    response = _post(approver, submitted.pk, "approve")
    assert "Not done: approval must come from a second person" in _messages(response)[0]
    assert Campaign.objects.get().state == S.AWAITING_APPROVAL


def test_a_move_the_state_does_not_allow_is_refused(approver):
    draft = campaign(state=S.DRAFT)
    response = _post(approver, draft.pk, "resume")
    assert "Not done: cannot go from Draft" in _messages(response)[0]
    assert Campaign.objects.get().state == S.DRAFT


def test_buttons_follow_state_and_permissions(editor, approver):
    sending = campaign(state=S.SENDING)
    assert [n for n, _ in campaign_actions_allowed(campaign=sending, user=approver)] == [
        "pause",
        "cancel",
        "resend_unknown",
        "give_up_unknown",
    ]
    assert campaign_actions_allowed(campaign=sending, user=editor) == []
    draft = campaign(state=S.DRAFT)
    assert [n for n, _ in campaign_actions_allowed(campaign=draft, user=editor)] == ["submit"]


def test_unknown_deliveries_are_given_up_from_the_campaign(approver):
    sending = campaign(state=S.SENDING)
    Delivery.objects.create(campaign=sending, member=MemberFactory(), status=DeliveryStatus.UNKNOWN)
    response = _post(approver, sending.pk, "give_up_unknown")
    assert _messages(response) == ["1 delivery with an unknown outcome marked failed."]
    assert Delivery.objects.get().status == DeliveryStatus.FAILED


def test_schedule_with_a_time_that_is_not_one_changes_nothing(approver, editor):
    approved = campaign(state=S.APPROVED, approved_by=approver)
    response = _post(approver, approved.pk, "schedule", starts_at="next tuesday")
    assert "is not a date and time" in _messages(response)[0]
    assert Campaign.objects.get().state == S.APPROVED


def test_get_does_nothing_and_strangers_are_sent_to_sign_in(editor):
    submitted = campaign(state=S.AWAITING_APPROVAL)
    client = Client()
    client.force_login(editor)
    assert client.get(f"/console/campaigns/{submitted.pk}/act/submit/").status_code == 405
    anonymous = Client().post(f"/console/campaigns/{submitted.pk}/act/approve/")
    assert anonymous.status_code == 302 and "login" in anonymous["Location"]
    assert Campaign.objects.get().state == S.AWAITING_APPROVAL


def test_an_unknown_action_is_404(approver):
    draft = campaign(state=S.DRAFT)
    client = Client()
    client.force_login(approver)
    assert client.post(f"/console/campaigns/{draft.pk}/act/explode/").status_code == 404


def test_resending_several_unknown_deliveries_says_how_many_in_plain_english(approver):
    sending = campaign(state=S.SENDING)
    for _ in range(2):
        Delivery.objects.create(
            campaign=sending, member=MemberFactory(), status=DeliveryStatus.UNKNOWN
        )
    response = _post(approver, sending.pk, "resend_unknown")
    assert _messages(response) == ["2 deliveries with an unknown outcome will be sent again."]
    assert Delivery.objects.filter(status=DeliveryStatus.PENDING).count() == 2
