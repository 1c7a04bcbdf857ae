"""Processing gates: a purpose stays excluded in a jurisdiction until the proof is complete.

A ``Gate`` names the place (purpose, jurisdiction), the mode it opens to, the planned
opening date members are told of, and the conditions the team set. Whether each
condition holds is never stored: ``gates.selectors`` evaluates them from the data each
time (campaigns, deliveries, the ledger, the feed and its consumers). What is stored is
who did what: every step is a ``GateEvent`` and every stand-in for the feed's
consumers a ``ConsumerConfirmation``, both append-only (model, queryset and database
triggers refuse changes, as for the ledger).
"""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from accounts.jurisdictions import Jurisdiction
from accounts.models import PolicyMode, Purpose
from campaigns.models import Campaign
from config.appendonly import AppendOnlyModel


class GateState(models.TextChoices):
    CLOSED = "closed", "Closed"
    OPEN = "open", "Open"


class OpensTo(models.TextChoices):
    """The modes a gate may open an excluded place to (``accounts.models.PolicyMode``)."""

    OPT_OUT = PolicyMode.OPT_OUT.value, "Opt-out: used unless the member objects"
    OPT_IN = PolicyMode.OPT_IN.value, "Opt-in: not used unless the member agrees"


class Gate(models.Model):
    """One purpose in one jurisdiction, held excluded until its conditions are met and
    two people (an Approver proposing, another confirming) open it."""

    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="+")
    jurisdiction = models.CharField(max_length=8, choices=Jurisdiction.choices)
    opens_to = models.CharField(max_length=16, choices=OpensTo.choices)
    # Told to members while closed: "planned from <date> unless you object".
    planned_opening = models.DateField()
    state = models.CharField(max_length=8, choices=GateState.choices, default=GateState.CLOSED)
    # Conditions, as the team set them.
    campaigns = models.ManyToManyField(Campaign, related_name="+")
    window_days = models.PositiveSmallIntegerField(
        default=30, help_text="Days that must pass after the last delivery or in-app serving."
    )
    reach_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=90,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Share of each campaign's audience there that the notice must have reached.",
    )
    # An opening proposed and awaiting a second person's confirmation.
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    proposed_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["purpose__slug", "jurisdiction"]
        constraints = [
            models.UniqueConstraint(fields=["purpose", "jurisdiction"], name="one_gate_per_place")
        ]
        permissions = [
            ("open_gate", "Can propose or confirm the opening of a processing gate"),
            ("close_gate", "Can close a processing gate"),
            ("confirm_consumers", "Can confirm that the feed was applied (no consumer registered)"),
        ]

    def __str__(self) -> str:
        return f"{self.purpose.slug} in {self.jurisdiction}"


class GateStep(models.TextChoices):
    DEFINED = "defined", "Defined"
    CHANGED = "changed", "Conditions changed"
    PROPOSED = "proposed", "Opening proposed"
    OPENED = "opened", "Opened"
    CLOSED = "closed", "Closed"
    WITHDRAWN = "withdrawn", "Proposal withdrawn"
    CONSUMERS_CONFIRMED = "consumers_confirmed", "Consumers' application confirmed"


class GateEvent(AppendOnlyModel):
    """One step in a gate's history: who, when, and what the conditions read then
    (``detail["conditions"]``: each condition's key, met and figure)."""

    append_only_name = "A processing gate's history"

    gate = models.ForeignKey(Gate, on_delete=models.PROTECT, related_name="events")
    step = models.CharField(max_length=24, choices=GateStep.choices)
    at = models.DateTimeField(default=timezone.now)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.gate_id}: {self.step}"


class ConsumerConfirmation(AppendOnlyModel):
    """An Approver's signed word that the purpose's feed is applied downstream up to
    ``cursor``: stands in for consumers' own reports while no consumer is registered.

    ``signature`` is an HMAC-SHA256 (keyed from ``SECRET_KEY``) over the canonical JSON
    of what was confirmed (``gates.signing``): a row edited by hand, or made without
    the key, no longer verifies and no longer counts."""

    append_only_name = "A processing gate's history"

    gate = models.ForeignKey(Gate, on_delete=models.PROTECT, related_name="confirmations")
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    username = models.CharField(max_length=150)
    at = models.DateTimeField(default=timezone.now)
    statement = models.TextField()
    cursor = models.BigIntegerField()
    signature = models.CharField(max_length=64)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.username} up to {self.cursor}"
