"""The effectiveness report: what a data protection authority asks for after a campaign,
per purpose and jurisdiction (docs/effectiveness-report.md says how to read it).

**Scope.** The campaigns that count are those fanned out (sent or sending) whose
audience could include the jurisdiction (no jurisdiction filter, or one naming it) and
whose audience is not filtered on another purpose's state; staff may narrow them to
chosen campaigns and to a date range (campaigns fanned out in it). The window of
responses runs from the first of those fan-outs (or the range's start) to the range's
end (or now). Responses count for members of the jurisdiction whom those campaigns
targeted: a notice delivery of theirs, or shown (or acknowledged) one of their
versions in the platform's app.

**Reach** is not defined here: each campaign's figures are
``campaigns.selectors.campaign_reach`` and ``campaign_not_reached_counts`` for the
jurisdiction, the same rules as the campaign page and its not-reached export, summed
from one read of the campaign's deliveries (``evidence.reach``; tested equal to them).
A member targeted by two campaigns counts in each campaign's row.

Every figure is an aggregate in SQL (ORM, or ``db.effectiveness`` where the ORM cannot
say it in one statement): four queries per campaign in scope and five for the report
(six with several campaigns: the notice period then ranks each member's sends),
whatever the number of members.
"""

import statistics
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from accounts.models import Action, Purpose, Source
from accounts.selectors import Reason
from api.models import ApiClient, ConsumerPosition
from campaigns.models import Campaign, Delivery
from db import effectiveness as db_effectiveness
from evidence.reach import CampaignReading, CampaignRow, campaign_reading, notice_days_histogram

# The objection routes a regulator asks about, in the order the report lists them; any
# other source (staff in the admin, an import, an ESP event) is listed after them.
ROUTES: dict[str, str] = {
    Source.PREFERENCE_PAGE: "Notice or preference page",
    Source.ONE_CLICK: "One-click link",
    Source.API: "The platform's API",
    Source.IN_APP: "In the platform's app",
    Source.GPC: "Global Privacy Control signal",
}
# What the daily trend counts: members who did each, per day.
TREND_ACTIONS = {
    "acknowledged": Action.ACKNOWLEDGE,
    "objected": Action.OBJECT,
    "withdrew": Action.WITHDRAW_OBJECTION,
    "unsubscribed": Action.UNSUBSCRIBE,
}


@dataclass(frozen=True)
class Distribution:
    """Whole days, over ``members``; None when there is no member."""

    members: int
    minimum: int | None
    median: float | None
    p90: float | None


@dataclass(frozen=True)
class DayCounts:
    day: date
    counts: dict[str, int]


@dataclass(frozen=True)
class RouteCount:
    source: str
    label: str
    objections: int
    members: int


@dataclass(frozen=True)
class ConsumerTiming:
    """How soon one consumer acknowledged the objections' feed entries."""

    client: str
    acknowledged: int
    pending: int
    median_seconds: float | None


@dataclass(frozen=True)
class FeedTiming:
    objections: int
    in_feed: int
    # No "objected" entry: out already by the jurisdiction's policy (the feed had
    # nothing to change), or not synced yet (or withdrawn before it was).
    policy_out: int
    not_in_feed: int
    median_seconds: float | None
    consumers: list[ConsumerTiming]


@dataclass(frozen=True)
class EffectivenessReport:
    purpose: Purpose
    jurisdiction: str
    since: datetime | None
    until: datetime
    campaigns: list[CampaignRow]
    total: CampaignRow
    processing_dates: list[date]
    notice_days: Distribution
    responses: dict[str, int]  # members who did each of TREND_ACTIONS in the window
    rates: dict[str, float | None]  # acknowledged and objected, of members reached
    trend: list[DayCounts]
    routes: list[RouteCount]
    unsubscribes: list[RouteCount]
    feed: FeedTiming

    @property
    def is_empty(self) -> bool:
        return not self.campaigns


def effectiveness_report(
    *,
    purpose: Purpose,
    jurisdiction: str,
    campaigns: list[int] | None = None,
    since: date | None = None,
    until: date | None = None,
    now: datetime | None = None,
) -> EffectivenessReport:
    """The report for ``purpose`` in ``jurisdiction`` over the campaigns in scope (see
    the module docstring); ``campaigns`` (ids) and [``since``, ``until``] narrow it.
    Read in one transaction, without PostgreSQL's JIT (``db.effectiveness``)."""
    with db_effectiveness.without_jit():
        return _report(purpose, jurisdiction, campaigns, since, until, now)


