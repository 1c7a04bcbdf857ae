"""Reads for the console's dashboard and campaign pages: grouped queries, a fixed number
per page however many campaigns, deliveries or ledger events there are."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TypeVar, cast

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import Action, ConsentEvent, LedgerCheck, Purpose, SuppressionChange
from api.models import ConsumerPosition
from api.selectors import FeedLag
from campaigns.models import (
    UNFINISHED_STATUSES,
    Campaign,
    CampaignState,
    CampaignTransition,
    Delivery,
    DeliveryStatus,
    ObjectionReceipt,
    ReceiptStatus,
)
from campaigns.selectors import Reach, campaign_reach, delivery_status_counts_by_campaign
from campaigns.services.lifecycle import BREAKER_NOTE
from campaigns.wording_report import VersionRow, wording_test_report
from db.suppression_counts import suppression_state_counts

S = CampaignState
T = TypeVar("T")
D = DeliveryStatus
# Campaigns the dashboard always shows; finished ones for RECENT_DAYS after they finished.
ACTIVE_STATES = (S.AWAITING_APPROVAL, S.APPROVED, S.SCHEDULED, S.SENDING, S.PAUSED)
FINISHED_STATES = (S.COMPLETED, S.CANCELLED)
RECENT_DAYS = 30

# --- Progress: deliveries done out of all, by what became of them -----------------------

# The progress bar's segments, in order: (key, label) and the statuses each one counts;
# every status is in exactly one, and "to_send" is UNFINISHED_STATUSES (tested).
PROGRESS_SEGMENTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("sent", "Sent"): (D.SENT, D.DEFERRED, D.DELIVERED, D.OPENED, D.CLICKED, D.COMPLAINED),
    ("not_sent", "Did not go out"): (
        D.BOUNCED,
        D.REJECTED,
        D.FAILED,
        D.SKIPPED,
        D.EXPIRED,
        D.CANCELLED,
    ),
    ("unknown", "Outcome unknown"): (D.UNKNOWN,),
    ("to_send", "Still to send"): (D.PENDING, D.CLAIMED, D.SENDING),
}


# A scheduled campaign this close to its start is polled like a sending one.
STARTING_SOON = timedelta(minutes=10)


@dataclass(frozen=True)
class Progress:
    campaign: Campaign
    by_status: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def segments(self) -> list[tuple[str, str, int]]:
        """(key, label, deliveries) per ``PROGRESS_SEGMENTS`` entry."""
        return [
            (key, label, sum(self.by_status.get(s, 0) for s in statuses))
            for (key, label), statuses in PROGRESS_SEGMENTS.items()
        ]

    @property
    def done(self) -> int:
        """Deliveries no sender owes work on any more."""
        return self.total - sum(self.by_status.get(s, 0) for s in UNFINISHED_STATUSES)

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0

    @property
    def live(self) -> bool:
        """Whether the figures are moving by themselves, or are about to (worth polling):
        sending, or scheduled to start soon (beat starts it; whoever just scheduled it
        sees it begin without reloading)."""
        if self.campaign.state == S.SENDING:
            return True
        starts_at = self.campaign.starts_at
        return (
            self.campaign.state == S.SCHEDULED
            and starts_at is not None
            and starts_at <= timezone.now() + STARTING_SOON
        )


def campaigns_progress(*, campaigns: list[Campaign]) -> dict[int, Progress]:
    """Each campaign's deliveries by status: one grouped query for those not in the cache.

    Counting a million deliveries takes about 200 ms, and every viewer's page polls it:
    the counts are kept for ``RENOTIFY_CONSOLE_PROGRESS_SECONDS`` (the polling period),
    so viewers share one count per period rather than each scanning the deliveries."""
    keys = {c.pk: f"console:progress:{c.pk}" for c in campaigns}
    counts = _cached_many(keys)
    missing = [c.pk for c in campaigns if c.pk not in counts]
    if missing:
        fresh = delivery_status_counts_by_campaign(campaign_ids=missing)
        cache.set_many(
            {keys[pk]: fresh[pk] for pk in missing}, settings.RENOTIFY_CONSOLE_PROGRESS_SECONDS
        )
        counts.update(fresh)
    return {c.pk: Progress(c, counts[c.pk]) for c in campaigns}


def _kept(key: str, compute: Callable[[], T], seconds: int) -> T:
    """The cache's copy of ``key``, or ``compute()`` kept for ``seconds``."""
    return cast(T, cache.get_or_set(key, compute, seconds))


def _cached_many(keys: dict[int, str]) -> dict[int, dict[str, int]]:
    found = cache.get_many(list(keys.values())) if keys else {}
    return {pk: found[key] for pk, key in keys.items() if key in found}


