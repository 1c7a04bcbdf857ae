"""Who people are (Member) and what they chose (Preference, ConsentEvent)."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.jurisdictions import Jurisdiction, jurisdiction_for


class EmailStatus(models.TextChoices):
    OK = "ok", "OK"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"


class Member(models.Model):
    """A user of the platform, known to us by the platform's own id."""

    external_id = models.CharField(max_length=255, unique=True)
    email = models.EmailField(max_length=254)
    locale = models.CharField(max_length=16, default="en")
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2")
    # Derived from country on every write (import, admin, API): never edited alone.
    jurisdiction = models.CharField(max_length=8, choices=Jurisdiction.choices, editable=False)
    email_status = models.CharField(
        max_length=16, choices=EmailStatus.choices, default=EmailStatus.OK
    )
    email_status_changed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # Every index slows the importer (each one is maintained per row), so only
        # what lookups need: external_id is unique (its own index), email serves
        # the admin search and ESP events that carry only an address. Audiences
        # read large shares of the table, where a sequential scan wins anyway.
        indexes = [models.Index(fields=["email"], name="member_email_idx")]
        permissions = [("clear_address", "Can mail a bounced or complained address again")]

    def __str__(self) -> str:
        return self.external_id

    def save(self, *args, **kwargs) -> None:
        self.jurisdiction = jurisdiction_for(self.country)
        self.updated_at = timezone.now()
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "country" in update_fields:
            kwargs["update_fields"] = {*update_fields, "jurisdiction", "updated_at"}
        super().save(*args, **kwargs)


class EmailStatusChange(models.Model):
    """Audit of staff clearing a bounce or complaint, so the address is mailed again."""

    member = models.ForeignKey(
        Member, on_delete=models.PROTECT, related_name="email_status_changes"
    )
    from_status = models.CharField(max_length=16, choices=EmailStatus.choices)
    to_status = models.CharField(max_length=16, choices=EmailStatus.choices)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    changed_at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=300)

    class Meta:
        ordering = ["-changed_at"]

    def __str__(self) -> str:
        return f"{self.from_status} -> {self.to_status}"


class Purpose(models.Model):
    """A use of members' data that they can be told about and object to."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class PolicyMode(models.TextChoices):
    EXCLUDED = "excluded", "Excluded: data not used, whatever the member says"
    OPT_OUT = "opt_out", "Opt-out: used unless the member objects"
    OPT_IN = "opt_in", "Opt-in: not used unless the member agrees"


# A jurisdiction with no policy row for a purpose is treated as opt-in: nobody's
# data is used for a purpose nobody decided about.
DEFAULT_POLICY_MODE = PolicyMode.OPT_IN


class JurisdictionPolicy(models.Model):
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="policies")
    jurisdiction = models.CharField(max_length=8, choices=Jurisdiction.choices)
    mode = models.CharField(max_length=16, choices=PolicyMode.choices)
    mode_since = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "jurisdiction policies"
        constraints = [
            models.UniqueConstraint(fields=["purpose", "jurisdiction"], name="one_policy_per_place")
        ]

    def __str__(self) -> str:
        return f"{self.purpose.slug} in {self.jurisdiction}: {self.mode}"


class JurisdictionPolicyChange(models.Model):
    """Audit trail of policy edits: who changed which default, from what, to what."""

    policy = models.ForeignKey(JurisdictionPolicy, on_delete=models.PROTECT, related_name="changes")
    from_mode = models.CharField(max_length=16, choices=PolicyMode.choices, blank=True)
    to_mode = models.CharField(max_length=16, choices=PolicyMode.choices)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT
    )
    changed_at = models.DateTimeField(default=timezone.now)
    note = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-changed_at"]

    def __str__(self) -> str:
        return f"{self.from_mode or '(new)'} -> {self.to_mode}"


class Choice(models.TextChoices):
    IN = "in", "In"
    OUT = "out", "Out"


class Preference(models.Model):
    """A member's current explicit choice for a purpose; ``choice`` None means no choice."""

    # Every objection writes a row here while the ledger is held, so the table keeps one
    # index besides its key: (member, purpose), which serves every read. A member's or a
    # purpose's own index would only speed up deleting one (rare, and refused while
    # events point at it); the ledger never deletes the event ``last_event`` names.
    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="preferences", db_index=False
    )
    purpose = models.ForeignKey(
        Purpose, on_delete=models.PROTECT, related_name="preferences", db_index=False
    )
    # NULL, not "": "no choice" must read the same as "no row" through a LEFT JOIN.
    choice = models.CharField(  # noqa: DJ001
        max_length=3, choices=Choice.choices, null=True, blank=True
    )
    chosen_at = models.DateTimeField(default=timezone.now)
    last_event = models.ForeignKey(
        "ConsentEvent",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["member", "purpose"], name="one_preference_per_purpose")
        ]

    def __str__(self) -> str:
        return f"{self.purpose_id}: {self.choice or 'no choice'}"


