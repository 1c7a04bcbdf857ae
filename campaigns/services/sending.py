"""Claim a chunk of pending deliveries, then render, send and record each one.

The database is the source of truth; the order of writes is what makes a crash
safe:

1. claim: one conditional UPDATE moves up to a chunk of ``pending`` rows to
   ``claimed`` with a lease (SKIP LOCKED on PostgreSQL), and commits;
2. before each small batch goes to the transport, its rows move to ``sending``;
3. after the transport answers, each row moves to ``sent`` / ``failed`` /
   ``pending`` (transient error, retried later) / ``unknown``.

A worker that dies leaves ``claimed`` rows (never handed over: the reconciler
puts them back to pending) or ``sending`` rows (the transport may have taken
them: the reconciler marks them ``unknown``, for staff to resend). Nothing
is sent inside a transaction or while holding row locks.
"""

import logging
import smtplib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from anymail.exceptions import AnymailAPIError, AnymailInvalidAddress, AnymailRecipientsRefused
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.db.models import F, Min, Q
from django.db.models.expressions import Combinable
from django.utils import timezone

from accounts.models import UNREACHABLE_REASON, Member
from campaigns import tokens
from campaigns.models import Campaign, CampaignState, Delivery, DeliveryStatus, NoticeVersion
from campaigns.rendering import CompiledMessage, compile_message
from campaigns.services.lifecycle import BREAKER_NOTE, campaign_pause
from campaigns.services.throttle import Pace, throttle_take
from config.fields import clipped
from config.mail import connection_open
from db import sending as db_sending

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claimed:
    id: int
    wave: int
    attempts: int
    email: str
    locale: str
    reachable: bool
    # The version this delivery carries (a wording test's variant); None: the campaign's.
    version_id: int | None = None


@dataclass
class ChunkOutcome:
    claimed: int = 0
    sent: int = 0
    # Set when the transport itself is failing (the first backoff): the task retries,
    # waiting longer each time (``backoff_seconds``).
    retry_in: float | None = None
    # Seconds until pending work is due (0: now); None when nothing is pending.
    next_due_in: float | None = None


# --- What the transport's answer means for one delivery ---------------------------

SENT, FAILED, RETRY, UNKNOWN, TRANSPORT_DOWN = "sent", "failed", "retry", "unknown", "down"


def _by_recipient_codes(exc: smtplib.SMTPRecipientsRefused) -> str:
    codes = [code for code, _msg in exc.recipients.values()]
    return FAILED if codes and all(code >= 500 for code in codes) else RETRY


def _by_smtp_code(exc: smtplib.SMTPResponseException) -> str:
    return FAILED if exc.smtp_code >= 500 else RETRY


def _by_http_status(exc: AnymailAPIError) -> str:
    # No answer, 429 or 5xx: the ESP is struggling, not this message. 4xx: this message.
    status = getattr(exc, "status_code", None)
    return TRANSPORT_DOWN if status is None or status == 429 or status >= 500 else FAILED


# What an exception from ``send_messages`` means for the delivery, checked in
# order (subclasses before their bases). Anything else: UNKNOWN, since it may
# have been raised after the transport took the message.
EXCEPTION_OUTCOMES: list[tuple[type[BaseException], str | Callable[[Any], str]]] = [
    (smtplib.SMTPConnectError, TRANSPORT_DOWN),
    (smtplib.SMTPServerDisconnected, TRANSPORT_DOWN),
    (smtplib.SMTPRecipientsRefused, _by_recipient_codes),
    (smtplib.SMTPResponseException, _by_smtp_code),
    (AnymailRecipientsRefused, FAILED),
    (AnymailInvalidAddress, FAILED),
    (AnymailAPIError, _by_http_status),
    (ConnectionRefusedError, TRANSPORT_DOWN),
    (TimeoutError, UNKNOWN),
]


