"""Objection receipts: the ledger is their outbox; a worker sends them.

Every objection made on the notice or preference pages is a ledger event, committed
with the choice itself, so a receipt cannot be lost to a broker that is down at commit.
The request only kicks a sender (``campaigns.enqueue.receipts_kick``: at most once per
``KICK_SECONDS`` per process), and beat sweeps every ``RENOTIFY_SWEEP_SECONDS``.
A sender first reads the ledger on from where the last one stopped (``ReceiptSweep``),
adding an owed ObjectionReceipt per new objection, then claims owed receipts with a
lease, so concurrent senders never send one receipt twice.

A receipt goes only to a reachable member (``Member.is_reachable``: a healthy address,
not unsubscribed), judged when it is sent: mail to an address that bounced or reported
us as spam hurts the sender's reputation, and a member who unsubscribed asked for no
more email from us; a receipt is one. Those receipts are ``withheld``, and the page
that recorded the objection says no email will come and shows the reference instead
(``objection_confirmation``).
"""

import logging
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import connection, transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone, translation

from accounts.locales import locale_language
from accounts.models import Action, Choice, ConsentEvent, Member, Preference, Source
from accounts.permissions import permission_require
from accounts.selectors import planned_opening, purpose_wording
from accounts.services.consent import LINKED_VIA
from audit.models import Action as StaffAct
from audit.services import staff_action_record
from campaigns import enqueue, tokens
from campaigns.models import NoticeVersion, ObjectionReceipt, ReceiptStatus, ReceiptSweep
from campaigns.services.sending import (
    RETRY,
    TRANSPORT_DOWN,
    backoff_seconds,
    classify,
    esp_tag,
)
from config.fields import clipped

logger = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)  # a claimed receipt whose sender died is due again after this
MAX_ATTEMPTS = 8


# The objections that get a receipt: those members make on the pages.
RECEIPT_ACTION, RECEIPT_SOURCE = Action.OBJECT, Source.PREFERENCE_PAGE
SWEEP_BATCH = 5000


def receipt_expect() -> None:
    """An objection that needs a receipt is being recorded: once the transaction
    commits, have a sender pick it up from the ledger."""
    enqueue.receipts_kick()


@dataclass
class ReceiptReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0


def receipts_collect(*, batch_size: int = SWEEP_BATCH) -> int:
    """Owe a receipt for every page objection added to the ledger since the last sweep.
    Returns the number owed; concurrent sweeps wait for each other (row lock)."""
    owed = 0
    while True:
        with transaction.atomic():
            # The row is made by migration campaigns 0010: at the ledger's head on a
            # database with history (no receipts for objections made before receipts
            # existed), at 0 on a fresh one, which is also what a missing row means.
            sweep, _ = ReceiptSweep.objects.select_for_update().get_or_create(pk=1)
            events = list(
                ConsentEvent.objects.filter(seq__gt=sweep.last_seq)
                .order_by("seq")
                .values_list("seq", "pk", "action", "source", "metadata")[:batch_size]
            )
            receipts = [
                ObjectionReceipt(consent_event_id=pk)
                for _seq, pk, action, source, metadata in events
                if (action, source) == (RECEIPT_ACTION, RECEIPT_SOURCE)
                # One receipt per objection: to the account it was made through, not to
                # each linked account it was applied to.
                and LINKED_VIA not in metadata
            ]
            ObjectionReceipt.objects.bulk_create(receipts, ignore_conflicts=True)
            if events:
                sweep.last_seq, sweep.swept_at = events[-1][0], timezone.now()
                sweep.save(update_fields=["last_seq", "swept_at"])
        owed += len(receipts)
        if len(events) < batch_size:
            return owed


def receipts_send(*, batch_size: int = 100, max_batches: int = 100) -> ReceiptReport:
    """Owe receipts for new objections, then send the owed ones that are due, batch by
    batch; safe to run concurrently."""
    receipts_collect()
    report = ReceiptReport()
    for _ in range(max_batches):
        claimed = _claim(batch_size, now=timezone.now())
        if claimed:
            _send_batch(claimed, report)
        if len(claimed) < batch_size:
            break
    return report


def receipts_retry(*, receipts, by: User | None) -> int:
    """Staff: send failed receipts again (e.g. after the mail settings were fixed), with
    a fresh set of attempts. Returns how many were queued. Needs
    ``campaigns.send_receipt_again``."""
    permission_require(by=by, perm="campaigns.send_receipt_again")
    with transaction.atomic():
        count = receipts.filter(status=ReceiptStatus.FAILED).update(
            status=ReceiptStatus.OWED, due_at=timezone.now(), attempts=0
        )
        if by is not None:
            staff_action_record(by=by, action=StaffAct.RECEIPT_RESEND, detail={"receipts": count})
    if count:
        enqueue.receipts_kick()
    return count


def _claim(batch_size: int, *, now: datetime) -> list[ObjectionReceipt]:
    """Take due receipts with a lease; a concurrent sender skips them (SKIP LOCKED)."""
    with transaction.atomic():
        due = ObjectionReceipt.objects.filter(status=ReceiptStatus.OWED, due_at__lte=now)
        if connection.vendor == "postgresql":
            due = due.select_for_update(skip_locked=True)
        ids = list(due.order_by("due_at", "id").values_list("pk", flat=True)[:batch_size])
        ObjectionReceipt.objects.filter(pk__in=ids).update(
            attempts=F("attempts") + 1, due_at=now + LEASE
        )
    return list(ObjectionReceipt.objects.filter(pk__in=ids).order_by("id"))


