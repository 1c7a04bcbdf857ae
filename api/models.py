from django.conf import settings
from django.db import models
from django.utils import timezone


class Scope(models.TextChoices):
    MEMBERS_WRITE = "members:write", "Create, update and erase members"
    PREFERENCES_READ = "preferences:read", "Read members' choices"
    PREFERENCES_WRITE = "preferences:write", "Record members' choices"
    SUPPRESSIONS_READ = "suppressions:read", "Follow the suppression feed"
    CAMPAIGNS_READ = "campaigns:read", "Read campaigns and their reach"


class ApiClient(models.Model):
    """A system that calls the API. Its key is shown once, when it is made: only the
    key's SHA-256 is kept (a key is 32 random bytes, so a plain hash is as good as a
    slow one), found by its public prefix."""

    name = models.CharField(max_length=120)
    key_prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    rate = models.CharField(
        max_length=16,
        blank=True,
        help_text='Requests allowed, e.g. "600/m" or "20000/h"; blank = RENOTIFY_API_RATE.',
    )

    class Meta:
        permissions = [("manage_apiclient", "Can create and revoke API clients")]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix})"


class IdempotentRequest(models.Model):
    """A write made with an ``Idempotency-Key``: a retry with the same key and body gets
    the first answer back and records nothing; the same key with another body is 409."""

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "key"], name="one_request_per_key")
        ]

    def __str__(self) -> str:
        return f"{self.client_id}: {self.key}"


class ConsumerPosition(models.Model):
    """How far a client has applied a purpose's suppression feed (its last report)."""

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="positions")
    purpose = models.ForeignKey("accounts.Purpose", on_delete=models.PROTECT, related_name="+")
    cursor = models.BigIntegerField()
    reported_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "purpose"], name="one_position_per_feed")
        ]

    def __str__(self) -> str:
        return f"{self.client_id} at {self.cursor}"


class ConsumerPositionReport(models.Model):
    """Each time a client's position in a purpose's feed advanced: the history behind
    ``ConsumerPosition`` (which keeps only the latest). Append-only in practice (written
    only by ``consumer_position_report``); a feed entry's acknowledgement by a consumer
    is the first report with ``cursor`` at or past its id, which the effectiveness
    report reads (``db.effectiveness``) through the (client, purpose, cursor) index."""

    # The (client, purpose, cursor) index below serves every read: no index of their own.
    client = models.ForeignKey(
        ApiClient, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    purpose = models.ForeignKey(
        "accounts.Purpose", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    cursor = models.BigIntegerField()
    reported_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["client", "purpose", "cursor"], name="consumer_report_cursor_idx")
        ]

    def __str__(self) -> str:
        return f"{self.client_id} reached {self.cursor} at {self.reported_at:%Y-%m-%d %H:%M:%S}"


class WebhookEndpoint(models.Model):
    """A URL of a client's that is told of every choice, unsubscribe and erasure."""

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="endpoints")
    url = models.URLField(max_length=500)
    # Signs each delivery (HMAC-SHA256); shown once, when the endpoint is made.
    secret = models.CharField(max_length=64, editable=False)
    active = models.BooleanField(default=True)
    # The ledger's head when the endpoint was made: it is sent the events after this
    # one. A seq, not a time: an event's time may be one its client supplied.
    after_seq = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        permissions = [("replay_webhookdelivery", "Can send a webhook delivery again")]

    def __str__(self) -> str:
        return self.url


class WebhookState(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    PARKED = "parked", "Parked: retries exhausted"


class WebhookDelivery(models.Model):
    """One ledger event to send to one endpoint, and where its sending stands."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="+")
    event_seq = models.BigIntegerField()
    event_type = models.CharField(max_length=32)
    payload = models.JSONField()
    state = models.CharField(
        max_length=16, choices=WebhookState.choices, default=WebhookState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_seq"], name="one_delivery_per_event")
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(state="pending"),
                name="webhook_due_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.event_type} #{self.event_seq} -> {self.endpoint_id}"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="tries")
    attempted_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-attempted_at"]

    def __str__(self) -> str:
        return f"{self.status_code or self.error}"


class LedgerFollower(models.Model):
    """The last ledger event a follower (the webhook dispatcher) has handled."""

    name = models.CharField(max_length=64, unique=True)
    seq = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} at {self.seq}"
