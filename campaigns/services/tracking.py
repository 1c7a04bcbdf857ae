"""ESP tracking events: stored once on arrival, processed in batches afterwards.

The webhook request does as little as it can (one bulk INSERT per request, no
per-event queries, no network): ESPs retry slow webhooks. A batch processor
then maps events to deliveries and moves each delivery forward by precedence.
Precedence is a rank, and a delivery takes the highest rank it has evidence
for, so the final state does not depend on the order events arrive in (ESPs
retry, batch and reorder). Milestones keep the earliest time seen.

A batch is three statements whatever its size (PostgreSQL): one claims the oldest
unprocessed events (SKIP LOCKED, so processors run side by side on disjoint batches),
matches each with its delivery and marks it processed, returning only what the fold
reads (the raw payload only of bounces); one merges the folded deliveries; one writes
back the few events with more to say (machine opens, ledger consequences due). All in
the batch's transaction: a processor that dies leaves its events unprocessed. SQLite
(one writer) claims through the ORM (``_claim_plain``), which the tests compare.

Consequences for the member come in two kinds. The address's health (a hard bounce or
a complaint) is marked inside the batch's transaction. The ledger's (a complaint or an
ESP unsubscribe is the member's unsubscribe) is recorded only after the batch commits:
a ledger write owns its transaction, and inside the batch's it would hold the ledger,
which every member's choice waits for, until the whole batch commits, taking member
rows in the reverse of the ledger's lock order. The batch marks each such event
``ledger_due_at``; ``ledger_consequences_apply`` records them and clears the mark, and
runs after every batch, so one left behind by a process that died between the two is
recorded by the next run (twice is harmless: an unsubscribe that stands records nothing).
"""

import base64
import functools
import hashlib
import json
import logging
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Action, EmailStatus, Member, Source
from accounts.services.consent import consent_record
from campaigns.models import Campaign, Delivery, DeliveryEvent, DeliveryStatus
from config.fields import clipped
from db import tracking as db_tracking

logger = logging.getLogger(__name__)
S = DeliveryStatus

# A delivery's status only ever moves to a higher rank. The engine's own states
# rank lowest: any ESP event proves the message was accepted (which also settles
# an "unknown" delivery). The four terminal outcomes rank above everything.
RANK: dict[str, int] = {
    S.PENDING: 0,
    S.CLAIMED: 1,
    S.SENDING: 2,
    S.UNKNOWN: 3,
    S.SENT: 10,
    S.DEFERRED: 20,
    S.DELIVERED: 30,
    S.OPENED: 40,
    S.CLICKED: 50,
    S.FAILED: 90,
    S.REJECTED: 91,
    S.BOUNCED: 92,
    S.COMPLAINED: 93,
}
# What each normalised anymail event type is evidence of.
EVENT_STATUS: dict[str, str] = {
    "queued": S.SENT,
    "sent": S.SENT,
    "deferred": S.DEFERRED,
    "delivered": S.DELIVERED,
    "autoresponded": S.DELIVERED,
    "opened": S.OPENED,
    "clicked": S.CLICKED,
    "unsubscribed": S.DELIVERED,
    "bounced": S.BOUNCED,
    "rejected": S.REJECTED,
    "failed": S.FAILED,
    "complained": S.COMPLAINED,
}
# The first time each milestone was reached is kept on the delivery.
MILESTONE: dict[str, str] = {
    S.DELIVERED: "delivered_at",
    S.OPENED: "opened_at",
    S.CLICKED: "clicked_at",
    S.BOUNCED: "bounced_at",
    S.COMPLAINED: "complained_at",
}


# --- Soft bounces: some ESPs report them as "bounced"; the raw event says which --------


def _postmark_soft(raw: dict) -> bool:
    return raw.get("Type") in {"SoftBounce", "Transient", "DnsError", "AutoResponder"}


def _ses_soft(raw: dict) -> bool:
    return (raw.get("bounce") or {}).get("bounceType") in {"Transient", "Undetermined"}


def _sendgrid_soft(raw: dict) -> bool:
    return raw.get("type") == "blocked"  # SendGrid: a temporary block by the receiver


