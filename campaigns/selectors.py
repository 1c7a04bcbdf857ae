"""Reads for campaigns: who is in an audience, and counts, always computed in SQL."""

from dataclasses import dataclass, field

from django.db.models import Count, Exists, OuterRef, QuerySet

from accounts.models import Action, ConsentEvent, EmailStatus, Member
from accounts.selectors import members_with_effective_state
from campaigns.models import UNFINISHED_STATUSES, Campaign, Delivery


def audience_members(*, campaign: Campaign) -> QuerySet[Member]:
    """Everyone the campaign's filters select, reachable by email or not."""
    members = Member.objects.all()
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
        members = members.filter(~Exists(acknowledged))
    if campaign.purpose_id and campaign.purpose_state:
        members = members_with_effective_state(purpose=campaign.purpose, members=members).filter(
            effective_state=campaign.purpose_state
        )
    return members


def reachable(members: QuerySet[Member]) -> QuerySet[Member]:
    return members.filter(email_status=EmailStatus.OK)


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
    """Counts by email status, jurisdiction and locale: one grouped query over the audience."""
    preview = AudiencePreview()
    rows = (
        audience_members(campaign=campaign)
        .order_by()
        .values("email_status", "jurisdiction", "locale")
        .annotate(n=Count("pk"))
    )
    for row in rows:
        preview.targeted += row["n"]
        if row["email_status"] != EmailStatus.OK:
            status = row["email_status"]
            preview.unreachable[status] = preview.unreachable.get(status, 0) + row["n"]
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
