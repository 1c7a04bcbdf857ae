"""Admin for members, purposes, policies and the (read-only) consent ledger."""

from axes.models import AccessAttempt
from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from accounts.models import (
    ConsentEvent,
    EmailStatusChange,
    JurisdictionPolicy,
    JurisdictionPolicyChange,
    LedgerCheck,
    Member,
    Purpose,
    PurposeText,
    locale_normalise,
)
from accounts.selectors import member_effective_states
from accounts.services.members import (
    CLEARABLE,
    member_address_change,
    member_email_status_clear,
)
from accounts.services.policies import PolicyHeldByGate, policy_set_mode, purpose_create
from accounts.services.suppression_feed import suppression_feed_sync_after_commit
from audit.models import Action
from audit.services import staff_action_record
from config.admin_base import (
    AuditedAdmin,
    EstimatedCountPaginator,
    ReadOnlyAdmin,
    ReadOnlyInline,
    StaffAdmin,
    acting_user,
)
from config.hashing import hash_ip
from config.refusals import PermissionRefused

LEDGER_ROWS_ON_MEMBER = 50
EDITABLE_MEMBER_FIELDS = ["external_id", "email", "locale", "country", "person_key"]


@admin.register(Member)
class MemberAdmin(AuditedAdmin):
    # The trail names the member (external id), never a second copy of their address.
    audit_hidden_fields = ("email", "person_key")
    list_display = [
        "external_id",
        "email",
        "country",
        "jurisdiction",
        "locale",
        "email_status",
        "erased",
    ]
    list_filter = [
        "jurisdiction",
        "email_status",
        ("unsubscribed_at", admin.EmptyFieldListFilter),
        ("erased_at", admin.EmptyFieldListFilter),
        "locale",
    ]
    # "=" makes exact lookups, which use the unique and email indexes on big tables.
    search_fields = ["=external_id", "=email"]
    search_help_text = "Exact external id or email address."
    readonly_fields = [
        "jurisdiction",
        "email_status",
        "email_status_changed_at",
        "unsubscribed_at",
        "erased_at",
        "created_at",
        "updated_at",
        "effective_preferences",
        "ledger",
    ]
    fields = [*EDITABLE_MEMBER_FIELDS, *readonly_fields]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    actions = ["clear_email_status"]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        # An erased member's personal data is never written again, here neither.
        if obj is not None and obj.erased_at is not None:
            return [*EDITABLE_MEMBER_FIELDS, *self.readonly_fields]
        return self.readonly_fields

    @admin.display(description="Erased", boolean=True, ordering="erased_at")
    def erased(self, member: Member) -> bool:
        return member.erased_at is not None

    def has_clear_address_permission(self, request: HttpRequest) -> bool:
        return self.user_has(request, "clear_address")

    @admin.action(
        description="Mail again: clear a bounce or complaint (audited)",
        permissions=["clear_address"],
    )
    def clear_email_status(self, request: HttpRequest, queryset) -> None:
        cleared = 0
        for member in queryset.filter(email_status__in=CLEARABLE):
            reason = f"cleared in the admin by {request.user}"
            if member_email_status_clear(member=member, by=acting_user(request), reason=reason):
                cleared += 1
        skipped = queryset.count() - cleared
        self.message_user(
            request,
            f"{cleared} address(es) cleared; {skipped} left as they were "
            "(only bounces and complaints can be cleared: an unsubscribe is the member's).",
        )

    def save_model(self, request: HttpRequest, obj: Member, form, change: bool) -> None:
        self._member_save(request, obj, form, change)
        if not change or "country" in form.changed_data:
            # A new member, or a new jurisdiction: their feed entries once this commits.
            suppression_feed_sync_after_commit(member_ids=[obj.pk])

    def _member_save(self, request: HttpRequest, obj: Member, form, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            return
        # Only what the form changed, so nothing it merely showed (the address's health,
        # the member's unsubscribe) is written back over a newer value; a new address
        # goes through the one service that changes addresses.
        fields = [name for name in form.changed_data if name != "email"]
        if fields:
            before = Member.objects.get(pk=obj.pk)
            obj.save(update_fields=fields)
            self.audit_save(request, obj, fields, before=before)
        if "email" in form.changed_data:
            reason = f"address changed in the admin by {request.user}"
            member_address_change(
                member=obj, email=obj.email, by=acting_user(request), reason=reason
            )

    @admin.display(description="Effective preferences")
    def effective_preferences(self, member: Member) -> str:
        if not member.pk:
            return "-"
        return format_html(
            "<table><tr><th>Purpose</th><th>State</th><th>Why</th><th>Since</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td><strong>{}</strong></td><td>{}</td><td>{}</td></tr>",
                (
                    (s.purpose.slug, s.state, s.reason.label, f"{s.since:%Y-%m-%d %H:%M} UTC")
                    for s in member_effective_states(member=member)
                ),
            ),
        )

    @admin.display(description="Consent ledger (latest first)")
    def ledger(self, member: Member) -> str:
        if not member.pk:
            return "-"
        events = member.consent_events.select_related("purpose")[:LEDGER_ROWS_ON_MEMBER]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    e.seq,
                    f"{e.created_at:%Y-%m-%d %H:%M:%S} UTC",
                    e.get_action_display(),
                    e.purpose.slug if e.purpose else "-",
                    e.get_source_display(),
                    e.notice_version_id or "-",
                )
                for e in events
            ),
        )
        url = reverse("admin:accounts_consentevent_changelist") + f"?member__id__exact={member.pk}"
        return format_html(
            "<table><tr><th>#</th><th>When</th><th>Action</th><th>Purpose</th><th>Source</th>"
            "<th>Notice version</th></tr>{}</table><p>Showing at most {} events. "
            '<a href="{}">All of this member\'s ledger</a></p>',
            rows,
            LEDGER_ROWS_ON_MEMBER,
            url,
        )