def _report(
    purpose: Purpose,
    jurisdiction: str,
    campaigns: list[int] | None,
    since: date | None,
    until: date | None,
    now: datetime | None,
) -> EffectivenessReport:
    start = _day_start(since) if since else None
    end = _day_start(until, days=1) if until else (now or timezone.now())
    scoped = report_campaigns(
        purpose=purpose, jurisdiction=jurisdiction, ids=campaigns, since=start, until=end
    )
    readings = [
        campaign_reading(campaign=campaign, jurisdiction=jurisdiction) for campaign in scoped
    ]
    rows = [reading.row for reading in readings]
    total = _total(rows)
    if not scoped:
        return _empty(purpose, jurisdiction, start, end, total)
    first = min(c.fanned_out_at for c in scoped if c.fanned_out_at)
    window_start = max(start, first) if start else first
    version_ids = _version_ids(scoped)
    scope = db_effectiveness.Scope(
        purpose.pk, jurisdiction, window_start, end, [c.pk for c in scoped], version_ids
    )
    ledger = _ledger(scope)
    responses = _responses(ledger["responses"])
    return EffectivenessReport(
        purpose=purpose,
        jurisdiction=jurisdiction,
        since=window_start,
        until=end,
        campaigns=rows,
        total=total,
        processing_dates=sorted({c.notice_version.effective_date for c in scoped}),
        notice_days=_notice_days(scope, readings),
        responses=responses,
        rates={
            name: _rate(responses[name], total.reached) for name in ("acknowledged", "objected")
        },
        trend=_trend(ledger["trend"]),
        routes=_routes(ledger["routes"], Action.OBJECT, ROUTES),
        unsubscribes=_routes(ledger["routes"], Action.UNSUBSCRIBE, {}),
        feed=_feed_timing(scope),
    )


def report_campaigns(
    *,
    purpose: Purpose,
    jurisdiction: str,
    ids: list[int] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Campaign]:
    """The campaigns in scope, oldest fan-out first (one query; the audience's lists are
    JSON, so whether one names the jurisdiction is read here, on a few rows)."""
    found = Campaign.objects.filter(fanned_out_at__isnull=False).filter(
        Q(purpose__isnull=True) | Q(purpose=purpose) | Q(purpose_state="")
    )
    if ids is not None:
        found = found.filter(pk__in=ids)
    if since is not None:
        found = found.filter(fanned_out_at__gte=since)
    if until is not None:
        found = found.filter(fanned_out_at__lt=until)
    found = found.select_related("notice_version").order_by("fanned_out_at", "pk")
    return [c for c in found if not c.jurisdictions or jurisdiction in c.jurisdictions]


def _total(rows: list[CampaignRow]) -> CampaignRow:
    not_reached: dict[str, int] = {}
    for row in rows:
        for reason, n in row.not_reached.items():
            not_reached[reason] = not_reached.get(reason, 0) + n
    sums = {
        name: sum(getattr(row, name) for row in rows)
        for name in ("targeted", "email_sent", "email_delivered", "in_app_served", "reached",
                     "complained", "reminders_sent")
    }  # fmt: skip
    return CampaignRow(campaign=None, not_reached=dict(sorted(not_reached.items())), **sums)


def _version_ids(scoped: list[Campaign]) -> list[int]:
    """Every version the campaigns sent: their own, and any a delivery names (wording
    tests). One query."""
    named = Delivery.objects.filter(
        campaign__in=scoped, wave=0, notice_version_id__isnull=False
    ).values_list("notice_version_id", flat=True)
    versions = {c.notice_version_id for c in scoped}
    versions.update(pk for pk in named.distinct().order_by() if pk is not None)
    return sorted(versions)


def _ledger(scope: db_effectiveness.Scope) -> dict[str, list[dict]]:
    """The ledger events in scope counted for the responses, the trend and the routes:
    one statement (``db.effectiveness.ledger_counts``), rows by part."""
    parts: dict[str, list[dict]] = {"responses": [], "trend": [], "routes": []}
    for row in db_effectiveness.ledger_counts(
        scope=scope, tzname=timezone.get_current_timezone_name()
    ):
        parts[row["part"]].append(row)
    return parts


def _responses(rows: list[dict]) -> dict[str, int]:
    by_action = {row["action"]: row["members"] for row in rows}
    return {name: by_action.get(action, 0) for name, action in TREND_ACTIONS.items()}


def _trend(rows: list[dict]) -> list[DayCounts]:
    """Members per day and action (a member counts once a day), by day."""
    days: dict[date, dict[str, int]] = {}
    names = {action: name for name, action in TREND_ACTIONS.items()}
    for row in sorted(rows, key=lambda r: _as_date(r["day"])):
        counts = days.setdefault(_as_date(row["day"]), dict.fromkeys(TREND_ACTIONS, 0))
        counts[names[row["action"]]] = row["members"]
    return [DayCounts(day, counts) for day, counts in days.items()]


def _as_date(value: date | str) -> date:
    """A day as the database returns it (SQLite: ISO text)."""
    return value if isinstance(value, date) else date.fromisoformat(value)