def campaign_reach_cached(*, campaign: Campaign) -> tuple[Reach, datetime]:
    """``campaigns.selectors.campaign_reach`` and when it was computed, kept for
    ``RENOTIFY_CONSOLE_REACH_SECONDS``: at a million deliveries it takes over two seconds
    of aggregate SQL, too long to pay on every view of the campaign page."""
    return _kept(
        f"console:reach:{campaign.pk}",
        lambda: (campaign_reach(campaign=campaign), timezone.now()),
        settings.RENOTIFY_CONSOLE_REACH_SECONDS,
    )


def wording_report_cached(*, campaign: Campaign) -> tuple[list[VersionRow], datetime]:
    """``campaigns.wording_report.wording_test_report`` and when it was computed, kept
    as the reach is (an aggregate over every notice delivery, with a ledger probe each)."""
    return _kept(
        f"console:wording:{campaign.pk}",
        lambda: (wording_test_report(campaign=campaign), timezone.now()),
        settings.RENOTIFY_CONSOLE_REACH_SECONDS,
    )


# --- Campaigns on the dashboard ---------------------------------------------------------


def _finished_at() -> Subquery:
    """When the campaign reached the state it is in (its last transition)."""
    last = CampaignTransition.objects.filter(campaign=OuterRef("pk")).order_by("-at", "-pk")
    return Subquery(last.values("at")[:1])


def dashboard_campaigns(*, now: datetime) -> list[Campaign]:
    """Active campaigns and those finished in the last ``RECENT_DAYS``: the active ones
    first, then the recently finished, each newest first; annotated with ``state_since``
    (when it reached its state)."""
    since = now - timedelta(days=RECENT_DAYS)
    rows = (
        Campaign.objects.annotate(state_since=_finished_at())
        .filter(Q(state__in=ACTIVE_STATES) | Q(state__in=FINISHED_STATES, state_since__gte=since))
        .select_related("notice_version__notice")
        .order_by("-created_at")
    )
    campaigns: list[Campaign] = [*rows]
    active = [c for c in campaigns if c.state in ACTIVE_STATES]
    return active + [c for c in campaigns if c.state not in ACTIVE_STATES]


def campaigns_list(*, state: str = "") -> QuerySet[Campaign]:
    """Every campaign (or those in ``state``), newest first."""
    campaigns = Campaign.objects.select_related("notice_version__notice").order_by(
        "-created_at", "-pk"
    )
    return campaigns.filter(state=state) if state else campaigns


# --- What needs attention ---------------------------------------------------------------


def campaigns_paused_by_breaker() -> list[tuple[Campaign, str]]:
    """Paused campaigns whose last pause was the circuit breaker's (no person, its note),
    each with that note (the breaker's reason)."""
    last_pause = CampaignTransition.objects.filter(
        campaign=OuterRef("pk"), to_state=S.PAUSED
    ).order_by("-at", "-pk")
    paused = (
        Campaign.objects.filter(state=S.PAUSED)
        .annotate(
            pause_by=Subquery(last_pause.values("by_id")[:1]),
            pause_note=Subquery(last_pause.values("note")[:1]),
        )
        .filter(pause_by__isnull=True, pause_note__startswith=BREAKER_NOTE)
        .order_by("pk")
    )
    return [(c, c.pause_note) for c in paused]


def unknown_deliveries_by_campaign() -> list[dict]:
    """``{"campaign_id", "campaign__name", "n"}`` for each campaign with deliveries whose
    outcome is unknown (a partial index holds only those)."""
    return list(
        Delivery.objects.filter(status=D.UNKNOWN)
        .order_by()
        .values("campaign_id", "campaign__name")
        .annotate(n=Count("pk"))
        .order_by("campaign_id")
    )


def failed_receipts_count() -> int:
    return ObjectionReceipt.objects.filter(status=ReceiptStatus.FAILED).count()


def ledger_check_last() -> LedgerCheck | None:
    return LedgerCheck.objects.order_by("-checked_at", "-id").first()


def ledger_check_stale_after() -> timedelta:
    """Twice the interval beat runs the ledger's head check at (settings)."""
    return timedelta(seconds=2 * settings.RENOTIFY_LEDGER_HEAD_CHECK_SECONDS)


def feed_consumers_behind(*, now: datetime, older_than: timedelta) -> list[FeedLag]:
    """Feed positions of clients not revoked whose oldest unapplied entry was recorded
    more than ``older_than`` ago, with their lag (``api.selectors.FeedLag``): one query,
    each position's figures read from the (purpose, id) index of the feed."""
    after = SuppressionChange.objects.filter(
        purpose_id=OuterRef("purpose_id"), pk__gt=OuterRef("cursor")
    )
    head = SuppressionChange.objects.filter(purpose_id=OuterRef("purpose_id")).order_by("-pk")
    behind = after.order_by().values("purpose_id").annotate(n=Count("pk")).values("n")
    positions = (
        ConsumerPosition.objects.filter(client__revoked_at__isnull=True)
        .select_related("client", "purpose")
        .annotate(
            oldest=Subquery(after.order_by("pk").values("recorded_at")[:1]),
            head=Subquery(head.values("pk")[:1]),
            behind=Subquery(behind[:1]),
        )
        .filter(oldest__lt=now - older_than)
        .order_by("client__name", "purpose__slug")
    )
    return [FeedLag(p, p.head or 0, p.behind or 0, p.oldest) for p in positions]