def classify(exc: Exception) -> str:
    for kind, outcome in EXCEPTION_OUTCOMES:
        if isinstance(exc, kind):
            return outcome(exc) if callable(outcome) else outcome
    return UNKNOWN


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff for transient errors: 30 s, 60 s, 120 s ... capped at 30 min."""
    return min(30.0 * 2 ** max(0, attempt - 1), 1800.0)


# --- The chunk -------------------------------------------------------------------


def chunk_size(campaign: Campaign) -> int:
    """About thirty seconds of sending at the campaign's pace, at most RENOTIFY_CHUNK_SIZE.

    One chunk is one Celery message, so large chunks keep the broker quiet (at 2,000/min
    and up, one message per 1,000 recipients). Pause and cancel do not wait for the
    chunk: the state is checked before every batch. The lease must outlast a chunk."""
    pace = Pace(campaign.throttle_per_minute)
    return max(pace.burst, min(settings.RENOTIFY_CHUNK_SIZE, campaign.throttle_per_minute // 2))


def campaign_send_chunk(*, campaign_id: int) -> ChunkOutcome:
    """Claim one chunk of ``campaign_id``'s due deliveries and send it."""
    outcome = ChunkOutcome()
    # The texts come with the campaign: one query per chunk, not one per locale.
    campaign = (
        Campaign.objects.select_related("notice_version")
        .prefetch_related("notice_version__texts")
        .get(pk=campaign_id)
    )
    if campaign.state != CampaignState.SENDING:
        return outcome
    lease = timezone.now() + timedelta(seconds=settings.RENOTIFY_LEASE_SECONDS)
    claimed = deliveries_claim(campaign=campaign, limit=chunk_size(campaign), lease=lease)
    outcome.claimed = len(claimed)
    if claimed:
        _send_claimed(campaign, claimed, lease, outcome)
        campaign_breaker_check(campaign=campaign)
    outcome.next_due_in = pending_due_in(campaign=campaign)
    return outcome


def deliveries_claim(*, campaign: Campaign, limit: int, lease: datetime) -> list[Claimed]:
    """Move up to ``limit`` due pending deliveries to ``claimed``; commits on return."""
    rows = db_sending.deliveries_claim(
        campaign_id=campaign.pk,
        due_status=DeliveryStatus.PENDING.value,
        due_at=timezone.now(),
        limit=limit,
        claimed_status=DeliveryStatus.CLAIMED.value,
        lease=lease,
    )
    members = {
        pk: (email, locale, not reason)
        for pk, email, locale, reason in Member.objects.filter(
            pk__in=[row.member_id for row in rows]
        )
        .annotate(reason=UNREACHABLE_REASON)
        .values_list("pk", "email", "locale", "reason")
    }
    return sorted(
        (
            Claimed(row.id, row.wave, row.attempts, *members[row.member_id], row.notice_version_id)
            for row in rows
        ),
        key=lambda c: c.id,
    )


def _send_claimed(
    campaign: Campaign, claimed: list[Claimed], lease: datetime, outcome: ChunkOutcome
) -> None:
    # Someone may have unsubscribed, bounced or complained since the fan-out.
    unreachable = [c for c in claimed if not c.reachable]
    _finish(unreachable, DeliveryStatus.SKIPPED, lease, "address not reachable at send time")
    todo = [c for c in claimed if c.reachable]
    pace = Pace(campaign.throttle_per_minute)
    sender = _Sender(campaign, _versions(campaign, todo))
    try:
        for start in range(0, len(todo), pace.burst):
            batch, rest = todo[start : start + pace.burst], todo[start:]
            if not _may_continue(campaign, pace, len(batch), lease):
                _release(rest, lease)
                return
            handed = _hand_over(batch, lease)
            results = [sender.send(c) for c in batch if c.id in handed]
            _record(campaign, results, lease, outcome)
            if any(r.outcome == FAILED for r in results):
                # A relay refusing everything pauses before it fails the whole campaign;
                # the next batch's state check then gives the rest back.
                campaign_breaker_check(campaign=campaign)
            if any(r.outcome == TRANSPORT_DOWN for r in results):
                _release(rest[len(batch) :], lease)
                outcome.retry_in = backoff_seconds(1)
                return
    finally:
        sender.close()