class Action(models.TextChoices):
    OBJECT = "object", "Objected"
    WITHDRAW_OBJECTION = "withdraw-objection", "Withdrew objection"
    OPT_IN = "opt-in", "Opted in"
    ACKNOWLEDGE = "acknowledge", "Acknowledged notice"
    UNSUBSCRIBE = "unsubscribe", "Unsubscribed from notice emails"


class Source(models.TextChoices):
    PREFERENCE_PAGE = "preference-page", "Preference page"
    ONE_CLICK = "one-click", "One-click unsubscribe"
    API = "api", "API"
    ADMIN = "admin", "Admin"
    IMPORT = "import", "Import"
    ESP = "esp", "Email provider event"


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("The consent ledger is append-only: events cannot be updated.")

    def delete(self):
        raise TypeError("The consent ledger is append-only: events cannot be deleted.")


class ConsentEvent(models.Model):
    """One entry of the append-only, HMAC hash-chained consent ledger.

    Written only by ``accounts.services.consent.consent_record``. Database
    triggers reject UPDATE and DELETE on the table; ``verify_ledger`` checks the
    chain. ``notice_version_id`` and ``delivery_id`` are plain ids, not foreign
    keys: ``accounts`` never depends on ``campaigns``, and evidence must outlive
    anything it refers to.
    """

    seq = models.BigIntegerField(unique=True, editable=False)
    # Indexed by (member, seq) below, which serves lookups by member alone too.
    member = models.ForeignKey(
        Member, on_delete=models.PROTECT, related_name="consent_events", db_index=False
    )
    purpose = models.ForeignKey(
        Purpose, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    action = models.CharField(max_length=32, choices=Action.choices)
    source = models.CharField(max_length=32, choices=Source.choices)
    notice_version_id = models.BigIntegerField(null=True, blank=True)
    delivery_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    ip_hash = models.CharField(max_length=64, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    comment = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, editable=False)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        indexes = [models.Index(fields=["member", "seq"], name="consent_member_seq_idx")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise TypeError("The consent ledger is append-only: events cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("The consent ledger is append-only: events cannot be deleted.")


class LedgerCheck(models.Model):
    """Result of one verification of the ledger's hash chain (nightly and on demand)."""

    checked_at = models.DateTimeField(default=timezone.now)
    events_checked = models.BigIntegerField()
    intact = models.BooleanField()
    first_broken_seq = models.BigIntegerField(null=True, blank=True)
    # The chain's last event when checked: a later check that no longer finds it
    # knows events were cut off the end, which the chain alone cannot show.
    head_seq = models.BigIntegerField(default=0)
    head_hash = models.CharField(max_length=64, blank=True)
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-checked_at"]

    def __str__(self) -> str:
        return f"{'intact' if self.intact else 'BROKEN'} at {self.checked_at:%Y-%m-%d %H:%M}"
