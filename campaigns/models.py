"""What we tell members (notices) and whether it went out (campaigns, deliveries)."""

import hashlib
import json
from datetime import date

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from accounts.models import Choice, Member, Preference, Purpose


class FrozenVersionError(Exception):
    """A notice version that a campaign has started sending can no longer change."""


class HeldVersionError(FrozenVersionError):
    """A notice version that a campaign was submitted (or approved) on cannot change:
    what the approver sees is exactly what is sent."""


class Notice(models.Model):
    """A topic the privacy team tells members about, e.g. "AI training on UK member data"."""

    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, help_text="Internal notes; members never see it.")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.title


class NoticeVersion(models.Model):
    """One wording of a notice: held (not editable) while a campaign is submitted or
    approved on it, and frozen (immutable for good) once a campaign starts sending it."""

    notice = models.ForeignKey(Notice, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField(editable=False)
    default_locale = models.CharField(
        max_length=16,
        default="en",
        help_text="Shown to members whose locale has no translation of this version.",
    )
    effective_date = models.DateField(help_text="When the data use described starts.")
    objection_deadline = models.DateField(
        help_text="Objections before this date are honoured before the use starts."
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    frozen_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["notice", "number"], name="one_number_per_version")
        ]
        ordering = ["notice", "-number"]
        permissions = [("send_test_notice", "Can send a test of a notice version to themselves")]

    def __str__(self) -> str:
        return f"{self.notice} v{self.number}"

    def save(self, *args, **kwargs) -> None:
        with transaction.atomic():
            if self.pk:
                version_refuse_change(self.pk)
            if not self.number:
                last = NoticeVersion.objects.filter(notice=self.notice_id).aggregate(
                    models.Max("number")
                )["number__max"]
                self.number = (last or 0) + 1
            super().save(*args, **kwargs)
            for text in self.texts.all():  # the dates are part of every text's hash
                NoticeText.objects.filter(pk=text.pk).update(sha256=text.content_sha256())

    def delete(self, *args, **kwargs):
        with transaction.atomic():
            version_refuse_change(self.pk)
            return super().delete(*args, **kwargs)

    @property
    def is_frozen(self) -> bool:
        return self.frozen_at is not None

    def edit_refusal(self) -> str:
        """Why this version's wording cannot change now; empty if it can."""
        if self.is_frozen:
            return f"{self} has been sent and can no longer be edited"
        holder = self.holding_campaign()
        if holder is None:
            return ""
        return (
            f"{self} cannot be edited: campaign \u201c{holder}\u201d is "
            f"{holder.get_state_display().lower()} on its wording. Send that campaign back "
            "to draft, or copy the version to change the wording."
        )

    def holding_campaign(self) -> "Campaign | None":
        """The campaign submitted or approved on this wording, if any (see HOLDS_ITS_VERSION):
        as its version or as one variant of its wording test."""
        return (
            Campaign.objects.filter(
                models.Q(notice_version=self.pk) | models.Q(variants__notice_version=self.pk),
                state__in=HOLDS_ITS_VERSION,
            )
            .distinct()
            .order_by("pk")
            .first()
        )

    def text_hashes(self) -> dict[str, str]:
        """{locale: SHA-256} of the texts as they are now (computed, not the stored copy)."""
        dates = {
            "effective_date": self.effective_date,
            "objection_deadline": self.objection_deadline,
        }
        return {
            text.locale: text_sha256(text, **dates)
            for text in NoticeText.objects.filter(version=self.pk)
        }


class NoticeText(models.Model):
    """A version's subject and body in one locale (body in Markdown)."""

    version = models.ForeignKey(NoticeVersion, on_delete=models.CASCADE, related_name="texts")
    locale = models.CharField(max_length=16)
    subject = models.CharField(max_length=200)
    body_markdown = models.TextField(
        help_text="Markdown. Links, lists and emphasis are kept; raw HTML is removed."
    )
    # SHA-256 of the canonical content (locale, subject, body, both dates), so
    # evidence can show exactly which text a member was sent.
    sha256 = models.CharField(max_length=64, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "locale"], name="one_text_per_locale")
        ]
        ordering = ["locale"]

    def __str__(self) -> str:
        return f"{self.version} [{self.locale}]"

    def save(self, *args, **kwargs) -> None:
        with transaction.atomic():
            version_refuse_change(self.version_id)
            self.sha256 = self.content_sha256()
            super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        with transaction.atomic():
            version_refuse_change(self.version_id)
            return super().delete(*args, **kwargs)

    def content_sha256(self) -> str:
        version = NoticeVersion.objects.get(pk=self.version_id)
        return text_sha256(
            self,
            effective_date=version.effective_date,
            objection_deadline=version.objection_deadline,
        )


