"""Notices and their versions: the wording staff write, preview per locale and send
to themselves as a test (NoticeText is edited inline, on its version's page)."""

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from accounts.permissions import PermissionRefused
from campaigns.models import FrozenVersionError, Notice, NoticeText, NoticeVersion
from campaigns.rendering import compile_message
from campaigns.services.notices import notice_send_test, notice_version_copy
from config.admin_base import AuditedAdmin, ReadOnlyInline, acting_user


class NoticeVersionInline(ReadOnlyInline):
    model = NoticeVersion
    fields = ["number", "default_locale", "effective_date", "objection_deadline", "frozen_at"]
    show_change_link = True


@admin.register(Notice)
class NoticeAdmin(AuditedAdmin):
    list_display = ["title", "created_at"]
    inlines = [NoticeVersionInline]


class NoticeTextInline(admin.StackedInline):
    model = NoticeText
    fields = ["locale", "subject", "body_markdown", "sha256"]
    readonly_fields = ["sha256"]
    extra = 0

    def _editable(self, obj) -> bool:
        return obj is None or not obj.edit_refusal()

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._editable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._editable(obj) and super().has_delete_permission(request, obj)


@admin.register(NoticeVersion)
class NoticeVersionAdmin(AuditedAdmin):
    # A version frozen since the form was opened (a stale tab) is refused, not a 500.
    refusals = (PermissionRefused, FrozenVersionError)
    list_display = [
        "__str__",
        "default_locale",
        "effective_date",
        "objection_deadline",
        "frozen_at",
    ]
    list_select_related = ["notice"]
    fields = [
        "notice",
        "default_locale",
        "effective_date",
        "objection_deadline",
        "frozen_at",
        "editable",
        "previews",
    ]
    readonly_fields = ["frozen_at", "editable", "previews"]
    inlines = [NoticeTextInline]
    actions = ["copy_to_new_version"]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        if obj is not None and obj.edit_refusal():
            return flatten(self.fields or ())  # sent, or approved (or awaiting it): not a draft
        return self.readonly_fields

    @admin.display(description="Can be edited")
    def editable(self, version: NoticeVersion) -> str:
        return (version.pk and version.edit_refusal()) or "Yes"

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        """A POST to a version that cannot change (a stale tab, or a campaign submitted
        meanwhile) saves nothing and says why, rather than ignoring the read-only
        fields and reporting success, or failing with an error page."""
        if request.method == "POST" and object_id:
            version = self.get_object(request, object_id)
            refusal = version.edit_refusal() if version is not None else ""
            if refusal:
                return self._refused(request, f"Nothing saved: {refusal}")
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except FrozenVersionError as exc:  # raced with a submission; rolled back
            return self._refused(request, f"Nothing saved: {exc}")

    def save_model(self, request: HttpRequest, obj: NoticeVersion, form, change: bool) -> None:
        obj.last_edited_by = acting_user(request)
        super().save_model(request, obj, form, change)

    @admin.display(description="Preview")
    def previews(self, version: NoticeVersion) -> str:
        if not version.pk:
            return "Save first, then preview each locale."
        links = [
            format_html(
                '<a href="{}">{}</a>',
                reverse("admin:campaigns_noticeversion_preview", args=[version.pk, text.locale]),
                text.locale,
            )
            for text in version.texts.all()
        ]
        return format_html(" · ".join(["{}"] * len(links)), *links) if links else "No text yet."

    @admin.action(description="Copy to a new editable version", permissions=["add"])
    def copy_to_new_version(self, request: HttpRequest, queryset) -> None:
        for version in queryset:
            copy = notice_version_copy(version=version, by=acting_user(request))
            self.message_user(request, f"Created {copy} from {version}.", messages.SUCCESS)

    def get_urls(self):
        return [
            path(
                "<int:pk>/preview/<str:locale>/",
                self.admin_site.admin_view(self.preview_view),
                name="campaigns_noticeversion_preview",
            ),
            path(
                "<int:pk>/send-test/<str:locale>/",
                self.admin_site.admin_view(self.send_test_view),
                name="campaigns_noticeversion_send_test",
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest, pk: int, locale: str) -> HttpResponse:
        version = get_object_or_404(NoticeVersion, pk=pk)
        if not self.has_view_permission(request, version):
            raise PermissionDenied
        compiled = compile_message(version, locale, reminder=request.GET.get("reminder") == "1")
        link = "#preview-link"
        text, html = compiled.personalise(notice_url=link, unsubscribe_url=link)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Preview of {version} [{compiled.locale}]",
            "version": version,
            "compiled": compiled,
            "text": text,
            "html": html,
            "locales": [t.locale for t in version.texts.all()],
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/campaigns/noticeversion/preview.html", context)

    def send_test_view(self, request: HttpRequest, pk: int, locale: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(status=405)
        version = get_object_or_404(NoticeVersion, pk=pk)
        if not self.has_view_permission(request, version):
            raise PermissionDenied
        user = acting_user(request)
        if not user.email:
            self.message_user(request, "Your staff account has no email address.", messages.ERROR)
        else:
            try:
                notice_send_test(version=version, locale=locale, to=user.email, by=user)
            except PermissionRefused as exc:
                self.message_user(request, f"Not sent: {exc}.", messages.ERROR)
            else:
                self.message_user(
                    request, f"Test sent to {user.email} (not counted).", messages.SUCCESS
                )
        return HttpResponseRedirect(
            reverse("admin:campaigns_noticeversion_preview", args=[pk, locale])
        )
