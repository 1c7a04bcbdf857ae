"""An evidence pack's life: requested by staff, claimed by one worker, built, ready (or
failed, and retried).

Invariants:
- Requesting, retrying and downloading need their permission (checked here) and each
  is one entry of the staff audit trail, in the transaction of what it records.
- At most one pack per campaign is owed a build (a partial unique constraint): a
  second request meanwhile is refused and changes nothing.
- A build claims its pack with a conditional UPDATE (requested, or building with a
  lapsed lease): a second run of the task finds nothing to claim and does nothing. The
  builder renews the lease with every progress update, on the condition that its
  attempt still holds the pack, so a worker that was given up on stops writing.
- A ready pack never changes (model and database triggers refuse).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.permissions import permission_require
from audit.models import Action
from audit.services import staff_action_record
from campaigns import enqueue
from campaigns.models import Campaign, CampaignState
from config.fields import clipped
from evidence.models import EvidencePack, PackState

REQUEST = "evidence.request_evidencepack"
DOWNLOAD = "evidence.download_evidencepack"
# Campaigns with nothing sent yet have no evidence to pack.
NOT_YET = (
    CampaignState.DRAFT,
    CampaignState.AWAITING_APPROVAL,
    CampaignState.APPROVED,
    CampaignState.SCHEDULED,
)


class PackRefused(ValueError):
    """A request or retry that cannot be done now (the reason is for people)."""


def lease_seconds() -> int:
    # The senders' lease: a build renews it every few seconds, so it lapses only when
    # the worker is gone.
    return settings.RENOTIFY_LEASE_SECONDS


def evidence_pack_request(*, campaign: Campaign, by: User) -> EvidencePack:
    """Ask for a new pack of ``campaign``; a worker builds it once this commits."""
    permission_require(by=by, perm=REQUEST)
    if campaign.state in NOT_YET or campaign.fanned_out_at is None:
        raise PackRefused("This campaign has not sent anything yet: there is no evidence to pack.")
    try:
        with transaction.atomic():
            pack = EvidencePack.objects.create(campaign=campaign, requested_by=by)
            staff_action_record(
                by=by,
                action=Action.EVIDENCE_PACK_REQUEST,
                target=campaign,
                detail={"pack": pack.pk},
            )
            enqueue.evidence_pack_build_start(pack.pk)
    except IntegrityError:
        raise PackRefused(
            "A pack of this campaign is already being built: wait for it to finish."
        ) from None
    return pack


def evidence_pack_retry(*, pack: EvidencePack, by: User) -> EvidencePack:
    """Build a failed pack, or one whose worker stopped (its lease ran out), again."""
    permission_require(by=by, perm=REQUEST)
    now = timezone.now()
    with transaction.atomic():
        retried = (
            EvidencePack.objects.filter(pk=pack.pk)
            .filter(_retryable(now))
            .update(state=PackState.REQUESTED, error="", lease_expires_at=None)
        )
        if not retried:
            raise PackRefused("Only a failed pack, or one whose build stopped, can be retried.")
        staff_action_record(
            by=by,
            action=Action.EVIDENCE_PACK_RETRY,
            target=pack.campaign,
            detail={"pack": pack.pk, "was": pack.state},
        )
        enqueue.evidence_pack_build_start(pack.pk)
    pack.refresh_from_db()
    return pack


def _retryable(now) -> Q:
    stalled = Q(state=PackState.BUILDING, lease_expires_at__lt=now)
    return Q(state=PackState.FAILED) | stalled


# A build that failed to finish this many times is left for a person (the console's
# Retry) rather than started again and again: something in it kills its worker.
AUTOMATIC_ATTEMPTS = 3


def evidence_packs_resume(*, now: datetime | None = None) -> list[int]:
    """Publish a build for every pack still owed one that nobody is building: asked for
    over a minute ago and never claimed (the request's publish was lost with the
    broker), or building with a lapsed lease (its worker died), up to
    ``AUTOMATIC_ATTEMPTS`` attempts. Beat runs this; a build claims its pack first, so a
    pack published twice is built once. Returns the packs' ids."""
    now = now or timezone.now()
    never_claimed = Q(state=PackState.REQUESTED, requested_at__lt=now - timedelta(minutes=1))
    lapsed = Q(state=PackState.BUILDING, lease_expires_at__lt=now)
    owed = list(
        EvidencePack.objects.filter(never_claimed | lapsed)
        .filter(attempt__lt=AUTOMATIC_ATTEMPTS)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for pack_id in owed:
        enqueue.evidence_pack_build_start(pack_id)
    return owed


def pack_is_stalled(pack: EvidencePack) -> bool:
    """Building, but its worker has not been heard of within a lease."""
    lapsed = pack.lease_expires_at is not None and pack.lease_expires_at < timezone.now()
    return pack.state == PackState.BUILDING and lapsed


@dataclass(frozen=True)
class Claim:
    pack_id: int
    attempt: int


def evidence_pack_claim(*, pack_id: int) -> Claim | None:
    """Take the pack for one build (requested, or building with a lapsed lease);
    None when there is nothing to build (ready, failed, or held by a live build)."""
    now = timezone.now()
    claimable = Q(state=PackState.REQUESTED) | Q(state=PackState.BUILDING, lease_expires_at__lt=now)
    claimed = (
        EvidencePack.objects.filter(claimable, pk=pack_id)
        .exclude(state=PackState.READY)
        .update(
            state=PackState.BUILDING,
            attempt=F("attempt") + 1,
            started_at=now,
            lease_expires_at=now + timedelta(seconds=lease_seconds()),
            rows_done=0,
            error="",
        )
    )
    if not claimed:
        return None
    attempt = EvidencePack.objects.values_list("attempt", flat=True).get(pk=pack_id)
    return Claim(pack_id=pack_id, attempt=attempt)


class LeaseLost(RuntimeError):
    """Another build took the pack over (this one was given up on): stop writing."""


def evidence_pack_progress(*, claim: Claim, rows_done: int, rows_total: int | None = None) -> None:
    """Record how far the build is and renew its lease, while the claim still holds."""
    fields: dict = {
        "rows_done": rows_done,
        "lease_expires_at": timezone.now() + timedelta(seconds=lease_seconds()),
    }
    if rows_total is not None:
        fields["rows_total"] = rows_total
    if not _held(claim).update(**fields):
        raise LeaseLost(f"pack {claim.pack_id} attempt {claim.attempt} was taken over")


def evidence_pack_finish(
    *, claim: Claim, rows_done: int, size: int, parts: int, zip_sha256: str, sums_sha256: str
) -> None:
    """The build is complete: the pack is ready, and from now on immutable."""
    finished = _held(claim).update(
        state=PackState.READY,
        finished_at=timezone.now(),
        lease_expires_at=None,
        rows_done=rows_done,
        rows_total=rows_done,
        size_bytes=size,
        parts=parts,
        zip_sha256=zip_sha256,
        sums_sha256=sums_sha256,
    )
    if not finished:
        raise LeaseLost(f"pack {claim.pack_id} attempt {claim.attempt} was taken over")


def evidence_pack_fail(*, claim: Claim, error: BaseException) -> None:
    """Record why the build stopped (no member data in the message: its type and text
    come from our own code or the database driver)."""
    message = f"{type(error).__name__}: {error}"
    _held(claim).update(
        state=PackState.FAILED,
        finished_at=timezone.now(),
        lease_expires_at=None,
        error=clipped(EvidencePack, "error", message),
    )


def _held(claim: Claim):
    return EvidencePack.objects.filter(
        pk=claim.pack_id, attempt=claim.attempt, state=PackState.BUILDING
    )


def evidence_pack_download_record(*, pack: EvidencePack, by: User) -> None:
    """Check the downloader may, and record the download (with the digests the copy can
    be checked against) before the first byte goes out."""
    permission_require(by=by, perm=DOWNLOAD)
    if pack.state != PackState.READY:
        raise PackRefused("This pack is not ready yet.")
    staff_action_record(
        by=by,
        action=Action.DOWNLOAD,
        target=pack.campaign,
        detail={
            "what": "evidence pack",
            "pack": pack.pk,
            "file": pack.file_name,
            "bytes": pack.size_bytes,
            "zip_sha256": pack.zip_sha256,
            "sha256sums_sha256": pack.sums_sha256,
        },
    )