def text_sha256(text: NoticeText, *, effective_date: date, objection_deadline: date) -> str:
    """SHA-256 of a text's canonical content: what the member reads, and both dates."""
    canonical = text_canonical(
        text, effective_date=effective_date, objection_deadline=objection_deadline
    )
    return hashlib.sha256(canonical).hexdigest()


def text_canonical(text: NoticeText, *, effective_date: date, objection_deadline: date) -> bytes:
    """The exact bytes ``text_sha256`` hashes (UTF-8 JSON, keys sorted): evidence packs
    ship them, so anyone can recompute the hash with ``sha256sum``."""
    return json.dumps(
        {
            "locale": text.locale,
            "subject": text.subject,
            "body_markdown": text.body_markdown,
            "effective_date": effective_date.isoformat(),
            "objection_deadline": objection_deadline.isoformat(),
        },
        sort_keys=True,
        ensure_ascii=False,
    ).encode()


def version_refuse_change(version_id: int | None) -> None:
    """Raise unless the version's wording may still change: never sent, and held by no
    submitted or approved campaign.

    Locks the version's row to the end of the caller's transaction: a submission locks
    it too, so an edit and a submission of the same version take turns, and the later
    one sees the earlier one (the edit is refused, or the approver sees the edit)."""
    if version_id is None:  # not saved yet
        return
    version = NoticeVersion.objects.select_for_update().filter(pk=version_id).first()
    if version is None:
        return
    if version.is_frozen:
        raise FrozenVersionError(version.edit_refusal())
    refusal = version.edit_refusal()
    if refusal:
        raise HeldVersionError(refusal)


class CampaignState(models.TextChoices):
    DRAFT = "draft", "Draft"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    APPROVED = "approved", "Approved"
    SCHEDULED = "scheduled", "Scheduled"
    SENDING = "sending", "Sending"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


# A campaign in one of these states was submitted or approved on its version's exact
# texts: the version cannot change under it (back to draft or cancelled lets it go).
HOLDS_ITS_VERSION = (
    CampaignState.AWAITING_APPROVAL,
    CampaignState.APPROVED,
    CampaignState.SCHEDULED,
    CampaignState.SENDING,
    CampaignState.PAUSED,
    CampaignState.COMPLETED,
)


