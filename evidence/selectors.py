"""Reads for evidence packs: what a pack holds about a campaign (streamed, one query per
file, never one per member) and the packs themselves.

A pack is cut at one ledger head (``head_seq``): the member lines and the ledger slice
read no event after it, so the two files agree with each other and with the manifest.
"""

from collections.abc import Iterator

from django.db.models import Exists, F, OuterRef, QuerySet, Value
from django.db.models.functions import Coalesce

from accounts import ledger
from accounts.models import ConsentEvent
from campaigns.models import Campaign, Delivery
from db.evidence import LINE_COLUMNS, campaign_member_lines
from evidence import pack_verify
from evidence.models import EvidencePack, EvidencePackPart

# members.csv, in column order: what a regulator reads per member.
MEMBER_COLUMNS = LINE_COLUMNS
# The counts members.csv is checked against, and what counts as reached: the shipped
# verify.py's own definitions (it recounts them), so the pack and its check agree.
COUNTED, REACHED_BY = pack_verify.COUNTED, pack_verify.REACHED_BY
# ledger.csv, in column order: the hashed fields, the member's external id, the chain.
LEDGER_COLUMNS = (*ledger.HASHED_FIELDS, "member_external_id", "prev_hash", "hash")
LIST_SEPARATOR = ";"


def pack_versions_sent(*, campaign: Campaign) -> list[int]:
    """Every notice version the campaign sent (a delivery's own version, else the
    campaign's), the campaign's own always included, in id order."""
    sent = (
        Delivery.objects.filter(campaign=campaign)
        .annotate(version=Coalesce("notice_version_id", Value(campaign.notice_version_id)))
        .order_by()
        .values_list("version", flat=True)
        .distinct()
    )
    return sorted({campaign.notice_version_id, *sent})


def pack_members(
    *, campaign: Campaign, version_ids: list[int], head_seq: int, chunk: int
) -> Iterator[tuple[str, ...]]:
    """One line per member of the campaign (members with a delivery), in member order,
    ``MEMBER_COLUMNS`` as text, from one streamed statement."""
    return campaign_member_lines(
        campaign_id=campaign.pk,
        campaign_version_id=campaign.notice_version_id,
        version_ids=version_ids,
        head_seq=head_seq,
        chunk=chunk,
    )


def _slice(campaign: Campaign, head_seq: int) -> QuerySet[ConsentEvent]:
    members = Delivery.objects.filter(campaign=campaign, member=OuterRef("member"))
    return ConsentEvent.objects.filter(Exists(members), seq__lte=head_seq)


def pack_ledger_slice(*, campaign: Campaign, head_seq: int, chunk: int) -> Iterator[dict]:
    """Every ledger event of the campaign's members up to ``head_seq``, in chain order,
    with the fields its hash covers, the member's external id and the chain's hashes."""
    return (
        _slice(campaign, head_seq)
        .order_by("seq")
        .values(
            *ledger.HASHED_FIELDS, "prev_hash", "hash", member_external_id=F("member__external_id")
        )
        .iterator(chunk_size=chunk)
    )


def pack_rows_total(*, campaign: Campaign, head_seq: int) -> int:
    """The rows a build writes: one per member, one per ledger event (for progress)."""
    members = Delivery.objects.filter(campaign=campaign).values("member").distinct().count()
    return members + _slice(campaign, head_seq).count()


def campaign_packs(*, campaign: Campaign) -> QuerySet[EvidencePack]:
    return EvidencePack.objects.filter(campaign=campaign).select_related("requested_by")


def pack_bytes(*, pack: EvidencePack) -> Iterator[bytes]:
    """The finished ZIP, part by part: one small query per part, one part in memory."""
    parts = EvidencePackPart.objects.filter(pack=pack, attempt=pack.attempt)
    for index in range(pack.parts):
        data = parts.filter(index=index).values_list("data", flat=True).get()
        yield bytes(data)