def _versions(campaign: Campaign, claimed: list[Claimed]) -> dict[int, NoticeVersion]:
    """The versions the chunk's deliveries carry, by id, with their texts: the campaign's
    (read with it), and a wording test's others in one query."""
    versions = {campaign.notice_version_id: campaign.notice_version}
    others = {c.version_id for c in claimed if c.version_id is not None} - versions.keys()
    if others:
        versions.update(
            NoticeVersion.objects.prefetch_related("texts").in_bulk(sorted(others)).items()
        )
    return versions


def _may_continue(campaign: Campaign, pace: Pace, n: int, lease: datetime) -> bool:
    """Still sending (not paused or cancelled), and tokens granted while the lease holds."""
    if not Campaign.objects.filter(pk=campaign.pk, state=CampaignState.SENDING).exists():
        return False
    # Keep time to send and record the batch before the lease ends: 30 s, or half a
    # shorter lease (a fixed 30 s would never send under a lease of 30 s or less).
    reserve = min(30.0, settings.RENOTIFY_LEASE_SECONDS / 2)
    margin = (lease - timezone.now()).total_seconds() - reserve
    return margin > 0 and throttle_take(
        key=f"campaign-{campaign.pk}",
        limit_per_minute=campaign.throttle_per_minute,
        n=n,
        give_up_after=margin,
    )


def _hand_over(batch: list[Claimed], lease: datetime) -> set[int]:
    """claimed -> sending for the rows this claim still owns (the lease is the fence)."""
    return db_sending.deliveries_hand_over(
        ids=[c.id for c in batch],
        from_status=DeliveryStatus.CLAIMED.value,
        lease=lease,
        to_status=DeliveryStatus.SENDING.value,
    )


def _release(rest: list[Claimed], lease: datetime) -> None:
    """Give unsent claims back (pause, cancel, throttle wait too long, transport down)."""
    Delivery.objects.filter(
        id__in=[c.id for c in rest], status=DeliveryStatus.CLAIMED, lease_expires_at=lease
    ).update(status=DeliveryStatus.PENDING, lease_expires_at=None, attempts=F("attempts") - 1)


def _finish(claimed: list[Claimed], status: DeliveryStatus, lease: datetime, error: str) -> int:
    if not claimed:
        return 0
    return Delivery.objects.filter(id__in=[c.id for c in claimed], lease_expires_at=lease).update(
        status=status, lease_expires_at=None, error=error
    )


# --- Talking to the transport ------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    claimed: Claimed
    outcome: str
    locale: str = ""
    esp_message_id: str = ""
    error: str = ""


class _Sender:
    """One connection per chunk; messages rendered from templates compiled once per
    version and locale (a wording test's deliveries carry different versions)."""

    def __init__(
        self, campaign: Campaign, versions: dict[int, NoticeVersion] | None = None
    ) -> None:
        self.campaign = campaign
        self.versions = versions or {campaign.notice_version_id: campaign.notice_version}
        self.connection = get_connection(fail_silently=False)
        self.is_open = False
        self.compiled: dict[tuple[int, str, bool], CompiledMessage] = {}

    def send(self, claimed: Claimed) -> SendResult:
        message, locale = self._message(claimed)
        try:
            if not self.is_open:
                # Opened here, send_messages() leaves it open for the rest of the chunk.
                connection_open(self.connection)
                self.is_open = True
            self.connection.send_messages([message])
        except Exception as exc:  # classified, logged and recorded on the delivery
            outcome = classify(exc)
            logger.warning(
                "delivery %s: %s (%s)",
                claimed.id,
                outcome,
                type(exc).__name__,
                exc_info=outcome == UNKNOWN,
            )
            if outcome in (UNKNOWN, TRANSPORT_DOWN):
                self.close()  # the session's state is unknown: start the next one afresh
            return SendResult(
                claimed, outcome, error=clipped(Delivery, "error", f"{type(exc).__name__}: {exc}")
            )
        status = getattr(message, "anymail_status", None)
        esp_id = getattr(status, "message_id", None) or message.extra_headers["Message-ID"]
        return SendResult(claimed, SENT, locale, clipped(Delivery, "esp_message_id", str(esp_id)))

    def _message(self, claimed: Claimed) -> tuple[EmailMultiAlternatives, str]:
        version_id = claimed.version_id or self.campaign.notice_version_id
        compiled = self._compiled(version_id, claimed.locale, reminder=claimed.wave > 0)
        unsubscribe_url = tokens.unsubscribe_url(claimed.id)
        text, html = compiled.personalise(
            notice_url=tokens.notice_url(claimed.id), unsubscribe_url=unsubscribe_url
        )
        message = notice_email(
            subject=compiled.subject,
            text=text,
            html=html,
            to=claimed.email,
            delivery_id=claimed.id,
            campaign_id=self.campaign.pk,
            unsubscribe_url=unsubscribe_url,
            connection=self.connection,
        )
        return message, compiled.locale

    def _compiled(self, version_id: int, locale: str, *, reminder: bool) -> CompiledMessage:
        key = (version_id, locale, reminder)
        if key not in self.compiled:
            self.compiled[key] = compile_message(
                self.versions[version_id], locale, reminder=reminder
            )
        return self.compiled[key]

    def close(self) -> None:
        if self.is_open:
            try:
                self.connection.close()
            except OSError:
                logger.warning("closing the mail connection failed", exc_info=True)
            self.is_open = False


