"""A campaign's wording test (its variants: notice versions and shares), as the
lifecycle's create and edit change it (``variants=`` there).

The variants are part of what is approved: they change only before sending starts,
and a change after submission sends the campaign back to draft like any other edit of
what was approved; the staff audit trail records it with the edit. The campaign's own
``notice_version`` follows the first variant, so every reader of the campaign's
version (reminders' deadline, the audience's "not yet acknowledged") still works.
These helpers run inside the lifecycle's transaction, on the campaign's locked row.
"""

from collections.abc import Sequence

from campaigns.models import Campaign, CampaignVariant, NoticeVersion
from campaigns.selectors import campaign_split
from campaigns.variants import VariantRow, percent, split_problems

Variants = Sequence[tuple[NoticeVersion, int]]


class VariantError(ValueError):
    """The variants staff entered are not a valid split (the message says why)."""


def variants_current(*, campaign: Campaign) -> list[tuple[int, int]]:
    """The campaign's variants as (version id, share), in order."""
    return list(
        CampaignVariant.objects.filter(campaign=campaign)
        .order_by("pk")
        .values_list("notice_version_id", "share")
    )


def variants_check(*, variants: Variants) -> None:
    """Raise ``VariantError`` with every problem of the split (none: no test)."""
    problems = split_problems(
        notice_id=variants[0][0].notice_id if variants else None,
        rows=[VariantRow(v.pk, v.notice_id, share, str(v)) for v, share in variants],
    )
    if problems:
        raise VariantError(" ".join(problems))


def variants_replace(*, campaign: Campaign, variants: Variants) -> None:
    """Make ``variants`` (checked) the campaign's, in order."""
    CampaignVariant.objects.filter(campaign=campaign).delete()
    CampaignVariant.objects.bulk_create(
        CampaignVariant(campaign=campaign, notice_version=version, share=share)
        for version, share in variants
    )


def variants_described(rows: Sequence[tuple[int, int]]) -> str:
    """Variants as the audit trail shows them: "version 12: 50%, version 13: 50%"."""
    return ", ".join(f"version {pk}: {percent(share)}" for pk, share in rows) or "none"


def sent_version_ids(*, campaign: Campaign) -> list[int]:
    """The versions the campaign sends: its own, or its wording test's in order."""
    split = campaign_split(campaign_id=campaign.pk)
    return list(split.version_ids) if split else [campaign.notice_version_id]


def campaign_text_hashes(*, campaign: Campaign) -> dict[str, str]:
    """What approval records and the start compares: ``{locale: SHA-256}`` of the
    version's texts; for a wording test ``{"v<number>/<locale>": SHA-256}`` of every
    variant's texts (one notice, so the number names the version) and ``"split"``, the
    shares in order (``"v1=5000,v2=5000"``), so a changed split is caught too."""
    split = campaign_split(campaign_id=campaign.pk)
    if split is None:
        return campaign.notice_version.text_hashes()
    versions = NoticeVersion.objects.in_bulk(split.version_ids)
    hashes = {
        f"v{versions[pk].number}/{locale}": sha
        for pk in split.version_ids
        for locale, sha in versions[pk].text_hashes().items()
    }
    hashes["split"] = ",".join(
        f"v{versions[pk].number}={share}"
        for pk, share in zip(split.version_ids, split.shares, strict=True)
    )
    return hashes