SOFT_BOUNCE_TEST = {"Postmark": _postmark_soft, "Amazon SES": _ses_soft, "SendGrid": _sendgrid_soft}


def is_soft_bounce(esp: str, raw: Any) -> bool:
    test = SOFT_BOUNCE_TEST.get(esp)
    return bool(test and isinstance(raw, dict) and test(raw))


# --- Link scanners -------------------------------------------------------------------

SCANNER_USER_AGENTS = re.compile(
    r"(proofpoint|mimecast|barracuda|safelinks|microsoft office|urldefense|symantec|"
    r"messagelabs|trendmicro|fortiguard|sophos|cisco|ironport|bot\b|crawler|spider|"
    r"python-requests|curl/|wget|headless|googleimageproxy.*bot)",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=4096)
def _is_scanner(user_agent: str) -> bool:
    # Cached: a campaign's opens come from a few thousand distinct agents at most, and
    # the search costs more than the rest of an open's processing.
    return bool(SCANNER_USER_AGENTS.search(user_agent))


def is_machine(user_agent: str, event_at: datetime | None, sent_at: datetime | None) -> bool:
    """An open or click by a known security scanner, or too soon after delivery to be a
    person. "Delivery" is measured from our send time: it is known before any ESP event,
    so the judgement is the same whatever order the events arrive in."""
    if user_agent and _is_scanner(user_agent):
        return True
    if event_at and sent_at:
        # An event stamped before the send (clock skew, stale data) cannot be judged.
        return (
            timedelta(0)
            <= event_at - sent_at
            < timedelta(seconds=settings.RENOTIFY_MACHINE_SECONDS)
        )
    return False


# --- Receiving -----------------------------------------------------------------------


def event_key(event: Any, esp: str) -> str:
    """The ESP's event id where it gives one, else a hash of what identifies the event.
    Event type and recipient are part of it: some ESPs reuse one id for a message's
    events or for every recipient of one notification."""
    if event.event_id:
        parts: list[Any] = [event.event_id, event.event_type, event.recipient or ""]
        canonical = json.dumps([esp, *parts], sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()
    parts = [
        event.event_type,
        event.message_id or "",
        event.recipient or "",
        event.timestamp.isoformat() if event.timestamp else "",
    ]
    try:
        # One encoding where the payload is plain JSON (every JSON webhook's is): the same
        # text as below, where testing the payload first encoded it twice. A key must never
        # change: an ESP's retry after an upgrade would be stored a second time.
        canonical = json.dumps([esp, *parts, _form_decoded(event.esp_event)], sort_keys=True)
    except (TypeError, ValueError):
        canonical = json.dumps(
            [esp, *parts, _jsonable(event.esp_event)], sort_keys=True, default=str
        )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _jsonable(raw: Any) -> Any:
    raw = _form_decoded(raw)
    try:
        json.dumps(raw)
    except (TypeError, ValueError):
        return repr(raw)
    return raw


def _form_decoded(raw: Any) -> Any:
    if hasattr(raw, "lists"):  # a QueryDict from a form-encoded webhook
        return {key: values for key, values in raw.lists()}
    return raw


def _delivery_id(metadata: Any) -> int | None:
    try:
        value = int(metadata.get("delivery_id"))  # no metadata (None): AttributeError
    except (TypeError, ValueError, AttributeError):
        return None
    return value if value > 0 else None


def event_row(event: Any, esp: str) -> dict[str, Any]:
    """The DeliveryEvent columns (``EVENT_COLUMNS``) for an anymail tracking event (no query)."""
    return {
        "esp": clipped(DeliveryEvent, "esp", esp),
        "event_key": event_key(event, esp),
        "event_id": clipped(DeliveryEvent, "event_id", event.event_id or ""),
        "event_type": clipped(DeliveryEvent, "event_type", event.event_type or "unknown"),
        "timestamp": event.timestamp,
        "recipient": clipped(DeliveryEvent, "recipient", event.recipient or ""),
        "message_id": clipped(DeliveryEvent, "message_id", event.message_id or ""),
        "metadata_delivery_id": _delivery_id(event.metadata),
        "reject_reason": clipped(DeliveryEvent, "reject_reason", event.reject_reason or ""),
        "description": event.description or "",
        "mta_response": event.mta_response or "",
        "user_agent": clipped(DeliveryEvent, "user_agent", event.user_agent or ""),
        "click_url": event.click_url or "",
        # Made JSON when stored (``events_store``), not tried here first: that would
        # encode every payload twice on the webhook's path.
        "raw": _form_decoded(event.esp_event),
    }


# Each stored column with its PostgreSQL type, for jsonb_to_recordset.
EVENT_COLUMNS = {
    "esp": "text",
    "event_key": "text",
    "event_id": "text",
    "event_type": "text",
    "timestamp": "timestamptz",
    "recipient": "text",
    "message_id": "text",
    "metadata_delivery_id": "bigint",
    "reject_reason": "text",
    "description": "text",
    "mta_response": "text",
    "user_agent": "text",
    "click_url": "text",
    "raw": "jsonb",
}


def events_store(rows: list[dict[str, Any]]) -> int:
    """Store events once: one statement for the whole batch, duplicates ignored."""
    if not rows:
        return 0
    if connection.vendor != "postgresql":
        DeliveryEvent.objects.bulk_create(
            [DeliveryEvent(**{**row, "raw": _jsonable(row["raw"])}) for row in rows],
            ignore_conflicts=True,
        )
        return len(rows)
    # The batch travels as one JSON document, unpacked by the server: encoding it is one
    # C-speed json.dumps, where binding every column of every event as a parameter
    # (bulk_create) is the costliest thing the webhook would do. One statement in
    # autocommit: no BEGIN and COMMIT round trips while the ESP waits.
    document = json.dumps(rows, default=_json_default)
    if "\\u0000" in document:  # PostgreSQL text and jsonb cannot hold NUL: drop it
        document = json.dumps(_without_nul(rows), default=_json_default)
    db_tracking.events_insert_json(document=document, columns=EVENT_COLUMNS)
    return len(rows)


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _json_default(value: Any) -> str:
    """A datetime as ISO 8601; anything else JSON cannot say (in an ESP's raw payload) as
    its repr, so the event is still kept."""
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value)


