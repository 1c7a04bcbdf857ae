"""Erase a member's personal data, keeping the facts.

Invariants:
- The ledger says it first: an unsubscribe (unless the member already unsubscribed),
  then an ``erase`` event, each through ``consent_record``. From the unsubscribe on,
  ``REACHABLE`` keeps the member from every mailing path (fan-out, a delivery already
  pending or claimed, reminders, receipts), so no email goes out even before the
  address is gone.
- Then, in one transaction: the member's deliveries not yet handed to the transport
  (pending, or claimed by a sender that read the address before the unsubscribe) are
  skipped, so a sender's hand-over, fenced by the status, finds them gone; the address
  and the person key are blanked and
  ``erased_at`` is set on the member, and what the ESP told us about their mail
  (recipient, raw payload, server responses, clicked links, user agents) and any send
  error quoting the address are blanked too.
- Kept: the external id (pseudonymous: the platform's own id), country and
  jurisdiction, preferences and the ledger, so an objection stays an objection and
  stays in the suppression lists. Ledger events cannot be changed (the hash chain
  covers every field), so a comment or user agent recorded with a choice stays. A
  message already handed to the transport when the erasure ran may still go out.
- Safe to repeat: a repeated or interrupted erasure records no second event and
  finishes what is left.
"""

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Replace
from django.utils import timezone

from accounts.models import Action, Member, Source
from accounts.permissions import permission_require
from accounts.services.consent import consent_record
from audit.models import Action as StaffAct
from audit.services import staff_action_record
from campaigns.models import Delivery, DeliveryEvent, DeliveryStatus

ERASE = "accounts.delete_member"
# What a send error says instead of the address it quoted.
ERASED_ADDRESS = "[erased]"
# Deliveries a sender has not handed to the transport yet: they can still be stopped.
NOT_HANDED_OVER = (DeliveryStatus.PENDING, DeliveryStatus.CLAIMED)


def member_erase(
    *,
    member: Member,
    source: Source,
    metadata: dict[str, Any] | None = None,
    by: User | None = None,
) -> bool:
    """Erase ``member``'s personal data (see the module docstring); False when they were
    erased already. Not inside a transaction (ledger writes refuse to be). Needs
    ``accounts.delete_member`` when staff act."""
    permission_require(by=by, perm=ERASE)
    if member.erased_at is not None:
        return False
    for action in (Action.UNSUBSCRIBE, Action.ERASE):
        consent_record(member=member, action=action, source=source, metadata=metadata)
    return _personal_data_blank(member, by=by)


@transaction.atomic
def _personal_data_blank(member: Member, *, by: User | None) -> bool:
    locked = Member.objects.select_for_update().get(pk=member.pk)
    if locked.erased_at is not None:
        return False  # a concurrent erasure finished first
    email = locked.email
    now = timezone.now()
    Member.objects.filter(pk=locked.pk).update(
        email="", person_key="", erased_at=now, updated_at=now
    )
    Delivery.objects.filter(member_id=locked.pk, status__in=NOT_HANDED_OVER).update(
        status=DeliveryStatus.SKIPPED, lease_expires_at=None, error="member erased"
    )
    _mail_records_blank(member_id=locked.pk, email=email)
    if by is not None:  # the staff erasure's entry; a member's own is in the ledger
        staff_action_record(by=by, action=StaffAct.MEMBER_ERASE, target=locked)
    member.email, member.person_key, member.erased_at = "", "", now
    return True


def _mail_records_blank(*, member_id: int, email: str) -> None:
    """Blank what the ESP's events and our send errors kept of the member's mail."""
    deliveries = Delivery.objects.filter(member_id=member_id)
    # Two statements, each served by an index (events by delivery; the few unmatched
    # ones), where one with OR would read the whole event table.
    _events_blank(DeliveryEvent.objects.filter(delivery__in=deliveries.values("pk")))
    if not email:
        return
    # Events not (yet) matched to a delivery carry only the address.
    unmatched = DeliveryEvent.objects.filter(
        Q(is_orphan=True) | Q(processed_at=None), delivery__isnull=True
    )
    _events_blank(unmatched.filter(recipient__iexact=email))
    deliveries.filter(error__contains=email).update(
        error=Replace(F("error"), Value(email), Value(ERASED_ADDRESS))
    )


def _events_blank(events) -> None:
    events.update(
        recipient="", raw={}, description="", mta_response="", user_agent="", click_url=""
    )