class Campaign(models.Model):
    """One notice version sent to an audience, on a schedule, within a throttle."""

    name = models.CharField(max_length=200)
    notice_version = models.ForeignKey(
        NoticeVersion, on_delete=models.PROTECT, related_name="campaigns"
    )
    # Audience: every list empty means "any"; members whose email is bounced,
    # complained or unsubscribed are always left out (and counted).
    jurisdictions = models.JSONField(default=list, blank=True)
    countries = models.JSONField(default=list, blank=True)
    locales = models.JSONField(default=list, blank=True)
    members_created_after = models.DateTimeField(null=True, blank=True)
    members_created_before = models.DateTimeField(null=True, blank=True)
    purpose = models.ForeignKey(
        Purpose,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text="With a state below: only members whose current effective state is that.",
    )
    purpose_state = models.CharField(max_length=3, choices=Choice.choices, blank=True)
    only_not_acknowledged = models.BooleanField(
        default=False, help_text="Only members who have not acknowledged any version of the notice."
    )
    # Schedule and pace.
    starts_at = models.DateTimeField(null=True, blank=True)
    window_ends_at = models.DateTimeField(
        null=True, blank=True, help_text="Sending stops here; what is left is marked expired."
    )
    throttle_per_minute = models.PositiveIntegerField(
        default=6000, help_text="Messages per minute, across all workers."
    )
    remind_after_days = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Remind members who have not acknowledged after N days."
    )
    max_reminders = models.PositiveSmallIntegerField(default=0)
    # Lifecycle.
    state = models.CharField(
        max_length=20, choices=CampaignState.choices, default=CampaignState.DRAFT
    )
    state_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Who created it may never approve it (nor may who submitted it or edited it last):
    # blank for campaigns created before it was recorded, and for the system's.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
    )
    last_edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    last_edited_at = models.DateTimeField(default=timezone.now)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    # {locale: SHA-256} of the version's texts as approved; starting compares them with
    # the texts then, so what was approved is exactly what is sent.
    approved_text_hashes = models.JSONField(default=dict, blank=True, editable=False)
    # Set by the fan-out's last step: until then the campaign cannot complete (its
    # deliveries are still being created, however few exist so far).
    fanned_out_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Who was left out at fan-out and why, e.g. {"targeted": 1200, "unreachable":
    # {"bounced": 3}}: the denominator of every report afterwards.
    audience_snapshot = models.JSONField(default=dict, blank=True, editable=False)
    # Counters for the circuit breaker, bumped per batch (reports use aggregates).
    sent_count = models.PositiveIntegerField(default=0, editable=False)
    hard_bounce_count = models.PositiveIntegerField(default=0, editable=False)
    complaint_count = models.PositiveIntegerField(default=0, editable=False)
    # The counters when an approver resumed a breaker pause: the breaker then judges
    # only what was sent after the resume.
    breaker_base_sent = models.PositiveIntegerField(default=0, editable=False)
    breaker_base_bounces = models.PositiveIntegerField(default=0, editable=False)
    breaker_base_complaints = models.PositiveIntegerField(default=0, editable=False)
    breaker_reset_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Permanent refusals since the last message the transport accepted: a relay that
    # refuses everything trips the breaker long before the rates have enough sends.
    rejected_in_a_row = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "starts_at"], name="campaign_due_idx")]
        permissions = [
            ("approve_campaign", "Can approve a campaign or send it back to draft"),
            ("operate_campaign", "Can schedule, pause, resume and cancel a campaign"),
        ]

    def __str__(self) -> str:
        return self.name


class SenderSlot(models.Model):
    """One of a campaign's sender chains (RENOTIFY_SENDERS_PER_CAMPAIGN of them): the
    token of the link that holds the slot now, and by when the next link should run
    (campaigns.services.senders).

    Starting a chain in a slot replaces the one there, which stops at its next link: a
    campaign never has more chains than slots, however often senders are started. A
    slot whose chain is overdue by a lease (its worker died) gets a new chain from the
    reconciler, while the campaign's other chains carry on."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="sender_slots")
    slot = models.PositiveSmallIntegerField()
    chain = models.CharField(max_length=32)
    due_by = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "slot"], name="sender_slot_unique")
        ]

    def __str__(self) -> str:
        return f"campaign {self.campaign_id} sender {self.slot}"


class CampaignVariant(models.Model):
    """One version of a wording test: the share of the campaign's audience (basis points,
    the campaign's variants summing to 10,000) sent ``notice_version``. A campaign has
    none (it sends its ``notice_version`` to everyone) or at least two, all versions of
    one notice; its ``notice_version`` is then the first variant's. How members are
    assigned: ``campaigns.variants``."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="variants")
    notice_version = models.ForeignKey(
        NoticeVersion, on_delete=models.PROTECT, related_name="campaign_variants"
    )
    share = models.PositiveSmallIntegerField(help_text="Basis points: 5000 is 50%.")

    class Meta:
        # Id order is the order of the cumulative ranges members are assigned by.
        ordering = ["campaign", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "notice_version"], name="one_variant_per_version"
            ),
            models.CheckConstraint(
                condition=models.Q(share__gte=1, share__lte=9999), name="variant_share_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.notice_version} ({self.share / 100:g}%)"


class CampaignTransition(models.Model):
    """Every state change of a campaign: who, when, from, to and why."""

    # The approval history is evidence: a campaign with transitions cannot be deleted.
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="transitions")
    from_state = models.CharField(max_length=20, choices=CampaignState.choices)
    to_state = models.CharField(max_length=20, choices=CampaignState.choices)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    at = models.DateTimeField(default=timezone.now)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.from_state} -> {self.to_state}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    CLAIMED = "claimed", "Claimed by a sender"
    SENDING = "sending", "Handed to the transport"
    SENT = "sent", "Sent"
    DEFERRED = "deferred", "Deferred"
    DELIVERED = "delivered", "Delivered"
    OPENED = "opened", "Opened"
    CLICKED = "clicked", "Clicked"
    BOUNCED = "bounced", "Bounced"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"
    COMPLAINED = "complained", "Complained"
    UNKNOWN = "unknown", "Unknown: may have been sent"
    SKIPPED = "skipped", "Skipped: not reachable at send time"
    EXPIRED = "expired", "Expired: sending window ended"
    CANCELLED = "cancelled", "Cancelled"


