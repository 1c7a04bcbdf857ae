"""Creating a campaign, or editing one before it sends, as four steps: notice version,
audience (with its count), schedule and pace, review and save.

Every step is a POST that carries every step's values: the step shown as inputs, the
others as hidden inputs. Nothing is kept on the server between steps, so two flows in
two tabs never mix, an abandoned flow leaves nothing behind, and each POST validates
again what it builds on (a tampered hidden value is caught like a typed one, and the
services check permissions and states again when saving). A step that fails is shown
with its errors next to its fields, and nothing is created until "Save as draft" or
"Submit for approval" on the review step, both through the lifecycle services."""

from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from csp.decorators import csp_update
from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Exists, OuterRef, Prefetch
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse

from campaigns.models import (
    HOLDS_ITS_VERSION,
    Campaign,
    CampaignState,
    FrozenVersionError,
    NoticeText,
)
from campaigns.selectors import audience_preview
from campaigns.services import lifecycle
from campaigns.services.lifecycle import EDITABLE_BEFORE_SENDING, TransitionError
from campaigns.services.variants import VariantError
from console.access import console_view, staff_user
from console.forms import MORE_VARIANTS, STEP_FORMS, VARIANT_FIELDS, VersionStep, versions_offered
from console.links import campaign_url
from console.views.audience import preview_context

STEPS = {
    "version": "Notice version",
    "audience": "Audience",
    "schedule": "Schedule and pace",
    "review": "Review and submit",
}
ORDER = list(STEPS)
SAVES = {"draft", "submit"}
# The audience step's count script (static/renotify/audience-count.js) and its requests.
SCRIPT_CSP = {"script-src": ["'self'"], "connect-src": ["'self'"]}
Forms = dict[str, forms.ModelForm]


@csp_update(SCRIPT_CSP)
@console_view("campaigns.add_campaign")
def campaign_new(request: HttpRequest) -> HttpResponse:
    return _flow(request, campaign=None)


