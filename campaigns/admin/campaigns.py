"""Campaigns: the form staff fill in, the history of their states, and the buttons
that move a campaign through its lifecycle (its reports are in reports.py)."""

from django import forms
from django.contrib import admin, messages
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
from campaigns.models import Campaign, CampaignState, CampaignTransition
from campaigns.selectors import audience_preview
from campaigns.services import lifecycle
from campaigns.services.lifecycle import EDITABLE_BEFORE_SENDING, TransitionError
from campaigns.tasks import senders_dispatch
from config.admin_base import StaffAdmin


class CommaListField(forms.CharField):
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
        codes = self.cleaned_data["countries"]
        unknown = [code for code in codes if normalise_country(code) is None]
        if unknown:
            raise forms.ValidationError(f"Unknown country code(s): {', '.join(unknown)}")
        return [normalise_country(code) for code in codes]

    def clean(self):
        data = super().clean()
        if bool(data.get("purpose")) != bool(data.get("purpose_state")):
            raise forms.ValidationError("Choose both a purpose and its state, or neither.")
        return data


class TransitionInline(admin.TabularInline):
    model = CampaignTransition
    fields = ["at", "from_state", "to_state", "by", "note"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "History"

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


# Buttons on a campaign's page: (service name, label, states it shows in, permission).
# The permission only decides whether the button shows: the service checks it again.
CAMPAIGN_ACTIONS = [
    ("submit", "Submit for approval", {CampaignState.DRAFT}, lifecycle.EDIT),
    ("approve", "Approve", {CampaignState.AWAITING_APPROVAL}, lifecycle.APPROVE),
    ("reject", "Send back to draft", {CampaignState.AWAITING_APPROVAL}, lifecycle.APPROVE),
    ("schedule", "Schedule", {CampaignState.APPROVED}, lifecycle.OPERATE),
    ("pause", "Pause", {CampaignState.SENDING}, lifecycle.OPERATE),
    ("resume", "Resume", {CampaignState.PAUSED}, lifecycle.OPERATE),
    (
        "cancel",
        "Cancel campaign",
        {
            CampaignState.DRAFT,
            CampaignState.AWAITING_APPROVAL,
            CampaignState.APPROVED,
            CampaignState.SCHEDULED,
            CampaignState.SENDING,
            CampaignState.PAUSED,
        },
        lifecycle.OPERATE,
    ),
]


def _run_action(name: str, campaign: Campaign, user) -> str:
    """Call the lifecycle service for a button; returns what to tell the user."""
    if name == "submit":
        lifecycle.campaign_submit(campaign=campaign, by=user)
    elif name == "approve":
        lifecycle.campaign_approve(campaign=campaign, by=user)
    elif name == "reject":
        lifecycle.campaign_reject(campaign=campaign, by=user, note="sent back by the approver")
    elif name == "schedule":
        lifecycle.campaign_schedule(campaign=campaign, by=user)
    elif name == "pause":
        lifecycle.campaign_pause(campaign=campaign, by=user, reason=f"paused by {user}")
    elif name == "resume":
        lifecycle.campaign_resume(campaign=campaign, by=user)
        senders_dispatch(campaign.pk)
    elif name == "cancel":
        lifecycle.campaign_cancel(campaign=campaign, by=user, reason=f"cancelled by {user}")
    campaign.refresh_from_db()
    return f"{campaign}: now {campaign.get_state_display().lower()}."


@admin.register(Campaign)
class CampaignAdmin(StaffAdmin):
    # A refused edit (say, renaming a campaign while it sends) saves nothing.
    refusals = (PermissionRefused, TransitionError)
    form = CampaignForm
    change_form_template = "admin/campaigns/campaign/change_form.html"
    list_display = ["name", "notice_version", "state", "starts_at", "throttle_per_minute"]
    list_filter = ["state"]
    list_select_related = ["notice_version__notice"]
    inlines = [TransitionInline]
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
        (
            "Approval and state",
            {
                "fields": [
                    "state",
                    "state_reason",
                    "last_edited_by",
                    "last_edited_at",
                    "approved_by",
                    "approved_at",
                    "approved_texts",
                    "fanned_out_at",
                    "progress",
                    "reach",
                ]
            },
        ),
    ]
    readonly_fields = [
        "state",
        "state_reason",
        "last_edited_by",
        "last_edited_at",
        "approved_by",
        "approved_at",
        "approved_texts",
        "fanned_out_at",
        "audience",
        "progress",
        "reach",
    ]

    def save_model(self, request: HttpRequest, obj: Campaign, form, change: bool) -> None:
        # A refusal propagates: the admin's transaction rolls back, and changeform_view
        # shows it as an error (StaffAdmin), with no "changed successfully" or log entry.
        data = {name: form.cleaned_data[name] for name in form.changed_data}
        if change:
            lifecycle.campaign_edit(campaign=obj, by=request.user, **data)
            return
        fields = {
            k: v
            for k, v in form.cleaned_data.items()
            if k in lifecycle.APPROVED_FIELDS | lifecycle.OPERATIONAL_FIELDS
            and k not in {"name", "notice_version"}
        }
        created = lifecycle.campaign_create(
            by=request.user,
            name=form.cleaned_data["name"],
            notice_version=form.cleaned_data["notice_version"],
            **fields,
        )
        obj.pk = created.pk
        obj._state.adding = False

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
        if action not in {name for name, *_ in CAMPAIGN_ACTIONS}:
            return HttpResponse(status=404)
        try:
            with transaction.atomic():
                self.message_user(request, _run_action(action, campaign, request.user))
        except (TransitionError, PermissionRefused) as exc:
            self.message_user(request, f"Not done: {exc}.", messages.ERROR)
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[pk]))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["campaign_actions"] = [
                (name, label)
                for name, label, states, perm in CAMPAIGN_ACTIONS
                if obj.state in states and request.user.has_perm(perm)
            ]
        return super().render_change_form(request, context, add, change, form_url, obj)
