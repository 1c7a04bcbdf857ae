"""A campaign's reach in a jurisdiction for the effectiveness report, read once.

The figures are ``campaigns.selectors.campaign_reach`` and
``campaign_not_reached_counts`` for the jurisdiction (those stay the definitions; the
campaign page and the not-reached export use them, and tests/test_effectiveness_plain.py
checks every figure here equals them). Called one after the other they read the
campaign's deliveries joined to the members five times (totals, not-reached statuses,
reminders, the notice-days histogram): at a million members each
read is a second or more. Here one grouped statement
(``db.effectiveness.campaign_delivery_groups``) counts the deliveries once, a few
hundred rows at most, and every figure is summed from those rows in Python; the members
left out at fan-out are one more grouped query, and the in-app reach the shared one.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import date

from campaigns.models import Campaign, Delivery, NoticeVersion
from campaigns.selectors import (
    NEVER_SENT_REASON,
    acknowledged_undelivered,
    campaign_in_app_reach,
    campaign_never_sent_counts,
    not_reached_statuses,
)
from db import effectiveness as db_effectiveness


@dataclass(frozen=True)
class CampaignRow:
    """One campaign's reach in the jurisdiction (the totals row has ``campaign`` None)."""

    campaign: Campaign | None
    targeted: int = 0
    email_sent: int = 0
    email_delivered: int = 0
    in_app_served: int = 0
    reached: int = 0
    complained: int = 0
    reminders_sent: int = 0
    not_reached: dict[str, int] = field(default_factory=dict)

    @property
    def not_reached_total(self) -> int:
        return sum(self.not_reached.values())


@dataclass(frozen=True)
class CampaignReading:
    """What the report takes from one read of a campaign's deliveries."""

    row: CampaignRow
    # Members of the jurisdiction sent the notice, per (version, UTC day sent).
    sent: Counter[tuple[int, date]]


def campaign_reading(*, campaign: Campaign, jurisdiction: str) -> CampaignReading:
    """The campaign's row and sends (four queries, whatever its size)."""
    groups = db_effectiveness.campaign_delivery_groups(
        campaign_id=campaign.pk,
        in_app_version_id=campaign.notice_version_id,
        jurisdiction=jurisdiction,
    )
    notices = [g for g in groups if not g["reminder"]]
    delivered = sum(g["delivered"] for g in notices)
    bad = set(not_reached_statuses(campaign=campaign))
    not_reached: Counter[str] = Counter()
    for g in notices:
        if g["status"] in bad and not g["shown"]:
            not_reached[g["status"]] += g["n"]
    never_sent = campaign_never_sent_counts(campaign=campaign, jurisdiction=jurisdiction)
    for (reason, shown), n in never_sent.items():
        if not shown:
            not_reached[NEVER_SENT_REASON.format(reason)] += n
    notice_deliveries = Delivery.objects.filter(
        campaign=campaign, wave=0, member__jurisdiction=jurisdiction
    )
    also_reached = acknowledged_undelivered(campaign=campaign, deliveries=notice_deliveries)
    in_app = campaign_in_app_reach(
        campaign=campaign, delivered=delivered + also_reached, jurisdiction=jurisdiction
    )
    row = CampaignRow(
        campaign=campaign,
        targeted=sum(g["n"] for g in notices) + sum(never_sent.values()),
        email_sent=sum(g["sent"] for g in notices),
        email_delivered=delivered,
        in_app_served=in_app["served"],
        reached=in_app["reached"],
        complained=sum(g["complained"] for g in notices),
        reminders_sent=sum(g["sent"] for g in groups if g["reminder"]),
        not_reached=dict(not_reached),
    )
    sent: Counter[tuple[int, date]] = Counter()
    for g in notices:
        if g["sent_day"] is not None:
            sent[(g["version"] or campaign.notice_version_id, _as_date(g["sent_day"]))] += g["sent"]
    return CampaignReading(row=row, sent=sent)


def notice_days_histogram(*, campaign: Campaign, sent: Counter[tuple[int, date]]) -> list[dict]:
    """Rows ``{"days", "members"}`` of one campaign's sends (a member has one notice
    delivery per campaign): days from the day sent to its version's effective date. The
    versions' dates are one query only when a delivery names another version."""
    effective = {campaign.notice_version_id: campaign.notice_version.effective_date}
    others = {version for version, _day in sent} - set(effective)
    if others:
        effective.update(
            NoticeVersion.objects.filter(pk__in=others).values_list("pk", "effective_date")
        )
    days: Counter[int] = Counter()
    for (version, day), n in sent.items():
        days[(effective[version] - day).days] += n
    return [{"days": d, "members": n} for d, n in sorted(days.items())]


def _as_date(value: date | str) -> date:
    """A day as the database returns it (SQLite: ISO text)."""
    return value if isinstance(value, date) else date.fromisoformat(value)
