"""Wording tests: members are split between a campaign's variants in SQL, disjointly,
stably (fan-out twice, reminders) and in the configured shares, on both databases."""

import itertools
from collections import Counter

import pytest
from django.db import connection
from django.db.models import Count

from accounts.models import Member
from campaigns.models import CampaignState, CampaignVariant, Delivery
from campaigns.services.fanout import campaign_fan_out, deliveries_insert
from campaigns.variants import PRIME, Split, variant_bucket
from db import fanout as db_fanout
from tests.factories import MemberFactory, campaign
from tests.wording import versions_of_one_notice

pytestmark = pytest.mark.django_db

JURISDICTIONS = [("GB", "UK"), ("DE", "EU"), ("US", "US"), ("NO", "EEA")]


def members_bulk(count: int, *, start_id: int = 1) -> None:
    """``count`` members with consecutive ids, in blocks of one jurisdiction each (as an
    import by country would leave them): an id-order or jurisdiction bias would show."""
    block = count // len(JURISDICTIONS)
    Member.objects.bulk_create(
        (
            Member(
                pk=start_id + i,
                external_id=f"m{i}",
                email=f"m{i}@example.com",
                locale="en",
                country=JURISDICTIONS[min(i // block, 3)][0],
                jurisdiction=JURISDICTIONS[min(i // block, 3)][1],
            )
            for i in range(count)
        ),
        batch_size=5000,
    )


def split_campaign(shares, **fields):
    versions = versions_of_one_notice(len(shares))
    c = campaign(version=versions[0], state=CampaignState.SENDING, **fields)
    CampaignVariant.objects.bulk_create(
        CampaignVariant(campaign=c, notice_version=v, share=s)
        for v, s in zip(versions, shares, strict=True)
    )
    return c, versions


def test_the_sql_bucket_is_the_python_reference_even_for_huge_ids():
    ids = [1, 2, 3, 9_999, PRIME - 1, PRIME, PRIME + 1, 2**40 + 7, 2**62, 2**63 - 1]
    for pk in ids:
        MemberFactory(pk=pk)
    for campaign_id in (1, 2, 77, 2**31 - 1, 10**12):
        sql = db_fanout.member_buckets_read(campaign_id=campaign_id, member_ids=ids)
        reference = {pk: variant_bucket(campaign_id=campaign_id, member_id=pk) for pk in ids}
        assert sql == reference
        assert all(isinstance(b, int) and 0 <= b < 10_000 for b in sql.values())


def test_a_split_maps_each_bucket_to_one_variant_by_cumulative_range():
    split = Split((11, 12, 13), (5000, 3000, 2000))
    assert split.ranges() == [(11, 5000), (12, 8000), (13, 10000)]
    assert [split.version_for(b) for b in (0, 4999, 5000, 7999, 8000, 9999)] == [
        11, 11, 12, 12, 13, 13,
    ]  # fmt: skip
    with pytest.raises(ValueError):
        Split((11, 12), (5000, 4999))
    with pytest.raises(ValueError):
        Split((11,), (10000,))


def analyze() -> None:
    """Fresh statistics on PostgreSQL (autovacuum's job in production, never run inside
    a test's transaction): without them the planner takes the 100,000 rows just added
    for a handful and anti-joins the next statement row by row."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def test_100k_members_split_50_30_20_disjoint_stable_and_unbiased(settings):
    settings.RENOTIFY_FANOUT_SLICE = 50_000  # two slices
    members_bulk(100_000)
    analyze()
    c, versions = split_campaign([5000, 3000, 2000])
    assert campaign_fan_out(campaign=c) == 100_000
    analyze()
    first = dict(Delivery.objects.filter(wave=0).values_list("member_id", "notice_version_id"))
    # Disjoint and complete: one notice delivery per member, each carrying one variant.
    assert len(first) == 100_000 and set(first.values()) == {v.pk for v in versions}
    shares = {pk: n / 100_000 for pk, n in Counter(first.values()).items()}
    for version, wanted in zip(versions, (0.5, 0.3, 0.2), strict=True):
        assert abs(shares[version.pk] - wanted) < 0.01
    # Exactly the reference's assignment, member by member.
    split = Split(tuple(v.pk for v in versions), (5000, 3000, 2000))
    sample = list(itertools.islice(first.items(), 0, None, 97))
    assert all(
        split.version_for(variant_bucket(campaign_id=c.pk, member_id=m)) == v for m, v in sample
    )
    # No bias by jurisdiction (blocks of consecutive ids): each within 2 points.
    by_jurisdiction = (
        Delivery.objects.filter(wave=0, notice_version_id=versions[0].pk)
        .values("member__jurisdiction")
        .annotate(n=Count("pk"))
    )
    for row in by_jurisdiction:
        assert abs(row["n"] / 25_000 - 0.5) < 0.02, row
    # Stable: a second fan-out adds nothing; a reminder wave carries the same versions.
    assert campaign_fan_out(campaign=c) == 0
    deliveries_insert(campaign=c, wave=1, members=Member.objects.filter(pk__lte=20_000))
    reminded = dict(Delivery.objects.filter(wave=1).values_list("member_id", "notice_version_id"))
    assert len(reminded) == 20_000
    assert all(first[m] == v for m, v in reminded.items())


def test_a_campaign_without_variants_fans_out_as_before():
    MemberFactory.create_batch(3)
    c = campaign(state=CampaignState.SENDING)
    assert campaign_fan_out(campaign=c) == 3
    assert set(Delivery.objects.values_list("notice_version_id", flat=True)) == {None}


def test_each_campaign_splits_its_audience_afresh():
    """The seed is the campaign's: being in one test's first group says nothing about the
    next test's."""
    members_bulk(4000)
    a, a_versions = split_campaign([5000, 5000])
    b, b_versions = split_campaign([5000, 5000])
    campaign_fan_out(campaign=a)
    campaign_fan_out(campaign=b)
    in_a = set(
        Delivery.objects.filter(campaign=a, notice_version_id=a_versions[0].pk).values_list(
            "member_id", flat=True
        )
    )
    in_b = set(
        Delivery.objects.filter(campaign=b, notice_version_id=b_versions[0].pk).values_list(
            "member_id", flat=True
        )
    )
    both = len(in_a & in_b) / 4000
    assert 0.2 < both < 0.3  # about a quarter, as for independent halves
