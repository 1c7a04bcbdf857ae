"""Materialise a campaign's deliveries with INSERT ... SELECT, a member-id range at a time.

No member list ever lives in Python: each statement copies one slice of the
audience straight into the deliveries table, leaving out members who already
have this wave (NOT EXISTS), so a repeated fan-out (a task run twice, a crash
half-way) adds nothing that is already there; the unique (campaign, member,
wave) constraint stops two fan-outs running at once from doubling a row.

A campaign grows only while it is sending or paused: each slice first takes a
``FOR KEY SHARE`` lock on the campaign's row and checks its state, in the slice's
own transaction. That lock conflicts with the ``FOR UPDATE`` that completion and
cancellation take (and not with the senders' counter updates), so a slice and a
completion take turns: a completed or cancelled campaign never gains a delivery,
and completion always sees the rows of a slice that went first. The notice wave's
last step records ``fanned_out_at``; until then the campaign cannot complete.
"""

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Min, QuerySet
from django.utils import timezone

from accounts.models import Member
from campaigns.models import Campaign, CampaignState, DeliveryStatus
from campaigns.selectors import audience_members, audience_preview, campaign_split, reachable
from db import fanout as db_fanout

# The states in which a campaign may gain deliveries.
GROWS_IN = (CampaignState.SENDING, CampaignState.PAUSED)


def campaign_fan_out(*, campaign: Campaign, wave: int = 0) -> int:
    """Create wave ``wave`` of ``campaign`` for its reachable audience; return rows added.

    Only for a sending or paused campaign. A repeated run of the notice wave (0) adds
    only members it lacks, so it also finishes a fan-out that was cut short; the first
    complete run records the audience snapshot and ``fanned_out_at``."""
    if wave == 0:
        state = Campaign.objects.values_list("state", flat=True).get(pk=campaign.pk)
        if state not in GROWS_IN:
            return 0
        # Who is left out and why is part of the evidence: keep it with the campaign.
        preview = audience_preview(campaign=campaign)
    added = deliveries_insert(
        campaign=campaign, wave=wave, members=reachable(audience_members(campaign=campaign))
    )
    if wave == 0:
        # The last step: from here the campaign may complete once nothing is left to send.
        Campaign.objects.filter(pk=campaign.pk, state__in=GROWS_IN, fanned_out_at=None).update(
            audience_snapshot=preview.snapshot(), fanned_out_at=timezone.now()
        )
    return added


def deliveries_insert(*, campaign: Campaign, wave: int, members: QuerySet[Member]) -> int:
    """INSERT one pending delivery per member of ``members``, in member-id slices; stops
    (adding nothing more) once the campaign is no longer sending or paused."""
    bounds = Member.objects.aggregate(low=Min("pk"), high=Max("pk"))
    if bounds["low"] is None:
        return 0
    step = settings.RENOTIFY_FANOUT_SLICE
    # A wording test's ranges: every wave computes the same bucket for the same member,
    # so reminders carry the version the notice did (``campaigns.variants``).
    split = campaign_split(campaign_id=campaign.pk)
    ranges = split.ranges() if split else []
    added = 0
    for start in range(bounds["low"] - 1, bounds["high"], step):
        members_slice = (
            members.filter(pk__gt=start, pk__lte=start + step)
            .order_by()
            .values(audience_member_id=F("pk"))
        )
        inserted = _insert_slice(campaign.pk, wave, members_slice, (start, start + step), ranges)
        if inserted is None:
            break
        added += inserted
    return added


def _insert_slice(
    campaign_id: int,
    wave: int,
    members: QuerySet,
    id_range: tuple[int, int],
    ranges: list[tuple[int, int]],
) -> int | None:
    """One slice in one transaction, None if the campaign may no longer grow. A
    concurrent fan-out of the same wave that got there first makes the unique
    constraint refuse ours: then again, without theirs."""
    attempt = 1
    while True:
        try:
            with transaction.atomic():
                if not _may_grow(campaign_id):
                    return None
                return _insert_new(campaign_id, wave, members, id_range, ranges)
        except IntegrityError:
            if attempt >= SLICE_ATTEMPTS:
                raise
            attempt += 1


SLICE_ATTEMPTS = 3


def _may_grow(campaign_id: int) -> bool:
    """Whether the campaign is sending or paused, holding its row (see the module's
    docstring) until the caller's transaction ends."""
    return db_fanout.campaign_state_hold(campaign_id=campaign_id) in GROWS_IN


def _insert_new(
    campaign_id: int,
    wave: int,
    members: QuerySet,
    id_range: tuple[int, int],
    ranges: list[tuple[int, int]],
) -> int:
    audience_sql, audience_params = members.query.sql_with_params()
    return db_fanout.deliveries_insert_missing(
        campaign_id=campaign_id,
        wave=wave,
        status=DeliveryStatus.PENDING.value,
        created_at=timezone.now(),
        audience_sql=audience_sql,
        audience_params=audience_params,
        member_id_range=id_range,
        variant_ranges=ranges,
    )