def unparsed_store(*, esp: str, body: bytes, problem: str) -> None:
    """Keep a payload the webhook could not parse, so nothing an ESP sent is lost."""
    digest = hashlib.sha256(body).hexdigest()
    # PostgreSQL text and jsonb cannot hold NUL: such a body is kept exactly, as base64.
    if b"\x00" in body:
        raw = {"body_base64": base64.b64encode(body[:100_000]).decode()}
    else:
        raw = {"body": body.decode("utf-8", errors="replace")[:100_000]}
    DeliveryEvent.objects.bulk_create(
        [
            DeliveryEvent(
                esp=clipped(DeliveryEvent, "esp", esp),
                event_key=f"unparsed:{digest}",
                event_type="unparsed",
                description=problem.replace("\x00", "\\x00")[:2000],
                raw=raw,
                processed_at=timezone.now(),
                is_orphan=True,
            )
        ],
        ignore_conflicts=True,
    )


# --- Processing ----------------------------------------------------------------------


@dataclass
class BatchReport:
    events: int = 0
    orphans: int = 0
    campaigns: set[int] = field(default_factory=set)
    more: bool = False  # stopped with a full batch: events may be left


def events_process(
    *, batch_size: int = 2000, max_batches: int = 1000, max_seconds: float | None = None
) -> BatchReport:
    """Process pending events in batches until none is left (or ``max_seconds`` have
    passed: ``report.more`` then says events may be left); safe to run concurrently."""
    total = BatchReport()
    started = time.monotonic()
    ledger_consequences_apply()  # any a dead process left behind
    for _ in range(max_batches):
        report = _process_batch(batch_size)
        ledger_consequences_apply()
        total.events += report.events
        total.orphans += report.orphans
        total.campaigns |= report.campaigns
        if report.events < batch_size:
            return total
        if max_seconds is not None and time.monotonic() - started >= max_seconds:
            break
    total.more = True
    return total


