"""Reads for campaigns: who is in an audience, and counts, always computed in SQL."""

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from accounts.models import REACHABLE, UNREACHABLE_REASON, Action, ConsentEvent, Member, Source
from accounts.selectors import members_with_effective_state
from campaigns.models import (
    UNFINISHED_STATUSES,
    Campaign,
    CampaignState,
    CampaignVariant,
    Delivery,
    DeliveryStatus,
)
from campaigns.variants import Split

FINAL_STATES = (CampaignState.COMPLETED, CampaignState.CANCELLED)


def audience_members(*, campaign: Campaign, as_of: datetime | None = None) -> QuerySet[Member]:
    """Everyone the campaign's filters select, reachable by email or not; ``as_of``: as
    the filters selected them then (members who existed, acknowledgements made by then;
    the purpose-state filter reads the state as it is now)."""
    members = Member.objects.all()
    if as_of is not None:
        members = members.filter(created_at__lte=as_of)
    if campaign.jurisdictions:
        members = members.filter(jurisdiction__in=campaign.jurisdictions)
    if campaign.countries:
        members = members.filter(country__in=campaign.countries)
    if campaign.locales:
        members = members.filter(locale__in=campaign.locales)
    if campaign.members_created_after:
        members = members.filter(created_at__gte=campaign.members_created_after)
    if campaign.members_created_before:
        members = members.filter(created_at__lt=campaign.members_created_before)
    if campaign.only_not_acknowledged:
        acknowledged = ConsentEvent.objects.filter(
            member=OuterRef("pk"),
            action=Action.ACKNOWLEDGE,
            notice_version_id__in=campaign.notice_version.notice.versions.values("pk"),
        )
        if as_of is not None:
            acknowledged = acknowledged.filter(created_at__lt=as_of)
        members = members.filter(~Exists(acknowledged))
    if campaign.purpose_state and campaign.purpose is not None:
        members = members_with_effective_state(purpose=campaign.purpose, members=members).filter(
            effective_state=campaign.purpose_state
        )
    return members


def campaign_split(*, campaign_id: int) -> Split | None:
    """The campaign's wording test, its variants in order; None when it has none."""
    rows = list(
        CampaignVariant.objects.filter(campaign_id=campaign_id)
        .order_by("pk")
        .values_list("notice_version_id", "share")
    )
    if not rows:
        return None
    return Split(tuple(v for v, _ in rows), tuple(share for _, share in rows))


def reachable(members: QuerySet[Member]) -> QuerySet[Member]:
    """A healthy address, and a member who has not unsubscribed."""
    return members.filter(REACHABLE)


@dataclass
class AudiencePreview:
    targeted: int = 0
    unreachable: dict[str, int] = field(default_factory=dict)
    by_jurisdiction: dict[str, int] = field(default_factory=dict)
    by_locale: dict[str, int] = field(default_factory=dict)

    @property
    def reachable(self) -> int:
        return self.targeted - sum(self.unreachable.values())

    def snapshot(self) -> dict:
        return {"targeted": self.targeted, "unreachable": self.unreachable}


def audience_preview(*, campaign: Campaign) -> AudiencePreview:
    """Counts by why a member is unreachable, jurisdiction and locale: one grouped query
    over the audience."""
    preview = AudiencePreview()
    rows = (
        audience_members(campaign=campaign)
        .order_by()
        .annotate(reason=UNREACHABLE_REASON)
        .values("reason", "jurisdiction", "locale")
        .annotate(n=Count("pk"))
    )
    for row in rows:
        preview.targeted += row["n"]
        if reason := row["reason"]:
            preview.unreachable[reason] = preview.unreachable.get(reason, 0) + row["n"]
            continue
        for key, bucket in (
            ("jurisdiction", preview.by_jurisdiction),
            ("locale", preview.by_locale),
        ):
            bucket[row[key]] = bucket.get(row[key], 0) + row["n"]
    return preview


def delivery_status_counts(*, campaign: Campaign) -> dict[str, int]:
    rows = (
        Delivery.objects.filter(campaign=campaign)
        .order_by()
        .values("status")
        .annotate(n=Count("pk"))
    )
    return {row["status"]: row["n"] for row in rows}


