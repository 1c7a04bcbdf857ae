"""Campaigns: the form staff fill in, the history of their states, and the buttons
that move a campaign through its lifecycle (one table, CAMPAIGN_ACTIONS: each button's
label, the states it shows in, the permission it needs and the service it calls)."""

from collections.abc import Callable, Collection
from typing import Any, NamedTuple

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from accounts.jurisdictions import Jurisdiction, normalise_country
from accounts.permissions import PermissionRefused
from campaigns.admin import reports
from campaigns.models import (
    Campaign,
    CampaignState,
    CampaignTransition,
    CampaignVariant,
)
from campaigns.selectors import audience_preview
from campaigns.services import lifecycle
from campaigns.services.lifecycle import EDITABLE_BEFORE_SENDING, TransitionError
from campaigns.services.variants import VariantError
from campaigns.variants import VariantRow, split_problems
from config.admin_base import ReadOnlyInline, StaffAdmin, acting_user


class CommaListField(forms.Field):
    """A JSON list edited as "GB, DE, FR"."""

    def __init__(self, *, upper: bool = False, **kwargs) -> None:
        self.upper = upper
        super().__init__(required=False, **kwargs)

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value) -> list[str]:
        items = [item.strip() for item in (value or "").split(",") if item.strip()]
        return [item.upper() if self.upper else item.lower() for item in items]


class CampaignForm(forms.ModelForm):
    jurisdictions = forms.MultipleChoiceField(
        choices=Jurisdiction.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every jurisdiction.",
    )
    countries = CommaListField(upper=True, help_text="ISO codes, e.g. GB, IE. Empty: any.")
    locales = CommaListField(help_text="e.g. en, de. Empty: any.")

    class Meta:
        model = Campaign
        fields = [
            "name",
            "notice_version",
            *lifecycle.APPROVED_FIELDS - {"name", "notice_version"},
            *lifecycle.OPERATIONAL_FIELDS,
        ]

    def clean_countries(self) -> list[str]:
        pairs = [(code, normalise_country(code)) for code in self.cleaned_data["countries"]]
        unknown = [code for code, known in pairs if known is None]
        if unknown:
            raise forms.ValidationError(f"Unknown country code(s): {', '.join(unknown)}")
        return [known for _, known in pairs if known is not None]

    def clean(self):
        data = super().clean()
        if bool(data.get("purpose")) != bool(data.get("purpose_state")):
            raise forms.ValidationError("Choose both a purpose and its state, or neither.")
        return data


class VariantFormSet(forms.BaseInlineFormSet):
    """The wording test's rows, checked as one split (``campaigns.variants``)."""

    def variants(self) -> list[tuple[Any, Any]]:
        """(version, share) in the rows' order, leaving out deleted and empty rows (each
        a NoticeVersion and an int once ``clean`` passed)."""
        rows = []
        for form in self.forms:
            data = getattr(form, "cleaned_data", None) or {}
            if data and not data.get("DELETE"):
                rows.append((data.get("notice_version"), data.get("share")))
        return rows

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        notice_id = (
            self.instance.notice_version.notice_id if self.instance.notice_version_id else None
        )
        problems = split_problems(
            notice_id=notice_id,
            rows=[
                VariantRow(v.pk if v else None, v.notice_id if v else None, share, str(v or ""))
                for v, share in self.variants()
            ],
        )
        if problems:
            raise forms.ValidationError(problems)