def _routes(rows: list[dict], action: str, named: dict[str, str]) -> list[RouteCount]:
    found = {row["source"]: row for row in rows if row["action"] == action}
    sources = [*named, *sorted(set(found) - set(named))]
    return [
        RouteCount(
            source=source,
            label=named.get(source) or Source(source).label,
            objections=found.get(source, {}).get("events", 0),
            members=found.get(source, {}).get("members", 0),
        )
        for source in sources
    ]


def _notice_days(scope: db_effectiveness.Scope, readings: list[CampaignReading]) -> Distribution:
    """One campaign: from its read (``evidence.reach``); several: a member's first notice
    is the earliest of theirs, which needs the deliveries member by member (one query)."""
    if len(readings) == 1:
        (reading,) = readings
        assert reading.row.campaign is not None
        return distribution(notice_days_histogram(campaign=reading.row.campaign, sent=reading.sent))
    histogram = db_effectiveness.notice_days_histogram(
        campaign_ids=scope.campaign_ids, jurisdiction=scope.jurisdiction
    )
    return distribution(histogram)


def distribution(histogram: list[dict]) -> Distribution:
    """Minimum, median and 90th percentile (as ``statistics.quantiles`` interpolates
    them, method "inclusive") of a histogram of rows ``{"days", "members"}``."""
    members = sum(row["members"] for row in histogram)
    if not members:
        return Distribution(0, None, None, None)
    return Distribution(
        members=members,
        minimum=min(row["days"] for row in histogram),
        median=_quantile(histogram, members, 0.5),
        p90=_quantile(histogram, members, 0.9),
    )


def _quantile(histogram: list[dict], members: int, q: float) -> float:
    """The value at fraction ``q`` of the sorted days, interpolated between neighbours
    (the same as ``statistics.quantiles(..., method="inclusive")``), read off the
    histogram without expanding it."""
    position = (members - 1) * q
    low, fraction = int(position), position - int(position)
    below = _nth(histogram, low)
    if not fraction:
        return float(below)
    return below + fraction * (_nth(histogram, low + 1) - below)


def _nth(histogram: list[dict], index: int) -> int:
    seen = 0
    for row in sorted(histogram, key=lambda r: r["days"]):
        seen += row["members"]
        if index < seen:
            return row["days"]
    return max(row["days"] for row in histogram)


def _feed_timing(scope: db_effectiveness.Scope) -> FeedTiming:
    """The feed's timing and each consumer's (one statement for both: the objections in
    scope and their entries are found once)."""
    clients = _clients(scope)
    rows = db_effectiveness.objection_times(
        scope=scope,
        excluded_reason=Reason.JURISDICTION_EXCLUDED.value,
        client_ids=[pk for pk, _name in clients],
    )
    feed_seconds = [float(r["feed_seconds"]) for r in rows if r["feed_seconds"] is not None]
    missing = [r for r in rows if r["feed_seconds"] is None]
    policy_out = sum(1 for r in missing if r["policy_out"])
    return FeedTiming(
        objections=len(rows),
        in_feed=len(feed_seconds),
        policy_out=policy_out,
        not_in_feed=len(missing) - policy_out,
        median_seconds=statistics.median(feed_seconds) if feed_seconds else None,
        consumers=[
            _consumer_timing(name, [r[f"ack_{n}"] for r in rows if r["feed_seconds"] is not None])
            for n, (_pk, name) in enumerate(clients)
        ],
    )


def _clients(scope: db_effectiveness.Scope) -> list[tuple[int, str]]:
    """Each consumer that follows the purpose's feed (has a position), by name."""
    return list(
        ApiClient.objects.filter(
            pk__in=ConsumerPosition.objects.filter(purpose_id=scope.purpose_id).values("client_id")
        )
        .order_by("name", "pk")
        .values_list("pk", "name")
    )


def _consumer_timing(name: str, seconds: list) -> ConsumerTiming:
    """One consumer's acknowledgements of the objections in the feed (None: pending)."""
    done = [float(s) for s in seconds if s is not None]
    return ConsumerTiming(
        client=name,
        acknowledged=len(done),
        pending=len(seconds) - len(done),
        median_seconds=statistics.median(done) if done else None,
    )


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _day_start(day: date, *, days: int = 0) -> datetime:
    midnight = datetime.combine(day, datetime.min.time(), tzinfo=timezone.get_current_timezone())
    return midnight + timedelta(days=days)


def _empty(purpose, jurisdiction, start, end, total) -> EffectivenessReport:
    return EffectivenessReport(
        purpose=purpose,
        jurisdiction=jurisdiction,
        since=start,
        until=end,
        campaigns=[],
        total=total,
        processing_dates=[],
        notice_days=Distribution(0, None, None, None),
        responses=dict.fromkeys(TREND_ACTIONS, 0),
        rates={"acknowledged": None, "objected": None},
        trend=[],
        routes=_routes([], Action.OBJECT, ROUTES),
        unsubscribes=[],
        feed=FeedTiming(0, 0, 0, 0, None, []),
    )