def notice_email(
    *,
    subject: str,
    text: str,
    html: str,
    to: str,
    delivery_id: int,
    campaign_id: int,
    unsubscribe_url: str,
    connection=None,
) -> EmailMultiAlternatives:
    """A notice email with RFC 8058 one-click unsubscribe and ESP tracking metadata."""
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        to=[to],
        connection=connection,
        headers={
            # Stable: a resend of the same delivery carries the same id.
            "Message-ID": f"<d{delivery_id}.c{campaign_id}@{settings.RENOTIFY_MESSAGE_ID_DOMAIN}>",
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "X-Renotify-Delivery": str(delivery_id),
        },
    )
    message.attach_alternative(html, "text/html")
    esp_tag(
        message,
        metadata={"delivery_id": str(delivery_id), "campaign_id": str(campaign_id)},
        tags=[f"campaign-{campaign_id}"],
    )
    return message


def esp_tag(message: EmailMultiAlternatives, *, metadata: dict[str, str], tags: list[str]) -> None:
    """What django-anymail passes to the ESP with ``message``; its webhooks hand the
    metadata back with each event."""
    # Attributes django-anymail reads; django-stubs knows only Django's own.
    message.metadata = metadata  # type: ignore[attr-defined]
    message.tags = tags  # type: ignore[attr-defined]


# --- Recording what happened -------------------------------------------------------


def _record(
    campaign: Campaign, results: list[SendResult], lease: datetime, outcome: ChunkOutcome
) -> None:
    now = timezone.now()
    rows: list[tuple[object, ...]] = []
    tally: Counter[DeliveryStatus] = Counter()
    for result in results:
        delivery = Delivery(id=result.claimed.id, error=result.error)
        delivery.sent_at, delivery.not_before = None, None
        status = _status_after(result, now, delivery)
        tally[status] += 1
        rows.append(
            (
                delivery.pk,
                status.value,
                delivery.sent_at,
                delivery.not_before,
                result.esp_message_id,
                result.locale,
                delivery.error,
            )
        )
    rejected = sum(1 for r in results if r.outcome == FAILED)
    # The breaker's counters move with the deliveries they count (reports count the
    # deliveries instead): a lost worker or a chunk in flight leaves them behind by
    # nothing already recorded.
    with transaction.atomic():
        # The status only from "sending": an ESP webhook can be faster than this write,
        # and a delivery never moves back from "delivered" to "sent".
        db_sending.deliveries_record(rows=rows, status_only_from=DeliveryStatus.SENDING.value)
        if tally[DeliveryStatus.SENT] or rejected:
            Campaign.objects.filter(pk=campaign.pk).update(
                sent_count=F("sent_count") + tally[DeliveryStatus.SENT] + rejected,
                hard_bounce_count=F("hard_bounce_count") + rejected,
                rejected_in_a_row=_rejected_in_a_row(results),
            )
    outcome.sent += tally[DeliveryStatus.SENT]