@csp_update(SCRIPT_CSP)
@console_view("campaigns.change_campaign")
def campaign_change(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = get_object_or_404(Campaign, pk=pk)
    if campaign.state not in EDITABLE_BEFORE_SENDING:
        messages.error(
            request,
            f"Not editable here: the campaign is {campaign.get_state_display().lower()}. "
            "Only a campaign that has not started sending can be edited.",
        )
        return HttpResponseRedirect(campaign_url(campaign.pk))
    return _flow(request, campaign=campaign)


def _flow(request: HttpRequest, *, campaign: Campaign | None) -> HttpResponse:
    if request.method == "GET":
        return _render(request, campaign, _forms(None, campaign), "version")
    if request.method != "POST":
        return HttpResponseNotAllowed(["GET", "POST"])
    bound = _forms(request.POST, campaign)
    go = request.POST.get("go", "")
    if go in SAVES:
        invalid = _first_invalid(bound, ORDER)
        if invalid:
            return _render(request, campaign, bound, invalid)
        return _save(request, campaign, bound, submit=go == "submit")
    # Forward needs every step before the target valid; back (or "Count") never loses
    # what the step being left holds: it travels on, checked when it is needed.
    target = go if go in STEPS else "version"
    invalid = _first_invalid(bound, ORDER[: ORDER.index(target)])
    return _render(request, campaign, bound, invalid or target)


def _forms(data: Any, campaign: Campaign | None) -> Forms:
    initial = _initial(campaign) if campaign is not None else {}
    return {name: form(data=data, initial=initial) for name, form in STEP_FORMS.items()}


def _initial(campaign: Campaign) -> dict[str, Any]:
    """The campaign's values as the forms show them. Times to the minute (what the
    inputs hold), so a time left alone is not taken for a change."""
    values: dict[str, Any] = {}
    for form in STEP_FORMS.values():
        for name in form.base_fields:
            value = getattr(campaign, name)
            if isinstance(value, datetime):
                value = value.replace(second=0, microsecond=0)
            values[name] = value
    values["notice_version"], values["purpose"] = campaign.notice_version_id, campaign.purpose_id
    variants = list(campaign.variants.order_by("pk").values_list("notice_version_id", "share"))
    if variants:
        values["share"] = Decimal(variants[0][1]) / 100
        for n, (version_id, share) in zip(MORE_VARIANTS, variants[1:], strict=False):
            values[f"variant_{n}_version"] = version_id
            values[f"variant_{n}_share"] = Decimal(share) / 100
    return values


def _fields(form: forms.ModelForm, names) -> dict[str, Any]:
    """The campaign's own fields of ``names`` (the wording test's are saved apart)."""
    return {k: form.cleaned_data[k] for k in names if k not in VARIANT_FIELDS}


def _first_invalid(bound: Forms, steps: list[str]) -> str | None:
    return next((name for name in steps if name in bound and not bound[name].is_valid()), None)


def _unsaved(bound: Forms) -> Campaign:
    """The campaign the valid steps describe, unsaved (what the audience count reads)."""
    fields: dict[str, Any] = {}
    for form in bound.values():
        if form.is_valid():
            fields.update(_fields(form, form.cleaned_data))
    return Campaign(**fields)


def _save(request: HttpRequest, campaign: Campaign | None, bound: Forms, *, submit: bool):
    by = staff_user(request)
    try:
        with transaction.atomic():  # a refused submission leaves no draft behind
            variants = cast(VersionStep, bound["version"]).variants()
            if campaign is None:
                fields = {
                    k: v
                    for form in bound.values()
                    for k, v in _fields(form, form.cleaned_data).items()
                }
                saved = lifecycle.campaign_create(by=by, variants=variants, **fields)
            else:
                changes = {
                    k: v
                    for form in bound.values()
                    for k, v in _fields(form, form.changed_data).items()
                }
                saved = lifecycle.campaign_edit(
                    campaign=campaign, by=by, variants=variants, **changes
                )
            if submit and saved.state == CampaignState.DRAFT:
                saved = lifecycle.campaign_submit(campaign=saved, by=by)
    except (TransitionError, VariantError, PermissionDenied, FrozenVersionError) as refusal:
        status = 403 if isinstance(refusal, PermissionDenied) else 400
        return _render(request, campaign, bound, "review", refusal=str(refusal), status=status)
    messages.success(request, _outcome(campaign, saved))
    return HttpResponseRedirect(campaign_url(saved.pk))


def _outcome(before: Campaign | None, saved: Campaign) -> str:
    state = saved.get_state_display().lower()
    if before is None:
        return f"Campaign “{saved}” created: {state}."
    if before.state != CampaignState.DRAFT and saved.state != before.state:
        return (
            f"Changes saved. “{saved}” went back to draft: it needs approval again (now {state})."
        )
    return f"Campaign “{saved}” saved: {state}."


def _render(
    request: HttpRequest,
    campaign: Campaign | None,
    bound: Forms,
    step: str,
    refusal: str = "",
    status: int = 200,
) -> HttpResponse:
    form = bound.get(step)
    hidden = [field for name, other in bound.items() if name != step for field in other]
    context: dict[str, Any] = {
        "title": f"Edit “{campaign}”" if campaign else "New campaign",
        "campaign": campaign,
        "sends_back": campaign is not None and campaign.state != CampaignState.DRAFT,
        "step": step,
        "steps": [(name, label, name == step) for name, label in STEPS.items()],
        "next_step": ORDER[ORDER.index(step) + 1] if step != "review" else None,
        "previous_step": ORDER[ORDER.index(step) - 1] if step != "version" else None,
        "form": form,
        "hidden": hidden,
        "action": request.path,
        "refusal": refusal,
        "count_url": reverse("console:audience_count"),
    }
    if step == "version":
        context["versions"] = _versions(form)
    if (
        step in ("audience", "review")
        and bound["version"].is_valid()
        and bound["audience"].is_valid()
    ):
        context["preview"] = preview_context(audience_preview(campaign=_unsaved(bound)))
    if step == "review":
        context["review"] = _unsaved(bound)
        version_step = cast(VersionStep, bound["version"])
        context["review_variants"] = version_step.variants() if version_step.is_valid() else []
    if form is not None and form.is_bound and not form.is_valid():
        status = 400
    return TemplateResponse(request, "console/campaign_flow.html", context, status=status)


def _versions(form: forms.ModelForm | None) -> list[dict[str, Any]]:
    """The version step's table: every version offered, with what an editor picks by."""
    chosen = str(form["notice_version"].value()) if form is not None else ""
    held = Campaign.objects.filter(notice_version=OuterRef("pk"), state__in=HOLDS_ITS_VERSION)
    locales = Prefetch("texts", queryset=NoticeText.objects.only("pk", "version_id", "locale"))
    offered = versions_offered().annotate(held=Exists(held)).prefetch_related(locales)
    return [
        {
            "version": version,
            "locales": [text.locale for text in version.texts.all()],
            "checked": str(version.pk) == chosen,
        }
        for version in offered
    ]
