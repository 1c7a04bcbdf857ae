"""The campaign state machine: who may move a campaign where, and the record it leaves."""

import pytest
from django.utils import timezone

from campaigns.models import CampaignState, CampaignTransition, Delivery, DeliveryStatus
from campaigns.services import lifecycle
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.lifecycle import TransitionError
from tests.factories import (
    CAMPAIGN_APPROVER,
    CAMPAIGN_EDITOR,
    MemberFactory,
    campaign,
    notice_version,
    staff_user,
)

pytestmark = pytest.mark.django_db


# Both may edit and approve, so what refuses a step here is the state machine or the
# four-eyes rule, never a missing permission (tests/test_staff_permissions.py).
@pytest.fixture
def ed(db):
    """Ed edits campaigns."""
    return staff_user("ed", *CAMPAIGN_EDITOR, *CAMPAIGN_APPROVER)


@pytest.fixture
def amy(db):
    """Amy approves them."""
    return staff_user("amy", *CAMPAIGN_EDITOR, *CAMPAIGN_APPROVER)


@pytest.fixture
def draft(ed):
    return lifecycle.campaign_create(
        by=ed,
        name="UK notice",
        notice_version=notice_version(),
        jurisdictions=["UK"],
        starts_at=timezone.now(),
    )


def states(c) -> list[tuple[str, str]]:
    return list(CampaignTransition.objects.filter(campaign=c).values_list("from_state", "to_state"))


def test_full_happy_path_is_recorded_step_by_step(draft, ed, amy):
    lifecycle.campaign_submit(campaign=draft, by=ed)
    lifecycle.campaign_approve(campaign=draft, by=amy)
    lifecycle.campaign_schedule(campaign=draft, by=amy)
    lifecycle.campaign_start(campaign=draft)
    lifecycle.campaign_pause(campaign=draft, by=amy, reason="checking complaints")
    lifecycle.campaign_resume(campaign=draft, by=amy)
    campaign_fan_out(campaign=draft)  # nobody in the audience: nothing left to send
    assert lifecycle.campaign_complete(campaign=draft) is True
    draft.refresh_from_db()
    assert states(draft) == [
        ("draft", "awaiting_approval"),
        ("awaiting_approval", "approved"),
        ("approved", "scheduled"),
        ("scheduled", "sending"),
        ("sending", "paused"),
        ("paused", "sending"),
        ("sending", "completed"),
    ]
    approval = CampaignTransition.objects.get(campaign=draft, to_state="approved")
    assert approval.by == amy
    assert (draft.approved_by, draft.state) == (amy, CampaignState.COMPLETED)


def test_the_last_editor_cannot_approve_their_own_campaign(draft, ed):
    lifecycle.campaign_submit(campaign=draft, by=ed)
    with pytest.raises(TransitionError, match="a second person, and you created"):
        lifecycle.campaign_approve(campaign=draft, by=ed)
    draft.refresh_from_db()
    assert (draft.state, draft.approved_by) == (CampaignState.AWAITING_APPROVAL, None)


@pytest.fixture
def sue(db):
    """Sue may edit and approve too: a third person."""
    return staff_user("sue", *CAMPAIGN_EDITOR, *CAMPAIGN_APPROVER)


def approval_refused(c, by, reason: str) -> None:
    """``by`` is refused approving ``c`` for ``reason``, and nothing changed."""
    transitions = states(c)
    with pytest.raises(TransitionError, match=f"a second person, and you {reason} this"):
        lifecycle.campaign_approve(campaign=c, by=by)
    c.refresh_from_db()
    assert (c.state, c.approved_by, states(c)) == (
        CampaignState.AWAITING_APPROVAL,
        None,
        transitions,
    )


def test_the_creator_cannot_approve_what_others_edited_and_submitted(draft, ed, sue, amy):
    lifecycle.campaign_edit(campaign=draft, by=sue, jurisdictions=["EU"])
    lifecycle.campaign_submit(campaign=draft, by=sue)
    approval_refused(draft, ed, "created")
    lifecycle.campaign_approve(campaign=draft, by=amy)
    assert draft.state == CampaignState.APPROVED


def test_the_submitter_cannot_approve_what_others_created_and_edited(draft, ed, sue, amy):
    lifecycle.campaign_submit(campaign=draft, by=sue)
    approval_refused(draft, sue, "submitted")
    lifecycle.campaign_approve(campaign=draft, by=amy)
    assert draft.state == CampaignState.APPROVED


def test_the_last_editor_alone_cannot_approve(ed, sue, amy):
    c = lifecycle.campaign_create(by=sue, name="EU", notice_version=notice_version())
    lifecycle.campaign_edit(campaign=c, by=ed, jurisdictions=["EU"])
    lifecycle.campaign_submit(campaign=c, by=sue)
    approval_refused(c, ed, "last edited")
    lifecycle.campaign_approve(campaign=c, by=amy)
    assert c.state == CampaignState.APPROVED


