"""Who people are (Member) and what they chose (Preference, ConsentEvent)."""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from accounts.jurisdictions import Jurisdiction, jurisdiction_for
from accounts.locales import locale_normalise
from config.appendonly import AppendOnlyModel


class EmailStatus(models.TextChoices):
    """The address's health, as mail servers report it: never a member's choice (an
    unsubscribe is ``Member.unsubscribed_at``, which only the member's ledger events set)."""

    OK = "ok", "OK"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained"


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
    # The member's own "no more notice emails": set and cleared only by their ledger
    # events (``consent_record``, in the event's transaction), never by address health,
    # staff or an import; None = not unsubscribed.
    unsubscribed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # One person's accounts (several products, or a work and a home account) share a
    # person key: an objection made through any of them applies to all of them. "" = none.
    # db_default: the importer's raw INSERT names only the columns it sets.
    person_key = models.CharField(max_length=255, blank=True, default="", db_default="")
    # Set when the member's personal data was erased (``member_erase``): the address is
    # gone, the member is unsubscribed, and only the external id and the facts remain.
    erased_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # Every index slows the importer (each one is maintained per row), so only
        # what lookups need: external_id is unique (its own index), email serves
        # the admin search and ESP events that carry only an address. Audiences
        # read large shares of the table, where a sequential scan wins anyway.
        indexes = [
            models.Index(fields=["email"], name="member_email_idx"),
            models.Index(
                fields=["person_key"],
                condition=~models.Q(person_key=""),
                name="member_person_key_idx",
            ),
        ]
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

    @property
    def unreachable_reason(self) -> str:
        """What ``UNREACHABLE_REASON`` says, for one member in hand."""
        if self.unsubscribed_at is not None:
            return UNSUBSCRIBED
        return "" if self.email_status == EmailStatus.OK else self.email_status

    @property
    def is_reachable(self) -> bool:
        """What ``REACHABLE`` selects, for one member in hand."""
        return not self.unreachable_reason


# Who may be emailed: a healthy address whose owner has not unsubscribed. Every path that
# mails members (fan-out, reminders, sending, receipts) and every count of who cannot be
# reached filters with this one rule.
REACHABLE = models.Q(email_status=EmailStatus.OK, unsubscribed_at__isnull=True)
UNSUBSCRIBED = "unsubscribed"
# Why a member cannot be emailed, in SQL ("" when they can): their own unsubscribe
# first (it outlives any address), else the address's health. Counts and exports
# group by it; ``Member.unreachable_reason`` is the same rule for one member.
UNREACHABLE_REASON = models.Case(
    models.When(unsubscribed_at__isnull=False, then=models.Value(UNSUBSCRIBED)),
    models.When(email_status=EmailStatus.OK, then=models.Value("")),
    default=models.F("email_status"),
    output_field=models.CharField(),
)


class EmailStatusChange(models.Model):
    """Audit of changes to an address's health by staff or an address change (a
    bounce or complaint cleared, so the address is mailed again)."""

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


class GpcMode(models.TextChoices):
    """What a browser's Global Privacy Control signal (``Sec-GPC: 1``) means for a purpose
    on the hosted pages. GDPR Art. 21(5) lets a member object by automated means."""

    IGNORED = "ignored", "Ignored"
    OFFERED = "offered", "Offered: the page pre-selects and explains the objection"
    APPLIED = "applied", "Applied: recorded as an objection on the member's first visit"


