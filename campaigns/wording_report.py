"""The wording test's report: per notice version, who was sent it and how they
responded, with 95% intervals, so the team can show which wording people understood.

Definitions (docs/notices-and-campaigns.md#reading-the-report):

- the figures are for the notice itself (wave 0), one delivery per member, grouped by
  the version the delivery carries (``COALESCE(delivery, campaign)``);
- **targeted**: members given the version at fan-out; **sent**: accepted by the
  transport; **delivered**: the ESP reported delivery (the rates' denominator);
- **acknowledged**: delivered members with an acknowledgement of *the version they were
  sent*, from any channel (the notice page, or the platform's app through the API);
- **objected**: delivered members who objected while reading *that version* (the
  ledger event names it: the notice page, or a GPC signal there), for the campaign's
  purpose when it has one, else for any purpose; a later withdrawal still counts;
- **complained**: delivered members who marked one of this campaign's emails (the
  notice or a reminder) as spam.

Each rate has a Wilson score interval; each version is compared with the first by the
difference of rates and Newcombe's hybrid score interval (his method 10), which stays
inside -1..1 and behaves well for small counts and rates near 0. Intervals are
per comparison, not adjusted for several versions.
"""

from dataclasses import dataclass
from math import sqrt

from django.db.models import BigIntegerField, Count, Exists, OuterRef, Q, Value
from django.db.models.functions import Coalesce

from accounts.models import Action, ConsentEvent
from campaigns.models import Campaign, Delivery, NoticeVersion

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile
OUTCOMES = ("acknowledged", "objected", "complained")
COUNTS = ("targeted", "sent", "delivered", *OUTCOMES)


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of ``successes`` of ``trials``; None without trials."""
    if trials <= 0:
        return None
    p = successes / trials
    scale = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / scale
    half = z * sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / scale
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(
    x1: int, n1: int, x2: int, n2: int, z: float = Z95
) -> tuple[float, float] | None:
    """Newcombe's hybrid score interval of the difference x1/n1 - x2/n2 (his method 10:
    each side from the two Wilson intervals); None unless both have trials."""
    first, second = wilson_interval(x1, n1, z), wilson_interval(x2, n2, z)
    if first is None or second is None:
        return None
    p1, p2 = x1 / n1, x2 / n2
    (l1, u1), (l2, u2) = first, second
    difference = p1 - p2
    return (
        difference - sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        difference + sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )


@dataclass(frozen=True)
class Rate:
    """One outcome of one version: ``count`` of ``base`` delivered, with its interval and,
    except for the first version, its difference from the first version's rate."""

    count: int
    base: int
    interval: tuple[float, float] | None
    difference: float | None = None
    difference_interval: tuple[float, float] | None = None

    @property
    def value(self) -> float | None:
        return self.count / self.base if self.base else None

    @property
    def reading(self) -> str:
        """The comparison with the first version in plain words."""
        if self.difference_interval is None:
            return ""
        low, high = self.difference_interval
        if low <= 0 <= high:
            return "no difference shown"
        return "higher than the first version" if low > 0 else "lower than the first version"


@dataclass(frozen=True)
class VersionRow:
    version: NoticeVersion
    share: int | None  # basis points; None for deliveries outside the split (none expected)
    counts: dict[str, int]
    rates: dict[str, Rate]


def wording_test_report(*, campaign: Campaign) -> list[VersionRow]:
    """One row per version of the campaign's wording test, in the split's order: one
    grouped query over the notice deliveries, whatever the number of versions."""
    shares = dict(campaign.variants.order_by("pk").values_list("notice_version_id", "share"))
    grouped = {row["version_id"]: row for row in _grouped(campaign)}
    order = list(shares) + sorted(set(grouped) - set(shares))
    versions = NoticeVersion.objects.select_related("notice").in_bulk(order)
    empty = {f"{name}_members": 0 for name in COUNTS}
    rows: list[VersionRow] = []
    for version_id in order:
        counts = {name: grouped.get(version_id, empty)[f"{name}_members"] for name in COUNTS}
        rows.append(VersionRow(versions[version_id], shares.get(version_id), counts, {}))
    for row in rows:
        for name in OUTCOMES:
            row.rates[name] = _rate(
                row.counts, rows[0].counts if row is not rows[0] else None, name
            )
    return rows


def _rate(counts: dict[str, int], first: dict[str, int] | None, name: str) -> Rate:
    base = counts["delivered"]
    if first is None:
        return Rate(counts[name], base, wilson_interval(counts[name], base))
    difference = (
        counts[name] / base - first[name] / first["delivered"]
        if base and first["delivered"]
        else None
    )
    return Rate(
        counts[name],
        base,
        wilson_interval(counts[name], base),
        difference,
        newcombe_interval(counts[name], base, first[name], first["delivered"]),
    )


def _grouped(campaign: Campaign):
    delivered = Q(delivered_at__isnull=False)
    events = ConsentEvent.objects.filter(
        member_id=OuterRef("member_id"), notice_version_id=OuterRef("version_id")
    )
    objections = events.filter(action=Action.OBJECT)
    if campaign.purpose_id is not None:
        objections = objections.filter(purpose_id=campaign.purpose_id)
    complaints = Delivery.objects.filter(
        campaign=campaign, member_id=OuterRef("member_id"), complained_at__isnull=False
    )
    return (
        Delivery.objects.filter(campaign=campaign, wave=0)
        .annotate(
            version_id=Coalesce(
                "notice_version_id",
                Value(campaign.notice_version_id),
                output_field=BigIntegerField(),
            )
        )
        .order_by()
        .values("version_id")
        .annotate(
            # Named "<figure>_members": Delivery has an ``acknowledged`` attribute already.
            targeted_members=Count("pk"),
            sent_members=Count("pk", filter=Q(sent_at__isnull=False)),
            delivered_members=Count("pk", filter=delivered),
            acknowledged_members=Count(
                "pk", filter=delivered & Q(Exists(events.filter(action=Action.ACKNOWLEDGE)))
            ),
            objected_members=Count("pk", filter=delivered & Q(Exists(objections))),
            complained_members=Count("pk", filter=delivered & Q(Exists(complaints))),
        )
    )


CSV_COLUMNS = [
    "notice_version_id", "version", "share_percent", "targeted", "sent", "delivered",
    "outcome", "count", "rate", "rate_low_95", "rate_high_95",
    "difference_vs_first", "difference_low_95", "difference_high_95", "reading",
]  # fmt: skip


def report_csv_rows(rows: list[VersionRow]):
    """The report as CSV rows of ``CSV_COLUMNS``: one per version and outcome."""
    for row in rows:
        for name in OUTCOMES:
            rate = row.rates[name]
            yield [
                row.version.pk,
                f"v{row.version.number}",
                "" if row.share is None else f"{row.share / 100:.2f}",
                row.counts["targeted"],
                row.counts["sent"],
                row.counts["delivered"],
                name,
                rate.count,
                _number(rate.value),
                *(_number(v) for v in (rate.interval or (None, None))),
                _number(rate.difference),
                *(_number(v) for v in (rate.difference_interval or (None, None))),
                rate.reading,
            ]


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