class PolicyInline(ReadOnlyInline):
    model = JurisdictionPolicy
    fields = ["jurisdiction", "mode", "mode_since"]
    show_change_link = True


class PurposeTextForm(forms.ModelForm):
    def clean_locale(self) -> str:
        # As stored, so "DE" next to "de" is refused as the same locale, not by the database.
        return locale_normalise(self.cleaned_data["locale"])


class PurposeTextInline(admin.StackedInline):
    """The purpose's name and description per locale, as members read them (pages and
    receipts); the purpose's own name and description are the fallback."""

    model = PurposeText
    form = PurposeTextForm
    fields = ["locale", "name", "description"]
    extra = 0


class PurposeForm(forms.ModelForm):
    class Meta:
        model = Purpose
        fields = ["slug", "name", "description", "gpc_mode"]
        help_texts = {
            "gpc_mode": (
                "What a browser's Global Privacy Control signal (Sec-GPC: 1) means on the "
                "notice and preference pages. Ignored: nothing. Offered: the page "
                "pre-selects the objection and explains why; the member confirms it. "
                "Applied: the signal is recorded as the member's objection (source gpc) on "
                "their first visit with it, unless they already made a choice for this "
                "purpose; GDPR Art. 21(5) allows objecting by automated means."
            )
        }


