"""The staff audit trail: one append-only row per thing a staff member did or read.

Written only by ``audit.services.staff_action_record``, in the transaction of the change
it records. Database triggers (migration 0001) refuse UPDATE, DELETE and TRUNCATE; the
model and its querysets refuse too, and the admin offers no way to change a row.
"""

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from config.appendonly import AppendOnlyModel


class Action(models.TextChoices):
    # Campaigns (campaigns.services.lifecycle, reconcile)
    CREATE = "create", "Created"
    EDIT = "edit", "Edited"
    DELETE = "delete", "Deleted"
    SUBMIT = "submit", "Submitted for approval"
    APPROVE = "approve", "Approved"
    SEND_BACK = "send_back", "Sent back to draft"
    SCHEDULE = "schedule", "Scheduled"
    PAUSE = "pause", "Paused"
    RESUME = "resume", "Resumed"
    CANCEL = "cancel", "Cancelled"
    RESEND = "resend", "Resent deliveries"
    GIVE_UP = "give_up", "Gave up on deliveries"
    RECEIPT_RESEND = "receipt_resend", "Sent receipts again"
    # Notices (campaigns.services.notices, the notice admin)
    NOTICE_VERSION_COPY = "notice_version_copy", "Copied a notice version"
    TEST_SEND = "test_send", "Sent a test notice"
    # Members and purposes (accounts.services)
    POLICY_CHANGE = "policy_change", "Changed a jurisdiction policy"
    PURPOSE_CREATE = "purpose_create", "Created a purpose"
    ADDRESS_CLEAR = "address_clear", "Cleared an address's bounce or complaint"
    ADDRESS_CHANGE = "address_change", "Changed a member's address"
    MEMBER_ERASE = "member_erase", "Erased a member's personal data"
    # The API (api.services)
    API_CLIENT_CREATE = "api_client_create", "Created an API client"
    API_CLIENT_REVOKE = "api_client_revoke", "Revoked an API client"
    WEBHOOK_ENDPOINT_CREATE = "webhook_endpoint_create", "Created a webhook endpoint"
    WEBHOOK_ENDPOINT_DEACTIVATE = "webhook_endpoint_deactivate", "Deactivated a webhook endpoint"
    WEBHOOK_REPLAY = "webhook_replay", "Replayed webhook deliveries"
    # Evidence for the regulator (evidence.services)
    EVIDENCE_PACK_REQUEST = "evidence_pack_request", "Requested an evidence pack"
    EVIDENCE_PACK_RETRY = "evidence_pack_retry", "Retried an evidence pack's build"
    # Processing gates (gates.services)
    GATE_DEFINE = "gate_define", "Defined a processing gate"
    GATE_CHANGE = "gate_change", "Changed a processing gate's conditions"
    GATE_PROPOSE = "gate_propose", "Proposed opening a processing gate"
    GATE_OPEN = "gate_open", "Opened a processing gate"
    GATE_CLOSE = "gate_close", "Closed a processing gate"
    GATE_WITHDRAW = "gate_withdraw", "Withdrew a gate's proposed opening"
    GATE_CONSUMERS_CONFIRM = "gate_consumers_confirm", "Confirmed the feed applied downstream"
    # Reading and taking data away
    EXPORT = "export", "Exported"
    DOWNLOAD = "download", "Downloaded"
    OUTBOX_READ = "outbox_read", "Read the outbox"
    # Accounts of staff
    LOGIN = "login", "Signed in"
    LOGIN_FAILED = "login_failed", "Failed sign-in"
    LOGOUT = "logout", "Signed out"
    LOCKOUT_LIFT = "lockout_lift", "Lifted a sign-in lockout"
    TWO_FACTOR_SETUP = "two_factor_setup", "Set up two-factor authentication"
    TWO_FACTOR_RECOVERY_CODES = "two_factor_recovery_codes", "Made new recovery codes"
    TWO_FACTOR_RESET = "two_factor_reset", "Removed a staff member's second factors"
    ROLE_CHANGE = "role_change", "Changed a staff member's roles or permissions"


class StaffAction(AppendOnlyModel):
    """Who did what to which record, when, and from which (hashed) address.

    ``username`` is kept as typed or as it was at the time (a renamed or unknown user
    still reads right); ``target_label`` is the record's name at the time. ``changes``
    is ``{field: [old, new]}`` for edits, ``detail`` what else matters (counts, a file
    name, a reason). ``path`` is the request's path only, never its query string."""

    Action = Action
    append_only_name = "The staff audit trail"

    at = models.DateTimeField(default=timezone.now, editable=False)
    # Null: a failed sign-in with an unknown username, or the system (a command).
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=40, choices=Action.choices)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=300, blank=True)
    changes = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    detail = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    ip_hash = models.CharField(max_length=64, blank=True)
    path = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "staff action"
        # The console lists newest first by id (keyset); each filter has an index ending
        # in id, so a filtered page is an index range read backwards, never a sort.
        indexes = [
            models.Index(fields=["by", "-id"], name="staffaction_by_idx"),
            # "What did this person do of this kind": without it, a rare pair reads
            # every entry of the person's.
            models.Index(fields=["by", "action", "-id"], name="staffaction_by_action_idx"),
            models.Index(fields=["action", "-id"], name="staffaction_action_idx"),
            models.Index(fields=["target_type", "target_id", "-id"], name="staffaction_target_idx"),
            models.Index(fields=["at"], name="staffaction_at_idx"),
        ]
        # The search (part of a username or target name) has trigram indexes on
        # PostgreSQL, made by migration 0003 (SQLite has no such index type).

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.username or 'system'} {self.action}"
