"""Materialise a campaign's deliveries with INSERT ... SELECT, a member-id range at a time.

No member list ever lives in Python: each statement copies one slice of the
audience straight into the deliveries table. ON CONFLICT DO NOTHING on the
unique (campaign, member, wave) constraint makes a repeated fan-out (a task
run twice, a crash half-way) add nothing that is already there.
"""

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max, Min, QuerySet
from django.utils import timezone

from accounts.models import Member
from campaigns.models import Campaign, Delivery, DeliveryStatus
from campaigns.selectors import audience_members, audience_preview, reachable


def campaign_fan_out(*, campaign: Campaign, wave: int = 0) -> int:
    """Create wave ``wave`` of ``campaign`` for its reachable audience; return rows added."""
    if wave == 0:
        # Who is left out and why is part of the evidence: keep it with the campaign.
        preview = audience_preview(campaign=campaign)
        Campaign.objects.filter(pk=campaign.pk).update(audience_snapshot=preview.snapshot())
    return deliveries_insert(
        campaign=campaign, wave=wave, members=reachable(audience_members(campaign=campaign))
    )


def deliveries_insert(*, campaign: Campaign, wave: int, members: QuerySet[Member]) -> int:
    """INSERT one pending delivery per member of ``members``, in member-id slices."""
    bounds = Member.objects.aggregate(low=Min("pk"), high=Max("pk"))
    if bounds["low"] is None:
        return 0
    step = settings.RENOTIFY_FANOUT_SLICE
    added = 0
    for start in range(bounds["low"] - 1, bounds["high"], step):
        members_slice = (
            members.filter(pk__gt=start, pk__lte=start + step)
            .order_by()
            .values(audience_member_id=F("pk"))
        )
        added += _insert_slice(campaign.pk, wave, members_slice)
    return added


def _insert_slice(campaign_id: int, wave: int, members: QuerySet) -> int:
    select_sql, params = members.query.sql_with_params()
    table = Delivery._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (campaign_id, member_id, wave, status, created_at, attempts,"
            " locale, esp_message_id, error)"
            " SELECT %s, audience.audience_member_id, %s, %s, %s, 0, '', '', ''"
            f" FROM ({select_sql}) audience"
            # "WHERE true" lets SQLite tell the SELECT from the upsert clause.
            " WHERE true ON CONFLICT (campaign_id, member_id, wave) DO NOTHING",
            [
                campaign_id,
                wave,
                DeliveryStatus.PENDING.value,
                connection.ops.adapt_datetimefield_value(timezone.now()),
                *params,
            ],
        )
        return cursor.rowcount