# --- Responses per day, from the ledger -------------------------------------------------

RESPONSE_ACTIONS = (Action.OBJECT, Action.ACKNOWLEDGE, Action.UNSUBSCRIBE)


@dataclass
class DailyCounts:
    days: list[date]
    # {action: [count per day, in ``days`` order]}
    counts: dict[str, list[int]] = field(default_factory=dict)

    def rows(self) -> list[tuple[date, list[int]]]:
        return [
            (day, [self.counts[a][i] for a in RESPONSE_ACTIONS]) for i, day in enumerate(self.days)
        ]

    def totals(self) -> list[int]:
        return [sum(self.counts[a]) for a in RESPONSE_ACTIONS]


def responses_per_day_cached(*, now: datetime) -> DailyCounts:
    """``responses_per_day`` for the last 30 days, kept for
    ``RENOTIFY_CONSOLE_COUNTS_SECONDS``: in a campaign's first days the ledger takes
    hundreds of thousands of responses, and grouping them costs tens of milliseconds or
    more on every view."""
    return _kept(
        f"console:responses-per-day:{timezone.localdate(now).isoformat()}",
        lambda: responses_per_day(now=now),
        settings.RENOTIFY_CONSOLE_COUNTS_SECONDS,
    )


def responses_per_day(*, now: datetime, days: int = 30) -> DailyCounts:
    """Objections, acknowledgements and unsubscribes recorded in the ledger on each of
    the last ``days`` days (today included, in the site's time zone): one grouped query
    over the (created_at) index range."""
    today = timezone.localdate(now)
    first = today - timedelta(days=days - 1)
    start = timezone.make_aware(datetime.combine(first, datetime.min.time()))
    rows = (
        ConsentEvent.objects.filter(created_at__gte=start, action__in=RESPONSE_ACTIONS)
        .annotate(day=TruncDate("created_at"))
        .order_by()
        .values("day", "action")
        .annotate(n=Count("pk"))
    )
    daily = DailyCounts(days=[first + timedelta(days=i) for i in range(days)])
    daily.counts = {a: [0] * days for a in RESPONSE_ACTIONS}
    for row in rows:
        offset = (row["day"] - first).days
        if 0 <= offset < days:
            daily.counts[row["action"]][offset] = row["n"]
    return daily


# --- Suppression counts -----------------------------------------------------------------


@dataclass(frozen=True)
class SuppressionCounts:
    counted_at: datetime
    jurisdictions: list[str]
    # (purpose name, [members "out" per jurisdiction, in ``jurisdictions`` order], total)
    rows: list[tuple[str, list[int], int]]


SUPPRESSION_COUNTS_KEY = "console:suppression-counts"


def suppression_counts(*, now: datetime) -> SuppressionCounts:
    """Members whose current state is "out" (the suppression feed's last word), per
    purpose and jurisdiction.

    A GROUP BY over every member's state (a join of two million-row tables at 1M
    members) takes a few hundred milliseconds: kept in the cache for
    ``RENOTIFY_CONSOLE_COUNTS_SECONDS`` (the page says when they were counted). Counts
    maintained by the feed's sync were the other way; they would also have to follow
    members whose jurisdiction moves while their state stays, which the feed's diff
    does not see."""
    return _kept(
        SUPPRESSION_COUNTS_KEY,
        lambda: suppression_counts_fresh(now=now),
        settings.RENOTIFY_CONSOLE_COUNTS_SECONDS,
    )


def suppression_counts_fresh(*, now: datetime) -> SuppressionCounts:
    rows = suppression_state_counts(state="out")
    purposes = {
        p.pk: p.name for p in Purpose.objects.filter(pk__in={r["purpose_id"] for r in rows})
    }
    jurisdictions = sorted({r["jurisdiction"] for r in rows})
    table: dict[int, dict[str, int]] = {}
    for row in rows:
        table.setdefault(row["purpose_id"], {})[row["jurisdiction"]] = row["n"]
    return SuppressionCounts(
        counted_at=now,
        jurisdictions=jurisdictions,
        rows=[
            (
                purposes[pk],
                [by_j.get(j, 0) for j in jurisdictions],
                sum(by_j.values()),
            )
            for pk, by_j in sorted(table.items(), key=lambda item: purposes[item[0]])
        ],
    )