@admin.register(Purpose)
class PurposeAdmin(AuditedAdmin):
    form = PurposeForm
    list_display = ["slug", "name", "gpc_mode", "created_at"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [PurposeTextInline, PolicyInline]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        # Downstream pipelines and the ledger refer to the slug: it never changes.
        return ["slug", "created_at"] if obj else ["created_at"]

    def get_prepopulated_fields(self, request: HttpRequest, obj=None) -> dict:
        # A read-only slug has no form field to fill (the change page would fail).
        return {} if obj else self.prepopulated_fields

    def save_model(self, request: HttpRequest, obj: Purpose, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created = purpose_create(
            slug=obj.slug,
            name=obj.name,
            description=obj.description,
            gpc_mode=obj.gpc_mode,
            by=acting_user(request),
        )
        obj.pk, obj.created_at = created.pk, created.created_at
        obj._state.adding = False


class PolicyChangeInline(ReadOnlyInline):
    model = JurisdictionPolicyChange
    fields = ["changed_at", "changed_by", "from_mode", "to_mode", "note"]


@admin.register(JurisdictionPolicy)
class JurisdictionPolicyAdmin(StaffAdmin):
    list_display = ["purpose", "jurisdiction", "mode", "mode_since"]
    list_filter = ["purpose", "mode"]
    list_select_related = ["purpose"]
    fields = [
        "purpose", "jurisdiction", "mode", "mode_since", "gated", "planned_mode", "planned_from"
    ]  # fmt: skip
    # The planned opening and the gate's hold are a processing gate's (console: Gates),
    # never edited here; a held place is refused a change out of "excluded".
    readonly_fields = [
        "purpose", "jurisdiction", "mode_since", "gated", "planned_mode", "planned_from"
    ]  # fmt: skip
    inlines = [PolicyChangeInline]
    refusals = (PermissionRefused, PolicyHeldByGate)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # every purpose gets one row per jurisdiction when it is created

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: JurisdictionPolicy, form, change) -> None:
        # Through the service, so every change leaves an audit row with who and when.
        if "mode" in form.changed_data:
            policy_set_mode(policy=obj, mode=form.cleaned_data["mode"], by=acting_user(request))


@admin.register(ConsentEvent)
class ConsentEventAdmin(ReadOnlyAdmin):
    list_display = ["seq", "created_at", "member", "action", "purpose", "source", "delivery_id"]
    list_filter = ["action", "source", "purpose"]
    list_select_related = ["member", "purpose"]
    search_fields = ["=member__external_id"]
    search_help_text = "Exact external id of the member."
    raw_id_fields = ["member"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 100


@admin.register(LedgerCheck)
class LedgerCheckAdmin(ReadOnlyAdmin):
    list_display = [
        "checked_at",
        "kind",
        "intact",
        "events_checked",
        "head_seq",
        "first_broken_seq",
        "detail",
        "sink_error",
    ]
    list_filter = ["kind", "intact"]


@admin.register(JurisdictionPolicyChange)
class JurisdictionPolicyChangeAdmin(ReadOnlyAdmin):
    list_display = ["changed_at", "policy", "from_mode", "to_mode", "changed_by", "note"]
    list_select_related = ["policy__purpose", "changed_by"]


@admin.register(EmailStatusChange)
class EmailStatusChangeAdmin(ReadOnlyAdmin):
    list_display = ["changed_at", "member", "from_status", "to_status", "changed_by", "reason"]
    list_select_related = ["member", "changed_by"]
    raw_id_fields = ["member"]


@admin.register(AccessAttempt)
class LoginLockoutAdmin(StaffAdmin):
    """Failed staff logins per username and address (django-axes); deleting a row lifts
    its lockout. Rows are kept for the cool-off time only."""

    list_display = ["attempt_time", "username", "ip_address", "failures_since_start"]
    search_fields = ["=username"]
    fields = readonly_fields = (
        "attempt_time",
        "username",
        "ip_address",
        "user_agent",
        "failures_since_start",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: AccessAttempt) -> None:
        self._lift(request, [obj])
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        self._lift(request, list(queryset))
        super().delete_queryset(request, queryset)

    def _lift(self, request: HttpRequest, attempts: list[AccessAttempt]) -> None:
        """Each lockout lifted is in the staff audit trail: the username, and the
        address as the trail keeps addresses (hashed)."""
        for attempt in attempts:
            staff_action_record(
                by=acting_user(request),
                action=Action.LOCKOUT_LIFT,
                detail={
                    "username": attempt.username,
                    "address_hash": hash_ip(attempt.ip_address),
                    "failures": attempt.failures_since_start,
                },
            )
