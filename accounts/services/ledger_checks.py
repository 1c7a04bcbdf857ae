"""Verify the consent ledger's hash chain and keep a record of each verification."""

from django.conf import settings

from accounts import ledger
from accounts.models import ConsentEvent, LedgerCheck


def ledger_check_run() -> LedgerCheck:
    """Walk the whole chain, then compare its head with the last verified head, so
    that cutting events off the end of the ledger is detected as well."""
    events = (
        ConsentEvent.objects.order_by("seq")
        .values(*ledger.HASHED_FIELDS, "prev_hash", "hash")
        .iterator(chunk_size=settings.RENOTIFY_EXPORT_CHUNK_SIZE)
    )
    verdict = ledger.chain_verify(events)
    broken, detail = verdict.first_broken_seq, verdict.problem
    previous = LedgerCheck.objects.filter(intact=True).order_by("-checked_at").first()
    if broken is None and previous and not _still_holds(previous, verdict):
        broken = previous.head_seq
        detail = (
            f"event {previous.head_seq}, verified on {previous.checked_at:%Y-%m-%d}, "
            "is gone or changed"
        )
    return LedgerCheck.objects.create(
        events_checked=verdict.events_checked,
        intact=broken is None,
        first_broken_seq=broken,
        head_seq=verdict.head_seq,
        head_hash=verdict.head_hash,
        detail=detail,
    )


def _still_holds(previous: LedgerCheck, verdict: ledger.ChainVerdict) -> bool:
    if previous.head_seq == 0:
        return True
    if verdict.head_seq < previous.head_seq:
        return False
    stored = ConsentEvent.objects.filter(seq=previous.head_seq).values_list("hash", flat=True)
    return list(stored) == [previous.head_hash]