def campaign_has_unfinished_deliveries(*, campaign: Campaign) -> bool:
    return Delivery.objects.filter(campaign=campaign, status__in=UNFINISHED_STATUSES).exists()


# --- Reach: did the notice arrive? ----------------------------------------------------

REACH_COUNTS = {
    "deliveries": Q(),
    "sent": Q(sent_at__isnull=False),
    "delivered": Q(delivered_at__isnull=False),
    "deferred": Q(status=DeliveryStatus.DEFERRED),
    "bounced_hard": Q(bounced_at__isnull=False),
    "bounced_soft": Q(soft_bounces__gt=0),
    "complained": Q(complained_at__isnull=False),
    "opened": Q(opened_at__isnull=False),
    "clicked": Q(clicked_at__isnull=False),
    "failed": Q(status__in=[DeliveryStatus.FAILED, DeliveryStatus.REJECTED]),
    "unknown": Q(status=DeliveryStatus.UNKNOWN),
    "not_sent": Q(
        status__in=[DeliveryStatus.SKIPPED, DeliveryStatus.EXPIRED, DeliveryStatus.CANCELLED]
    ),
    "in_progress": Q(status__in=UNFINISHED_STATUSES),
}
RATE_OF = {"delivered": "sent", "bounced_hard": "sent", "complained": "delivered",
           "opened": "delivered", "clicked": "delivered", "acknowledged": "delivered",
           "objected": "delivered"}  # fmt: skip


@dataclass
class Reach:
    targeted: int
    unreachable: dict[str, int]
    totals: dict[str, int]
    by_jurisdiction: dict[str, dict[str, int]]
    by_locale: dict[str, dict[str, int]]
    reminders_sent: int
    # Members of the audience the platform showed the notice in its app (``IN_APP_COUNTS``).
    in_app: dict[str, int] = field(default_factory=dict)
    # Members the notice reached by any channel: email delivered, shown in-app, or
    # acknowledged from one of the campaign's links (which proves the email arrived).
    reached: int = 0

    def rate(self, name: str) -> float | None:
        base = self.totals.get(RATE_OF[name], 0)
        return self.totals.get(name, 0) / base if base else None

    @property
    def rates(self) -> dict[str, float | None]:
        return {name: self.rate(name) for name in RATE_OF}


