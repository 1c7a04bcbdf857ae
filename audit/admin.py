"""The staff audit trail for administrators: read only, for everyone (the console's
``/console/audit/`` is where the privacy team reads it)."""

from django.contrib import admin

from audit.models import StaffAction
from config.admin_base import EstimatedCountPaginator, ReadOnlyAdmin


@admin.register(StaffAction)
class StaffActionAdmin(ReadOnlyAdmin):
    list_display = ["at", "username", "action", "target_type", "target_id", "target_label"]
    list_filter = ["action", "target_type"]
    list_select_related = ["by"]
    search_fields = ["=username", "=target_id", "target_label"]
    search_help_text = "Exact username or target id, or part of the target's name."
    raw_id_fields = ["by"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 100
    actions = None
