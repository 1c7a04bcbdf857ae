"""The campaign's workflow buttons: one POST endpoint, one row of ``ACTIONS`` per button.

The table drives both the buttons a page shows (``campaign_actions_allowed``: the viewer
holds the permission and the campaign's state allows the move) and what a POST may do;
the service checks the permission and the state again, under the campaign's row lock."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.contrib import messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from campaigns.models import Campaign, CampaignState, Delivery, DeliveryStatus
from campaigns.services import lifecycle
from campaigns.services.lifecycle import TRANSITIONS, TransitionError
from campaigns.services.reconcile import deliveries_give_up, deliveries_resend
from console.access import console_view, staff_user
from console.links import campaign_url

S = CampaignState


@dataclass(frozen=True)
class Action:
    label: str
    perm: str
    # The states it can be taken from (for a transition: those whose TRANSITIONS allow it).
    from_states: frozenset[str]
    run: Callable[[Campaign, User, HttpRequest], str]
    # Shown as the button's secondary (or danger) style and asking for a reason.
    style: str = ""
    asks_reason: bool = False


def _from(target: str) -> frozenset[str]:
    return frozenset(state for state, allowed in TRANSITIONS.items() if target in allowed)


def _reason(request: HttpRequest) -> str:
    return request.POST.get("reason", "").strip()


def _submit(campaign: Campaign, by: User, request: HttpRequest) -> str:
    lifecycle.campaign_submit(campaign=campaign, by=by)
    return "Submitted for approval."


def _approve(campaign: Campaign, by: User, request: HttpRequest) -> str:
    lifecycle.campaign_approve(campaign=campaign, by=by)
    return "Approved."


def _send_back(campaign: Campaign, by: User, request: HttpRequest) -> str:
    lifecycle.campaign_reject(campaign=campaign, by=by, note=_reason(request))
    return "Sent back to draft."


def _schedule(campaign: Campaign, by: User, request: HttpRequest) -> str:
    starts_at = _starts_at(request)
    scheduled = lifecycle.campaign_schedule(campaign=campaign, by=by, starts_at=starts_at)
    when = timezone.localtime(scheduled.starts_at).strftime("%Y-%m-%d %H:%M %Z")
    return f"Scheduled to start at {when}."


def _starts_at(request: HttpRequest) -> datetime | None:
    raw = request.POST.get("starts_at", "").strip()
    if not raw:
        return None
    parsed = parse_datetime(raw)
    if parsed is None:
        raise TransitionError(f"“{raw}” is not a date and time (YYYY-MM-DD HH:MM)")
    return timezone.make_aware(parsed) if timezone.is_naive(parsed) else parsed


def _pause(campaign: Campaign, by: User, request: HttpRequest) -> str:
    lifecycle.campaign_pause(campaign=campaign, by=by, reason=_reason(request))
    return "Paused: nothing more is sent until it is resumed."


def _resume(campaign: Campaign, by: User, request: HttpRequest) -> str:
    lifecycle.campaign_resume(campaign=campaign, by=by)
    return "Resumed."


def _cancel(campaign: Campaign, by: User, request: HttpRequest) -> str:
    lifecycle.campaign_cancel(campaign=campaign, by=by, reason=_reason(request))
    return "Cancelled: deliveries not yet sent will not be."


def _unknown(campaign: Campaign):
    return Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.UNKNOWN)


def _resend_unknown(campaign: Campaign, by: User, request: HttpRequest) -> str:
    count = deliveries_resend(deliveries=_unknown(campaign), by=by)
    return (
        f"{count} deliver{'y' if count == 1 else 'ies'} with an unknown outcome will be sent again."
    )


def _give_up_unknown(campaign: Campaign, by: User, request: HttpRequest) -> str:
    count = deliveries_give_up(deliveries=_unknown(campaign), by=by)
    return f"{count} deliver{'y' if count == 1 else 'ies'} with an unknown outcome marked failed."


OPERATE, APPROVE, EDIT = lifecycle.OPERATE, lifecycle.APPROVE, lifecycle.EDIT
RESEND = "campaigns.resend_delivery"
ACTIONS: dict[str, Action] = {
    "submit": Action("Submit for approval", EDIT, _from(S.AWAITING_APPROVAL), _submit),
    "approve": Action("Approve", APPROVE, frozenset({S.AWAITING_APPROVAL}), _approve),
    "send_back": Action(
        "Send back to draft",
        APPROVE,
        frozenset({S.AWAITING_APPROVAL}),
        _send_back,
        style="secondary",
        asks_reason=True,
    ),
    "schedule": Action("Schedule", OPERATE, frozenset({S.APPROVED}), _schedule),
    "pause": Action("Pause", OPERATE, _from(S.PAUSED), _pause, "secondary", asks_reason=True),
    "resume": Action("Resume", OPERATE, frozenset({S.PAUSED}), _resume),
    "cancel": Action("Cancel campaign", OPERATE, _from(S.CANCELLED), _cancel, "danger", True),
    "resend_unknown": Action(
        "Resend unknown deliveries", RESEND, frozenset({S.SENDING, S.PAUSED}), _resend_unknown
    ),
    "give_up_unknown": Action(
        "Give up on unknown deliveries",
        RESEND,
        frozenset({S.SENDING, S.PAUSED}),
        _give_up_unknown,
        style="secondary",
    ),
}


def campaign_actions_allowed(*, campaign: Campaign, user: User) -> list[tuple[str, Action]]:
    """The buttons to show ``user`` on ``campaign``: state allows it, user may do it.
    Approval is not offered to its creator, its submitter or its last editor (the
    service refuses them too: ``lifecycle.approval_refusal``)."""
    allowed = []
    for name, action in ACTIONS.items():
        if campaign.state not in action.from_states or not user.has_perm(action.perm):
            continue
        if name == "approve" and lifecycle.approval_refusal(campaign=campaign, user=user):
            continue
        allowed.append((name, action))
    return allowed


@require_POST
@console_view("campaigns.view_campaign")
def campaign_act(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Run one workflow action; say what happened (or why not) and go back."""
    campaign = get_object_or_404(Campaign, pk=pk)
    chosen = ACTIONS.get(action)
    if chosen is None:
        return HttpResponse("Unknown action", status=404, content_type="text/plain")
    try:
        messages.success(request, chosen.run(campaign, staff_user(request), request))
    except TransitionError as refusal:
        messages.error(request, f"Not done: {refusal}.")
    except PermissionDenied as refusal:
        messages.error(request, f"Not done: {refusal}.")
    return HttpResponseRedirect(_back(request, campaign))


def _back(request: HttpRequest, campaign: Campaign) -> str:
    back = request.POST.get("next", "")
    if back and url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return back
    return campaign_url(campaign.pk)