def campaign_reach(
    *, campaign: Campaign, jurisdiction: str | None = None, responses: bool = True
) -> Reach:
    """Who was targeted, reached, engaged and responded: aggregate SQL only.

    Delivery figures are for the notice itself (wave 0); "opened" and "clicked"
    count people (machine activity is excluded when recorded). "acknowledged"
    and "objected" count members who did so from one of this campaign's links.
    ``jurisdiction``: only the audience's members there; the targeted and unreachable
    counts are then counted now (the fan-out's snapshot has no jurisdictions): the
    deliveries, and the members the filters selected at fan-out who got none.
    ``responses=False`` leaves "acknowledged" and "objected" out of the totals, for a
    caller that counts responses its own way: each is a set of the campaign's
    responders tested against every delivery, which on a million deliveries no longer
    fits PostgreSQL's work_mem as a hash and is then probed row by row.
    """
    notice_deliveries = _in_jurisdiction(
        Delivery.objects.filter(campaign=campaign, wave=0), "member__jurisdiction", jurisdiction
    )
    responded = ConsentEvent.objects.filter(
        delivery_id__in=Delivery.objects.filter(campaign=campaign).values("pk")
    )
    aggregates = {name: Count("pk", filter=q) for name, q in REACH_COUNTS.items()}
    if responses:
        aggregates["acknowledged"] = Count(
            "member",
            filter=Q(member__in=responded.filter(action=Action.ACKNOWLEDGE).values("member")),
            distinct=True,
        )
        aggregates["objected"] = Count(
            "member",
            filter=Q(member__in=responded.filter(action=Action.OBJECT).values("member")),
            distinct=True,
        )
    also_reached_count = Count("pk", filter=_acknowledged_undelivered(campaign))
    rows = list(
        notice_deliveries.order_by()
        .values("member__jurisdiction", "locale")
        .annotate(**aggregates, acknowledged_undelivered=also_reached_count)
    )
    also_reached = sum(row.pop("acknowledged_undelivered") for row in rows)
    totals: dict[str, int] = {name: 0 for name in aggregates}
    by_jurisdiction: dict[str, dict[str, int]] = {}
    by_locale: dict[str, dict[str, int]] = {}
    for row in rows:
        if campaign.state in FINAL_STATES:
            # Nothing sends for a finished campaign: what it left unfinished (a campaign
            # completed before its fan-out, before that could not happen) was not sent.
            row["not_sent"] += row["in_progress"]
            row["in_progress"] = 0
        for name in aggregates:
            totals[name] += row[name]
            for key, bucket in (
                (row["member__jurisdiction"], by_jurisdiction),
                (row["locale"] or "-", by_locale),
            ):
                bucket.setdefault(key, {n: 0 for n in aggregates})[name] += row[name]
    snapshot = campaign.audience_snapshot or {}
    if jurisdiction is not None:
        unreachable = _never_sent_counts(campaign, jurisdiction, in_app_too=True)
        snapshot = {"targeted": totals["deliveries"] + sum(unreachable.values()),
                    "unreachable": unreachable}  # fmt: skip
    in_app = campaign_in_app_reach(
        campaign=campaign,
        delivered=totals["delivered"] + also_reached,
        jurisdiction=jurisdiction,
    )
    reminders = Delivery.objects.filter(campaign=campaign, wave__gt=0, sent_at__isnull=False)
    return Reach(
        targeted=snapshot.get("targeted", totals["deliveries"]),
        unreachable=snapshot.get("unreachable", {}),
        totals=totals,
        by_jurisdiction=by_jurisdiction,
        by_locale=by_locale,
        reminders_sent=_in_jurisdiction(reminders, "member__jurisdiction", jurisdiction).count(),
        in_app={name: in_app[name] for name in IN_APP_COUNTS},
        reached=in_app["reached"],
    )


def _acknowledged_undelivered(campaign: Campaign) -> Q:
    """Which of the campaign's notices count as reached though never reported
    delivered: the member acknowledged from one of the campaign's links and was not
    shown the notice in-app (the acknowledgement proves the email arrived)."""
    acknowledged = ConsentEvent.objects.filter(
        delivery_id__in=Delivery.objects.filter(campaign=campaign).values("pk"),
        action=Action.ACKNOWLEDGE,
    ).values("member")
    # IN, not a correlated EXISTS: one hashed subplan each (an EXISTS per row made
    # PostgreSQL's estimate, and so its JIT compilation, dearer than the count).
    return (
        Q(delivered_at__isnull=True)
        & Q(member__in=acknowledged)
        & ~Q(member__in=_in_app(campaign, "served").values("member_id"))
    )


def acknowledged_undelivered(*, campaign: Campaign, deliveries: QuerySet[Delivery]) -> int:
    """Of ``deliveries`` (the campaign's notices), how many count as reached only by an
    acknowledgement from a link (see ``_acknowledged_undelivered``). A filter, not a
    count's FILTER: the few undelivered notices are found first and each member's
    acknowledgement looked up by index (a semi-join), where the FILTER hashed every
    acknowledgement of the campaign's deliveries, a second read of them (1.7 s of the
    effectiveness report at a million members, now under 1 s)."""
    return deliveries.filter(_acknowledged_undelivered(campaign)).count()


# --- Reach in the platform's own app ----------------------------------------------------
#
# The platform records that it showed a notice version in its app (``serve``) and that
# the member acknowledged it there (``acknowledge``), both with source ``in_app`` and no
# delivery. Those events name a notice version, not a campaign: they count for every
# campaign of that version whose audience holds the member.

# What an in-app event shows: an acknowledgement in the app proves it was shown there too.
IN_APP_ACTIONS = {
    "served": (Action.SERVE, Action.ACKNOWLEDGE),
    "acknowledged": (Action.ACKNOWLEDGE,),
}
IN_APP_COUNTS = tuple(IN_APP_ACTIONS)