# Statuses a sender still owes work on; everything else is terminal for sending.
UNFINISHED_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.CLAIMED, DeliveryStatus.SENDING)


class Delivery(models.Model):
    """One message of one campaign wave to one member (wave 0 is the notice, 1.. reminders)."""

    # Fan-out inserts millions of rows at once, and every foreign-key check is one more
    # lookup per inserted row, slowing the insert. The rows come from
    # INSERT ... SELECT over existing members for an existing campaign, and neither is
    # ever deleted while deliveries point at it (PROTECT, enforced by Django), so the
    # database-level constraints are left out. The unique (campaign, member, wave)
    # index serves lookups by campaign; the member index serves a member's history.
    campaign = models.ForeignKey(
        Campaign,
        on_delete=models.PROTECT,
        related_name="deliveries",
        db_constraint=False,
        db_index=False,
    )
    member = models.ForeignKey(
        Member, on_delete=models.PROTECT, related_name="deliveries", db_constraint=False
    )
    wave = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    locale = models.CharField(max_length=16, blank=True)
    # The notice version this member is sent: a wording test splits one campaign's
    # audience between several versions. NULL on rows made before wording tests means
    # the campaign's own version. A plain id, like the campaign's: no per-row check.
    notice_version_id = models.BigIntegerField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    esp_message_id = models.CharField(max_length=255, blank=True)
    error = models.CharField(max_length=500, blank=True)
    # Milestones from the ESP's events (see services.tracking); opened/clicked
    # count people only: machine activity (link scanners) is left out.
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    complained_at = models.DateTimeField(null=True, blank=True)
    soft_bounces = models.PositiveSmallIntegerField(default=0, db_default=0)
    # First GET of the notice page from this delivery's link (not a consent event).
    viewed_at = models.DateTimeField(null=True, blank=True)

    # Not columns: set only on the instance read for a notice page (see
    # pages.services.notice_delivery), None when read without the page: whether the
    # member acknowledged this version, and the member's preferences by purpose id.
    acknowledged: bool | None
    preferences: dict[int, Preference] | None

    class Meta:
        verbose_name_plural = "deliveries"
        permissions = [
            ("resend_delivery", "Can resend or give up unknown and failed deliveries"),
            # The outbox holds every member's address and working member links.
            ("view_outbox", "Can read the local outbox"),
        ]
        constraints = [
            # A task that runs twice cannot create (or send) a second copy.
            models.UniqueConstraint(
                fields=["campaign", "member", "wave"], name="one_delivery_per_wave"
            )
        ]
        indexes = [
            # Senders claim pending rows of one campaign in id order; a partial
            # index stays small as rows leave "pending".
            models.Index(
                fields=["campaign", "id"],
                name="delivery_pending_idx",
                condition=models.Q(status="pending"),
            ),
            # The reconciler looks for expired leases among the few rows in flight.
            models.Index(
                fields=["lease_expires_at"],
                name="delivery_in_flight_idx",
                condition=models.Q(status__in=["claimed", "sending"]),
            ),
            # ESP events that lack our metadata are matched by message id; rows
            # get one only when sent, so fan-out inserts never touch this index.
            models.Index(
                fields=["esp_message_id"],
                name="delivery_esp_message_idx",
                condition=~models.Q(esp_message_id=""),
            ),
            # The console lists deliveries whose outcome is unknown, awaiting a decision:
            # few rows. A status change is never a HOT update anyway (the partial indexes
            # above name the column), and only rows entering "unknown" get an entry here.
            models.Index(
                fields=["campaign"],
                name="delivery_unknown_idx",
                condition=models.Q(status="unknown"),
            ),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} ({self.status})"