@dataclass(slots=True)
class ClaimedDelivery:
    """What a batch reads of a delivery its events name: the fields ``_fold`` moves
    (named as on ``Delivery``), the send time it judges machine opens by, and the
    member and campaign the consequences go to."""

    pk: int
    status: str
    soft_bounces: int
    sent_at: datetime | None
    member_id: int
    campaign_id: int
    delivered_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None
    bounced_at: datetime | None
    complained_at: datetime | None


@dataclass(slots=True)
class ClaimedEvent:
    """What a batch reads of an event (``raw`` only for bounces) and what it decides."""

    pk: int
    esp: str
    event_type: str
    timestamp: datetime | None
    received_at: datetime
    user_agent: str
    raw: Any
    delivery_id: int | None
    is_machine: bool = False


@transaction.atomic
def _process_batch(batch_size: int) -> BatchReport:
    now = timezone.now()
    events, deliveries, marked = _claim(batch_size, now)
    by_delivery: dict[int, list[ClaimedEvent]] = defaultdict(list)
    for event in events:
        if event.delivery_id is not None:
            by_delivery[event.delivery_id].append(event)
    changed = []
    for delivery_pk, its_events in by_delivery.items():
        delivery = deliveries[delivery_pk]
        soft_bounces = delivery.soft_bounces
        if _fold(delivery, sorted(its_events, key=_when)):
            changed.append((delivery, delivery.soft_bounces - soft_bounces))
    _save_deliveries(changed)
    _address_health_mark(by_delivery, deliveries)
    _mark_processed(events, now, all_rows=not marked)
    return BatchReport(
        events=len(events),
        orphans=len(events) - sum(len(v) for v in by_delivery.values()),
        campaigns={deliveries[pk].campaign_id for pk in by_delivery},
    )


def _claim(
    batch_size: int, now: datetime
) -> tuple[list[ClaimedEvent], dict[int, ClaimedDelivery], bool]:
    """The batch's events and their deliveries, and whether the claim already marked
    the events processed (PostgreSQL: one statement claims, matches and marks)."""
    if connection.vendor != "postgresql":
        return (*_claim_plain(batch_size), False)
    events, deliveries = [], {}
    for row in db_tracking.events_claim(limit=batch_size, now=now):
        raw = row["raw"]
        events.append(
            ClaimedEvent(
                pk=row["id"],
                esp=row["esp"],
                event_type=row["event_type"],
                timestamp=row["timestamp"],
                received_at=row["received_at"],
                user_agent=row["user_agent"],
                raw=json.loads(raw) if isinstance(raw, str) else raw,
                delivery_id=row["delivery_id"],
            )
        )
        if row["delivery_id"] is not None:
            deliveries[row["delivery_id"]] = ClaimedDelivery(
                pk=row["delivery_id"], **{name: row[name] for name in _DELIVERY_READ}
            )
    return events, deliveries, True


_DELIVERY_READ = [
    "status", "soft_bounces", "sent_at", "member_id", "campaign_id", *MILESTONE.values()
]  # fmt: skip
_EVENT_READ = ["esp", "event_type", "timestamp", "received_at", "user_agent"]


def _claim_plain(batch_size: int) -> tuple[list[ClaimedEvent], dict[int, ClaimedDelivery]]:
    """The same claim in the ORM (SQLite: one writer at a time, no row locks): the
    oldest unprocessed events and their deliveries, matched as ``events_claim`` does."""
    rows = list(
        DeliveryEvent.objects.filter(processed_at=None)
        .order_by("id")
        .values("pk", *_EVENT_READ, "raw", "metadata_delivery_id", "message_id")[:batch_size]
    )
    by_id = _deliveries_by(pk__in={r["metadata_delivery_id"] for r in rows})
    unmatched = {
        r["message_id"] for r in rows if r["message_id"] and r["metadata_delivery_id"] not in by_id
    }
    by_message: dict[str, Delivery] = {}
    found = _deliveries_by(esp_message_id__in=unmatched).values()
    for by_mid in sorted(found, key=lambda d: d.pk, reverse=True):
        by_message[by_mid.esp_message_id] = by_mid  # the lowest id wins, as in SQL
    events, deliveries = [], {}
    for r in rows:
        delivery: Delivery | None = by_id.get(r["metadata_delivery_id"]) or by_message.get(
            r["message_id"]
        )
        events.append(
            ClaimedEvent(
                pk=r["pk"],
                **{name: r[name] for name in _EVENT_READ},
                raw=r["raw"] if r["event_type"] == "bounced" else None,
                delivery_id=delivery.pk if delivery else None,
            )
        )
        if delivery is not None:
            deliveries[delivery.pk] = ClaimedDelivery(
                pk=delivery.pk, **{name: getattr(delivery, name) for name in _DELIVERY_READ}
            )
    return events, deliveries