def _rejected_in_a_row(results: list[SendResult]) -> Combinable | int:
    """The streak of permanent refusals after this batch: those since its last accepted
    message, or the streak so far plus this batch's when it had none accepted."""
    outcomes = [r.outcome for r in results]
    if SENT not in outcomes:
        return F("rejected_in_a_row") + outcomes.count(FAILED)
    last_sent = len(outcomes) - 1 - outcomes[::-1].index(SENT)
    return outcomes[last_sent:].count(FAILED)


def _status_after(result: SendResult, now: datetime, delivery: Delivery) -> DeliveryStatus:
    if result.outcome == SENT:
        delivery.sent_at = now
        return DeliveryStatus.SENT
    if result.outcome == FAILED:
        return DeliveryStatus.FAILED
    if result.outcome == UNKNOWN:
        return DeliveryStatus.UNKNOWN
    # RETRY and TRANSPORT_DOWN: not accepted, so safe to try again later, within limits.
    attempts = result.claimed.attempts
    if attempts >= settings.RENOTIFY_MAX_ATTEMPTS:
        delivery.error = clipped(
            Delivery, "error", f"gave up after {attempts} attempts; last: {result.error}"
        )
        return DeliveryStatus.FAILED
    delivery.not_before = now + timedelta(seconds=backoff_seconds(attempts))
    return DeliveryStatus.PENDING


# --- Campaign-level checks ------------------------------------------------------------


def pending_due_in(*, campaign: Campaign) -> float | None:
    """Seconds until the earliest pending delivery is due (0 if now), None if none is pending."""
    now = timezone.now()
    pending = Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.PENDING)
    if pending.filter(Q(not_before__isnull=True) | Q(not_before__lte=now)).exists():
        return 0.0
    earliest = pending.aggregate(earliest=Min("not_before"))["earliest"]
    return None if earliest is None else max(0.0, (earliest - now).total_seconds())


def campaign_breaker_check(*, campaign: Campaign) -> bool:
    """Pause ``campaign`` when its hard-bounce or complaint rate says the list is bad.

    Judged on what was sent since an approver last resumed a breaker pause (or since
    the start): that resume was a decision about everything before it."""
    counts = (
        Campaign.objects.filter(pk=campaign.pk)
        .values(
            "state",
            "rejected_in_a_row",
            "sent_count",
            "hard_bounce_count",
            "complaint_count",
            "breaker_base_sent",
            "breaker_base_bounces",
            "breaker_base_complaints",
            "breaker_reset_at",
        )
        .get()
    )
    if counts["state"] != CampaignState.SENDING:
        return False
    in_a_row = counts["rejected_in_a_row"]
    if in_a_row >= settings.RENOTIFY_BREAKER_REJECTIONS_IN_A_ROW:
        campaign_pause(
            campaign=campaign,
            by=None,
            reason=f"{BREAKER_NOTE}: {in_a_row} permanent refusals in a row, none accepted "
            "since: the relay or ESP may be refusing every message (see the deliveries' errors)",
        )
        return True
    sent = counts["sent_count"] - counts["breaker_base_sent"]
    if sent < settings.RENOTIFY_BREAKER_MIN_SENDS:
        return False
    bounces = counts["hard_bounce_count"] - counts["breaker_base_bounces"]
    complaints = counts["complaint_count"] - counts["breaker_base_complaints"]
    reasons = []
    bounce_limit, complaint_limit = (
        settings.RENOTIFY_BREAKER_BOUNCE_RATE,
        settings.RENOTIFY_BREAKER_COMPLAINT_RATE,
    )
    if bounces / sent > bounce_limit:
        reasons.append(
            f"hard-bounce rate {bounces / sent:.1%} ({bounces} of {sent}) over {bounce_limit:.1%}"
        )
    if complaints / sent > complaint_limit:
        reasons.append(
            f"complaint rate {complaints / sent:.2%} ({complaints} of {sent}) "
            f"over {complaint_limit:.2%}"
        )
    if not reasons:
        return False
    since = ""
    if counts["breaker_reset_at"] is not None:
        since = f" since the resume at {counts['breaker_reset_at']:%Y-%m-%d %H:%M} UTC"
    campaign_pause(
        campaign=campaign,
        by=None,
        reason=f"{BREAKER_NOTE} after {sent} sends{since}: " + "; ".join(reasons),
    )
    return True