def test_the_submitter_is_whoever_submitted_last(draft, ed, sue, amy):
    """Sent back and submitted again by someone else: the earlier submitter is just a
    colleague now, the later one is refused."""
    lifecycle.campaign_submit(campaign=draft, by=amy)
    lifecycle.campaign_reject(campaign=draft, by=sue, note="typo")
    lifecycle.campaign_submit(campaign=draft, by=sue)
    approval_refused(draft, sue, "submitted")
    lifecycle.campaign_approve(campaign=draft, by=amy)
    assert draft.state == CampaignState.APPROVED


def test_a_superuser_is_held_to_the_second_person_rule(django_user_model, ed):
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    c = lifecycle.campaign_create(by=root, name="All", notice_version=notice_version())
    lifecycle.campaign_submit(campaign=c, by=ed)
    approval_refused(c, root, "created")


def test_an_edit_after_approval_sends_the_campaign_back_to_draft(draft, ed, amy):
    lifecycle.campaign_submit(campaign=draft, by=ed)
    lifecycle.campaign_approve(campaign=draft, by=amy)
    lifecycle.campaign_edit(campaign=draft, by=ed, jurisdictions=["UK", "EU"])
    assert draft.state == CampaignState.DRAFT
    assert states(draft)[-1] == ("approved", "draft")
    # ... and the editor still cannot approve the result
    lifecycle.campaign_submit(campaign=draft, by=ed)
    with pytest.raises(TransitionError):
        lifecycle.campaign_approve(campaign=draft, by=ed)


def test_an_edit_that_changes_nothing_keeps_the_approval(draft, ed, amy):
    lifecycle.campaign_submit(campaign=draft, by=ed)
    lifecycle.campaign_approve(campaign=draft, by=amy)
    lifecycle.campaign_edit(campaign=draft, by=ed, jurisdictions=["UK"])
    assert draft.state == CampaignState.APPROVED


def test_throttle_can_change_while_sending_but_the_audience_cannot(ed):
    sending = campaign(state=CampaignState.SENDING, jurisdictions=["UK"])
    lifecycle.campaign_edit(campaign=sending, by=ed, throttle_per_minute=120)
    assert (sending.throttle_per_minute, sending.state) == (120, CampaignState.SENDING)
    with pytest.raises(TransitionError, match="cannot change once sending started"):
        lifecycle.campaign_edit(campaign=sending, by=ed, jurisdictions=["EU"])
    sending.refresh_from_db()
    assert sending.jurisdictions == ["UK"]


@pytest.mark.parametrize(
    ("state", "step"),
    [
        (CampaignState.DRAFT, "campaign_approve"),
        (CampaignState.DRAFT, "campaign_start"),
        (CampaignState.APPROVED, "campaign_resume"),
        (CampaignState.COMPLETED, "campaign_cancel"),
        (CampaignState.CANCELLED, "campaign_submit"),
    ],
)
def test_transitions_out_of_order_are_refused(amy, state, step):
    c = campaign(state=state)
    kwargs = {"campaign": c}
    if step not in {"campaign_start"}:
        kwargs["by"] = amy
    with pytest.raises(TransitionError):
        getattr(lifecycle, step)(**kwargs)
    c.refresh_from_db()
    assert c.state == state
    assert not CampaignTransition.objects.filter(campaign=c).exists()


def test_scheduling_needs_a_start_time(draft, ed, amy):
    lifecycle.campaign_edit(campaign=draft, by=ed, starts_at=None)
    lifecycle.campaign_submit(campaign=draft, by=ed)
    lifecycle.campaign_approve(campaign=draft, by=amy)
    with pytest.raises(TransitionError, match="start time"):
        lifecycle.campaign_schedule(campaign=draft, by=amy)


def test_cancel_marks_unsent_deliveries_cancelled_and_keeps_sent_ones(amy):
    c = campaign(state=CampaignState.SENDING)
    sent, waiting = MemberFactory(), MemberFactory()
    Delivery.objects.create(campaign=c, member=sent, status=DeliveryStatus.SENT)
    Delivery.objects.create(campaign=c, member=waiting, status=DeliveryStatus.PENDING)
    lifecycle.campaign_cancel(campaign=c, by=amy, reason="wrong audience")
    assert dict(Delivery.objects.values_list("member", "status")) == {
        sent.pk: "sent",
        waiting.pk: "cancelled",
    }
    assert c.state == CampaignState.CANCELLED
    assert c.state_reason == "wrong audience"


def test_starting_freezes_the_notice_version(draft, ed, amy):
    lifecycle.campaign_submit(campaign=draft, by=ed)
    lifecycle.campaign_approve(campaign=draft, by=amy)
    lifecycle.campaign_schedule(campaign=draft, by=amy)
    lifecycle.campaign_start(campaign=draft)
    draft.notice_version.refresh_from_db()
    assert draft.notice_version.is_frozen
