"""Setting a campaign's wording test: its variants (notice versions and shares).

The variants are part of what is approved: they may change only before sending
starts, and a change after submission sends the campaign back to draft, like any
other edit of what was approved (``lifecycle.campaign_edit``). The campaign's own
``notice_version`` follows the first variant, so every reader of the campaign's
version (reminders' deadline, the audience's "not yet acknowledged") still works.

Needs ``campaigns.change_campaign``; recorded in the staff audit trail as an edit.
"""

from collections.abc import Sequence

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from accounts.permissions import permission_require
from audit.models import Action
from audit.services import staff_action_record
from campaigns.models import Campaign, CampaignState, CampaignVariant, NoticeVersion
from campaigns.services import lifecycle
from campaigns.services.lifecycle import EDITABLE_BEFORE_SENDING, TransitionError
from campaigns.variants import VariantRow, percent, split_problems


class VariantError(TransitionError):
    """The variants staff entered are not a valid split (the message says why)."""


def campaign_variants_set(
    *, campaign: Campaign, by: User | None, variants: Sequence[tuple[NoticeVersion, int]]
) -> Campaign:
    """Replace the campaign's variants with ``variants`` ((version, share in basis
    points), in order; empty: no wording test). Nothing changes if they are invalid
    (``VariantError`` says why) or equal to the current ones."""
    permission_require(by=by, perm=lifecycle.EDIT)
    with transaction.atomic():
        locked = (
            Campaign.objects.select_for_update()
            .select_related("notice_version")
            .get(pk=campaign.pk)
        )
        wanted = [(version.pk, share) for version, share in variants]
        current = list(
            CampaignVariant.objects.filter(campaign=locked)
            .order_by("pk")
            .values_list("notice_version_id", "share")
        )
        if wanted == current:
            return campaign
        if locked.state not in EDITABLE_BEFORE_SENDING:
            raise TransitionError("the wording test cannot change once sending started")
        problems = split_problems(
            notice_id=variants[0][0].notice_id if variants else None,
            rows=[VariantRow(v.pk, v.notice_id, share, str(v)) for v, share in variants],
        )
        if problems:
            raise VariantError(" ".join(problems))
        CampaignVariant.objects.filter(campaign=locked).delete()
        CampaignVariant.objects.bulk_create(
            CampaignVariant(campaign=locked, notice_version=version, share=share)
            for version, share in variants
        )
        fields = ["last_edited_by", "last_edited_at"]
        locked.last_edited_by, locked.last_edited_at = by, timezone.now()
        if variants and locked.notice_version_id != variants[0][0].pk:
            locked.notice_version = variants[0][0]
            fields.append("notice_version")
        locked.save(update_fields=fields)
        back_to_draft = locked.state != CampaignState.DRAFT
        if by is not None:
            staff_action_record(
                by=by,
                action=Action.EDIT,
                target=locked,
                changes={"variants": (_described(current), _described(wanted))},
                detail={"back_to_draft": True} if back_to_draft else None,
            )
        if back_to_draft:
            lifecycle.campaign_back_to_draft(
                campaign=locked,
                by=by,
                note="wording test changed after submission: needs approval again",
            )
    campaign.refresh_from_db()
    return campaign


def _described(rows: Sequence[tuple[int, int]]) -> str:
    """Variants as the audit trail shows them: "version 12: 50%, version 13: 50%"."""
    return ", ".join(f"version {pk}: {percent(share)}" for pk, share in rows) or "none"