class ThrottleState(models.Model):
    """The shared rate limiter's state when Redis is not configured (see services.throttle)."""

    key = models.CharField(max_length=100, unique=True)
    tat = models.FloatField(default=0.0, help_text="theoretical arrival time, epoch seconds")
    takes = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return self.key


class DeliveryEvent(models.Model):
    """One normalised ESP tracking event, stored once (esp + event key), processed later."""

    esp = models.CharField(max_length=32)
    # The ESP's event id, or a hash of the identifying fields when it has none.
    event_key = models.CharField(max_length=128)
    event_id = models.CharField(max_length=255, blank=True)
    event_type = models.CharField(max_length=20)
    timestamp = models.DateTimeField(null=True, blank=True)
    recipient = models.CharField(max_length=254, blank=True)
    message_id = models.CharField(max_length=255, blank=True)
    metadata_delivery_id = models.BigIntegerField(null=True, blank=True)
    reject_reason = models.CharField(max_length=32, blank=True)
    description = models.TextField(blank=True)
    mta_response = models.TextField(blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    click_url = models.TextField(blank=True)
    raw = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    # Set by the batch processor:
    processed_at = models.DateTimeField(null=True, blank=True)
    # Null when stored: the index on it is partial (below), so the webhook's INSERT
    # does not maintain an index entry for it.
    delivery = models.ForeignKey(
        Delivery,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="events",
        db_index=False,
    )
    is_orphan = models.BooleanField(default=False, help_text="Matched no delivery of ours.")
    is_machine = models.BooleanField(
        default=False, help_text="Open or click by a link scanner or too soon after delivery."
    )
    # Set (with processed_at) on a complaint or unsubscribe whose ledger event is still to
    # be recorded, which happens after the batch commits; cleared once it is recorded.
    ledger_due_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["esp", "event_key"], name="one_event_per_esp_key")
        ]
        indexes = [
            models.Index(
                fields=["id"],
                name="event_ledger_due_idx",
                condition=models.Q(ledger_due_at__isnull=False),
            ),
            models.Index(
                fields=["id"], name="event_unprocessed_idx", condition=models.Q(processed_at=None)
            ),
            models.Index(
                fields=["received_at"], name="event_orphan_idx", condition=models.Q(is_orphan=True)
            ),
            models.Index(
                fields=["delivery"],
                name="event_delivery_idx",
                condition=models.Q(delivery__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.esp} {self.event_type} {self.event_id or self.event_key[:12]}"


class ReceiptStatus(models.TextChoices):
    OWED = "owed", "Owed"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"  # refused for good, or gave up after the last attempt
    # Not sent: the member was not reachable (address bounced or complained, or the
    # member unsubscribed) when its turn came; the page said no email would come.
    WITHHELD = "withheld", "Not sent: address not reachable"


class ObjectionReceipt(models.Model):
    """The confirmation email for one objection made on the notice or preference pages:
    one per ledger event (so a double click never sends two), with its sending state.
    Rows are added by the sender from the ledger itself (``ReceiptSweep``)."""

    consent_event_id = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=8, choices=ReceiptStatus, default=ReceiptStatus.OWED)
    # When a sender may (next) take it: now, after a claim's lease, or after a backoff.
    due_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=200, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("send_receipt_again", "Can send failed objection receipts again")]
        indexes = [
            models.Index(
                fields=["due_at"],
                name="receipt_owed_idx",
                condition=models.Q(status="owed"),
            ),
            # The console counts failed receipts.
            models.Index(
                fields=["created_at"],
                name="receipt_failed_idx",
                condition=models.Q(status="failed"),
            ),
        ]

    def __str__(self) -> str:
        return f"receipt for event {self.consent_event_id}"


class ReceiptSweep(models.Model):
    """How far the receipt sender has read the consent ledger (a single row).

    The ledger is the receipts' outbox: every objection made on the pages is an event
    there, committed in ``seq`` order (one writer at a time holds the chain until its
    commit), so reading on from the last ``seq`` read never misses one."""

    last_seq = models.BigIntegerField(default=0)
    swept_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"receipts owed up to ledger #{self.last_seq}"
