"""The campaign state machine: every transition goes through ``_transition``.

draft -> awaiting approval -> approved -> scheduled -> sending <-> paused -> completed,
and cancelled from any state before completed. An edit after submission sends
the campaign back to draft; approval always needs a second person: never the
campaign's creator, the one who submitted it, or its last editor, superusers
included (``approval_refusal``, which the console's buttons follow too).

From submission on, the campaign holds its notice version (the model refuses edits);
approval records the texts' hashes, and a start on any other texts sends the campaign
back to draft, so what was approved is exactly what is sent. A wording test (the
campaign's variants, set through create and edit: ``services.variants``) is part of what
is approved: editing it sends the campaign back to draft; every variant's version is
held, hashed and frozen the same way, and the split itself is hashed too. A campaign completes
only once its fan-out has finished and nothing is left to send, checked under its
row lock, which every fan-out and reminder slice takes too (``fanout``).

Lock order: the campaign's row, then its notice version's row.

Who may do what (``accounts.permissions``): creating needs ``campaigns.add_campaign``;
editing and submitting ``campaigns.change_campaign``; approving and sending back
``campaigns.approve_campaign``; scheduling, pausing, resuming and cancelling
``campaigns.operate_campaign``. ``by=None`` is the system (beat, the circuit breaker).

Every staff act (``by`` set) is in the staff audit trail, written in the transaction of
the change (``_transition``'s ``act``): a refused move records nothing. The system's
own moves are in the campaign's timeline only.
"""

from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from accounts.permissions import permission_require
from audit.models import Action
from audit.services import staff_action_record
from campaigns.models import (
    UNFINISHED_STATUSES,
    Campaign,
    CampaignState,
    CampaignTransition,
    Delivery,
    DeliveryStatus,
    NoticeText,
    NoticeVersion,
)
from campaigns.services.reminders import reminders_possible
from campaigns.services.senders import senders_start
from campaigns.services.variants import (
    Variants,
    campaign_text_hashes,
    sent_version_ids,
    variants_check,
    variants_current,
    variants_described,
    variants_replace,
)
from config.fields import clipped