def _deliveries_by(**lookup: Any) -> dict[int, Delivery]:
    if not next(iter(lookup.values())):
        return {}
    fields = [name.removesuffix("_id") for name in _DELIVERY_READ]  # only() takes fields
    found = Delivery.objects.filter(**lookup).only("esp_message_id", *fields)
    return {delivery.pk: delivery for delivery in found}


def _when(event: ClaimedEvent) -> datetime:
    return event.timestamp or event.received_at


_TRACKED_FIELDS = ["status", "soft_bounces", "sent_at", *MILESTONE.values()]


def _fold(delivery: ClaimedDelivery, events: list[ClaimedEvent]) -> bool:
    """Apply events (earliest first) to ``delivery`` in memory; True if it changed."""
    before = [getattr(delivery, name) for name in _TRACKED_FIELDS]
    if delivery.sent_at is None:
        # The ESP has the message, so it was sent, though the sender never recorded it (its
        # worker died between the ESP's answer and the write): sent no later than the
        # first event says. A send time the sender recorded is never replaced.
        proof = next((e for e in events if e.event_type in EVENT_STATUS), None)
        delivery.sent_at = _when(proof) if proof else None
    for event in events:
        status = EVENT_STATUS.get(event.event_type)
        if status is None:
            continue
        at = _when(event)
        if status == S.BOUNCED and is_soft_bounce(event.esp, event.raw):
            status = S.DEFERRED
            delivery.soft_bounces += 1
        if status in (S.OPENED, S.CLICKED):
            event.is_machine = is_machine(event.user_agent, at, delivery.sent_at)
            if event.is_machine:
                status = S.DELIVERED  # a scanner proves delivery, not a reader
        for reached in _implied(status):
            milestone = MILESTONE.get(reached)
            if milestone and (
                getattr(delivery, milestone) is None or at < getattr(delivery, milestone)
            ):
                setattr(delivery, milestone, at)
        if RANK[status] > RANK.get(delivery.status, 0):
            delivery.status = status
    return before != [getattr(delivery, name) for name in _TRACKED_FIELDS]


def _implied(status: str) -> list[str]:
    """An open implies delivery, a click implies an open: milestones follow."""
    implied: dict[str, list[str]] = {
        S.OPENED: [S.DELIVERED, S.OPENED],
        S.CLICKED: [S.DELIVERED, S.OPENED, S.CLICKED],
    }
    return implied.get(status, [status])


def _save_deliveries(changed: list[tuple[ClaimedDelivery, int]]) -> None:
    """Write each changed delivery's folded state; ``int`` is its new soft bounces."""
    # Merged with the row as it is now, not assigned: the highest rank and the earliest
    # milestones win, so two processors (or a sender recording its send) touching the
    # same delivery at once cannot undo each other's progress (update_from_rows writes
    # the rows in id order, so two writers on shared deliveries lock them in one order).
    db_tracking.deliveries_merge(
        rows=[
            (d.pk, d.status, added, d.sent_at, *(getattr(d, name) for name in MILESTONE.values()))
            for d, added in changed
        ],
        ranks=_RANKS,
        milestones=list(MILESTONE.values()),
    )


_RANKS = {str(status): rank for status, rank in RANK.items()}