def _in_app(campaign: Campaign, name: str, member: OuterRef | None = None) -> QuerySet:
    """In-app events of kind ``name`` (for ``member`` if given) of a version the campaign
    sends: its own, or any of its wording test's."""
    events = ConsentEvent.objects.filter(
        Q(notice_version_id=campaign.notice_version_id)
        | Q(
            notice_version_id__in=CampaignVariant.objects.filter(campaign=campaign).values(
                "notice_version_id"
            )
        ),
        source=Source.IN_APP,
        action__in=IN_APP_ACTIONS[name],
    )
    return events if member is None else events.filter(member=member)


def campaign_audience(*, campaign: Campaign, members: QuerySet[Member] | None = None):
    """Of ``members`` (everyone by default), those the campaign targeted: members with a
    notice delivery, and members its filters selected when it fanned out who have none.
    Fan-out gives every reachable member of the audience a delivery, so those were
    unreachable by email (bounced, complained, unsubscribed) and are the ones in-app
    notices are for. Before the fan-out, whom its filters select now. Tested member by
    member (two index probes each): pass the few members in question."""
    notice_delivery = Delivery.objects.filter(campaign=campaign, wave=0, member=OuterRef("pk"))
    selected = audience_members(campaign=campaign, as_of=campaign.fanned_out_at)
    return (members if members is not None else Member.objects.all()).filter(
        Q(Exists(notice_delivery)) | Q(Exists(selected.filter(pk=OuterRef("pk"))))
    )


def campaign_in_app_reach(
    *, campaign: Campaign, delivered: int, jurisdiction: str | None = None
) -> dict[str, int]:
    """Members of the audience shown the notice in-app, those who acknowledged it there,
    and everyone reached by any channel: the ``delivered`` count (one notice delivery per
    member; with those who acknowledged from a link, which proves it arrived, whatever
    the ESP reported) plus those shown in-app whose email was not delivered. One aggregate over the
    members with in-app events for the version, however large the audience.
    ``jurisdiction``: only members there (``delivered`` counted there too)."""
    shown_members = Member.objects.filter(pk__in=_in_app(campaign, "served").values("member_id"))
    shown = campaign_audience(
        campaign=campaign, members=_in_jurisdiction(shown_members, "jurisdiction", jurisdiction)
    )
    delivered_to = Delivery.objects.filter(
        campaign=campaign, wave=0, member=OuterRef("pk"), delivered_at__isnull=False
    )
    counts = shown.aggregate(
        served=Count("pk"),
        acknowledged=Count(
            "pk", filter=Q(Exists(_in_app(campaign, "acknowledged", OuterRef("pk"))))
        ),
        not_delivered=Count("pk", filter=~Q(Exists(delivered_to))),
    )
    return {
        "served": counts["served"],
        "acknowledged": counts["acknowledged"],
        "reached": delivered + counts["not_delivered"],
    }


# Deliveries that did not reach the member, and how to say why in the export.
NOT_REACHED_STATUSES = [
    DeliveryStatus.BOUNCED,
    DeliveryStatus.COMPLAINED,
    DeliveryStatus.FAILED,
    DeliveryStatus.REJECTED,
    DeliveryStatus.UNKNOWN,
    DeliveryStatus.SKIPPED,
    DeliveryStatus.EXPIRED,
]
NOT_REACHED_COLUMNS = ("external_id", "jurisdiction", "locale", "reason")


def members_not_reached(*, campaign: Campaign):
    """Rows (external_id, jurisdiction, locale, reason) for everyone the notice did not
    reach: deliveries that ended badly, and audience members left out at fan-out for
    their address's health or their unsubscribe; members shown it in-app are reached.
    Two streamed queries; memory does not grow with the audience."""
    delivered_badly = (
        _delivered_badly(campaign, None)
        .order_by("member_id")
        .values_list("member__external_id", "member__jurisdiction", "member__locale", "status")
    )
    yield from delivered_badly.iterator(chunk_size=5000)
    never_sent = (
        _never_sent(campaign, None, in_app_too=False)
        .order_by("pk")
        .values_list("external_id", "jurisdiction", "locale", "reason")
    )
    for external_id, jurisdiction, locale, status in never_sent.iterator(chunk_size=5000):
        yield external_id, jurisdiction, locale, NEVER_SENT_REASON.format(status)


