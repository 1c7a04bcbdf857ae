"""Evidence packs: one ZIP per request, built by a worker, stored in the database.

A pack's ZIP is stored as ordered parts (``EvidencePackPart``, at most ``PART_BYTES``
each), never on a local disk: the worker that builds it and the web process that serves
it may run on different hosts. Once a pack is ready, neither it nor its parts can
change: the model refuses, and database triggers (migration 0002) refuse raw SQL too.

A build claims the pack with a conditional UPDATE and holds a lease it renews while it
writes; a worker that dies leaves a lease that runs out, and the pack can be built
again (its attempt number goes up; parts are kept per attempt and only the finished
attempt's parts are ever served).
"""

from django.conf import settings
from django.db import models
from django.utils import timezone

from campaigns.models import Campaign

# One part's most bytes: rows small enough for any database's packet limits, few
# enough that a 100 MB pack is about a hundred rows.
PART_BYTES = 1024 * 1024


class PackState(models.TextChoices):
    REQUESTED = "requested", "Requested"
    BUILDING = "building", "Building"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


# A pack in one of these states is still owed a build: one per campaign at a time.
UNFINISHED = (PackState.REQUESTED, PackState.BUILDING)


class ImmutableEvidenceError(TypeError):
    """A ready pack, or any part, was about to be changed or deleted."""


class EvidencePack(models.Model):
    """One evidence pack of one campaign: who asked, how far its build is, and the
    digests that let anyone check a downloaded copy."""

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="evidence_packs")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=16, choices=PackState.choices, default=PackState.REQUESTED)
    # Each claim adds one; the parts of the attempt that finished are the pack.
    attempt = models.PositiveIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    rows_done = models.BigIntegerField(default=0)
    rows_total = models.BigIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    # Set when ready: the ZIP's size and SHA-256, its part count, and the SHA-256 of
    # the SHA256SUMS file inside it (which lists every other file's digest).
    size_bytes = models.BigIntegerField(default=0)
    parts = models.PositiveIntegerField(default=0)
    zip_sha256 = models.CharField(max_length=64, blank=True)
    sums_sha256 = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-requested_at", "-pk"]
        constraints = [
            # A second request while one is owed a build is refused, also under a race.
            models.UniqueConstraint(
                fields=["campaign"],
                condition=models.Q(state__in=["requested", "building"]),
                name="one_unfinished_pack_per_campaign",
            )
        ]
        permissions = [
            ("request_evidencepack", "Can request (and retry) a campaign's evidence pack"),
            ("download_evidencepack", "Can download an evidence pack"),
        ]

    def __str__(self) -> str:
        return f"evidence pack {self.pk} of {self.campaign_id}"

    def save(self, *args, **kwargs) -> None:
        if self.pk and _stored_state(self.pk) == PackState.READY:
            raise ImmutableEvidenceError("A ready evidence pack cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableEvidenceError("Evidence packs are kept: they cannot be deleted.")

    @property
    def percent(self) -> int:
        if not self.rows_total:
            return 100 if self.state == PackState.READY else 0
        return min(100, self.rows_done * 100 // self.rows_total)

    @property
    def file_name(self) -> str:
        return f"evidence-campaign-{self.campaign_id}-pack-{self.pk}.zip"


def _stored_state(pk: int) -> str | None:
    return EvidencePack.objects.filter(pk=pk).values_list("state", flat=True).first()


class PartQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise ImmutableEvidenceError("Evidence pack parts cannot be changed.")

    def delete(self):
        raise ImmutableEvidenceError("Evidence pack parts cannot be deleted.")


class EvidencePackPart(models.Model):
    """``index``-th slice of the ZIP written by ``attempt`` of the pack."""

    pack = models.ForeignKey(EvidencePack, on_delete=models.PROTECT, related_name="+")
    attempt = models.PositiveIntegerField()
    index = models.PositiveIntegerField()
    data = models.BinaryField()

    objects = PartQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["pack", "attempt", "index"], name="one_part_per_attempt_index"
            )
        ]

    def __str__(self) -> str:
        return f"part {self.index} of pack {self.pack_id} (attempt {self.attempt})"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ImmutableEvidenceError("Evidence pack parts cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableEvidenceError("Evidence pack parts cannot be deleted.")