class VariantInline(admin.TabularInline):
    """A wording test: versions of the campaign's notice and their shares, in basis
    points (5000 is 50%). Saved through ``lifecycle.campaign_edit``; editable only while
    the campaign is a draft (after that a change goes through the console or back to
    draft first), read-only afterwards."""

    model = CampaignVariant
    formset = VariantFormSet
    fields = ["notice_version", "share"]
    extra = 0
    verbose_name = "wording test variant"
    verbose_name_plural = (
        "Wording test (none, or two or more versions of the notice; shares in basis points "
        "summing to 10000; the first is the campaign's version)"
    )

    def _editable(self, request: HttpRequest, obj: Campaign | None) -> bool:
        # The campaign's own permissions (what campaign_edit checks): the roles
        # grant none on the variant rows themselves.
        perm = "campaigns.add_campaign" if obj is None else "campaigns.change_campaign"
        state_allows = obj is None or obj.state == CampaignState.DRAFT
        return state_allows and request.user.has_perm(perm)

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return [] if self._editable(request, obj) else ["notice_version", "share"]

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.has_perm("campaigns.view_campaign")

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._editable(request, obj)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._editable(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._editable(request, obj)


class TransitionInline(ReadOnlyInline):
    model = CampaignTransition
    fields = ["at", "from_state", "to_state", "by", "note"]
    verbose_name_plural = "History"


class Button(NamedTuple):
    """A button on a campaign's page. ``permission`` only decides whether it shows:
    the service ``press`` calls checks it again (and the state, and four eyes)."""

    name: str
    label: str
    states: Collection[str]
    permission: str
    press: Callable[[Campaign, User], object]  # (campaign, acting user)


S = CampaignState
EDIT, APPROVE, OPERATE = lifecycle.EDIT, lifecycle.APPROVE, lifecycle.OPERATE
SENT_BACK = "sent back by the approver"
# fmt: off
CAMPAIGN_ACTIONS = (
    Button("submit", "Submit for approval", {S.DRAFT}, EDIT,
           lambda c, by: lifecycle.campaign_submit(campaign=c, by=by)),
    Button("approve", "Approve", {S.AWAITING_APPROVAL}, APPROVE,
           lambda c, by: lifecycle.campaign_approve(campaign=c, by=by)),
    Button("reject", "Send back to draft", {S.AWAITING_APPROVAL}, APPROVE,
           lambda c, by: lifecycle.campaign_reject(campaign=c, by=by, note=SENT_BACK)),
    Button("schedule", "Schedule", {S.APPROVED}, OPERATE,
           lambda c, by: lifecycle.campaign_schedule(campaign=c, by=by)),
    Button("pause", "Pause", {S.SENDING}, OPERATE,
           lambda c, by: lifecycle.campaign_pause(campaign=c, by=by, reason=f"paused by {by}")),
    Button("resume", "Resume", {S.PAUSED}, OPERATE,
           lambda c, by: lifecycle.campaign_resume(campaign=c, by=by)),
    Button("cancel", "Cancel campaign",
           {S.DRAFT, S.AWAITING_APPROVAL, S.APPROVED, S.SCHEDULED, S.SENDING, S.PAUSED}, OPERATE,
           lambda c, by: lifecycle.campaign_cancel(campaign=c, by=by, reason=f"cancelled by {by}")),
)
# fmt: on
BUTTONS = {button.name: button for button in CAMPAIGN_ACTIONS}


def _press(button: Button, campaign: Campaign, user: User) -> str:
    """Call the button's service; returns what to tell the user."""
    button.press(campaign, user)
    campaign.refresh_from_db()
    return f"{campaign}: now {campaign.get_state_display().lower()}."


# Shown on a campaign's page, never edited there: the lifecycle sets them, or they are computed.
APPROVAL_AND_STATE = (
    "state", "state_reason", "last_edited_by", "last_edited_at", "approved_by", "approved_at",
    "approved_texts", "fanned_out_at", "progress", "reach",
)  # fmt: skip


@admin.register(Campaign)
class CampaignAdmin(StaffAdmin):
    # A refused edit (say, renaming a campaign while it sends) saves nothing.
    refusals = (PermissionRefused, TransitionError, VariantError)
    form = CampaignForm
    change_form_template = "admin/campaigns/campaign/change_form.html"
    list_display = ["name", "notice_version", "state", "starts_at", "throttle_per_minute"]
    list_filter = ["state"]
    list_select_related = ["notice_version__notice"]
    inlines = [VariantInline, TransitionInline]
    fieldsets = [
        (None, {"fields": ["name", "notice_version"]}),
        (
            "Audience",
            {
                "fields": [
                    "jurisdictions",
                    "countries",
                    "locales",
                    "members_created_after",
                    "members_created_before",
                    "purpose",
                    "purpose_state",
                    "only_not_acknowledged",
                    "audience",
                ]
            },
        ),
        (
            "Schedule and pace",
            {
                "fields": [
                    "starts_at",
                    "window_ends_at",
                    "throttle_per_minute",
                    "remind_after_days",
                    "max_reminders",
                ]
            },
        ),
        ("Approval and state", {"fields": APPROVAL_AND_STATE}),
    ]
    readonly_fields = [*APPROVAL_AND_STATE, "audience"]

    def save_model(self, request: HttpRequest, obj: Campaign, form, change: bool) -> None:
        # A refusal propagates: the admin's transaction rolls back, and changeform_view
        # shows it as an error (StaffAdmin), with no "changed successfully" or log entry.
        data = {name: form.cleaned_data[name] for name in form.changed_data}
        if change:
            lifecycle.campaign_edit(campaign=obj, by=acting_user(request), **data)
            return
        fields = {
            k: v
            for k, v in form.cleaned_data.items()
            if k in lifecycle.APPROVED_FIELDS | lifecycle.OPERATIONAL_FIELDS
            and k not in {"name", "notice_version"}
        }
        created = lifecycle.campaign_create(
            by=acting_user(request),
            name=form.cleaned_data["name"],
            notice_version=form.cleaned_data["notice_version"],
            **fields,
        )
        obj.pk = created.pk
        obj._state.adding = False

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        if not isinstance(formset, VariantFormSet):
            return super().save_formset(request, form, formset, change)
        # The admin's change message reads these; the staff audit trail has the change.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        if not formset.has_changed():
            return None
        # Through the lifecycle's edit (permission, audit trail, the campaign's version
        # follows the first variant), never the formset's own save.
        campaign = Campaign.objects.get(pk=form.instance.pk)
        lifecycle.campaign_edit(
            campaign=campaign, by=acting_user(request), variants=formset.variants()
        )
        return None

    @admin.display(description="Approved texts (SHA-256)")
    def approved_texts(self, campaign: Campaign) -> str:
        hashes = sorted(campaign.approved_text_hashes.items())
        if not hashes:
            return "Recorded at approval."
        return format_html(
            "<br>".join(["{}: <code>{}</code>"] * len(hashes)),
            *[part for pair in hashes for part in pair],
        )

    @admin.display(description="Audience now")
    def audience(self, campaign: Campaign) -> str:
        if not campaign.pk:
            return "Save to see the audience."
        preview = audience_preview(campaign=campaign)
        unreachable = ", ".join(f"{n} {status}" for status, n in preview.unreachable.items())
        jurisdictions = ", ".join(f"{j} {n}" for j, n in sorted(preview.by_jurisdiction.items()))
        locales = ", ".join(f"{loc} {n}" for loc, n in sorted(preview.by_locale.items()))
        return format_html(
            "<strong>{}</strong> reachable by email of {} selected; not reachable by email: {}."
            "<br>By jurisdiction: {}<br>By locale: {}",
            preview.reachable,
            preview.targeted,
            unreachable or "none",
            jurisdictions or "-",
            locales or "-",
        )

    @admin.display(description="Progress")
    def progress(self, campaign: Campaign) -> str:
        # Rendered into the page itself, not framed: the site denies framing
        # (X-Frame-Options: DENY), which left a framed progress area blank.
        if not campaign.pk:
            return "-"
        return render_to_string(
            "admin/campaigns/campaign/_progress.html",
            {**reports.progress_context(campaign), "watch_url": reports.progress_url(campaign)},
        )

    @admin.display(description="Reach")
    def reach(self, campaign: Campaign) -> str:
        if not campaign.pk or campaign.state in EDITABLE_BEFORE_SENDING:
            return "Shown once the campaign has started."
        return format_html(
            '<a href="{}">Reach report</a> · <a href="{}">Members not reached (CSV)</a>',
            reverse("admin:campaigns_campaign_reach", args=[campaign.pk]),
            reverse("admin:campaigns_campaign_not_reached", args=[campaign.pk]),
        )

    def get_urls(self):
        return [
            path(
                "<int:pk>/reach/",
                self.admin_site.admin_view(reports.reach_view),
                name="campaigns_campaign_reach",
            ),
            path(
                "<int:pk>/not-reached.csv",
                self.admin_site.admin_view(reports.not_reached_view),
                name="campaigns_campaign_not_reached",
            ),
            path(
                "<int:pk>/progress/",
                self.admin_site.admin_view(reports.progress_view),
                name="campaigns_campaign_progress",
            ),
            path(
                "<int:pk>/do/<str:action>/",
                self.admin_site.admin_view(require_POST(self.action_view)),
                name="campaigns_campaign_do",
            ),
            *super().get_urls(),
        ]

    def action_view(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        """A button: the lifecycle service decides (permission, state, four eyes)."""
        campaign = get_object_or_404(Campaign, pk=pk)
        if not self.has_view_permission(request, campaign):
            raise PermissionDenied
        button = BUTTONS.get(action)
        if button is None:
            return HttpResponse(status=404)
        try:
            with transaction.atomic():
                self.message_user(request, _press(button, campaign, acting_user(request)))
        except (TransitionError, PermissionRefused) as exc:
            self.message_user(request, f"Not done: {exc}.", messages.ERROR)
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[pk]))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["campaign_actions"] = [
                (button.name, button.label)
                for button in CAMPAIGN_ACTIONS
                if obj.state in button.states and request.user.has_perm(button.permission)
            ]
        return super().render_change_form(request, context, add, change, form_url, obj)
