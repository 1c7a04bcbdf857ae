"""Admin helpers both apps' consoles share: refusals shown as errors (StaffAdmin),
evidence tables nobody edits (ReadOnlyAdmin), rows listed under their parent and never
edited there (ReadOnlyInline), and a paginator that does not count big tables row by
row (EstimatedCountPaginator), and the acting staff user for the services' ``by``
(acting_user)."""

from typing import cast

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten, model_format_dict
from django.contrib.auth.models import User
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.functional import cached_property

from accounts.permissions import PermissionRefused
from db.estimates import table_row_estimate

# Below this many rows an exact count is cheap enough, and exact.
ESTIMATE_ABOVE = 100_000


def acting_user(request: HttpRequest) -> User:
    """The staff member behind an admin request. The admin site lets in active staff
    only, never an anonymous visitor, so this narrows the type and checks nothing."""
    return cast(User, request.user)


class EstimatedCountPaginator(Paginator):
    """On PostgreSQL, use the planner's row estimate for big unfiltered tables:
    an exact count(*) of a multi-million-row ledger costs more than the page view."""

    @cached_property
    def count(self) -> int:
        query = getattr(self.object_list, "query", None)
        if query is not None and not query.where:
            estimate = table_row_estimate(query.model)
            if estimate is not None and estimate > ESTIMATE_ABOVE:
                return estimate
        return super().count


class StaffAdmin(admin.ModelAdmin):
    """Refusals are shown as error messages, never as a 500 or a success.

    ``refusals`` are the exceptions a service raises to refuse a change (a missing
    permission; subclasses add e.g. a lifecycle's refusal). A refused save is rolled
    back with the admin's own transaction, so no change log entry is written either.
    An action the user may not run is refused by name, with the permissions it needs
    (Django would otherwise ignore the request, or say "No action selected")."""

    refusals: tuple[type[Exception], ...] = (PermissionRefused,)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except self.refusals as exc:
            return self._refused(request, f"Not saved: {exc}.")

    def changelist_view(self, request, extra_context=None):
        # An action form at the top and one at the bottom each post an "action".
        names = request.POST.getlist("action") if request.method == "POST" else []
        if any(names) and self.has_view_or_change_permission(request):
            for name in filter(None, names):
                refused = self._action_refused(request, name)
                if refused:
                    return self._refused(request, refused)
        try:
            return super().changelist_view(request, extra_context)
        except self.refusals as exc:
            return self._refused(request, f"Not done: {exc}.")

    def _action_refused(self, request: HttpRequest, name: str) -> str | None:
        """Why the user may not run the action ``name``; None if they may (or no such action)."""
        if name in self.get_actions(request):
            return None
        # Django's own list of the admin's actions, before the permission filter; private,
        # so django-stubs does not declare it.
        base_actions = self._get_base_actions()  # type: ignore[attr-defined]
        for func, action_name, description in base_actions:
            if action_name == name:
                perms = [
                    f"{self.opts.app_label}.{p}_{self.opts.model_name}"
                    if p in ("add", "change", "delete", "view")
                    else f"{self.opts.app_label}.{p}"
                    for p in getattr(func, "allowed_permissions", ())
                ]
                what = str(description) % model_format_dict(self.opts)
                return f"Not done: you may not “{what}” (needs {', '.join(perms) or 'nothing'})."
        return None

    def _refused(self, request: HttpRequest, message: str) -> HttpResponse:
        self.message_user(request, message, messages.ERROR)
        return HttpResponseRedirect(request.get_full_path())

    def user_has(self, request: HttpRequest, codename: str) -> bool:
        """The user holds this app's permission ``codename``."""
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")


class ReadOnlyAdmin(StaffAdmin):
    """Evidence tables: nobody adds, edits or deletes rows here, superusers included."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    """Rows listed under their parent and never added, edited or deleted there: a
    history, or rows changed on their own page (``show_change_link``)."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return flatten(self.fields or ())

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
