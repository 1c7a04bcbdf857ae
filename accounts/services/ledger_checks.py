"""Verify the consent ledger's hash chain and keep a record of each verification.

Two checks, both recorded as (append-only) LedgerCheck rows, each exporting the head
it verified to the sink (``ledger_heads``):

- the **full** walk (nightly, and ``verify_ledger``) verifies every event from
  genesis, then that the furthest head ever verified is still there;
- the **head** check (every few minutes) guards the tail, cheaply: the event at the
  furthest verified head must still have the hash recorded for it, and the events
  since must chain on from it. Events added after one check and cut before the next
  are noticed, because the first check recorded them as the head. It does not read
  older events again: changes to those are the full walk's to find.
"""

from collections.abc import Iterator, Sequence
from typing import Any

from django.conf import settings
from django.utils import timezone

from accounts import ledger
from accounts.models import CheckKind, ConsentEvent, LedgerCheck
from accounts.services.ledger_heads import RecordedHead, ledger_head_export, ledger_heads_compare
from config.fields import clipped


def ledger_check_run(*, recorded_heads: Sequence[RecordedHead] = ()) -> LedgerCheck:
    """Walk the whole chain, then compare its head with the furthest verified head and
    with ``recorded_heads`` (read from a sink), so that cutting events off the end of
    the ledger is detected as well."""
    # Read before the walk: a head check recorded during a long walk has seen events the
    # walk's snapshot has not, which would look like a cut tail.
    previous = _furthest_verified()
    verdict = ledger.chain_verify(_events(after_seq=0))
    broken, detail = verdict.first_broken_seq, verdict.problem
    if broken is None and previous and not _still_holds(previous, verdict):
        broken = min(previous.head_seq, verdict.head_seq + 1)
        detail = f"event {previous.head_seq}, {_verified_on(previous)}, is gone or changed"
    if broken is None and recorded_heads:
        compared = ledger_heads_compare(heads=recorded_heads)
        broken, detail = compared.first_broken_seq, compared.problem
    return _check_record(CheckKind.FULL, verdict, broken, detail)


def ledger_head_check_run() -> LedgerCheck:
    """Verify the events since the furthest verified head (all of them, the first time)."""
    previous = _furthest_verified()
    if previous is None or previous.head_seq == 0:
        verdict = ledger.chain_verify(_events(after_seq=0))
        return _check_record(CheckKind.HEAD, verdict, verdict.first_broken_seq, verdict.problem)
    events = _events(after_seq=previous.head_seq - 1)
    anchor = next(events, None)
    if anchor is None or anchor["seq"] != previous.head_seq or anchor["hash"] != previous.head_hash:
        return _anchor_lost(previous, anchor)
    verdict = ledger.chain_verify(events, after_seq=anchor["seq"], after_hash=anchor["hash"])
    return _check_record(CheckKind.HEAD, verdict, verdict.first_broken_seq, verdict.problem)


def _anchor_lost(previous: LedgerCheck, anchor: dict[str, Any] | None) -> LedgerCheck:
    """The verified head is gone or has another hash: nothing after it can be trusted."""
    seq = previous.head_seq
    if anchor is not None and anchor["seq"] == seq:
        broken, what = seq, "changed"
    else:
        before = ConsentEvent.objects.filter(seq__lt=seq).order_by("-seq")
        broken = (before.values_list("seq", flat=True).first() or 0) + 1
        what = f"gone; the ledger before it ends at event {broken - 1}"
    nothing = ledger.ChainVerdict(events_checked=0, head_seq=0, head_hash="")
    return _check_record(
        CheckKind.HEAD, nothing, broken, f"event {seq}, {_verified_on(previous)}, is {what}"
    )


def _events(*, after_seq: int) -> Iterator[dict[str, Any]]:
    return (
        ConsentEvent.objects.filter(seq__gt=after_seq)
        .order_by("seq")
        .values(*ledger.HASHED_FIELDS, "prev_hash", "hash")
        .iterator(chunk_size=settings.RENOTIFY_EXPORT_CHUNK_SIZE)
    )


def _furthest_verified() -> LedgerCheck | None:
    """The intact check with the furthest head: the furthest point the ledger is known
    to have reached, which it must never fall short of again."""
    return LedgerCheck.objects.filter(intact=True).order_by("-head_seq", "-pk").first()


def _verified_on(check: LedgerCheck) -> str:
    return f"verified on {check.checked_at:%Y-%m-%d %H:%M} UTC"


def _still_holds(previous: LedgerCheck, verdict: ledger.ChainVerdict) -> bool:
    if previous.head_seq == 0:
        return True
    if verdict.head_seq < previous.head_seq:
        return False
    stored = ConsentEvent.objects.filter(seq=previous.head_seq).values_list("hash", flat=True)
    return list(stored) == [previous.head_hash]


def _check_record(
    kind: CheckKind, verdict: ledger.ChainVerdict, broken: int | None, detail: str
) -> LedgerCheck:
    """Export the head this check verified, then record the check (with the export's
    outcome: the row cannot be changed afterwards)."""
    checked_at = timezone.now()
    sink_error = ledger_head_export(
        seq=verdict.head_seq,
        hash_=verdict.head_hash,
        checked_at=checked_at,
        intact=broken is None,
    )
    return LedgerCheck.objects.create(
        checked_at=checked_at,
        kind=kind,
        events_checked=verdict.events_checked,
        intact=broken is None,
        first_broken_seq=broken,
        head_seq=verdict.head_seq,
        head_hash=verdict.head_hash,
        detail=clipped(LedgerCheck, "detail", detail),
        sink_error=sink_error,
    )