def _send_batch(receipts: list[ObjectionReceipt], report: ReceiptReport) -> None:
    events = (
        ConsentEvent.objects.select_related("member", "purpose")
        .prefetch_related("purpose__texts")  # its name in each member's language
        .in_bulk([r.consent_event_id for r in receipts])
    )
    version_ids = {e.notice_version_id for e in events.values() if e.notice_version_id}
    versions = NoticeVersion.objects.in_bulk(version_ids)
    withheld = {r.pk for r in receipts if not events[r.consent_event_id].member.is_reachable}
    _withhold(withheld)
    with get_connection() as mail:  # one connection for the batch
        for receipt in receipts:
            event = events[receipt.consent_event_id]
            if receipt.pk in withheld:
                continue
            message = receipt_message(event, versions.get(event.notice_version_id))
            message.connection = mail
            _send_one(receipt, message, report)


def _withhold(receipt_ids: set[int]) -> None:
    ObjectionReceipt.objects.filter(pk__in=receipt_ids).update(
        status=ReceiptStatus.WITHHELD, last_error="address not reachable"
    )


@dataclass(frozen=True)
class ObjectionConfirmation:
    """What the page shows after an objection: its reference (the ledger event that
    stands for it) and whether a receipt will be emailed."""

    reference: int
    receipt: bool


def objection_confirmation(*, member_id: int, purpose_slug: str) -> ObjectionConfirmation | None:
    """For the member's standing objection to the purpose (None if they have none): a
    receipt comes when it was made on the pages and the member is reachable now, as
    the sender will judge it."""
    row = (
        Preference.objects.filter(
            member_id=member_id, purpose__slug=purpose_slug, choice=Choice.OUT
        )
        .exclude(last_event=None)
        .values_list(
            "last_event__seq",
            "last_event__action",
            "last_event__source",
            "member__email_status",
            "member__unsubscribed_at",
        )
        .first()
    )
    if row is None:
        return None
    seq, action, source, email_status, unsubscribed_at = row
    member = Member(email_status=email_status, unsubscribed_at=unsubscribed_at)
    owed = (action, source) == (RECEIPT_ACTION, RECEIPT_SOURCE)
    return ObjectionConfirmation(reference=seq, receipt=owed and member.is_reachable)


def _send_one(receipt: ObjectionReceipt, message: EmailMultiAlternatives, report) -> None:
    try:
        message.send()
    except Exception as exc:  # recorded on the row and logged, never dropped
        retry = classify(exc) in (RETRY, TRANSPORT_DOWN) and receipt.attempts < MAX_ATTEMPTS
        _failed(receipt, exc, retry=retry)
        report.retried += retry
        report.failed += not retry
        return
    ObjectionReceipt.objects.filter(pk=receipt.pk).update(
        status=ReceiptStatus.SENT, sent_at=timezone.now(), last_error=""
    )
    report.sent += 1


def _failed(receipt: ObjectionReceipt, exc: Exception, *, retry: bool) -> None:
    """Owed again after a backoff, or (the server refused for good, may have taken the
    message, or attempts ran out) failed; either way the error stays on the row."""
    ObjectionReceipt.objects.filter(pk=receipt.pk).update(
        status=ReceiptStatus.OWED if retry else ReceiptStatus.FAILED,
        due_at=timezone.now() + timedelta(seconds=backoff_seconds(receipt.attempts)),
        last_error=_error_summary(exc),
    )
    log = logger.warning if retry else logger.error
    log("receipt %s attempt %s: %s", receipt.pk, receipt.attempts, type(exc).__name__)


def _error_summary(exc: Exception) -> str:
    """The error's kind and the server's codes: never its text, which may hold the address."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes: list[object] = [code for code, _msg in exc.recipients.values()]
    else:
        codes = [getattr(exc, "smtp_code", None) or getattr(exc, "status_code", None)]
    return clipped(
        ObjectionReceipt,
        "last_error",
        " ".join([type(exc).__name__, *(str(c) for c in codes if c)]),
    )


def receipt_message(event: ConsentEvent, version: NoticeVersion | None) -> EmailMultiAlternatives:
    if event.purpose is None:
        raise ValueError(f"consent event {event.seq} names no purpose: no objection to confirm")
    locale = locale_language(event.member.locale)
    if locale not in dict(settings.LANGUAGES):
        locale = settings.LANGUAGE_CODE
    context = {
        "reference": event.seq,
        "purpose": purpose_wording(purpose=event.purpose, locale=event.member.locale),
        "objected_at": event.created_at,
        "version": version,
        "preferences_url": tokens.preferences_url(event.member_id),
        "effective_from": effective_from(version, event.created_at),
        # Excluded where the member lives, with an opening planned by a processing gate:
        # the receipt says the objection holds then too.
        "planned": planned_opening(
            purpose_id=event.purpose.pk, jurisdiction=event.member.jurisdiction
        ),
    }
    with translation.override(locale):
        subject = render_to_string("emails/objection-receipt-subject.txt", context).strip()
        text = render_to_string("emails/objection-receipt-body.txt", context)
        html = render_to_string("emails/objection-receipt-body.html", context)
    message = EmailMultiAlternatives(subject=subject, body=text, to=[event.member.email])
    message.attach_alternative(html, "text/html")
    esp_tag(message, metadata={"consent_event": str(event.seq)}, tags=["objection-receipt"])
    return message


def effective_from(version: NoticeVersion | None, objected_at: datetime):
    """Before the deadline, the objection holds before the data use starts; after it, from now."""
    if version and objected_at.date() <= version.objection_deadline:
        return version.effective_date
    return objected_at.date()