# The event types that are the member's unsubscribe, with how the ledger notes each.
LEDGER_UNSUBSCRIBE: dict[str, str] = {"complained": "complaint", "unsubscribed": "ESP unsubscribe"}


def _mark_processed(events: list[ClaimedEvent], now: datetime, *, all_rows: bool) -> None:
    """Write what the batch decided of its events: every row when the claim did not mark
    them, else only those with more to say than the claim wrote (a machine open or
    click; a complaint or ESP unsubscribe due to the ledger), typically a few."""
    rows = []
    for e in events:
        due = _ledger_due(e, now)
        if all_rows or e.is_machine or due is not None:
            rows.append((e.pk, e.delivery_id, e.delivery_id is None, e.is_machine, now, due))
    db_tracking.events_mark_processed(rows=rows)


def _ledger_due(event: ClaimedEvent, now: datetime) -> datetime | None:
    matched = event.delivery_id is not None
    return now if matched and event.event_type in LEDGER_UNSUBSCRIBE else None


def _address_health_mark(
    by_delivery: dict[int, list[ClaimedEvent]],
    deliveries: dict[int, ClaimedDelivery],
) -> None:
    """Hard bounces and complaints mark the address (members in id order, so two
    batches lock them in one order); what goes to the ledger is marked due instead."""
    counters: dict[int, dict[str, int]] = defaultdict(lambda: {"bounces": 0, "complaints": 0})
    by_member = sorted(by_delivery.items(), key=lambda item: deliveries[item[0]].member_id)
    for delivery_pk, events in by_member:
        delivery = deliveries[delivery_pk]
        kinds = {e.event_type for e in events}
        hard_bounce = any(
            e.event_type == "bounced" and not is_soft_bounce(e.esp, e.raw) for e in events
        )
        if hard_bounce and _mark_address(delivery.member_id, EmailStatus.BOUNCED):
            counters[delivery.campaign_id]["bounces"] += 1
        if "complained" in kinds and _mark_address(delivery.member_id, EmailStatus.COMPLAINED):
            counters[delivery.campaign_id]["complaints"] += 1
    for campaign_id, counts in sorted(counters.items()):
        Campaign.objects.filter(pk=campaign_id).update(
            hard_bounce_count=F("hard_bounce_count") + counts["bounces"],
            complaint_count=F("complaint_count") + counts["complaints"],
        )


def _mark_address(member_id: int, status: EmailStatus) -> bool:
    """Set the address's health unless it already says as much (a complaint outranks a
    bounce: it is the strongest "never again"). The member's unsubscribe is not touched."""
    keep = {
        EmailStatus.BOUNCED: [EmailStatus.BOUNCED, EmailStatus.COMPLAINED],
        EmailStatus.COMPLAINED: [EmailStatus.COMPLAINED],
    }[status]
    return bool(
        Member.objects.filter(pk=member_id)
        .exclude(email_status__in=keep)
        .update(email_status=status, email_status_changed_at=timezone.now())
    )


def ledger_consequences_apply(*, limit: int = 1000) -> int:
    """Record the unsubscribe of every processed complaint or ESP unsubscribe still due,
    each in its own ledger transaction, then clear its mark. Runs outside any
    transaction; safe to run concurrently and twice. Returns the ESP unsubscribes that
    added an event (complaints are counted as health, when the batch marks them)."""
    due = (
        DeliveryEvent.objects.filter(ledger_due_at__isnull=False)
        .order_by("id")
        .values_list(
            "pk",
            "event_type",
            "delivery_id",
            "delivery__member_id",
            "delivery__campaign__notice_version_id",
        )[:limit]
    )
    added = 0
    for pk, event_type, delivery_id, member_id, version_id in due:
        recorded = consent_record(
            member=Member(pk=member_id),
            action=Action.UNSUBSCRIBE,
            source=Source.ESP,
            notice_version_id=version_id,
            delivery_id=delivery_id,
            metadata={"reported_as": LEDGER_UNSUBSCRIBE[event_type]},
        )
        DeliveryEvent.objects.filter(pk=pk).update(ledger_due_at=None)
        added += recorded.created and event_type == "unsubscribed"
    return added
