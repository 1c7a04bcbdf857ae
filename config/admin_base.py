"""Admin helpers both apps' consoles share: refusals shown as errors (StaffAdmin),
evidence tables nobody edits (ReadOnlyAdmin), rows listed under their parent and never
edited there (ReadOnlyInline), and a paginator that does not count big tables row by
row (EstimatedCountPaginator), and the acting staff user for the services' ``by``
(acting_user), and the staff audit trail's entries for what an admin page writes
itself, without a service (AuditedAdmin)."""

from typing import cast

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten, model_format_dict
from django.contrib.auth.models import User
from django.core.paginator import Paginator
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.functional import cached_property

from audit.models import Action
from audit.services import staff_action_record
from config.refusals import PermissionRefused
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


# What the trail shows for a field whose values it does not keep.
HIDDEN = "(not recorded)"


class AuditedAdmin(StaffAdmin):
    """For models an admin page saves itself, with no service in between (notices and
    their texts, a purpose's wording, a member's own fields): each save of the page and
    of its inline rows is an entry in the staff audit trail with the fields changed,
    old and new, in the admin's transaction. ``audit_hidden_fields``: fields recorded as
    changed without their values (personal data the trail must not copy)."""

    audit_hidden_fields: tuple[str, ...] = ()

    def save_model(self, request: HttpRequest, obj, form, change: bool) -> None:
        before = type(obj)._default_manager.filter(pk=obj.pk).first() if change else None
        super().save_model(request, obj, form, change)
        self.audit_save(request, obj, form.changed_data, before=before)

    def audit_save(
        self, request: HttpRequest, obj: Model, fields: list[str], *, before: Model | None
    ) -> None:
        """Record a create (``before`` None) or an edit of ``fields`` (nothing if none)."""
        names = [name for name in fields if _is_field(obj, name)]
        if before is not None and not names:
            return
        changes = {
            name: (HIDDEN, HIDDEN)
            if name in self.audit_hidden_fields
            else (getattr(before, name) if before is not None else None, getattr(obj, name))
            for name in names
        }
        action = Action.EDIT if before is not None else Action.CREATE
        staff_action_record(by=acting_user(request), action=action, target=obj, changes=changes)

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        # The inline forms' instances already hold the new values: the old are the
        # forms' initial data (the row as it was read).
        initial = {f.instance.pk: f.initial for f in formset.initial_forms}
        # A deleted row's instance loses its pk: kept to say which row it was.
        pks = {id(f.instance): f.instance.pk for f in formset.initial_forms}
        super().save_formset(request, form, formset, change)
        by = acting_user(request)
        for obj in formset.new_objects:
            fields = [f.name for f in obj._meta.concrete_fields if not f.primary_key]
            self.audit_save(request, obj, fields, before=None)
        for obj, fields in formset.changed_objects:
            changes = {name: (initial[obj.pk].get(name), getattr(obj, name)) for name in fields}
            staff_action_record(by=by, action=Action.EDIT, target=obj, changes=changes)
        for obj in formset.deleted_objects:
            obj.pk = pks[id(obj)]
            staff_action_record(by=by, action=Action.DELETE, target=obj)


def _is_field(obj: Model, name: str) -> bool:
    return any(field.name == name for field in obj._meta.concrete_fields)