NEVER_SENT_REASON = "not sent: email {}"


def campaign_not_reached_counts(
    *, campaign: Campaign, jurisdiction: str | None = None
) -> dict[str, int]:
    """``members_not_reached`` counted by its reason column (for members in
    ``jurisdiction`` when given): two grouped queries, the same rows the export lists."""
    counts: dict[str, int] = {}
    rows = _delivered_badly(campaign, jurisdiction).order_by().values("status")
    for row in rows.annotate(n=Count("pk")):
        counts[row["status"]] = row["n"]
    for reason, n in _never_sent_counts(campaign, jurisdiction, in_app_too=False).items():
        counts[NEVER_SENT_REASON.format(reason)] = n
    return counts


def not_reached_statuses(*, campaign: Campaign) -> list[str]:
    """The statuses of a notice delivery that did not reach its member."""
    statuses: list[str] = [*NOT_REACHED_STATUSES]
    if campaign.state in FINAL_STATES:
        statuses += UNFINISHED_STATUSES  # never to be sent (see campaign_reach)
    return statuses


def campaign_never_sent_counts(
    *, campaign: Campaign, jurisdiction: str | None = None
) -> dict[tuple[str, bool], int]:
    """Audience members left out at fan-out, counted by (reason, shown the notice in-app):
    one query for both what ``campaign_reach`` counts as unreachable (all of them) and
    what ``campaign_not_reached_counts`` counts (those not shown it in-app)."""
    rows = (
        _never_sent(campaign, jurisdiction, in_app_too=True)
        .annotate(shown=Exists(_in_app(campaign, "served", OuterRef("pk"))))
        .order_by()
        .values("reason", "shown")
        .annotate(n=Count("pk"))
    )
    return {(row["reason"], row["shown"]): row["n"] for row in rows}


def _delivered_badly(campaign: Campaign, jurisdiction: str | None) -> QuerySet[Delivery]:
    """Notice deliveries that did not reach their member, who was not shown it in-app."""
    statuses = not_reached_statuses(campaign=campaign)
    deliveries = Delivery.objects.filter(campaign=campaign, wave=0, status__in=statuses).exclude(
        Exists(_in_app(campaign, "served", OuterRef("member_id")))
    )
    return _in_jurisdiction(deliveries, "member__jurisdiction", jurisdiction)


def _never_sent(campaign: Campaign, jurisdiction: str | None, *, in_app_too: bool) -> QuerySet:
    """Audience members left out at fan-out (unreachable by email: no notice delivery),
    annotated with ``reason``; ``in_app_too=False`` leaves out those shown it in-app."""
    members = (
        _in_jurisdiction(audience_members(campaign=campaign), "jurisdiction", jurisdiction)
        .exclude(REACHABLE)
        .exclude(Exists(Delivery.objects.filter(campaign=campaign, wave=0, member=OuterRef("pk"))))
    )
    if not in_app_too:
        members = members.exclude(Exists(_in_app(campaign, "served", OuterRef("pk"))))
    return members.annotate(reason=UNREACHABLE_REASON)


def _never_sent_counts(
    campaign: Campaign, jurisdiction: str | None, *, in_app_too: bool
) -> dict[str, int]:
    rows = _never_sent(campaign, jurisdiction, in_app_too=in_app_too).order_by().values("reason")
    return {row["reason"]: row["n"] for row in rows.annotate(n=Count("pk"))}


def _in_jurisdiction(rows: QuerySet, lookup: str, jurisdiction: str | None) -> QuerySet:
    return rows if jurisdiction is None else rows.filter(**{lookup: jurisdiction})


def delivery_status_counts_by_campaign(*, campaign_ids: list[int]) -> dict[int, dict[str, int]]:
    """``{campaign id: {status: deliveries}}`` for several campaigns: one grouped query."""
    rows = (
        Delivery.objects.filter(campaign_id__in=campaign_ids)
        .order_by()
        .values("campaign_id", "status")
        .annotate(n=Count("pk"))
    )
    counts: dict[int, dict[str, int]] = {pk: {} for pk in campaign_ids}
    for row in rows:
        counts[row["campaign_id"]][row["status"]] = row["n"]
    return counts