class Purpose(models.Model):
    """A use of members' data that they can be told about and object to."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    gpc_mode = models.CharField(
        max_length=16,
        choices=GpcMode.choices,
        default=GpcMode.IGNORED,
        db_default=GpcMode.IGNORED.value,
        verbose_name="Global Privacy Control",
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class PurposeText(models.Model):
    """A purpose's name and description in one locale, as members read them on the pages
    and in receipts (``accounts.selectors.purpose_wording`` picks one)."""

    purpose = models.ForeignKey(Purpose, on_delete=models.CASCADE, related_name="texts")
    locale = models.CharField(
        max_length=16,
        validators=[
            RegexValidator(r"^[a-zA-Z]{2,3}([-_][a-zA-Z0-9]{2,8})*$", "A locale, e.g. de or de-AT.")
        ],
        help_text=(
            "e.g. de, fr, de-AT. A member whose locale has no text of its own "
            "gets the text of its language (de-AT: de), else the purpose's own "
            "name and description."
        ),
    )
    name = models.CharField(max_length=200)
    description = models.TextField(
        blank=True, help_text="Shown with this name; blank shows no description."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["purpose", "locale"], name="one_purpose_text_per_locale"
            )
        ]
        ordering = ["locale"]

    def __str__(self) -> str:
        return f"{self.purpose_id} [{self.locale}]"

    def save(self, *args, **kwargs) -> None:
        self.locale = locale_normalise(self.locale)
        super().save(*args, **kwargs)


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
    # A planned change that members are told of while the policy still excludes the
    # purpose: "not used yet where you live; planned from <date> unless you object".
    # Set and cleared by the processing gate of the place (``gates``) through
    # ``accounts.services.policies.policy_plan_set``; any change of ``mode`` clears it.
    planned_mode = models.CharField(max_length=16, choices=PolicyMode.choices, blank=True)
    planned_from = models.DateField(null=True, blank=True)
    # A processing gate holds the place: only the gate (two people, its conditions met)
    # takes the purpose out of "excluded" here; the admin's one-person change is refused.
    gated = models.BooleanField(default=False, db_default=False, editable=False)

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
    SERVE = "serve", "Notice served"
    ERASE = "erase", "Personal data erased"


class Source(models.TextChoices):
    PREFERENCE_PAGE = "preference-page", "Preference page"
    ONE_CLICK = "one-click", "One-click unsubscribe"
    API = "api", "API"
    ADMIN = "admin", "Admin"
    IMPORT = "import", "Import"
    ESP = "esp", "Email provider event"
    IN_APP = "in_app", "In the platform's app"
    GPC = "gpc", "Global Privacy Control signal"


class ConsentEvent(AppendOnlyModel):
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

    class Meta:
        ordering = ["-seq"]
        indexes = [
            models.Index(fields=["member", "seq"], name="consent_member_seq_idx"),
            # The console's responses per day read the last 30 days' range.
            models.Index(fields=["created_at"], name="consent_created_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action}"


class CheckKind(models.TextChoices):
    FULL = "full", "Whole chain"
    HEAD = "head", "Since the last verified head"


class LedgerCheck(AppendOnlyModel):
    """Result of one verification of the ledger's hash chain.

    Append-only like the ledger itself: a check that could be deleted would let whoever
    cuts the ledger's tail erase the record that the tail existed.
    """

    checked_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=8, choices=CheckKind.choices, default=CheckKind.FULL)
    events_checked = models.BigIntegerField()
    intact = models.BooleanField()
    first_broken_seq = models.BigIntegerField(null=True, blank=True)
    # The last event this check verified: a later check that no longer finds it knows
    # events were cut off the end, which the chain alone cannot show.
    head_seq = models.BigIntegerField(default=0)
    head_hash = models.CharField(max_length=64, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    # Why the head could not be exported (RENOTIFY_LEDGER_HEAD_SINK); empty when it was.
    sink_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-checked_at"]
        indexes = [
            # The frequent head check starts from the furthest verified head.
            models.Index(
                fields=["-head_seq", "-id"],
                condition=models.Q(intact=True),
                name="ledgercheck_head_idx",
            ),
            # The console reads the latest check (failed, or stale).
            models.Index(fields=["checked_at"], name="ledgercheck_checked_idx"),
        ]

    def __str__(self) -> str:
        return f"{'intact' if self.intact else 'BROKEN'} at {self.checked_at:%Y-%m-%d %H:%M}"


class SuppressionChange(AppendOnlyModel):
    """One entry of a purpose's suppression feed: a member's effective state changed.

    ``id`` is the feed's cursor. Entries are written only by
    ``accounts.services.suppression_feed``, one writer at a time, so a reader that has
    seen cursor N has seen every entry up to N. ``member_id`` is a plain id and the
    external id is kept: the feed outlives anything it refers to.
    """

    id = models.BigAutoField(primary_key=True)
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="+", db_index=False)
    member_id = models.BigIntegerField()
    external_id = models.CharField(max_length=255)
    state = models.CharField(max_length=3, choices=Choice.choices)
    reason = models.CharField(max_length=32)
    # When the state took effect (the choice, the policy, or the member's arrival).
    changed_at = models.DateTimeField()
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["purpose", "id"], name="suppression_change_feed_idx"),
            # The effectiveness report finds the entry an objection made (a member's
            # first "objected" entry after it): only those entries are indexed, so the
            # feed's first sync of millions of members never maintains it.
            models.Index(
                fields=["purpose", "member_id", "id"],
                name="suppression_objected_idx",
                condition=models.Q(reason="objected"),
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.id} {self.external_id} {self.state}"


class FeedProgress(models.Model):
    """How far into the consent ledger the suppression feed has caught up with choices:
    the last event ``suppression_feed_catch_up`` handled (one row, made when first
    needed)."""

    ledger_seq = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"feed caught up to ledger event {self.ledger_seq}"


class SuppressionState(models.Model):
    """The feed's last word on each member and purpose: what the feed says now.

    Kept beside the feed so that a change is found by comparing it with the effective
    state (set-based), and a snapshot is read from one table consistent with a cursor.
    """

    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="+", db_index=False)
    member_id = models.BigIntegerField()
    external_id = models.CharField(max_length=255)
    state = models.CharField(max_length=3, choices=Choice.choices)
    reason = models.CharField(max_length=32)
    changed_at = models.DateTimeField()
    cursor = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["purpose", "member_id"], name="one_suppression_state_per_member"
            )
        ]

    def __str__(self) -> str:
        return f"{self.external_id} {self.state}"