S = CampaignState
TRANSITIONS: dict[str, frozenset[str]] = {
    S.DRAFT: frozenset({S.AWAITING_APPROVAL, S.CANCELLED}),
    S.AWAITING_APPROVAL: frozenset({S.APPROVED, S.DRAFT, S.CANCELLED}),
    S.APPROVED: frozenset({S.SCHEDULED, S.DRAFT, S.CANCELLED}),
    S.SCHEDULED: frozenset({S.SENDING, S.DRAFT, S.CANCELLED}),
    S.SENDING: frozenset({S.PAUSED, S.COMPLETED, S.CANCELLED}),
    S.PAUSED: frozenset({S.SENDING, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
}
# Editing these changes what was approved: the campaign goes back to draft.
APPROVED_FIELDS = frozenset(
    {
        "name",
        "notice_version",
        "jurisdictions",
        "countries",
        "locales",
        "members_created_after",
        "members_created_before",
        "purpose",
        "purpose_state",
        "only_not_acknowledged",
        "starts_at",
        "remind_after_days",
        "max_reminders",
    }
)
# Pace can be adjusted while sending without a new approval.
OPERATIONAL_FIELDS = frozenset({"throttle_per_minute", "window_ends_at"})
EDITABLE_BEFORE_SENDING = frozenset({S.DRAFT, S.AWAITING_APPROVAL, S.APPROVED, S.SCHEDULED})
EDIT, APPROVE, OPERATE = (
    "campaigns.change_campaign",
    "campaigns.approve_campaign",
    "campaigns.operate_campaign",
)


class TransitionError(Exception):
    """The requested change is not allowed in the campaign's current state."""


def _transition(
    campaign: Campaign,
    to: CampaignState,
    *,
    by: User | None,
    act: Action | None = None,
    note: str = "",
    **fields: Any,
) -> Campaign:
    """Move to ``to``; ``act`` is what the staff audit trail calls it when ``by`` is set."""
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if to not in TRANSITIONS[locked.state]:
            raise TransitionError(f"cannot go from {locked.get_state_display()} to {S(to).label}")
        locked_from = locked.state
        CampaignTransition.objects.create(
            campaign=locked,
            from_state=locked.state,
            to_state=to,
            by=by,
            note=clipped(CampaignTransition, "note", note),
        )
        locked.state = to
        locked.state_reason = clipped(Campaign, "state_reason", note)
        for name, value in fields.items():
            setattr(locked, name, value)
        locked.save(update_fields=["state", "state_reason", *fields])
        if by is not None and act is not None:
            detail = {"from": locked_from, "to": to, **({"note": note} if note else {})}
            if "starts_at" in fields:
                detail["starts_at"] = fields["starts_at"]
            staff_action_record(by=by, action=act, target=locked, detail=detail)
    campaign.refresh_from_db()
    return campaign


def campaign_create(
    *,
    by: User | None,
    name: str,
    notice_version: NoticeVersion,
    variants: Variants = (),
    **fields: Any,
) -> Campaign:
    """A draft campaign; ``variants``: a wording test ((version, basis points) in order,
    the first becoming the campaign's version), or none."""
    permission_require(by=by, perm="campaigns.add_campaign")
    unknown = set(fields) - APPROVED_FIELDS - OPERATIONAL_FIELDS
    if unknown:
        raise TypeError(f"unknown campaign fields: {', '.join(sorted(unknown))}")
    variants_check(variants=variants)
    if variants:
        notice_version = variants[0][0]
    with transaction.atomic():
        campaign = Campaign.objects.create(
            name=name,
            notice_version=notice_version,
            created_by=by,
            last_edited_by=by,
            **fields,
        )
        variants_replace(campaign=campaign, variants=variants)
        if by is not None:
            created = {"notice_version": notice_version, **fields}
            if variants:
                created["variants"] = variants_described([(v.pk, s) for v, s in variants])
            staff_action_record(
                by=by,
                action=Action.CREATE,
                target=campaign,
                changes={k: (None, v) for k, v in created.items()},
            )
    return campaign


def campaign_edit(
    *, campaign: Campaign, by: User | None, variants: Variants | None = None, **changes: Any
) -> Campaign:
    """Apply ``changes``; an edit to what was approved sends the campaign back to draft.
    ``variants``: the wording test as it should be (empty: none; None: unchanged), part
    of what is approved; the campaign's version follows its first variant."""
    permission_require(by=by, perm=EDIT)
    unknown = set(changes) - APPROVED_FIELDS - OPERATIONAL_FIELDS
    if unknown:
        raise TypeError(f"unknown campaign fields: {', '.join(sorted(unknown))}")
    if variants is not None:
        variants_check(variants=variants)
        if variants:
            changes["notice_version"] = variants[0][0]
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        changed = {k for k, v in changes.items() if getattr(locked, k) != v}
        before = variants_current(campaign=locked)
        wanted = None if variants is None else [(v.pk, share) for v, share in variants]
        split_changed = wanted is not None and wanted != before
        if not changed and not split_changed:
            return campaign
        if locked.state in (S.COMPLETED, S.CANCELLED):
            raise TransitionError(f"a {locked.get_state_display().lower()} campaign is final")
        approved_changed = bool(changed & APPROVED_FIELDS) or split_changed
        if approved_changed and locked.state not in EDITABLE_BEFORE_SENDING:
            raise TransitionError(
                "audience, notice, wording test and schedule cannot change once sending "
                "started; only the throttle and the window end can"
            )
        if "notice_version" in changed and before and wanted is None:
            raise TransitionError(
                "this campaign runs a wording test: change its variants instead "
                "(the first variant is the campaign's version)"
            )
        diff = {name: (getattr(locked, name), changes[name]) for name in sorted(changed)}
        if split_changed and wanted is not None and variants is not None:
            diff["variants"] = (variants_described(before), variants_described(wanted))
            variants_replace(campaign=locked, variants=variants)
        for name in changed:
            setattr(locked, name, changes[name])
        locked.last_edited_by, locked.last_edited_at = by, timezone.now()
        locked.save(update_fields=[*changed, "last_edited_by", "last_edited_at"])
        back_to_draft = approved_changed and locked.state != S.DRAFT
        if by is not None:
            detail = {"back_to_draft": True} if back_to_draft else None
            staff_action_record(
                by=by, action=Action.EDIT, target=locked, changes=diff, detail=detail
            )
        if back_to_draft:
            _transition(
                locked, S.DRAFT, by=by, note="edited after submission: needs approval again"
            )
    campaign.refresh_from_db()
    return campaign


def campaign_submit(*, campaign: Campaign, by: User) -> Campaign:
    permission_require(by=by, perm=EDIT)
    with transaction.atomic():
        # An edit of the version's texts holds its row: it commits before we hold the
        # version, or it sees this submission and is refused.
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        version_ids = sent_version_ids(campaign=locked)
        list(NoticeVersion.objects.select_for_update().filter(pk__in=version_ids).order_by("pk"))
        with_text = set(
            NoticeText.objects.filter(version__in=version_ids).values_list("version", flat=True)
        )
        if with_text != set(version_ids):
            raise TransitionError(
                "the notice version has no text yet"
                if len(version_ids) == 1
                else "every variant's notice version needs a text"
            )
        return _transition(campaign, S.AWAITING_APPROVAL, by=by, act=Action.SUBMIT)


def approval_refusal(*, campaign: Campaign, user: User) -> str | None:
    """Why ``user`` may not approve ``campaign`` (None: nothing in the way but the
    permission and the state). The submitter is the one behind the last move to
    awaiting approval: whoever submitted what is waiting now."""
    submitted_by = (
        CampaignTransition.objects.filter(campaign=campaign, to_state=S.AWAITING_APPROVAL)
        .order_by("-at", "-pk")
        .values_list("by_id", flat=True)
        .first()
    )
    for person, role in (
        (campaign.created_by_id, "created"),
        (submitted_by, "submitted"),
        (campaign.last_edited_by_id, "last edited"),
    ):
        if person is not None and person == user.pk:
            return f"approval must come from a second person, and you {role} this campaign"
    return None


def campaign_approve(*, campaign: Campaign, by: User) -> Campaign:
    permission_require(by=by, perm=APPROVE)
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        refusal = approval_refusal(campaign=locked, user=by)
        if refusal:
            raise TransitionError(refusal)
        return _transition(
            campaign,
            S.APPROVED,
            by=by,
            act=Action.APPROVE,
            approved_by=by,
            approved_at=timezone.now(),
            approved_text_hashes=campaign_text_hashes(campaign=locked),
        )


def campaign_reject(*, campaign: Campaign, by: User, note: str) -> Campaign:
    permission_require(by=by, perm=APPROVE)
    return _transition(
        campaign, S.DRAFT, by=by, act=Action.SEND_BACK, note=note or "sent back by the approver"
    )


def campaign_schedule(
    *, campaign: Campaign, by: User, starts_at: datetime | None = None
) -> Campaign:
    permission_require(by=by, perm=OPERATE)
    starts_at = starts_at or campaign.starts_at
    if starts_at is None:
        raise TransitionError("set a start time first")
    if campaign.approved_by_id is None:
        raise TransitionError("the campaign has not been approved")
    return _transition(campaign, S.SCHEDULED, by=by, act=Action.SCHEDULE, starts_at=starts_at)


def campaign_start(*, campaign: Campaign) -> Campaign:
    """Scheduled -> sending (beat, when due), freezing the notice version for good, in
    one transaction; back to draft instead if the version's texts are not the ones
    approved (a change that went around the model: a raw UPDATE, a restored backup)."""
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.state != S.SCHEDULED:
            raise TransitionError(f"cannot go from {locked.get_state_display()} to Sending")
        version_ids = sent_version_ids(campaign=locked)
        list(NoticeVersion.objects.select_for_update().filter(pk__in=version_ids).order_by("pk"))
        changed = _hashes_differ(locked.approved_text_hashes, campaign_text_hashes(campaign=locked))
        if changed:
            return _transition(
                campaign,
                S.DRAFT,
                by=None,
                note="not started: the notice version's texts changed after approval "
                f"({', '.join(changed)}); needs approval again",
            )
        NoticeVersion.objects.filter(pk__in=version_ids, frozen_at=None).update(
            frozen_at=timezone.now()
        )
        return _transition(campaign, S.SENDING, by=None, note="start time reached")


def _hashes_differ(approved: dict[str, str], current: dict[str, str]) -> list[str]:
    """The locales whose text was added, removed or changed since approval."""
    locales = approved.keys() | current.keys()
    return sorted(loc for loc in locales if approved.get(loc) != current.get(loc))


def campaign_pause(*, campaign: Campaign, by: User | None, reason: str = "") -> Campaign:
    permission_require(by=by, perm=OPERATE)
    return _transition(campaign, S.PAUSED, by=by, act=Action.PAUSE, note=reason or "paused")


def campaign_resume(*, campaign: Campaign, by: User | None) -> Campaign:
    """Paused -> sending, and the campaign's senders start again once this commits.
    Resuming the circuit breaker's pause is a decision about the bounces and complaints
    so far: from here the breaker counts only what comes after."""
    permission_require(by=by, perm=OPERATE)
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        baseline: dict[str, Any] = {}
        if locked.state == S.PAUSED and _paused_by_breaker(locked):
            baseline = {
                "breaker_base_sent": locked.sent_count,
                "breaker_base_bounces": locked.hard_bounce_count,
                "breaker_base_complaints": locked.complaint_count,
                "breaker_reset_at": timezone.now(),
                "rejected_in_a_row": 0,
            }
        resumed = _transition(
            campaign, S.SENDING, by=by, act=Action.RESUME, note="resumed", **baseline
        )
        senders_start(resumed.pk)
        return resumed


BREAKER_NOTE = "circuit breaker"


def _paused_by_breaker(campaign: Campaign) -> bool:
    last_pause = (
        CampaignTransition.objects.filter(campaign=campaign, to_state=S.PAUSED)
        .order_by("-at", "-pk")
        .first()
    )
    return (
        last_pause is not None
        and last_pause.by_id is None
        and last_pause.note.startswith(BREAKER_NOTE)
    )


def campaign_complete(*, campaign: Campaign, now: datetime | None = None) -> bool:
    """Sending -> completed once the fan-out has finished, no delivery is left to send
    or to decide about (``unknown``), and no reminder wave is still possible; False,
    and nothing changed, otherwise.

    Checked under the campaign's row lock, which every fan-out and reminder slice holds
    while it inserts (``fanout``): a slice either commits first, and its deliveries are
    seen here, or it waits, sees the campaign completed, and inserts nothing."""
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.state != S.SENDING or not campaign_is_done(
            campaign=locked, now=now or timezone.now()
        ):
            return False
        _transition(campaign, S.COMPLETED, by=None, note="every delivery reached an end")
    return True


def campaign_is_done(*, campaign: Campaign, now: datetime) -> bool:
    if campaign.fanned_out_at is None:
        return False
    if Delivery.objects.filter(
        campaign=campaign, status__in=[*UNFINISHED_STATUSES, DeliveryStatus.UNKNOWN]
    ).exists():
        return False  # "unknown" deliveries wait for staff to resend or give up
    return not reminders_possible(campaign=campaign, now=now)


def campaign_cancel(*, campaign: Campaign, by: User | None, reason: str = "") -> Campaign:
    """Cancel, and mark every delivery not yet handed to the transport cancelled."""
    permission_require(by=by, perm=OPERATE)
    with transaction.atomic():
        campaign = _transition(
            campaign, S.CANCELLED, by=by, act=Action.CANCEL, note=reason or "cancelled"
        )
        Delivery.objects.filter(
            campaign=campaign, status__in=[DeliveryStatus.PENDING, DeliveryStatus.CLAIMED]
        ).update(status=DeliveryStatus.CANCELLED, lease_expires_at=None, error="campaign cancelled")
    return campaign
