"""Deliveries, the ESP's events about them and objection receipts: evidence staff
read, with the few actions that send something again (each through its service)."""

from django.contrib import admin
from django.http import HttpRequest

from campaigns.models import Delivery, DeliveryEvent, ObjectionReceipt
from campaigns.services.receipts import receipts_retry
from campaigns.services.reconcile import deliveries_give_up, deliveries_resend
from config.admin_base import EstimatedCountPaginator, ReadOnlyAdmin, StaffAdmin, acting_user


@admin.register(Delivery)
class DeliveryAdmin(StaffAdmin):
    list_display = ["id", "campaign", "member", "wave", "status", "sent_at", "attempts", "error"]
    list_filter = ["status", "wave", "campaign"]
    list_select_related = ["campaign", "member"]
    search_fields = ["=member__external_id", "=esp_message_id"]
    search_help_text = "Exact member external id or ESP message id."
    raw_id_fields = ["campaign", "member"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    actions = ["resend", "give_up"]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return [f.name for f in Delivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_resend_delivery_permission(self, request: HttpRequest) -> bool:
        return self.user_has(request, "resend_delivery")

    @admin.action(
        description="Resend (unknown or failed deliveries only)", permissions=["resend_delivery"]
    )
    def resend(self, request: HttpRequest, queryset) -> None:
        resent = deliveries_resend(deliveries=queryset, by=acting_user(request))
        self.message_user(request, f"{resent} deliveries queued to be sent again.")

    @admin.action(
        description="Give up: mark unknown deliveries failed (not resent)",
        permissions=["resend_delivery"],
    )
    def give_up(self, request: HttpRequest, queryset) -> None:
        count = deliveries_give_up(deliveries=queryset, by=acting_user(request))
        self.message_user(request, f"{count} unknown deliveries marked failed.")


@admin.register(DeliveryEvent)
class DeliveryEventAdmin(StaffAdmin):
    """ESP events as received: read-only evidence; orphans are events matching no delivery."""

    list_display = ["received_at", "esp", "event_type", "delivery", "is_orphan", "is_machine"]
    list_filter = ["esp", "event_type", "is_orphan", "is_machine", "processed_at"]
    list_select_related = ["delivery"]
    search_fields = ["=message_id", "=event_id"]
    search_help_text = "Exact ESP message id or event id."
    raw_id_fields = ["delivery"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return [f.name for f in DeliveryEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(ObjectionReceipt)
class ObjectionReceiptAdmin(ReadOnlyAdmin):
    """The confirmation emails for objections: owed, sent or failed (with the server's
    codes). Failed ones can be sent again once the cause is fixed."""

    list_display = ["consent_event_id", "status", "attempts", "last_error", "created_at", "sent_at"]
    list_filter = ["status"]
    search_fields = ["=consent_event_id"]
    search_help_text = "Exact ledger event id."
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    actions = ["send_again"]

    def has_send_receipt_again_permission(self, request: HttpRequest) -> bool:
        return self.user_has(request, "send_receipt_again")

    @admin.action(
        description="Send again (failed receipts only)", permissions=["send_receipt_again"]
    )
    def send_again(self, request: HttpRequest, queryset) -> None:
        count = receipts_retry(receipts=queryset, by=acting_user(request))
        self.message_user(request, f"{count} failed receipts queued to be sent again.")
